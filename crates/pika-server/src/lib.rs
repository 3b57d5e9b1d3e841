//! `pika-server`: the Pika agent API. It provisions managed OpenClaw agents as Incus instances,
//! keeps one SQLite row per agent, and authenticates owners with bearer tokens.
//!
//! Layout: [`incus_keys`] (every Incus-specific string), [`params`] (env defaults, merge and
//! resolution), [`store`] (SQLite rows), [`auth`] (tokens file), [`incus`] (instance create/remove),
//! [`agents`] (what the endpoints do, reconcile), [`http`] (routes).

pub mod agents;
pub mod auth;
pub mod http;
pub mod incus;
pub mod incus_keys;
pub mod params;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use pika_managed_agent_contract::IncusProvisionParams;

pub use params::{
    default_incus_params_from_env, incus_params_provided, merge_incus_provision_params,
    resolved_incus_params,
};

/// Listen address unless `PIKA_SERVER_LISTEN` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// SQLite file unless `PIKA_SERVER_DB` says otherwise.
pub const DEFAULT_DB: &str = "pika-server.db";
/// Tokens file unless `PIKA_SERVER_TOKENS_FILE` says otherwise.
pub const DEFAULT_TOKENS_FILE: &str = "pika-server.tokens";
/// The local incusd socket unless `INCUS_SOCKET` says otherwise.
pub const DEFAULT_INCUS_SOCKET: &str = pika_incus::api::DEFAULT_UNIX_SOCKET;

pub const ENV_LISTEN: &str = "PIKA_SERVER_LISTEN";
pub const ENV_DB: &str = "PIKA_SERVER_DB";
pub const ENV_TOKENS_FILE: &str = "PIKA_SERVER_TOKENS_FILE";

/// Everything the server reads from its environment.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub db: PathBuf,
    pub tokens_file: PathBuf,
    pub incus_socket: PathBuf,
    pub incus_defaults: IncusProvisionParams,
    pub tls: incus::TlsFiles,
}

fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default))
}

fn env_opt_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl ServerConfig {
    /// Reads the environment; any invalid variable is an error that names it.
    pub fn from_env() -> anyhow::Result<Self> {
        let listen_text = std::env::var(ENV_LISTEN)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.trim().parse().with_context(|| {
            format!(
                "{ENV_LISTEN}={listen_text:?} is invalid: expected HOST:PORT, e.g. {DEFAULT_LISTEN}"
            )
        })?;
        Ok(ServerConfig {
            listen,
            db: env_path(ENV_DB, DEFAULT_DB),
            tokens_file: env_path(ENV_TOKENS_FILE, DEFAULT_TOKENS_FILE),
            incus_socket: env_path(incus_keys::env::SOCKET, DEFAULT_INCUS_SOCKET),
            incus_defaults: default_incus_params_from_env()?,
            tls: incus::TlsFiles {
                client_cert: env_opt_path(incus_keys::env::CLIENT_CERT_PATH),
                client_key: env_opt_path(incus_keys::env::CLIENT_KEY_PATH),
                server_cert: env_opt_path(incus_keys::env::SERVER_CERT_PATH),
            },
        })
    }
}

/// Opens the store and tokens, reconciles, binds, then serves until `shutdown` resolves.
///
/// `on_ready` gets the bound address once requests are accepted (after reconciliation).
pub async fn serve(
    config: ServerConfig,
    on_ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let store = store::Store::open(&config.db)?;
    let tokens = auth::Tokens::load(config.tokens_file.clone())?;
    let agents = agents::Agents {
        store,
        connector: incus::Connector::new(config.incus_socket.clone(), config.tls.clone()),
        defaults: config.incus_defaults.clone(),
        incus_slots: tokio::sync::Semaphore::new(agents::INCUS_CONCURRENCY),
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {ENV_LISTEN}={}", config.listen))?;
    let local = listener.local_addr()?;
    agents::reconcile(&agents).await?;
    let state = Arc::new(http::AppState { agents, tokens });
    let app = http::router(state);
    tracing::info!(listen = %local, db = %config.db.display(), "serving");
    on_ready(local);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("shut down");
    Ok(())
}
