//! What the endpoints do: provision, reprovision, delete, health, and startup reconciliation.
//!
//! Every path writes the row before it calls Incus and leaves it in a final state (`running`,
//! `failed`, or gone) before it answers, so only a crash can leave a `provisioning` or `deleting`
//! row behind, and [`reconcile`] settles those at the next start.

use std::collections::{BTreeMap, HashSet};

use axum::http::StatusCode;
use pika_managed_agent_contract::{
    AgentRecord, AgentState, HealthCheck, HealthReport, IncusProvisionParams,
};
use rand::RngCore;

use crate::incus::{Connector, create_agent_instance, remove_instance};
use crate::incus_keys;
use crate::params::{
    ParamsError, ResolvedIncusParams, incus_params_provided, merge_incus_provision_params,
    resolved_incus_params,
};
use crate::store::{Store, StoreError};
use pika_incus::ProjectClient;

/// Everything a request handler needs.
pub struct Agents {
    pub store: Store,
    pub connector: Connector,
    /// The `PIKA_AGENT_INCUS_*` defaults.
    pub defaults: IncusProvisionParams,
    /// Bounds the instance creates/deletes in flight (see [`INCUS_CONCURRENCY`]).
    pub incus_slots: tokio::sync::Semaphore,
}

/// How many instance creates/deletes the server runs against Incus at once. Incus answers a burst
/// of 50 creates slowly enough that single requests pass the client timeout; queueing here instead
/// keeps every Incus request short, and a few in flight already keep Incus busy.
pub const INCUS_CONCURRENCY: usize = 8;

/// A failed request: HTTP status, message, and the row it left behind (if any).
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
    pub agent: Option<Box<AgentRecord>>,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
            agent: None,
        }
    }

    fn not_found(id: &str) -> Self {
        Failure::new(StatusCode::NOT_FOUND, format!("agent {id} not found"))
    }
}

impl From<ParamsError> for Failure {
    fn from(err: ParamsError) -> Self {
        Failure::new(StatusCode::BAD_REQUEST, err.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        tracing::error!("{err}");
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
    }
}

/// The HTTP status for an Incus error: a missing object means the parameters name something that
/// is not there (400); an unreachable Incus is 503; anything else Incus did is 502.
fn incus_status(err: &pika_incus::Error) -> StatusCode {
    match err {
        pika_incus::Error::NotFound { .. } => StatusCode::BAD_REQUEST,
        // Incus refused the request itself (e.g. a profile that does not exist).
        pika_incus::Error::Api { status: 400, .. } => StatusCode::BAD_REQUEST,
        pika_incus::Error::Transport { .. } | pika_incus::Error::Timeout { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        pika_incus::Error::Conflict { .. } => StatusCode::CONFLICT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

fn new_agent_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn check_name(name: Option<String>) -> Result<Option<String>, Failure> {
    let Some(name) = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            format!("name {name:?} is invalid: use at most 64 characters, no control characters"),
        ));
    }
    Ok(Some(name))
}

/// Resolves stored parameters back into complete ones (they were complete when stored).
fn resolve_stored(stored: &IncusProvisionParams) -> Result<ResolvedIncusParams, Failure> {
    resolved_incus_params(&IncusProvisionParams::default(), stored).map_err(|err| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("stored parameters are unusable: {err}"),
        )
    })
}

impl Agents {
    pub async fn provision(
        &self,
        owner: &str,
        name: Option<String>,
        requested: &IncusProvisionParams,
    ) -> Result<AgentRecord, Failure> {
        let name = check_name(name)?;
        let resolved = resolved_incus_params(&self.defaults, requested)?;
        let id = new_agent_id();
        let record = self.store.insert_provisioning(
            &id,
            owner,
            name.as_deref(),
            &resolved.materialized(),
        )?;
        tracing::info!(agent = %id, %owner, params = %resolved, "provisioning");
        self.build(record, &resolved).await
    }

