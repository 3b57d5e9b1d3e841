//! Startup reconciliation: settles what a crash or an outage left, touching only what is this
//! server's own.
//!
//! Scope: only the (endpoint, project) pairs the operator configured (never a place a request
//! merely named), and only instances stamped with this server's `user.pika.server_id` whose names
//! this database's ledger of creates holds. A second server or a fresh database on the same
//! project therefore deletes nothing that is not its own, and neither does a copy or a restored
//! backup of this database: it shares the server ID, but not the names created after the copy.

use std::collections::{BTreeMap, HashMap, HashSet};

use pika_incus::{Instance, ProjectClient};
use pika_managed_agent_contract::{AgentRecord, AgentState};

use crate::agents::{Agents, resolve_stored};
use crate::endpoint::Endpoint;
use crate::error::AgentError;
use crate::incus::remove_instance;
use crate::incus_keys;

/// What reconciliation did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileSummary {
    pub finished: usize,
    pub failed: usize,
    pub deleted_rows: usize,
    pub lost: usize,
    pub deleted_orphans: usize,
    /// Instances with this server's ID that this database did not create (left alone).
    pub unknown: usize,
    /// Running agents whose gateway proxy device was missing or changed, put back.
    pub repaired_devices: usize,
}

/// `(endpoint, project)`; `None` is the local socket.
type Scope = (Option<String>, String);

struct Reachable {
    project: ProjectClient,
    instances: Vec<Instance>,
}

/// Settles rows and instances: `provisioning` rows become `running` (their instance is there and
/// runs) or `failed`; `deleting` and `abandoned` rows finish their delete; `running` rows whose
/// instance is gone become `lost`; instances of this server that no row knows are deleted.
pub async fn reconcile(agents: &Agents) -> Result<ReconcileSummary, AgentError> {
    let mut summary = ReconcileSummary::default();
    let mut reachable: BTreeMap<Scope, Reachable> = BTreeMap::new();
    for (endpoint, insecure) in agents.policy.endpoints() {
        let client = match agents
            .connector
            .client(endpoint.map(Endpoint::as_str), insecure)
        {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(error = %err, "reconcile: endpoint skipped");
                continue;
            }
        };
        for project_name in agents.policy.projects() {
            let project = client.in_project(project_name);
            // A crashed server's create/start/delete may still run inside Incus: let those end
            // first (the operation wait API, no polling), so what we look at next is final.
            settle_operations(&project).await;
            match project.list_instances().await {
                Ok(instances) => {
                    let scope = (endpoint.map(Endpoint::to_string), project_name.to_owned());
                    reachable.insert(scope, Reachable { project, instances });
                }
                Err(err) => {
                    tracing::warn!(project = %project_name, error = %err, "reconcile: project skipped")
                }
            }
        }
    }

    let rows = agents.db(|s| s.list(None)).await?;
    for row in &rows {
        let scope: Scope = (
            row.incus.endpoint.clone(),
            row.incus.project.clone().unwrap_or_default(),
        );
        let Some(place) = reachable.get(&scope) else {
            if row.state != AgentState::Failed {
                tracing::warn!(agent = %row.id, state = %row.state, project = %scope.1, "reconcile: row outside the configured, reachable projects left as it is");
            }
            continue;
        };
        match row.state {
            AgentState::Provisioning => {
                if settle_provisioning(agents, row, &place.project).await? {
                    summary.finished += 1;
                } else {
                    summary.failed += 1;
                }
            }
            AgentState::Deleting | AgentState::Abandoned => {
                match agents.remove_agent_instance(row).await {
                    Ok(()) => {
                        let id = row.id.clone();
                        agents.db(move |s| s.delete(&id)).await?;
                        summary.deleted_rows += 1;
                    }
                    Err(err) => {
                        tracing::warn!(agent = %row.id, error = %err.message, "reconcile: delete not finished")
                    }
                }
            }
            // An instance on an offline cluster member is still listed (status Error): only a
            // missing one is lost.
            AgentState::Running | AgentState::Unreachable => {
                let instance = place.instances.iter().find(|i| i.name == row.instance_name);
                if let Some(instance) = instance
                    && repair_proxy(agents, row, instance, &place.project).await?
                {
                    summary.repaired_devices += 1;
                }
                if instance.is_none() {
                    let message = format!(
                        "instance {} disappeared from project {}; reprovision or delete the agent",
                        row.instance_name, scope.1
                    );
                    tracing::warn!(agent = %row.id, instance = %row.instance_name, "reconcile: running agent lost its instance");
                    let id = row.id.clone();
                    agents
                        .db(move |s| {
                            s.transition(
                                &id,
                                &[AgentState::Running, AgentState::Unreachable],
                                AgentState::Lost,
                                Some(&message),
                            )
                        })
                        .await?;
                    summary.lost += 1;
                }
            }
            AgentState::Failed | AgentState::Lost => {}
        }
    }

    // Orphans: instances stamped with this server's ID that no live row points at (a row whose
    // create never got recorded, or the old instance of a reprovision). Deleted only when this
    // database's ledger says it created them: a restored or copied database shares the server ID
    // with the original but not the names the original created after the copy, and those are
    // left alone (they are someone's live agents).
    let live: HashMap<String, String> = agents
        .db(|s| s.list(None))
        .await?
        .into_iter()
        .filter(|row| {
            matches!(
                row.state,
                AgentState::Running
                    | AgentState::Unreachable
                    | AgentState::Provisioning
                    | AgentState::Deleting
            )
        })
        .map(|row| (row.id, row.instance_name))
        .collect();
    let created = agents.db(|s| s.created_instances()).await?;
    // Ready warm-pool members are this server's and no agent's: neither orphans nor agents.
    let pool = crate::pool::ready_members(agents).await?;
    let mut seen = HashSet::new();
    for place in reachable.values() {
        for instance in &place.instances {
            if instance
                .config
                .get(incus_keys::SERVER_ID_KEY)
                .map(String::as_str)
                != Some(agents.server_id())
            {
                continue;
            }
            let agent_id = instance
                .config
                .get(incus_keys::AGENT_ID_KEY)
                .cloned()
                .unwrap_or_default();
            if live.get(&agent_id) == Some(&instance.name)
                || pool.contains(&instance.name)
                || !seen.insert(instance.name.clone())
            {
                continue;
            }
            if created.get(&instance.name) != Some(&agent_id) {
                tracing::warn!(instance = %instance.name, agent = %agent_id, "reconcile: an instance with this server's ID that this database never created (a newer copy of this database made it, or this database is a restored backup): left alone");
                summary.unknown += 1;
                continue;
            }
            tracing::warn!(instance = %instance.name, agent = %agent_id, "reconcile: deleting an orphan of this server");
            match remove_instance(&place.project, &instance.name).await {
                Ok(()) => {
                    summary.deleted_orphans += 1;
                    let name = instance.name.clone();
                    agents.db(move |s| s.forget_created(&name)).await?;
                }
                Err(err) => {
                    tracing::warn!(instance = %instance.name, error = %err, "reconcile: deleting an orphan failed")
                }
            }
        }
    }
    // Ports held by no current instance (a reprovision's new instance a crash left, or the old
    // one whose removal failed and was finished above), and those of agents whose instance is
    // gone, are free again.
    let released = agents.db(|s| s.release_unused_ports()).await?;
    if released > 0 {
        tracing::info!(
            released,
            "reconcile: freed gateway ports of instances that are gone"
        );
    }
    tracing::info!(?summary, "reconciled");
    Ok(summary)
}

