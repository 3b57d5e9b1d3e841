//! `launch`, `list`, `delete`: guests of any role, with the role's runtime contract.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum GuestCommand {
    /// Create a guest from a role's image with the role's contract and wait for its readiness.
    Launch,
    /// List guests (optionally of one role).
    List,
    /// Delete a guest.
    Delete,
}

pub fn run(command: GuestCommand) -> Result<ExitCode, String> {
    let name = match command {
        GuestCommand::Launch => "launch",
        GuestCommand::List => "list",
        GuestCommand::Delete => "delete",
    };
    Err(format!("`{name}` is not implemented yet"))
}
