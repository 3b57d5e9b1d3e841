//! `pika-server`: the Pika agent API. It provisions managed OpenClaw agents as Incus instances,
//! keeps one SQLite row per agent, and authenticates owners with bearer tokens.
//!
//! Layout: [`config`] (every setting, once), [`policy`] (what requests may name), [`names`] (which
//! strings are names), [`incus_keys`] (every Incus-specific string), [`lease`] (one server per database), [`params`] (merge and
//! resolution of parameters), [`store`] (SQLite rows, migrations), [`auth`] (tokens file),
//! [`incus`] (instance create/remove), [`gateway`] (an agent's OpenClaw configuration, token,
//! proxy device and delivery), [`error`] (the service's errors), [`agents`] (the
//! service), [`reconcile`] (startup settling), [`members`] (agents on offline cluster members), [`pool`] (the warm pool),
//! [`http`] (routes, the only place with statuses).

pub mod agents;
pub mod auth;
pub mod config;
pub mod endpoint;
pub mod error;
pub mod gateway;
pub mod health;
pub mod http;
pub mod incus;
pub mod incus_keys;
pub mod lease;
pub mod members;
pub mod names;
pub mod params;
pub mod policy;
pub mod pool;
pub mod pools;
pub mod provision;
pub mod reconcile;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;

pub use config::{ServerConfig, StateSettings};
pub use params::{incus_params_provided, merge_incus_provision_params, resolved_incus_params};

/// Opens the store and tokens, reconciles, binds, then serves until `shutdown` resolves.
///
/// `on_ready` gets the bound address once requests are accepted (after reconciliation).
pub async fn serve(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Fail at startup, not at the first provision, when the operator's model environment is
    // unusable; before anything is opened or created.
    let model_env = gateway::ModelEnv::load(config.gateway.model_env_file.as_deref())?;
    let db = config.state.db_path();
    // Before anything reads the database: a second server on it stops here.
    let lease = lease::Lease::acquire(&db)?;
    let store = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || store::Store::open(&db)).await??
    };
    let tokens = auth::Tokens::load(config.state.tokens_path())?;
    let agents = agents::Agents::new(
        store,
        incus::Connector::new(config.incus_socket.clone(), config.incus.tls()),
        &config.incus,
        &config.gateway,
    )
    .with_pool(pools::Pools::new(&config.pool, &config.incus.defaults())?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}={}", config::ENV_LISTEN, config.listen))?;
    let local = listener.local_addr()?;
    reconcile::reconcile(&agents)
        .await
        .map_err(|err| anyhow::anyhow!("reconciling: {}", err.message))?;
    pool::recover(&agents)
        .await
        .map_err(|err| anyhow::anyhow!("recovering the warm pool: {}", err.message))?;
    let server_id = agents.server_id().to_owned();
    let state = Arc::new(http::AppState { agents, tokens });
    let watched = Arc::clone(&state);
    let interval = std::time::Duration::from_secs(config.incus.member_check_secs);
    let watcher = tokio::spawn(async move { members::watch(&watched.agents, interval).await });
    let refilled = Arc::clone(&state);
    let refill = tokio::spawn(async move { pool::run(&refilled.agents).await });
    let app = http::router(state);
    tracing::info!(
        listen = %local,
        db = %db.display(),
        server_id,
        gateway_ports = %config.gateway.ports,
        gateway_address = %config.gateway.listen_address,
        model_env = ?model_env,
        "serving"
    );
    on_ready(local);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    watcher.abort();
    refill.abort();
    drop(lease);
    tracing::info!("shut down");
    Ok(())
}
