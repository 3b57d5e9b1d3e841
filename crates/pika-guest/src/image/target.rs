//! Which Incus an image command talks to: the local unix socket (default) or an HTTPS endpoint
//! with a client certificate, and the project inside it.

use std::path::PathBuf;

use clap::Args;
use pika_incus::{HttpsConfig, IncusClient, ProjectClient, api};

/// The project role images live in unless told otherwise (as scripts/incus-role-image.sh).
pub const DEFAULT_PROJECT: &str = "pika-managed-agents";

#[derive(Args, Debug, Clone)]
pub struct TargetArgs {
    /// Incus project of the images.
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
    /// Name shown for this Incus in the output (default: `local`, or the endpoint).
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// A connected target: the project client and the name the output uses for the host.
pub struct Target {
    pub project: ProjectClient,
    pub host: String,
}

impl TargetArgs {
    pub fn connect(&self) -> Result<Target, String> {
        let read = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let (client, host) = match &self.endpoint {
            Some(endpoint) => {
                let config = HttpsConfig {
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
                };
                (
                    IncusClient::https(config).map_err(|e| e.to_string())?,
                    endpoint.clone(),
                )
            }
            None => (
                IncusClient::unix(&self.socket).map_err(|e| e.to_string())?,
                "local".to_string(),
            ),
        };
        Ok(Target {
            project: client.in_project(self.project.clone()),
            host: self.host.clone().unwrap_or(host),
        })
    }
}
