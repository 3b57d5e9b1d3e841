//! The agent service: provision, reprovision, delete, health. It speaks [`AgentError`], never HTTP.
//!
//! Order of every mutating path: validate and resolve the request, check it against the operator's
//! [`Policy`], check that the named Incus objects exist, and only then write a row and call Incus.
//! So a refused request leaves no row and makes no Incus call that changes anything. Rows reach a
//! final state (`running`, `failed`, or gone) before the answer; only a crash leaves
//! `provisioning` or `deleting` behind, and [`crate::reconcile`] settles those at the next start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pika_managed_agent_contract::{AgentRecord, AgentState, HealthReport, IncusProvisionParams};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::config::{GatewaySettings, IncusSettings};
use crate::error::{AgentError, ErrorKind};
use crate::gateway::{GatewayRole, GatewayToken, ModelEnv, OpenclawConfig};
use crate::incus::{
    Connector, GatewayLaunch, Preflight, PreflightError, Removal, Stamp, create_verified,
    preflight, remove_if_stamped, remove_instance,
};
use crate::incus_keys;
use crate::names;
use crate::params::{
    ResolvedIncusParams, incus_params_provided, merge_incus_provision_params, resolved_incus_params,
};
use crate::policy::Policy;
use crate::store::{PortRequest, Store, StoreError};

/// How many instance creates/deletes the server runs against Incus at once. Incus answers a burst
/// of 50 creates slowly enough that single requests pass the client timeout; queueing here instead
/// keeps every Incus request short, and a few in flight already keep Incus busy.
pub const INCUS_CONCURRENCY: usize = 8;

/// How many more ports an instance is tried with when its proxy device's bind fails because
/// another program holds the port (after the probe, or on a remote host that is not probed).
pub const PORT_RETRIES: usize = 3;

/// The ports a new instance's proxy must not get although no agent holds them: those in
/// `failed` (a bind on them failed in this request) and, when `probe` (Incus is the local socket,
/// so the devices listen on this host), those another program listens on now.
pub(crate) fn port_avoid(
    probe: bool,
    address: std::net::IpAddr,
    failed: Vec<u16>,
) -> impl Fn(u16) -> bool {
    move |port| {
        failed.contains(&port)
            || (probe && crate::gateway::port_in_use(std::net::SocketAddr::new(address, port)))
    }
}

/// Everything a request handler needs.
pub struct Agents {
    pub(crate) store: Arc<Store>,
    pub(crate) connector: Connector,
    /// The configured defaults (what a request without `incus` gets).
    pub(crate) defaults: IncusProvisionParams,
    pub(crate) policy: Policy,
    pub(crate) server_id: String,
    /// The operator's cluster group (overrides the role's).
    cluster_group: Option<String>,
    /// Bounds the instance creates/deletes in flight (see [`INCUS_CONCURRENCY`]).
    incus_slots: tokio::sync::Semaphore,
    /// Agents a request of this process is building right now: a `provisioning` row that is not
    /// in here was left by a failure and may be deleted.
    building: Arc<Mutex<HashSet<String>>>,
    /// The last health report and when it was made (see [`crate::health`]).
    pub(crate) health: tokio::sync::Mutex<Option<(Instant, HealthReport)>>,
    /// Where agents' gateway proxy devices listen (address and port range).
    pub(crate) gateway_ports: PortRequest,
    /// The operator's model environment file, read at every delivery.
    pub(crate) model_env_file: Option<std::path::PathBuf>,
    /// The warm pools (none unless the operator sets `--pool-size`).
    pub(crate) pool: crate::pools::Pools,
}

/// An agent's gateway as one provision or reprovision delivers it: the role's facts, a fresh
/// token and the configuration file carrying it.
pub(crate) struct GatewayPlan {
    pub(crate) role: GatewayRole,
    pub(crate) token: GatewayToken,
    pub(crate) file: pika_guest_launch::GuestFile,
}

/// A POST's idempotency key with the hash of its body.
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

impl Idempotency {
    pub fn new(key: String, body: &[u8]) -> Self {
        Idempotency {
            key,
            request_hash: hex::encode(Sha256::digest(body)),
        }
    }
}

/// The outcome of a provision: a new agent, or the one an earlier request with the same
/// idempotency key made.
pub struct Provisioned {
    pub record: AgentRecord,
    pub replayed: bool,
    /// The new agent's gateway token (never on a replay: only its hash is kept).
    pub gateway_token: Option<GatewayToken>,
}

/// The outcome of a delete.
pub enum Deleted {
    /// Instance and row are gone.
    Gone,
    /// Forced: the instance could not be removed; the row is kept as `abandoned` naming it.
    Abandoned(Box<AgentRecord>),
}