    /// Creates and starts the instance of a `provisioning` row; the row ends `running` or `failed`.
    async fn build(
        &self,
        mut record: AgentRecord,
        resolved: &ResolvedIncusParams,
    ) -> Result<AgentRecord, Failure> {
        let _slot = self.incus_slots.acquire().await.expect("never closed");
        let outcome = match self.connector.project(resolved) {
            Ok(project) => {
                match create_agent_instance(&project, resolved, &record.id, &record.owner).await {
                    Ok(()) => Ok(()),
                    Err(err) => {
                        // A failed start leaves a created instance behind: remove it.
                        if let Err(cleanup) = remove_instance(&project, &record.instance_name).await
                        {
                            tracing::warn!(agent = %record.id, "cleanup after failure: {cleanup}");
                        }
                        Err(err)
                    }
                }
            }
            Err(err) => Err(err),
        };
        match outcome {
            Ok(()) => {
                self.store.transition(
                    &record.id,
                    &[AgentState::Provisioning],
                    AgentState::Running,
                    None,
                )?;
                record.state = AgentState::Running;
                tracing::info!(agent = %record.id, instance = %record.instance_name, "running");
                // Answer with the row as stored, so the response equals what GET shows later
                // (the transition stamped a new updated_at).
                Ok(self.store.get(&record.id)?.unwrap_or(record))
            }
            Err(err) => {
                let message = format!("provisioning agent {} failed: {err}", record.id);
                tracing::warn!("{message}");
                self.store.transition(
                    &record.id,
                    &[AgentState::Provisioning],
                    AgentState::Failed,
                    Some(&message),
                )?;
                record.state = AgentState::Failed;
                record.error = Some(message.clone());
                let record = self.store.get(&record.id)?.unwrap_or(record);
                Err(Failure {
                    status: incus_status(&err),
                    message,
                    agent: Some(Box::new(record)),
                })
            }
        }
    }

    pub fn list(&self, owner: &str) -> Result<Vec<AgentRecord>, Failure> {
        Ok(self.store.list(Some(owner))?)
    }

    pub fn show(&self, owner: &str, id: &str) -> Result<AgentRecord, Failure> {
        self.store
            .get_owned(owner, id)?
            .ok_or_else(|| Failure::not_found(id))
    }

    /// Recreates the instance with the stored parameters, overridden by the present request fields.
    pub async fn reprovision(
        &self,
        owner: &str,
        id: &str,
        requested: &IncusProvisionParams,
    ) -> Result<AgentRecord, Failure> {
        let record = self.show(owner, id)?;
        let merged = if incus_params_provided(requested) {
            merge_incus_provision_params(&record.incus, requested)
        } else {
            record.incus.clone()
        };
        // Stored params are complete, so no env default is needed (or wanted: the env may have
        // changed since, and reprovision keeps what the agent was given).
        let resolved = resolved_incus_params(&IncusProvisionParams::default(), &merged)?;
        let old = resolve_stored(&record.incus)?;
        let claimed = self.store.transition(
            id,
            &[AgentState::Running, AgentState::Failed],
            AgentState::Provisioning,
            None,
        )?;
        if !claimed {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                format!("agent {id} is busy (state {}); try again", record.state),
            ));
        }
        tracing::info!(agent = %id, params = %resolved, "reprovisioning");
        let removed = match self.connector.project(&old) {
            Ok(project) => {
                let _slot = self.incus_slots.acquire().await.expect("never closed");
                remove_instance(&project, &record.instance_name).await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = removed {
            let message = format!("reprovisioning agent {id}: removing the old instance: {err}");
            self.store
                .update(id, AgentState::Failed, Some(&message), &record.incus)?;
            let agent = self.store.get(id)?.map(Box::new);
            return Err(Failure {
                status: incus_status(&err),
                message,
                agent,
            });
        }
        let materialized = resolved.materialized();
        self.store
            .update(id, AgentState::Provisioning, None, &materialized)?;
        let fresh = self.store.get(id)?.ok_or_else(|| Failure::not_found(id))?;
        self.build(fresh, &resolved).await
    }

    pub async fn delete(&self, owner: &str, id: &str) -> Result<(), Failure> {
        let record = self.show(owner, id)?;
        let claimed = self.store.transition(
            id,
            &[
                AgentState::Running,
                AgentState::Failed,
                AgentState::Deleting,
            ],
            AgentState::Deleting,
            None,
        )?;
        if !claimed {
            return Err(Failure::new(
                StatusCode::CONFLICT,
                format!("agent {id} is busy (state {}); try again", record.state),
            ));
        }
        self.finish_delete(&record).await
    }

    async fn finish_delete(&self, record: &AgentRecord) -> Result<(), Failure> {
        let params = resolve_stored(&record.incus)?;
        let removed = match self.connector.project(&params) {
            Ok(project) => {
                let _slot = self.incus_slots.acquire().await.expect("never closed");
                remove_instance(&project, &record.instance_name).await
            }
            Err(err) => Err(err),
        };
        match removed {
            Ok(()) => {
                self.store.delete(&record.id)?;
                tracing::info!(agent = %record.id, "deleted");
                Ok(())
            }
            Err(err) => {
                let message = format!("deleting agent {}: {err} (retry the delete)", record.id);
                self.store.transition(
                    &record.id,
                    &[AgentState::Deleting],
                    AgentState::Deleting,
                    Some(&message),
                )?;
                Err(Failure::new(incus_status(&err), message))
            }
        }
    }

    /// `/healthz`: the configuration is complete, Incus answers, and the project, profile,
    /// storage pool and image alias of the defaults exist.
    pub async fn health(&self) -> HealthReport {
        let mut checks = Vec::new();
        let mut check = |name: &str, result: Result<String, String>| {
            let ok = result.is_ok();
            checks.push(HealthCheck {
                name: name.to_owned(),
                ok,
                detail: result.unwrap_or_else(|e| e),
            });
            ok
        };
        let resolved = match resolved_incus_params(&self.defaults, &Default::default()) {
            Ok(resolved) => resolved,
            Err(err) => {
                check("config", Err(err.to_string()));
                return report(checks);
            }
        };
        check("config", Ok(resolved.to_string()));
        let client = match self
            .connector
            .client(resolved.endpoint.as_deref(), resolved.insecure_tls)
        {
            Ok(client) => client,
            Err(err) => {
                check("incus", Err(err.to_string()));
                return report(checks);
            }
        };
        let reachable = match client.server_info().await {
            Ok(info) => check(
                "incus",
                Ok(format!(
                    "{} (incus {}, auth {})",
                    client.endpoint(),
                    info.environment.server_version,
                    info.auth
                )),
            ),
            Err(err) => check("incus", Err(err.to_string())),
        };
        if !reachable {
            return report(checks);
        }
        let project = client.in_project(resolved.project.clone());
        check(
            "project",
            existence(
                "project",
                &resolved.project,
                client.get_project(&resolved.project).await,
            ),
        );
        check(
            "profile",
            existence(
                "profile",
                &resolved.profile,
                project.get_profile(&resolved.profile).await,
            ),
        );
        check(
            "storage_pool",
            existence(
                "storage pool",
                &resolved.storage_pool,
                client.get_storage_pool(&resolved.storage_pool).await,
            ),
        );
        let result = project.get_image_alias(&resolved.image_alias).await;
        check(
            "image_alias",
            result
                .map(|alias| {
                    format!(
                        "image alias {} -> {} ({})",
                        resolved.image_alias, alias.target, alias.image_type
                    )
                })
                .map_err(|e| e.to_string()),
        );
        report(checks)
    }
}

