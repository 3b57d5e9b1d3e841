//! `pika-server`: runs the agent API (no subcommand, or `serve`) and manages its tokens.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pika_server::{DEFAULT_TOKENS_FILE, ENV_TOKENS_FILE, ServerConfig, auth};

/// The Pika agent API server: provisions managed OpenClaw agents as Incus instances.
///
/// Configuration comes from the environment: PIKA_SERVER_LISTEN (default 127.0.0.1:8080),
/// PIKA_SERVER_DB (SQLite file), PIKA_SERVER_TOKENS_FILE, INCUS_SOCKET, and the Incus defaults
/// PIKA_AGENT_INCUS_{ENDPOINT,PROJECT,PROFILE,STORAGE_POOL,GUEST_ROLE,IMAGE_ALIAS,INSECURE_TLS,
/// CLIENT_CERT_PATH,CLIENT_KEY_PATH,SERVER_CERT_PATH}.
#[derive(Parser)]
#[command(name = "pika-server", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API (the default).
    Serve,
    /// Manage bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for OWNER: prints the token and appends its SHA-256 to the tokens file.
    Add {
        /// Owner name (A-Z a-z 0-9 . _ -).
        owner: String,
        /// The tokens file.
        #[arg(long, env = ENV_TOKENS_FILE, default_value = DEFAULT_TOKENS_FILE)]
        tokens_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run_server(),
        Command::Token {
            command: TokenCommand::Add { owner, tokens_file },
        } => auth::add_token(&tokens_file, &owner)
            .map(|token| println!("{token}"))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("pika-server: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server() -> anyhow::Result<()> {
    let config = ServerConfig::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(pika_server::serve(
        config,
        |addr| {
            // The ready line: scripts and tests read the bound address from it.
            println!("pika-server listening on http://{addr}");
            let _ = std::io::stdout().flush();
        },
        shutdown_signal(),
    ))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::error!("cannot listen for SIGTERM: {err}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
