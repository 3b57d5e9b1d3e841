//! The target of an image command: the shared Incus flags plus the name the output gives the host.

use clap::Args;
use pika_incus::ProjectClient;

/// Named apart from the shared `TargetArgs`: clap names an argument group after its struct, and
/// two flattened groups of one name make the command invalid.
#[derive(Args, Debug, Clone)]
pub struct ImageTargetArgs {
    #[command(flatten)]
    pub incus: crate::target::TargetArgs,
    /// Name shown for this Incus in the output (default: `local`, or the endpoint).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// A connected target: the project client and the name the output uses for the host.
pub struct Target {
    pub project: ProjectClient,
    pub host: String,
}

impl ImageTargetArgs {
    pub fn connect(&self) -> Result<Target, String> {
        Ok(Target {
            project: self.incus.connect()?,
            host: self
                .host
                .clone()
                .unwrap_or_else(|| self.incus.default_host()),
        })
    }
}
