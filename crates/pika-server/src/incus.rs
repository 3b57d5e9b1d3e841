//! The server's use of Incus: connections per endpoint, creating an agent's instance, removing it,
//! and the checks of `/healthz`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use pika_guest_launch::{
    AfterStart, DEFAULT_READY_TIMEOUT, GuestFile, LaunchError, MountSources, apply_contract,
    launch_with,
};
use pika_incus::{HttpsConfig, IncusClient, InstanceCreate, InstanceType, ProjectClient};

use crate::incus_keys::{self, env};
use crate::params::ResolvedIncusParams;

/// Stops (forcibly) and deletes an instance; one that is not there counts as removed (one
/// implementation, shared by every launcher).
pub use pika_guest_launch::remove_instance;

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

/// What a new agent instance is made of, all checked to exist before anything is created.
#[derive(Clone, Debug)]
pub struct Preflight {
    pub instance_type: InstanceType,
    /// The cluster group new instances are placed in: the configured one, when the endpoint is a
    /// cluster (a standalone server has no groups, and then it is not used).
    pub cluster_group: Option<String>,
    /// The fingerprint of the image the alias points at now.
    pub image: String,
}

/// One Incus object a request names that is not there.
#[derive(Debug)]
pub enum PreflightError {
    /// `field` names something missing: (request field, message).
    Missing(&'static str, String),
    Incus(pika_incus::Error),
}

/// Checks that the project, profile, storage pool and image alias exist, before a row is written.
///
/// The instance type is the type of the image the alias points at: Incus cannot create a container
/// from a VM image or the reverse, so taking the role's `instance_type` would only fail for aliases
/// that hold the other kind (the tests import busybox containers under the managed-openclaw alias,
/// and VMs cannot start on every host).
pub async fn preflight(
    project: &ProjectClient,
    params: &ResolvedIncusParams,
    cluster_group: Option<&str>,
) -> Result<Preflight, PreflightError> {
    let missing = |field: &'static str, what: &str, name: &str, err: pika_incus::Error| {
        if err.is_not_found() {
            PreflightError::Missing(
                field,
                format!("incus.{field} = {name:?}: {what} {name} does not exist"),
            )
        } else {
            PreflightError::Incus(err)
        }
    };
    project
        .client()
        .get_project(&params.project)
        .await
        .map_err(|e| missing("project", "project", &params.project, e))?;
    project
        .get_profile(&params.profile)
        .await
        .map_err(|e| missing("profile", "profile", &params.profile, e))?;
    project
        .client()
        .get_storage_pool(&params.storage_pool)
        .await
        .map_err(|e| missing("storage_pool", "storage pool", &params.storage_pool, e))?;
    let alias = project
        .get_image_alias(&params.image_alias)
        .await
        .map_err(|e| missing("image_alias", "image alias", &params.image_alias, e))?;
    let cluster_group = match cluster_group {
        Some(group) if is_cluster(project).await.map_err(PreflightError::Incus)? => {
            project
                .client()
                .get_cluster_group(group)
                .await
                .map_err(|e| missing("cluster_group", "cluster group", group, e))?;
            Some(group.to_owned())
        }
        _ => None,
    };
    Ok(Preflight {
        instance_type: alias.instance_type(),
        cluster_group,
        image: alias.target.clone(),
    })
}

async fn is_cluster(project: &ProjectClient) -> Result<bool, pika_incus::Error> {
    Ok(project
        .client()
        .server_info()
        .await?
        .environment
        .server_clustered)
}

/// Who an instance belongs to: stamped on it as `user.pika.*` config.
pub struct Stamp<'a> {
    pub server_id: &'a str,
    pub agent_id: &'a str,
    pub owner: &'a str,
}

/// An agent's gateway at launch: its proxy device listens on `listen` (host), and `file` (its
/// configuration) is delivered before the readiness wait, which probes through that device.
#[derive(Clone, Debug)]
pub struct GatewayLaunch {
    pub listen: std::net::SocketAddr,
    pub role: crate::gateway::GatewayRole,
    pub file: GuestFile,
}

/// Creates and starts `instance_name` with its role's contract (limits, instance config, mounts;
/// see pika-guest-launch) and waits until it is ready by the role's readiness, so `running` means
/// ready. Returns the cluster member it landed on (`None` off a cluster): on a cluster the Incus
/// scheduler places it, inside `preflight.cluster_group` when one is set. On any failure the
/// half-made instance is removed before the error is returned; a guest that does not become ready
/// fails with an error naming the role, the readiness and the timeout.
pub async fn create_verified(
    project: &ProjectClient,
    params: &ResolvedIncusParams,
    preflight: &Preflight,
    instance_name: &str,
    stamp: &Stamp<'_>,
    gateway: Option<&GatewayLaunch>,
) -> Result<Option<String>, pika_incus::Error> {
    let labels = [
        (incus_keys::SERVER_ID_KEY, stamp.server_id),
        (incus_keys::AGENT_ID_KEY, stamp.agent_id),
        (incus_keys::OWNER_KEY, stamp.owner),
    ];
    create_labelled(project, params, preflight, instance_name, &labels, gateway).await
}

