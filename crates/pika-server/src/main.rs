//! `pika-server`: runs the agent API (no subcommand, or `serve`) and manages its tokens.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use pika_runtime::WithCompletions;
use pika_server::{ServerConfig, StateSettings, auth};

/// The Pika agent API server: provisions managed OpenClaw agents as Incus instances.
///
/// Every setting is a flag and an environment variable (shown with its default below); an
/// invalid value stops the server naming the flag or variable.
#[derive(Parser)]
#[command(name = "pika-server", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<WithCompletions<Command>>,
    /// Settings of `serve` (also accepted without the subcommand).
    #[command(flatten)]
    serve: ServerConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API (the default).
    Serve(Box<ServerConfig>),
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
        /// Mark the token `admin`: it may read the details of `GET /v1/health` (Incus endpoint,
        /// version, project, image provenance), which other tokens see only as ok/failed.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        state: StateSettings,
    },
}

/// Names the environment variable next to the flag when a value is invalid: the value may have
/// come from either, and clap's message names only the flag.
fn with_env_hint(mut err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg).cloned() else {
        return err;
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches("--")
        .to_owned();
    let mut command = Cli::command();
    command.build();
    let env = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned());
    if let Some(env) = env {
        err.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![
                format!("--{long} is also set by the environment variable {env}").into(),
            ]),
        );
    }
    err
}

fn main() -> ExitCode {
    pika_runtime::init("pika-server", "info");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => with_env_hint(err).exit(),
    };
    let command = cli
        .command
        .map(WithCompletions::or_print_completions::<Cli>);
    let result = match command {
        None => run_server(cli.serve),
        Some(Command::Serve(config)) => run_server(*config),
        Some(Command::Token {
            command:
                TokenCommand::Add {
                    owner,
                    state,
                    admin,
                },
        }) => auth::add_token(&state.tokens_path(), &owner, admin)
            .map(|token| println!("{token}"))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %format!("{err:#}"), "pika-server failed");
            eprintln!("pika-server: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(config: ServerConfig) -> anyhow::Result<()> {
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
            tracing::error!(error = %err, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
