//! The server's use of Incus: connections per endpoint, creating an agent's instance, removing it,
//! and the checks of `/healthz`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use pika_incus::{HttpsConfig, IncusClient, InstanceCreate, InstanceType, ProjectClient};

use crate::incus_keys::{self, env};
use crate::params::ResolvedIncusParams;

/// Certificate files for HTTPS endpoints (`PIKA_AGENT_INCUS_*_PATH`).
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_cert: Option<PathBuf>,
}

/// Opens (and keeps) one client per `(endpoint, insecure_tls)`.
pub struct Connector {
    socket: PathBuf,
    tls: TlsFiles,
    clients: Mutex<HashMap<(Option<String>, bool), IncusClient>>,
}

impl Connector {
    pub fn new(socket: PathBuf, tls: TlsFiles) -> Self {
        Connector {
            socket,
            tls,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `endpoint` (`None`: the local socket).
    pub fn client(
        &self,
        endpoint: Option<&str>,
        insecure_tls: bool,
    ) -> Result<IncusClient, pika_incus::Error> {
        let key = (endpoint.map(str::to_owned), insecure_tls);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let client = match endpoint {
            None => IncusClient::unix(&self.socket)?,
            Some(endpoint) => IncusClient::https(self.https_config(endpoint, insecure_tls)?)?,
        };
        clients.insert(key, client.clone());
        Ok(client)
    }

    pub fn project(
        &self,
        params: &ResolvedIncusParams,
    ) -> Result<ProjectClient, pika_incus::Error> {
        Ok(self
            .client(params.endpoint.as_deref(), params.insecure_tls)?
            .in_project(params.project.clone()))
    }

    fn https_config(
        &self,
        endpoint: &str,
        insecure_tls: bool,
    ) -> Result<HttpsConfig, pika_incus::Error> {
        let read = |path: &Option<PathBuf>, var: &str| -> Result<String, pika_incus::Error> {
            let path = path.as_ref().ok_or_else(|| pika_incus::Error::Config {
                what: format!("incus endpoint {endpoint}"),
                message: format!("{var} is not set (an HTTPS endpoint needs a client certificate)"),
            })?;
            std::fs::read_to_string(path).map_err(|err| pika_incus::Error::Config {
                what: format!("incus endpoint {endpoint}"),
                message: format!("{var}={}: {err}", path.display()),
            })
        };
        let server_cert_pem = match &self.tls.server_cert {
            None => None,
            Some(_) => Some(read(&self.tls.server_cert, env::SERVER_CERT_PATH)?),
        };
        Ok(HttpsConfig {
            endpoint: endpoint.to_owned(),
            client_cert_pem: read(&self.tls.client_cert, env::CLIENT_CERT_PATH)?,
            client_key_pem: read(&self.tls.client_key, env::CLIENT_KEY_PATH)?,
            server_cert_pem,
            insecure_tls,
        })
    }
}

/// Creates and starts the instance of agent `agent_id` in one Incus operation.
///
/// The instance type is the type of the image the alias points at: Incus cannot create a container
/// from a VM image or the reverse, so taking the role's `instance_type` would only fail for aliases
/// that hold the other kind (the tests import busybox containers under the managed-openclaw alias,
/// and VMs cannot start on every host). The alias lookup also turns a missing alias into a clear
/// error before anything is created.
pub async fn create_agent_instance(
    project: &ProjectClient,
    params: &ResolvedIncusParams,
    agent_id: &str,
    owner: &str,
) -> Result<(), pika_incus::Error> {
    let alias = project.get_image_alias(&params.image_alias).await?;
    let instance_type = if alias.image_type == InstanceType::VirtualMachine.as_str() {
        InstanceType::VirtualMachine
    } else {
        InstanceType::Container
    };
    let mut create =
        InstanceCreate::from_alias(incus_keys::instance_name(agent_id), &params.image_alias)
            .instance_type(instance_type)
            .profiles([params.profile.as_str()])
            .device(
                incus_keys::ROOT_DEVICE,
                [
                    ("type", "disk"),
                    ("path", "/"),
                    ("pool", params.storage_pool.as_str()),
                ],
            )
            .config(incus_keys::AGENT_ID_KEY, agent_id)
            .config(incus_keys::OWNER_KEY, owner)
            .start(true);
    if let Some(role) = params.materialized_guest_role() {
        create = create.config(incus_keys::GUEST_ROLE_KEY, role.as_str());
    }
    project.create_instance(&create).await
}

/// Stops (forcibly) and deletes an instance; an instance that is not there counts as removed.
pub async fn remove_instance(project: &ProjectClient, name: &str) -> Result<(), pika_incus::Error> {
    let instance = match project.get_instance(name).await {
        Ok(instance) => instance,
        Err(err) if err.is_not_found() => return Ok(()),
        Err(err) => return Err(err),
    };
    if instance.status != "Stopped" {
        match project.stop_instance(name, true).await {
            Ok(()) => {}
            Err(err) if err.is_not_found() => return Ok(()),
            Err(err) => {
                // It may have stopped on its own meanwhile; the delete below decides.
                tracing::debug!("stopping {name}: {err}");
            }
        }
    }
    match project.delete_instance(name).await {
        Ok(()) => Ok(()),
        Err(err) if err.is_not_found() => Ok(()),
        Err(err) => Err(err),
    }
}