/// [`create_verified`] with the `user.pika.*` labels given as they are (a warm-pool guest carries
/// the server ID and the pool key, and no agent yet).
pub async fn create_labelled(
    project: &ProjectClient,
    params: &ResolvedIncusParams,
    preflight: &Preflight,
    instance_name: &str,
    labels: &[(&str, &str)],
    gateway: Option<&GatewayLaunch>,
) -> Result<Option<String>, pika_incus::Error> {
    let mut create = InstanceCreate::from_alias(instance_name, &params.image_alias)
        .instance_type(preflight.instance_type)
        .profiles([params.profile.as_str()])
        .device(
            incus_keys::ROOT_DEVICE,
            [
                ("type", "disk"),
                ("path", "/"),
                ("pool", params.storage_pool.as_str()),
            ],
        );
    for (key, value) in labels {
        create = create.config(*key, *value);
    }
    if let Some(role) = params.materialized_guest_role() {
        create = create.config(incus_keys::GUEST_ROLE_KEY, role.as_str());
    }
    if let Some(group) = &preflight.cluster_group {
        create = create.target(pika_incus::api::cluster_group_target(group));
    }
    // The proxy device is added once the guest runs, while its configuration is written: its
    // start costs Incus a second (see `AfterStart::devices`), which then overlaps the boot.
    let after = match gateway {
        Some(gateway) => AfterStart {
            files: vec![gateway.file.clone()],
            devices: crate::gateway::proxy_devices(gateway.listen, &gateway.role),
            via: crate::gateway::probe_via(project, gateway.listen),
        },
        None => AfterStart::default(),
    };
    let what = format!("instance {}/{instance_name}", project.name());
    let role = params.guest_role;
    let created = async {
        // The server supplies no host directories: a role with mounts is refused here.
        let create = apply_contract(create, role, &MountSources::new()).map_err(|e| {
            pika_incus::Error::Config {
                what: what.clone(),
                message: e.to_string(),
            }
        })?;
        match launch_with(project, &create, role, &after, DEFAULT_READY_TIMEOUT).await {
            Ok(_) => {
                let location = project.get_instance(instance_name).await?.location;
                Ok(Some(location).filter(|member| !member.is_empty() && member != "none"))
            }
            Err(LaunchError::Incus { source, .. }) => Err(source),
            Err(not_ready) => Err(pika_incus::Error::OperationFailed {
                what: what.clone(),
                message: not_ready.to_string(),
            }),
        }
    }
    .await;
    if created.is_err()
        && let Err(cleanup) = remove_instance(project, instance_name).await
    {
        tracing::warn!(instance = %instance_name, error = %cleanup, "cleanup after a failed create");
    }
    created
}

/// What [`remove_if_stamped`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// Removed, or not there.
    Removed,
    /// There, but not stamped with this agent and server: left alone (its labels, for the log).
    NotOurs(String),
}

/// Removes `instance_name` only when it carries `user.pika.server_id = server_id` and
/// `user.pika.agent_id = agent_id`: the name alone proves nothing (anyone with access to the
/// project can make an instance of that name).
pub async fn remove_if_stamped(
    project: &ProjectClient,
    instance_name: &str,
    server_id: &str,
    agent_id: &str,
) -> Result<Removal, pika_incus::Error> {
    let instance = match project.get_instance(instance_name).await {
        Ok(instance) => instance,
        Err(err) if err.is_not_found() => return Ok(Removal::Removed),
        Err(err) => return Err(err),
    };
    let label = |key: &str| instance.config.get(key).map(String::as_str);
    if label(incus_keys::SERVER_ID_KEY) != Some(server_id)
        || label(incus_keys::AGENT_ID_KEY) != Some(agent_id)
    {
        return Ok(Removal::NotOurs(format!(
            "{}={:?} {}={:?}",
            incus_keys::SERVER_ID_KEY,
            label(incus_keys::SERVER_ID_KEY).unwrap_or(""),
            incus_keys::AGENT_ID_KEY,
            label(incus_keys::AGENT_ID_KEY).unwrap_or("")
        )));
    }
    remove_instance(project, instance_name).await?;
    Ok(Removal::Removed)
}

/// Waits for the running Incus operations of `project` on instances whose name `ours` accepts
/// (reconcile's, for what a previous run left; a lost create's, before it looks for the instance).
pub(crate) async fn settle_operations_on(project: &ProjectClient, ours: impl Fn(&str) -> bool) {
    let operations = match project.running_operations().await {
        Ok(operations) => operations,
        Err(err) => {
            tracing::warn!(project = %project.name(), error = %err, "listing Incus operations");
            return;
        }
    };
    for operation in operations {
        let ours = operation
            .resources
            .as_ref()
            .and_then(|r| r.get("instances"))
            .into_iter()
            .flatten()
            .any(|path| {
                let path = path.split('?').next().unwrap_or(path);
                path.rsplit('/').next().is_some_and(&ours)
            });
        if !ours {
            continue;
        }
        tracing::info!(operation = %operation.id, what = %operation.description, "waiting for an Incus operation on our instance");
        if let Err(err) = project
            .client()
            .wait_operation(&operation.id, pika_incus::DEFAULT_OPERATION_TIMEOUT)
            .await
        {
            tracing::warn!(error = %err, "waiting for an Incus operation");
        }
    }
}