pub(crate) fn new_hex_id(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

pub(crate) fn check_name(name: Option<String>) -> Result<Option<String>, AgentError> {
    let Some(name) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    names::check_agent_name(&name).map_err(|reason| {
        AgentError::new(
            ErrorKind::Invalid,
            format!("name {name:?} is invalid: {reason}"),
        )
        .field("name")
    })?;
    Ok(Some(name))
}

/// Resolves stored parameters back into complete ones (they were complete when stored).
pub(crate) fn resolve_stored(
    stored: &IncusProvisionParams,
) -> Result<ResolvedIncusParams, AgentError> {
    resolved_incus_params(&IncusProvisionParams::default(), stored).map_err(|err| {
        AgentError::new(
            ErrorKind::Internal,
            format!("stored parameters are unusable: {err}"),
        )
    })
}

fn preflight_error(err: PreflightError) -> AgentError {
    match err {
        PreflightError::Missing(field, message) => {
            AgentError::new(ErrorKind::Invalid, message).field(format!("incus.{field}"))
        }
        PreflightError::Incus(err) => AgentError::incus(&err, "checking the Incus parameters"),
    }
}

/// The operator's group wins over the role's (`cluster-group` in roles.toml).
fn placement_group(
    operator: Option<&str>,
    role: pika_managed_agent_contract::IncusGuestRole,
) -> Option<&str> {
    operator.or(role.cluster_group())
}

/// Removes an ID from the building set when the request ends, however it ends.
pub(crate) struct Building {
    set: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for Building {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.id);
    }
}

impl Agents {
    pub fn new(
        store: Store,
        connector: Connector,
        settings: &IncusSettings,
        gateway: &GatewaySettings,
    ) -> Self {
        let server_id = store.server_id().to_owned();
        Agents {
            store: Arc::new(store),
            connector,
            defaults: settings.defaults(),
            policy: settings.policy(),
            server_id,
            cluster_group: settings.cluster_group.clone(),
            incus_slots: tokio::sync::Semaphore::new(INCUS_CONCURRENCY),
            building: Arc::new(Mutex::new(HashSet::new())),
            health: tokio::sync::Mutex::new(None),
            gateway_ports: PortRequest {
                address: gateway.listen_address,
                first: gateway.ports.first,
                last: gateway.ports.last,
            },
            model_env_file: gateway.model_env_file.clone(),
            pool: crate::pools::Pools::default(),
        }
    }

    /// With the operator's warm pools.
    pub fn with_pool(mut self, pool: crate::pools::Pools) -> Self {
        self.pool = pool;
        self
    }

    /// A fresh token and configuration for an agent of `role`, when the role has a gateway. The
    /// model environment file is read now, so an operator's edit reaches the next delivery.
    pub(crate) fn gateway_plan(
        &self,
        role: pika_managed_agent_contract::IncusGuestRole,
    ) -> Result<Option<GatewayPlan>, AgentError> {
        let Some(role) = GatewayRole::of(role) else {
            return Ok(None);
        };
        let model_env = ModelEnv::load(self.model_env_file.as_deref())
            .map_err(|err| AgentError::new(ErrorKind::Internal, err.to_string()))?;
        let token = GatewayToken::generate();
        let file = OpenclawConfig::new(&role, token.clone(), model_env).guest_file(&role);
        Ok(Some(GatewayPlan { role, token, file }))
    }