/// Waits for the running Incus operations of `project` that touch agent instances.
async fn settle_operations(project: &ProjectClient) {
    crate::incus::settle_operations_on(project, |name| {
        name.starts_with(incus_keys::INSTANCE_NAME_PREFIX)
    })
    .await
}

/// Returns true when the row ends `running`.
async fn settle_provisioning(
    agents: &Agents,
    row: &AgentRecord,
    project: &ProjectClient,
) -> Result<bool, AgentError> {
    let fail = |message: String| async move {
        tracing::warn!(agent = %row.id, reason = %message, "reconcile: provisioning failed");
        let id = row.id.clone();
        agents
            .db(move |s| {
                s.transition(
                    &id,
                    &[AgentState::Provisioning],
                    AgentState::Failed,
                    Some(&message),
                )
            })
            .await
            .map(|_| false)
    };
    if let Err(err) = resolve_stored(&row.incus) {
        return fail(err.message).await;
    }
    // Look again right before deciding: under load Incus may only now run the create that the
    // crashed server sent just before it died.
    settle_operations(project).await;
    let instance = match project.get_instance(&row.instance_name).await {
        Ok(instance) => instance,
        Err(err) if err.is_not_found() => {
            return fail(
                "server stopped before the instance was created; reprovision or delete the agent"
                    .into(),
            )
            .await;
        }
        Err(err) => return fail(format!("server restarted during provisioning; {err}")).await,
    };
    let started = match crate::pool::adopt(row, &instance, project).await {
        Err(err) => Err(err),
        Ok(()) if instance.is_running() => Ok(()),
        Ok(()) => project.start_instance(&row.instance_name).await,
    };
    // An agent with a gateway is running only once the gateway answers through its proxy: the
    // crash may have come before its configuration was delivered (the token is not kept, so it
    // cannot be delivered now; the owner rotates it to get one).
    let started = match started {
        Ok(()) => gateway_ready(agents, row, &instance, project).await,
        Err(err) => Err(err.to_string()),
    };
    match started {
        Ok(()) => {
            let id = row.id.clone();
            agents
                .db(move |s| {
                    s.transition(&id, &[AgentState::Provisioning], AgentState::Running, None)
                })
                .await?;
            tracing::info!(agent = %row.id, "reconcile: finished provisioning");
            Ok(true)
        }
        Err(err) => {
            if let Err(cleanup) = remove_instance(project, &row.instance_name).await {
                tracing::warn!(agent = %row.id, error = %cleanup, "reconcile: cleanup");
            }
            let name = row.instance_name.clone();
            agents.db(move |s| s.release_port(&name)).await?;
            fail(format!(
                "server restarted during provisioning; start failed: {err}"
            ))
            .await
        }
    }
}

