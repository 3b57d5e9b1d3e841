//! `pika-guest`: the operator tool for Incus guests of any role of roles.toml.
//!
//! ```text
//! pika-guest launch --role ROLE NAME [--ssh-key FILE] [--project P] [--profile P]... [--mount NAME=DIR]... [--timeout SECS] [--json]
//! pika-guest list [--role ROLE] [--project P] [--json]
//! pika-guest delete NAME [--project P] [--json]
//! pika-guest image import|status|rollback|prune|publish --role ROLE ...
//! ```
//! Every command talks to the local Incus socket (`--socket`, `INCUS_SOCKET`) or to an HTTPS
//! endpoint (`--endpoint URL --client-cert FILE --client-key FILE [--server-cert FILE]`).
//! Exit codes: 0 ok, 1 failure, 2 usage error (an unknown role lists the valid ones).

mod guest;
mod image;
mod target;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pika_runtime::WithCompletions;

/// Launch, list and delete Incus guests of any Pika role, and manage the role images.
#[derive(Parser)]
#[command(name = "pika-guest", version)]
struct Cli {
    #[command(subcommand)]
    command: WithCompletions<Command>,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Guest(guest::GuestCommand),
    /// The Incus side of role images: import, status, rollback, prune, publish.
    Image {
        #[command(subcommand)]
        command: Box<image::ImageCommand>,
    },
}

fn main() -> ExitCode {
    pika_runtime::init("pika-guest", "warn");
    let command = Cli::parse().command.or_print_completions::<Cli>();
    let result = match command {
        Command::Guest(command) => guest::run(command),
        Command::Image { command } => image::run(*command),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("pika-guest: error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition only when it is parsed; check every subcommand here.
    #[test]
    fn command_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}
