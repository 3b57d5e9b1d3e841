//! `image import|status|rollback|prune|publish`: the Incus side of role images.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import a built artifact under the role's alias with an atomic swap.
    Import,
    /// Show what each alias serves, its provenance and a drift verdict.
    Status,
    /// Move the alias back to an earlier image.
    Rollback,
    /// Delete images beyond the retention count that nothing uses.
    Prune,
    /// Add a version to a simplestreams image server tree.
    Publish,
}

pub fn run(command: ImageCommand) -> Result<ExitCode, String> {
    let name = match command {
        ImageCommand::Import => "import",
        ImageCommand::Status => "status",
        ImageCommand::Rollback => "rollback",
        ImageCommand::Prune => "prune",
        ImageCommand::Publish => "publish",
    };
    Err(format!("`image {name}` is not implemented yet"))
}