/// A health check outcome for an Incus object that must exist: "<kind> <name> exists" or the error.
fn existence<T>(
    kind: &str,
    name: &str,
    result: Result<T, pika_incus::Error>,
) -> Result<String, String> {
    result
        .map(|_| format!("{kind} {name} exists"))
        .map_err(|e| e.to_string())
}

fn report(checks: Vec<HealthCheck>) -> HealthReport {
    HealthReport {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// What startup reconciliation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub finished: usize,
    pub failed: usize,
    pub deleted_rows: usize,
    pub deleted_orphans: usize,
}

/// Settles what a crash left: `provisioning` rows become `running` (their instance is there and
/// runs) or `failed` (no instance; a half-made one is removed), `deleting` rows finish their
/// delete, and instances carrying `user.pika.agent_id` in the server's project that no live row
/// knows are deleted.
pub async fn reconcile(agents: &Agents) -> Result<ReconcileSummary, StoreError> {
    let mut summary = ReconcileSummary::default();
    let rows = agents.store.list(None)?;

    // Where instances of ours can be: the default project plus every project a row points at.
    let mut scopes: BTreeMap<(Option<String>, String), bool> = BTreeMap::new();
    if let Some(project) = &agents.defaults.project {
        scopes.insert(
            (agents.defaults.endpoint.clone(), project.clone()),
            agents.defaults.insecure_tls.unwrap_or(false),
        );
    }
    for row in &rows {
        if let Some(project) = &row.incus.project {
            scopes.insert(
                (row.incus.endpoint.clone(), project.clone()),
                row.incus.insecure_tls.unwrap_or(false),
            );
        }
    }
    let mut projects = Vec::new();
    for ((endpoint, project_name), insecure) in scopes {
        match agents.connector.client(endpoint.as_deref(), insecure) {
            Ok(client) => projects.push(client.in_project(project_name)),
            Err(err) => tracing::warn!("reconcile: {err}"),
        }
    }

    // A crashed server's create/start/delete may still be running inside Incus: let those end
    // first (the operation wait API, no polling), so what we look at next is final.
    for project in &projects {
        settle_operations(project).await;
    }

    for row in &rows {
        tracing::debug!(agent = %row.id, state = %row.state, "reconcile: row");
        match row.state {
            AgentState::Provisioning => {
                if settle_provisioning(agents, row).await? {
                    summary.finished += 1;
                } else {
                    summary.failed += 1;
                }
            }
            AgentState::Deleting => match agents.finish_delete(row).await {
                Ok(()) => summary.deleted_rows += 1,
                Err(err) => tracing::warn!(agent = %row.id, "reconcile: {}", err.message),
            },
            AgentState::Running | AgentState::Failed => {}
        }
    }

    // Orphans: instances carrying an agent ID that no live row knows. Rows are written before
    // instances are created, so reading the rows after listing the instances cannot mistake a
    // request being served right now for an orphan.
    for project in &projects {
        let instances = match project.list_instances().await {
            Ok(instances) => instances,
            Err(err) => {
                tracing::warn!("reconcile: listing instances of {}: {err}", project.name());
                continue;
            }
        };
        let live: HashSet<String> = agents
            .store
            .list(None)?
            .into_iter()
            .filter(|row| row.state != AgentState::Failed)
            .map(|row| row.id)
            .collect();
        for instance in instances {
            let Some(agent_id) = instance.config.get(incus_keys::AGENT_ID_KEY) else {
                continue;
            };
            if live.contains(agent_id) {
                continue;
            }
            tracing::warn!(instance = %instance.name, agent = %agent_id, "reconcile: deleting orphan");
            match remove_instance(project, &instance.name).await {
                Ok(()) => summary.deleted_orphans += 1,
                Err(err) => tracing::warn!("reconcile: deleting orphan {}: {err}", instance.name),
            }
        }
    }
    tracing::info!(?summary, "reconciled");
    Ok(summary)
}

/// Waits for the running Incus operations of `project` that touch agent instances.
async fn settle_operations(project: &ProjectClient) {
    let operations = match project.running_operations().await {
        Ok(operations) => operations,
        Err(err) => {
            tracing::warn!("reconcile: operations of {}: {err}", project.name());
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
                path.rsplit('/')
                    .next()
                    .is_some_and(|name| name.starts_with(incus_keys::INSTANCE_NAME_PREFIX))
            });
        if !ours {
            continue;
        }
        tracing::info!(operation = %operation.id, what = %operation.description, "reconcile: waiting for an operation left by the previous run");
        if let Err(err) = project
            .client()
            .wait_operation(&operation.id, pika_incus::DEFAULT_OPERATION_TIMEOUT)
            .await
        {
            tracing::warn!("reconcile: {err}");
        }
    }
}