/// Puts an agent's gateway proxy device back when its instance lacks it or it differs from what
/// the database holds (someone removed or edited it while the server was down): the agent's port
/// and reach survive a restart. True when it was repaired; a refusal by Incus (the port is taken
/// by another program now) is logged and the agent left as it is.
async fn repair_proxy(
    agents: &Agents,
    row: &AgentRecord,
    instance: &Instance,
    project: &ProjectClient,
) -> Result<bool, AgentError> {
    let Ok(params) = resolve_stored(&row.incus) else {
        return Ok(false);
    };
    let Some(role) = crate::gateway::GatewayRole::of(params.guest_role) else {
        return Ok(false);
    };
    let name = row.instance_name.clone();
    let Some(listen) = agents.db(move |s| s.gateway_address(&name)).await? else {
        return Ok(false);
    };
    let want = crate::gateway::proxy_devices(listen, &role);
    let have = instance.devices.get(crate::gateway::PROXY_DEVICE);
    if have == want.get(crate::gateway::PROXY_DEVICE) {
        return Ok(false);
    }
    tracing::warn!(agent = %row.id, instance = %row.instance_name, device = crate::gateway::PROXY_DEVICE, present = have.is_some(), "reconcile: the gateway proxy device is missing or changed; putting it back");
    match project
        .update_instance_devices(&row.instance_name, &want)
        .await
    {
        Ok(()) => Ok(true),
        Err(err) => {
            tracing::warn!(agent = %row.id, error = %err, "reconcile: putting the gateway proxy device back failed");
            Ok(false)
        }
    }
}

/// Why a `provisioning` agent whose gateway configuration never reached the guest fails.
pub const UNDELIVERED: &str = "the server stopped before the gateway's configuration was delivered (its token is not kept); reprovision or delete the agent";

/// How long reconcile waits for the gateway of a `provisioning` agent a crash left.
const GATEWAY_SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Ok for an agent without a gateway; otherwise the gateway must answer through its proxy.
async fn gateway_ready(
    agents: &Agents,
    row: &AgentRecord,
    instance: &Instance,
    project: &ProjectClient,
) -> Result<(), String> {
    let Ok(params) = resolve_stored(&row.incus) else {
        return Err("stored parameters are unusable".into());
    };
    if crate::gateway::GatewayRole::of(params.guest_role).is_none() {
        return Ok(());
    }
    let name = row.instance_name.clone();
    let listen = match agents.db(move |s| s.gateway_address(&name)).await {
        Ok(Some(listen)) => listen,
        Ok(None) => return Err("no gateway port was reserved".into()),
        Err(err) => return Err(err.message),
    };
    // A gateway without its configuration never starts: fail now instead of waiting out the
    // timeout for each such agent (reconcile runs before the server listens).
    match project
        .pull_file(&row.instance_name, crate::gateway::CONFIG_PATH)
        .await
    {
        Ok(_) => {}
        Err(err) if err.is_not_found() => return Err(UNDELIVERED.into()),
        Err(err) => return Err(err.to_string()),
    }
    // The proxy device is added while the configuration is written: a crash between the two
    // leaves it out.
    repair_proxy(agents, row, instance, project)
        .await
        .map_err(|err| err.message)?;
    pika_guest_launch::wait_ready_via(
        project,
        &row.instance_name,
        params.guest_role.readiness(),
        crate::gateway::probe_via(project, listen),
        GATEWAY_SETTLE_TIMEOUT,
    )
    .await
    .map(drop)
    .map_err(|err| format!("the gateway is not ready: {err}"))
}