    /// Refuses a gateway for a virtual-machine image: Incus offers VMs only NAT-mode proxy
    /// devices, which cannot reach a gateway bound to the guest's loopback (see the README).
    pub(crate) fn check_gateway_reach(
        plan: Option<&GatewayPlan>,
        checked: &Preflight,
    ) -> Result<(), AgentError> {
        if plan.is_some() && checked.instance_type == pika_incus::InstanceType::VirtualMachine {
            return Err(AgentError::new(
                ErrorKind::Invalid,
                "incus.image_alias: the image is a virtual machine; Incus offers VMs only NAT-mode proxy devices, which cannot reach the gateway on the guest's loopback, so pika-server provisions gateways from container images only",
            )
            .field("incus.image_alias"));
        }
        Ok(())
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Runs database work on a blocking thread, off the async workers.
    pub(crate) async fn db<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, AgentError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|err| AgentError::new(ErrorKind::Internal, format!("database task: {err}")))?
            .map_err(AgentError::from)
    }

    pub(crate) fn mark_building(&self, id: &str) -> Building {
        self.building
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
        Building {
            set: Arc::clone(&self.building),
            id: id.to_owned(),
        }
    }

    /// Marks `id` as worked on by this request, unless another request already does.
    fn try_mark_building(&self, id: &str) -> Option<Building> {
        let mut building = self.building.lock().unwrap_or_else(|p| p.into_inner());
        if !building.insert(id.to_owned()) {
            return None;
        }
        Some(Building {
            set: Arc::clone(&self.building),
            id: id.to_owned(),
        })
    }

    pub(crate) async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, AgentError> {
        self.incus_slots
            .acquire()
            .await
            .map_err(|err| AgentError::new(ErrorKind::Internal, format!("incus slots: {err}")))
    }

    async fn transition(
        &self,
        id: &str,
        from: &'static [AgentState],
        to: AgentState,
        error: Option<String>,
    ) -> Result<bool, AgentError> {
        let id = id.to_owned();
        self.db(move |s| s.transition(&id, from, to, error.as_deref()))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<AgentRecord>, AgentError> {
        let id = id.to_owned();
        self.db(move |s| s.get(&id)).await
    }

    /// The cluster group new instances go to: the operator's setting, else the guest role's
    /// `cluster-group`, else none (the Incus scheduler picks among all members).
    pub(crate) fn cluster_group(&self, resolved: &ResolvedIncusParams) -> Option<&str> {
        placement_group(self.cluster_group.as_deref(), resolved.guest_role)
    }

    /// Validates, resolves and checks a request's parameters against the policy and Incus.
    pub(crate) async fn admit(
        &self,
        base: &IncusProvisionParams,
        requested: &IncusProvisionParams,
    ) -> Result<(ResolvedIncusParams, pika_incus::ProjectClient, Preflight), AgentError> {
        let resolved = resolved_incus_params(base, requested)?;
        self.policy.check(&resolved)?;
        let project = self
            .connector
            .project(&resolved)
            .map_err(|err| AgentError::incus(&err, "connecting to Incus"))?;
        let checked = preflight(&project, &resolved, self.cluster_group(&resolved))
            .await
            .map_err(preflight_error)?;
        Ok((resolved, project, checked))
    }

    /// The agent an earlier POST with this idempotency key made, if any.
    pub(crate) async fn replay(
        &self,
        owner: &str,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<Provisioned>, AgentError> {
        let Some(idempotency) = idempotency else {
            return Ok(None);
        };
        let (owner_key, key) = (owner.to_owned(), idempotency.key.clone());
        let Some((record, hash)) = self
            .db(move |s| s.find_idempotent(&owner_key, &key))
            .await?
        else {
            return Ok(None);
        };
        if hash.as_deref() != Some(idempotency.request_hash.as_str()) {
            return Err(AgentError::new(
                ErrorKind::IdempotencyMismatch,
                format!(
                    "Idempotency-Key {:?} was used for a different request (agent {})",
                    idempotency.key, record.id
                ),
            )
            .field("Idempotency-Key"));
        }
        if record.state == AgentState::Provisioning {
            return Err(AgentError::busy(&record.id, record.state));
        }
        if record.state == AgentState::Failed {
            // A failed provision made nothing that lasts (its instance was removed), so a retry
            // with the same key is a fresh attempt: the failed agent keeps its row (visible,
            // deletable) but gives the key up, and the new agent takes it. Two retries at once:
            // one inserts, the other collides on the key and gets 409 busy.
            let (owner, key, id) = (owner.to_owned(), idempotency.key.clone(), record.id.clone());
            self.db(move |s| s.release_failed_idempotency_key(&owner, &key, &id))
                .await?;
            tracing::info!(agent = %record.id, "Idempotency-Key of a failed provision: a fresh attempt");
            return Ok(None);
        }
        Ok(Some(Provisioned {
            record,
            replayed: true,
            gateway_token: None,
        }))
    }

    /// Creates and starts the instance of a `provisioning` row; the row ends `running` or `failed`.
    pub(crate) async fn build(
        &self,
        record: AgentRecord,
        resolved: &ResolvedIncusParams,
        project: &pika_incus::ProjectClient,
        checked: &Preflight,
        plan: Option<&GatewayPlan>,
    ) -> Result<AgentRecord, AgentError> {
        let stamp = Stamp {
            server_id: &self.server_id,
            agent_id: &record.id,
            owner: &record.owner,
        };
        let created = match self
            .create_instance(
                project,
                resolved,
                checked,
                &record.instance_name,
                &stamp,
                plan,
            )
            .await
        {
            Ok(created) => created,
            // No port left after a bind failed (or the database failed): nothing was created.
            Err(error) => {
                let name = record.instance_name.clone();
                let _ = self.db(move |s| s.release_port(&name)).await;
                self.transition(
                    &record.id,
                    &[AgentState::Provisioning],
                    AgentState::Failed,
                    Some(error.message.clone()),
                )
                .await?;
                return Err(error.with_agent(self.get(&record.id).await?));
            }
        };
        let location = match created {
            Ok(location) => location,
            Err(err) => {
                let error = AgentError::incus(&err, format!("provisioning agent {}", record.id));
                tracing::warn!(agent = %record.id, error = %err, "provisioning failed");
                if error.kind == ErrorKind::IncusUnavailable {
                    self.remove_if_created(project, &record).await;
                }
                // The instance is gone: so is its claim on a port.
                let name = record.instance_name.clone();
                self.db(move |s| s.release_port(&name)).await?;
                self.transition(
                    &record.id,
                    &[AgentState::Provisioning],
                    AgentState::Failed,
                    Some(error.message.clone()),
                )
                .await?;
                return Err(error.with_agent(self.get(&record.id).await?));
            }
        };
        let recorded = async {
            let id = record.id.clone();
            self.db(move |s| s.set_location(&id, location.as_deref()))
                .await?;
            self.transition(
                &record.id,
                &[AgentState::Provisioning],
                AgentState::Running,
                None,
            )
            .await
        };
        match recorded.await {
            Ok(_) => {
                tracing::info!(agent = %record.id, instance = %record.instance_name, "running");
                // Answer with the row as stored, so the response equals what GET shows later.
                Ok(self.get(&record.id).await?.unwrap_or(record))
            }
            Err(err) => {
                // The instance exists but the row cannot say so: remove the instance rather than
                // leave one that no row knows, and fail the row if the database lets us.
                tracing::error!(agent = %record.id, error = %err, "recording the running agent failed; removing its instance");
                let _slot = self.slot().await?;
                if let Err(cleanup) = remove_instance(project, &record.instance_name).await {
                    tracing::error!(agent = %record.id, error = %cleanup, "compensating removal failed; reconcile will retry");
                }
                let name = record.instance_name.clone();
                let _ = self.db(move |s| s.release_port(&name)).await;
                let _ = self
                    .transition(
                        &record.id,
                        &[AgentState::Provisioning],
                        AgentState::Failed,
                        Some(
                            "the server could not record the agent; its instance was removed"
                                .into(),
                        ),
                    )
                    .await;
                Err(err)
            }
        }
    }

    /// A create whose answer never came (the connection died, or timed out) may have reached
    /// Incus, which then goes on creating: wait for Incus's operations on the instance to end,
    /// find what carries this agent's and this server's IDs, and remove it, before the request
    /// is answered. If Incus stays unreachable, the ledger still names the instance and the next
    /// startup reconcile removes it.
    async fn remove_if_created(&self, project: &pika_incus::ProjectClient, record: &AgentRecord) {
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            crate::incus::settle_operations_on(project, |name| name == record.instance_name).await;
            let found = project.list_instances().await.map(|instances| {
                instances
                    .into_iter()
                    .filter(|i| {
                        i.config.get(incus_keys::AGENT_ID_KEY) == Some(&record.id)
                            && i.config.get(incus_keys::SERVER_ID_KEY) == Some(&self.server_id)
                    })
                    .map(|i| i.name)
                    .collect::<Vec<_>>()
            });
            let removed = match found {
                Ok(names) => {
                    let mut result = Ok(());
                    for name in names {
                        tracing::warn!(agent = %record.id, instance = %name, "the create's answer was lost but Incus made the instance: removing it");
                        if let Err(err) = self.remove_stamped(project, &record.id, &name).await {
                            result = Err(err);
                        }
                    }
                    result
                }
                Err(err) => Err(err),
            };
            match removed {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(agent = %record.id, attempt, error = %err, "looking for an instance a lost create may have made");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
            }
        }
        tracing::error!(agent = %record.id, instance = %record.instance_name, "Incus stays unreachable: the next startup reconcile removes the instance if it exists");
    }

    /// Creates and starts `instance_name` (see [`create_verified`]). With a gateway: when its
    /// proxy device cannot listen because another program holds the port (it took the port after
    /// the probe, or Incus is remote and nothing was probed), the instance gets the next free
    /// port of the range and is created again, up to [`PORT_RETRIES`] times. The outer error is
    /// the database's (or the range is full); the inner one is Incus's.
    async fn create_instance(
        &self,
        project: &pika_incus::ProjectClient,
        resolved: &ResolvedIncusParams,
        checked: &Preflight,
        instance_name: &str,
        stamp: &Stamp<'_>,
        plan: Option<&GatewayPlan>,
    ) -> Result<Result<Option<String>, pika_incus::Error>, AgentError> {
        let mut failed_ports = Vec::new();
        loop {
            let gateway = self.gateway_launch(instance_name, plan).await?;
            let created = {
                let _slot = self.slot().await?;
                create_verified(
                    project,
                    resolved,
                    checked,
                    instance_name,
                    stamp,
                    gateway.as_ref(),
                )
                .await
            };
            let Some(gateway) = gateway else {
                return Ok(created);
            };
            match &created {
                Err(err)
                    if crate::gateway::is_port_taken(err) && failed_ports.len() < PORT_RETRIES =>
                {
                    tracing::warn!(instance = %instance_name, port = gateway.listen.port(), "another program holds the gateway port: taking the next free one");
                    failed_ports.push(gateway.listen.port());
                    let (ports, agent, name) = (
                        self.gateway_ports.clone(),
                        stamp.agent_id.to_owned(),
                        instance_name.to_owned(),
                    );
                    let (probe, failed) = (project.client().is_local(), failed_ports.clone());
                    self.db(move |s| {
                        s.release_port(&name)?;
                        s.reserve_port(
                            &ports,
                            &agent,
                            &name,
                            &port_avoid(probe, ports.address, failed),
                        )
                    })
                    .await?;
                }
                _ => return Ok(created),
            }
        }
    }

    /// What `create_verified` needs for an agent's gateway: the host address the store reserved
    /// for `instance_name`, the role's facts and the file to deliver.
    async fn gateway_launch(
        &self,
        instance_name: &str,
        plan: Option<&GatewayPlan>,
    ) -> Result<Option<GatewayLaunch>, AgentError> {
        let Some(plan) = plan else {
            return Ok(None);
        };
        let name = instance_name.to_owned();
        let listen = self
            .db(move |s| s.gateway_address(&name))
            .await?
            .ok_or_else(|| {
                AgentError::new(
                    ErrorKind::Internal,
                    format!("no gateway port is reserved for {instance_name}"),
                )
            })?;
        Ok(Some(GatewayLaunch {
            listen,
            role: plan.role,
            file: plan.file.clone(),
        }))
    }

    pub async fn list(&self, owner: &str) -> Result<Vec<AgentRecord>, AgentError> {
        let owner = owner.to_owned();
        self.db(move |s| s.list(Some(&owner))).await
    }

    pub async fn show(&self, owner: &str, id: &str) -> Result<AgentRecord, AgentError> {
        let (owner, id_owned) = (owner.to_owned(), id.to_owned());
        self.db(move |s| s.get_owned(&owner, &id_owned))
            .await?
            .ok_or_else(|| AgentError::not_found(id))
    }

    /// Makes a new instance with the stored parameters overridden by the request's, checks that
    /// it runs, and only then removes the old one. If anything before that fails, the old
    /// instance is untouched and the row keeps its state.
    pub async fn reprovision(
        &self,
        owner: &str,
        id: &str,
        requested: &IncusProvisionParams,
    ) -> Result<Provisioned, AgentError> {
        let record = self.show(owner, id).await?;
        let merged = if incus_params_provided(requested) {
            merge_incus_provision_params(&record.incus, requested)
        } else {
            record.incus.clone()
        };
        // Stored params are complete, so no default is needed (or wanted: the defaults may have
        // changed since, and reprovision keeps what the agent was given).
        let (resolved, project, checked) = self
            .admit(&IncusProvisionParams::default(), &merged)
            .await?;
        let old = resolve_stored(&record.incus)?;
        let plan = self.gateway_plan(resolved.guest_role)?;
        Self::check_gateway_reach(plan.as_ref(), &checked)?;
        const CLAIMABLE: &[AgentState] = &[
            AgentState::Running,
            AgentState::Failed,
            AgentState::Lost,
            AgentState::Unreachable,
        ];
        if !CLAIMABLE.contains(&record.state) {
            return Err(AgentError::busy(id, record.state));
        }
        let Some(_building) = self.try_mark_building(id) else {
            return Err(AgentError::busy(id, record.state));
        };
        let claimed = self
            .transition(
                id,
                CLAIMABLE,
                AgentState::Provisioning,
                record.error.clone(),
            )
            .await?;
        if !claimed {
            return Err(AgentError::busy(id, record.state));
        }
        tracing::info!(agent = %id, params = %resolved, "reprovisioning");
        let restore = |message: Option<String>| {
            let (id, state, incus, name) = (
                id.to_owned(),
                record.state,
                record.incus.clone(),
                record.instance_name.clone(),
            );
            self.db(move |s| {
                s.set_instance(&id, &name, &incus)?;
                s.update(&id, state, message.as_deref(), &incus)
            })
        };
        let new_name = incus_keys::replacement_instance_name(id, &new_hex_id(4));
        // Into the ledger before Incus hears of it: only then may a reconcile delete it.
        let recorded = {
            let (id, name) = (id.to_owned(), new_name.clone());
            self.db(move |s| s.record_created(&name, &id)).await
        };
        if let Err(err) = recorded {
            restore(record.error.clone()).await?;
            return Err(err);
        }
        let stamp = Stamp {
            server_id: &self.server_id,
            agent_id: id,
            owner,
        };
        // The new instance gets a port of its own: the old one holds its port until it is gone.
        if plan.is_some() {
            let (ports, id_owned, name) =
                (self.gateway_ports.clone(), id.to_owned(), new_name.clone());
            let probe = project.client().is_local();
            if let Err(err) = self
                .db(move |s| {
                    s.reserve_port(
                        &ports,
                        &id_owned,
                        &name,
                        &port_avoid(probe, ports.address, Vec::new()),
                    )
                })
                .await
            {
                restore(record.error.clone()).await?;
                return Err(err);
            }
        }
        let created = match self
            .create_instance(
                &project,
                &resolved,
                &checked,
                &new_name,
                &stamp,
                plan.as_ref(),
            )
            .await
        {
            Ok(created) => created,
            Err(err) => {
                let name = new_name.clone();
                let _ = self.db(move |s| s.release_port(&name)).await;
                restore(record.error.clone()).await?;
                return Err(err);
            }
        };
        let (created, location) = match created {
            Ok(location) => (Ok(()), location),
            Err(err) => (Err(err), None),
        };
        if let Err(err) = created {
            let error = AgentError::incus(
                &err,
                format!("reprovisioning agent {id} (the old instance is untouched)"),
            );
            let name = new_name.clone();
            self.db(move |s| s.release_port(&name)).await?;
            restore(record.error.clone()).await?;
            return Err(error.with_agent(self.get(id).await?));
        }
        let materialized = resolved.materialized();
        let pointed = {
            let (id, name, incus) = (id.to_owned(), new_name.clone(), materialized.clone());
            let sha256 = plan.as_ref().map(|plan| plan.token.sha256());
            self.db(move |s| {
                s.set_instance(&id, &name, &incus)?;
                if let Some(sha256) = &sha256 {
                    s.set_gateway_token_sha256(&id, sha256)?;
                }
                s.set_location(&id, location.as_deref())
            })
            .await
        };
        if let Err(err) = pointed {
            tracing::error!(agent = %id, error = %err, "recording the new instance failed; removing it");
            if let Err(cleanup) = remove_instance(&project, &new_name).await {
                tracing::error!(agent = %id, error = %cleanup, "compensating removal failed; reconcile will retry");
            }
            let name = new_name.clone();
            let _ = self.db(move |s| s.release_port(&name)).await;
            let _ = restore(record.error.clone()).await;
            return Err(err);
        }
        // The row points at the new instance: the old one is now an orphan of ours, removed here
        // or, if that fails, by the next reconcile.
        let old_listen = {
            let name = record.instance_name.clone();
            self.db(move |s| s.gateway_address(&name)).await?
        };
        let removed = match self.connector.project(&old) {
            Ok(old_project) => {
                let _slot = self.slot().await?;
                self.remove_stamped(&old_project, id, &record.instance_name)
                    .await
            }
            Err(err) => Err(err),
        };
        match removed {
            Ok(()) => {
                // The agent keeps its port (and its owner's gateway URL) when the new instance
                // is on the same Incus.
                let kept = match (&plan, old_listen) {
                    (Some(plan), Some(listen)) if old.endpoint == resolved.endpoint => {
                        let role = resolved.guest_role;
                        self.keep_port(
                            &project,
                            &record.instance_name,
                            &new_name,
                            listen,
                            plan,
                            role,
                        )
                        .await?
                    }
                    _ => false,
                };
                if !kept {
                    let name = record.instance_name.clone();
                    self.db(move |s| s.release_port(&name)).await?;
                }
            }
            // Its port stays taken until reconcile removes it (and frees the port).
            Err(err) => {
                tracing::warn!(agent = %id, instance = %record.instance_name, error = %err, "removing the replaced instance failed; reconcile will retry")
            }
        }
        self.transition(id, &[AgentState::Provisioning], AgentState::Running, None)
            .await?;
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| AgentError::not_found(id))?;
        Ok(Provisioned {
            record,
            replayed: false,
            gateway_token: plan.map(|plan| plan.token),
        })
    }

    /// Moves a reprovision's new instance onto the agent's port `listen` once the old instance
    /// (which held it) is gone: its proxy device is updated live, the port handed over in the
    /// database (freeing the one it was built with) and the gateway probed through it. False
    /// when Incus refuses the move (another program took the port meanwhile): the new instance
    /// keeps the port it was built with.
    async fn keep_port(
        &self,
        project: &pika_incus::ProjectClient,
        old_name: &str,
        new_name: &str,
        listen: std::net::SocketAddr,
        plan: &GatewayPlan,
        role: pika_managed_agent_contract::IncusGuestRole,
    ) -> Result<bool, AgentError> {
        let devices = crate::gateway::proxy_devices(listen, &plan.role);
        let moved = project.update_instance_devices(new_name, &devices).await;
        if let Err(err) = moved {
            tracing::warn!(instance = %new_name, port = listen.port(), error = %err, "the reprovisioned agent could not take its old gateway port back; it keeps the new one");
            return Ok(false);
        }
        let (old, new) = (old_name.to_owned(), new_name.to_owned());
        self.db(move |s| s.move_port(listen.port(), &old, &new))
            .await?;
        if let Err(err) = pika_guest_launch::wait_ready_via(
            project,
            new_name,
            role.readiness(),
            crate::gateway::probe_via(project, listen),
            pika_guest_launch::DEFAULT_READY_TIMEOUT,
        )
        .await
        {
            tracing::warn!(instance = %new_name, error = %err, "the gateway does not answer on its kept port");
        }
        Ok(true)
    }

    /// Gives a running agent a new gateway token: delivers a new configuration (the gateway
    /// reloads its token without a restart), waits for its health through the agent's proxy,
    /// then records the new token's hash. The old token stops working once the gateway has
    /// reloaded. While it runs, the agent reads `provisioning` (a delete or reprovision is busy).
    pub async fn rotate_gateway_token(
        &self,
        owner: &str,
        id: &str,
    ) -> Result<Provisioned, AgentError> {
        let record = self.show(owner, id).await?;
        let params = resolve_stored(&record.incus)?;
        let Some(plan) = self.gateway_plan(params.guest_role)? else {
            return Err(AgentError::new(
                ErrorKind::Invalid,
                format!(
                    "agent {id} has no gateway (role {} has no service port)",
                    params.guest_role
                ),
            ));
        };
        if record.state != AgentState::Running {
            return Err(AgentError::busy(id, record.state));
        }
        let _building = self.mark_building(id);
        if !self
            .transition(id, &[AgentState::Running], AgentState::Provisioning, None)
            .await?
        {
            return Err(AgentError::busy(id, record.state));
        }
        let rotated = async {
            let project = self
                .connector
                .project(&params)
                .map_err(|err| AgentError::incus(&err, "connecting to Incus"))?;
            let name = record.instance_name.clone();
            let listen = self
                .db(move |s| s.gateway_address(&name))
                .await?
                .ok_or_else(|| {
                    AgentError::new(
                        ErrorKind::Invalid,
                        format!("agent {id} holds no gateway port; reprovision it"),
                    )
                })?;
            let timeout = pika_guest_launch::DEFAULT_READY_TIMEOUT;
            crate::gateway::deliver(&project, &record.instance_name, &plan.file, timeout)
                .await
                .map_err(|err| {
                    AgentError::incus(
                        &err,
                        format!("delivering agent {id}'s gateway configuration"),
                    )
                })?;
            let (id_owned, sha256) = (id.to_owned(), plan.token.sha256());
            self.db(move |s| s.set_gateway_token_sha256(&id_owned, &sha256))
                .await?;
            let via = crate::gateway::probe_via(&project, listen);
            pika_guest_launch::wait_ready_via(
                &project,
                &record.instance_name,
                params.guest_role.readiness(),
                via,
                timeout,
            )
            .await
            .map_err(|err| {
                AgentError::new(
                    ErrorKind::IncusFailed,
                    format!("agent {id}: the gateway took its new token but is not ready: {err}"),
                )
            })?;
            // The owner gets the token once the gateway takes it, not seconds before.
            crate::gateway::wait_token_taken(via, &plan.token, timeout)
                .await
                .map_err(|err| {
                    AgentError::new(ErrorKind::IncusFailed, format!("agent {id}: {err}"))
                })
        };
        let result = rotated.await;
        self.transition(id, &[AgentState::Provisioning], AgentState::Running, None)
            .await?;
        result?;
        tracing::info!(agent = %id, "gateway token rotated");
        let record = self
            .get(id)
            .await?
            .ok_or_else(|| AgentError::not_found(id))?;
        Ok(Provisioned {
            record,
            replayed: false,
            gateway_token: Some(plan.token),
        })
    }

    /// Deletes the instance and then the row. With `force`, an instance that cannot be removed
    /// (endpoint unreachable or no longer configured) leaves the row `abandoned` naming it, and a
    /// forced delete of an `abandoned` row forgets it.
    pub async fn delete(&self, owner: &str, id: &str, force: bool) -> Result<Deleted, AgentError> {
        let record = self.show(owner, id).await?;
        if force && record.state == AgentState::Abandoned {
            let id_owned = id.to_owned();
            self.db(move |s| s.delete(&id_owned)).await?;
            tracing::warn!(agent = %id, "forgotten by a forced delete");
            return Ok(Deleted::Gone);
        }
        // Exclusive: one request at a time works on an agent. The mark is taken before the claim,
        // so a second DELETE (or a reprovision) of the same agent is refused while this one
        // runs, whatever state the row is in; a `deleting` or `provisioning` row that no request
        // of this process is working on (a failed delete to retry, a crash's leftover) may be
        // claimed. One process per database (see `lease`), so this process sees every request.
        let Some(_deleting) = self.try_mark_building(id) else {
            return Err(AgentError::busy(id, record.state));
        };
        if !self
            .transition(id, AgentState::ALL, AgentState::Deleting, None)
            .await?
        {
            return Err(AgentError::busy(id, record.state));
        }
        match self.remove_agent_instance(&record).await {
            Ok(()) => {
                let id_owned = id.to_owned();
                self.db(move |s| s.delete(&id_owned)).await?;
                tracing::info!(agent = %id, "deleted");
                Ok(Deleted::Gone)
            }
            Err(err) if force => {
                let leftover = format!(
                    "deleted by force: instance {} in project {} on {} could not be removed ({}); it may remain there",
                    record.instance_name,
                    record.incus.project.as_deref().unwrap_or("?"),
                    record
                        .incus
                        .endpoint
                        .as_deref()
                        .unwrap_or("the local socket"),
                    err.message
                );
                tracing::warn!(agent = %id, instance = %record.instance_name, error = %err.message, "forced delete left the instance behind");
                self.transition(
                    id,
                    &[AgentState::Deleting],
                    AgentState::Abandoned,
                    Some(leftover),
                )
                .await?;
                let row = self
                    .get(id)
                    .await?
                    .ok_or_else(|| AgentError::not_found(id))?;
                Ok(Deleted::Abandoned(Box::new(row)))
            }
            Err(err) => {
                let message = format!(
                    "deleting agent {id}: {} (retry, or delete with force to give the instance up)",
                    err.message
                );
                self.transition(
                    id,
                    &[AgentState::Deleting],
                    AgentState::Deleting,
                    Some(message.clone()),
                )
                .await?;
                Err(AgentError::new(err.kind, message))
            }
        }
    }

    /// Removes an agent's instance, only on an endpoint and project the operator configures.
    pub(crate) async fn remove_agent_instance(
        &self,
        record: &AgentRecord,
    ) -> Result<(), AgentError> {
        let params = resolve_stored(&record.incus)?;
        if !self
            .policy
            .covers(params.endpoint.as_deref(), &params.project)
        {
            return Err(AgentError::new(
                ErrorKind::IncusUnavailable,
                format!(
                    "project {} on {} is no longer configured on this server",
                    params.project,
                    params.endpoint.as_deref().unwrap_or("the local socket")
                ),
            ));
        }
        let project = self
            .connector
            .project(&params)
            .map_err(|err| AgentError::incus(&err, "connecting to Incus"))?;
        let _slot = self.slot().await?;
        self.remove_stamped(&project, &record.id, &record.instance_name)
            .await
            .map_err(|err| AgentError::incus(&err, format!("removing {}", record.instance_name)))
    }

    /// Removes `instance_name` only if it carries `agent_id` and this server's ID; an instance
    /// without them (put there under the agent's name by someone else) is left alone and counts
    /// as the agent's instance being gone. Forgets the ledger entry once the name is free.
    pub(crate) async fn remove_stamped(
        &self,
        project: &pika_incus::ProjectClient,
        agent_id: &str,
        instance_name: &str,
    ) -> Result<(), pika_incus::Error> {
        match remove_if_stamped(project, instance_name, &self.server_id, agent_id).await? {
            Removal::Removed => {
                let name = instance_name.to_owned();
                if let Err(err) = self.db(move |s| s.forget_created(&name)).await {
                    tracing::warn!(instance = %instance_name, error = %err.message, "forgetting a removed instance");
                }
            }
            Removal::NotOurs(labels) => {
                tracing::warn!(agent = %agent_id, instance = %instance_name, %labels, "the instance under this agent's name does not carry its agent and server IDs: left alone, the agent's own instance is gone");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pika_managed_agent_contract::IncusGuestRole;

    #[test]
    fn the_operators_cluster_group_wins_over_the_roles() {
        for role in IncusGuestRole::ALL.iter().copied() {
            assert_eq!(placement_group(Some("pinned"), role), Some("pinned"));
            // Without an operator setting, the role's own fact (from roles.toml) decides.
            assert_eq!(placement_group(None, role), role.cluster_group());
        }
    }
}