/// Returns true when the row ends `running`.
async fn settle_provisioning(agents: &Agents, row: &AgentRecord) -> Result<bool, StoreError> {
    let fail = |message: String| {
        tracing::warn!(agent = %row.id, "reconcile: {message}");
        agents
            .store
            .transition(
                &row.id,
                &[AgentState::Provisioning],
                AgentState::Failed,
                Some(&message),
            )
            .map(|_| false)
    };
    let params = match resolve_stored(&row.incus) {
        Ok(params) => params,
        Err(err) => return fail(err.message),
    };
    let project = match agents.connector.project(&params) {
        Ok(project) => project,
        Err(err) => return fail(format!("server restarted during provisioning; {err}")),
    };
    // Look again right before deciding: under load Incus may only now run the create that the
    // crashed server sent just before it died.
    settle_operations(&project).await;
    let instance = match project.get_instance(&row.instance_name).await {
        Ok(instance) => instance,
        Err(err) if err.is_not_found() => {
            return fail(
                "server stopped before the instance was created; reprovision or delete the agent"
                    .into(),
            );
        }
        Err(err) => return fail(format!("server restarted during provisioning; {err}")),
    };
    let started = if instance.is_running() {
        Ok(())
    } else {
        project.start_instance(&row.instance_name).await
    };
    match started {
        Ok(()) => {
            agents.store.transition(
                &row.id,
                &[AgentState::Provisioning],
                AgentState::Running,
                None,
            )?;
            tracing::info!(agent = %row.id, "reconcile: finished provisioning");
            Ok(true)
        }
        Err(err) => {
            if let Err(cleanup) = remove_instance(&project, &row.instance_name).await {
                tracing::warn!(agent = %row.id, "reconcile cleanup: {cleanup}");
            }
            fail(format!(
                "server restarted during provisioning; start failed: {err}"
            ))
        }
    }
}
