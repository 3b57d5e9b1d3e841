//! Which Incus a command talks to: the local unix socket (default) or an HTTPS endpoint with a
//! client certificate, and the project inside it. One set of flags for guest and image commands.

use std::path::PathBuf;

use clap::Args;
use pika_incus::{HttpsConfig, IncusClient, ProjectClient, api};

/// The project guests and role images live in unless told otherwise (as the other Pika tools and
/// scripts/incus-role-image.sh).
pub const DEFAULT_PROJECT: &str = "pika-managed-agents";

#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Incus project.
    #[arg(long, value_name = "P", default_value = DEFAULT_PROJECT)]
    pub project: String,
    /// Local Incus unix socket.
    #[arg(long, value_name = "PATH", env = "INCUS_SOCKET", default_value = api::DEFAULT_UNIX_SOCKET)]
    pub socket: PathBuf,
    /// Remote Incus over HTTPS (https://host:8443) instead of the socket; needs --client-cert and
    /// --client-key, and --server-cert to pin the server (else the system roots verify it).
    #[arg(long, value_name = "URL", requires_all = ["client_cert", "client_key"])]
    pub endpoint: Option<String>,
    #[arg(long, value_name = "FILE", requires = "endpoint")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "endpoint")]
    pub client_key: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "endpoint")]
    pub server_cert: Option<PathBuf>,
}

impl TargetArgs {
    /// The project client of the chosen Incus (nothing is dialled yet).
    pub fn connect(&self) -> Result<ProjectClient, String> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let client = match &self.endpoint {
            Some(endpoint) => IncusClient::https(HttpsConfig {
                endpoint: endpoint.clone(),
                client_cert_pem: self
                    .client_cert
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .unwrap_or_default(),
                client_key_pem: self
                    .client_key
                    .as_ref()
                    .map(read)
                    .transpose()?
                    .unwrap_or_default(),
                server_cert_pem: self.server_cert.as_ref().map(read).transpose()?,
                insecure_tls: false,
            }),
            None => IncusClient::unix(&self.socket),
        }
        .map_err(|e| e.to_string())?;
        Ok(client.in_project(self.project.clone()))
    }

    /// How output names this Incus when no `--host` is given: `local` or the endpoint.
    pub fn default_host(&self) -> String {
        self.endpoint.clone().unwrap_or_else(|| "local".to_string())
    }
}
