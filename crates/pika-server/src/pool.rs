//! The warm pool: per guest role, a number of launched, ready, unclaimed guests in the
//! operator's configured target (endpoint, project, profile, storage pool, image alias), so
//! `POST /v1/agents` pays the launch before anyone asks.
//!
//! - A member is launched like an agent (same contract, same placement, so on a cluster the Incus
//!   scheduler spreads refills like normal launches), with its gateway's proxy device on a port of
//!   its own and a configuration carrying a throwaway token that nobody is ever told. It is
//!   labelled with the server ID and [`incus_keys::POOL_KEY`], and has no agent ID.
//! - A claim takes the oldest ready member in the transaction that inserts the agent's row (see
//!   `Store::claim_pool_member`): never two claims of one guest. Only a member running the image
//!   the alias serves now, and whose gateway started with the model environment the agent gets,
//!   may be claimed. The claim then stamps the agent's labels, delivers the agent's configuration
//!   (a new token: OpenClaw reloads `gateway.auth.token` in place, without a restart; a different
//!   model environment would need a restart, which is why members of another environment are
//!   drained instead of claimed), and waits for the role's readiness again.
//! - A request naming any other target bypasses the pool; an empty pool means a fresh launch.
//! - The refill task drains members of an old image (alias moved) or environment, tops the pool
//!   up, and backs off on failure (1 s doubling to 60 s), visible in `/v1/health`.
//! - Crashes: a member is in the ledger of creates (agent ID empty) before Incus hears of it;
//!   reconcile leaves ready members alone and removes half-launched ones; a claimed guest whose
//!   labels a crash kept from being stamped is adopted by reconcile (see [`adopt`]).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use pika_managed_agent_contract::{AgentRecord, AgentState, IncusProvisionParams};
use sha2::{Digest, Sha256};

use crate::agents::{Agents, GatewayPlan};
use crate::error::{AgentError, ErrorKind};
use crate::gateway::ModelEnv;
use crate::incus::{GatewayLaunch, Preflight, create_labelled, preflight, remove_instance};
use crate::incus_keys;
use crate::params::{ResolvedIncusParams, resolved_incus_params};
use crate::pools::{Pool, Status};
use crate::store::{PoolClaim, PoolMember, PoolMemberState, PortAvoid};

/// How often the refill task looks at the pools when nothing wakes it (a claim does).
const POLL: Duration = Duration::from_secs(2);
/// The first pause after a failed refill; it doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// SHA-256 of the model environment a gateway gets now, salted with the server ID (the
/// environment holds keys: only this hash is stored).
fn env_sha256(agents: &Agents) -> Result<String, AgentError> {
    let env = ModelEnv::load(agents.model_env_file.as_deref())
        .map_err(|err| AgentError::new(ErrorKind::Internal, err.to_string()))?;
    let mut hash = Sha256::new();
    hash.update(agents.server_id().as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_vec(&env).expect("the environment serializes"));
    Ok(hex::encode(hash.finalize()))
}

/// Claims a pool member for agent `id`, when the request's target is a pool's and a member
/// fits: the agent's `provisioning` row exists (on the member's instance) once this returns
/// `Some`. `None`: no pool here, or it is empty; nothing was written.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn claim(
    agents: &Agents,
    id: &str,
    owner: &str,
    name: Option<&str>,
    resolved: &ResolvedIncusParams,
    checked: &Preflight,
    idempotency: Option<(String, String)>,
    plan: Option<&GatewayPlan>,
) -> Result<Option<AgentRecord>, AgentError> {
    let Some(pool) = agents.pool.for_target(resolved) else {
        return Ok(None);
    };
    let env = env_sha256(agents)?;
    let now = crate::store::now();
    let record = AgentRecord {
        id: id.to_owned(),
        owner: owner.to_owned(),
        name: name.map(str::to_owned),
        instance_name: String::new(),
        state: AgentState::Provisioning,
        incus: resolved.materialized(),
        location: None,
        gateway_url: None,
        error: None,
        created_at: now.clone(),
        updated_at: now,
    };
    let (role, image) = (pool.role.as_str().to_owned(), checked.image.clone());
    let sha256 = plan.map(|plan| plan.token.sha256());
    let claimed = agents
        .db(move |s| {
            let claim = PoolClaim {
                role: &role,
                image: &image,
                env_sha256: &env,
            };
            let key = idempotency.as_ref().map(|(k, h)| (k.as_str(), h.as_str()));
            s.claim_pool_member(&claim, record, key, sha256.as_deref())
        })
        .await?;
    // Refill now, whether this took a member or found none.
    agents.pool.wake.notify_one();
    Ok(claimed)
}

/// Makes a claimed member the agent's: stamps its labels, delivers its configuration, waits for
/// its readiness through its proxy; the row ends `running`, or `failed` with the instance removed.
pub(crate) async fn finish(
    agents: &Agents,
    record: AgentRecord,
    resolved: &ResolvedIncusParams,
    project: &pika_incus::ProjectClient,
    plan: Option<&GatewayPlan>,
) -> Result<AgentRecord, AgentError> {
    let name = record.instance_name.clone();
    let made = async {
        stamp(project, &name, &record.id, &record.owner)
            .await
            .map_err(|err| AgentError::incus(&err, format!("stamping {name}")))?;
        let listen = {
            let name = name.clone();
            agents.db(move |s| s.gateway_address(&name)).await?
        };
        if let Some(plan) = plan {
            crate::gateway::deliver(
                project,
                &name,
                &plan.file,
                pika_guest_launch::DEFAULT_READY_TIMEOUT,
            )
            .await
            .map_err(|err| {
                AgentError::incus(
                    &err,
                    format!("delivering agent {}'s gateway configuration", record.id),
                )
            })?;
        }
        let via = listen.and_then(|listen| crate::gateway::probe_via(project, listen));
        pika_guest_launch::wait_ready_via(
            project,
            &name,
            resolved.guest_role.readiness(),
            via,
            pika_guest_launch::DEFAULT_READY_TIMEOUT,
        )
        .await
        .map_err(|err| {
            AgentError::new(
                ErrorKind::IncusFailed,
                format!(
                    "agent {}: not ready with its configuration: {err}",
                    record.id
                ),
            )
        })?;
        // The member's gateway started with a throwaway token and reloads the agent's in place:
        // the agent is running once the gateway takes it.
        if let Some(plan) = plan {
            crate::gateway::wait_token_taken(
                via,
                &plan.token,
                pika_guest_launch::DEFAULT_READY_TIMEOUT,
            )
            .await
            .map_err(|err| {
                AgentError::new(
                    ErrorKind::IncusFailed,
                    format!("agent {}: {err}", record.id),
                )
            })?;
        }
        let location = project
            .get_instance(&name)
            .await
            .map_err(|err| AgentError::incus(&err, format!("reading {name}")))?
            .location;
        let location = Some(location).filter(|member| !member.is_empty() && member != "none");
        let id = record.id.clone();
        agents
            .db(move |s| {
                s.set_location(&id, location.as_deref())?;
                s.transition(&id, &[AgentState::Provisioning], AgentState::Running, None)
            })
            .await
    };
    match made.await {
        Ok(_) => {
            tracing::info!(agent = %record.id, instance = %name, "running (from the warm pool)");
            let id = record.id.clone();
            Ok(agents.db(move |s| s.get(&id)).await?.unwrap_or(record))
        }
        Err(err) => {
            tracing::warn!(agent = %record.id, instance = %name, error = %err.message, "a claimed pool guest failed; removing it");
            if let Err(cleanup) = remove_instance(project, &name).await {
                tracing::warn!(instance = %name, error = %cleanup, "cleanup; reconcile will retry");
            } else {
                let name = name.clone();
                let _ = agents.db(move |s| s.forget_created(&name)).await;
            }
            let (id, message, name) = (record.id.clone(), err.message.clone(), name.clone());
            let row = agents
                .db(move |s| {
                    s.release_port(&name)?;
                    s.transition(
                        &id,
                        &[AgentState::Provisioning],
                        AgentState::Failed,
                        Some(&message),
                    )?;
                    s.get(&id)
                })
                .await?;
            Err(err.with_agent(row))
        }
    }
}

/// Labels a claimed guest as the agent's: its agent ID and owner; the pool key goes.
async fn stamp(
    project: &pika_incus::ProjectClient,
    instance: &str,
    agent_id: &str,
    owner: &str,
) -> Result<(), pika_incus::Error> {
    let labels = BTreeMap::from([
        (incus_keys::AGENT_ID_KEY.to_owned(), agent_id.to_owned()),
        (incus_keys::OWNER_KEY.to_owned(), owner.to_owned()),
        (incus_keys::POOL_KEY.to_owned(), String::new()),
    ]);
    project.patch_instance_config(instance, &labels).await
}

/// Reconcile, for a `provisioning` row: when its instance is a pool guest a crash claimed before
/// its labels were stamped, stamps them now (the ledger already names the agent), so the agent's
/// delete and reconcile find it like any other. Anything else is left as it is.
pub(crate) async fn adopt(
    row: &AgentRecord,
    instance: &pika_incus::Instance,
    project: &pika_incus::ProjectClient,
) -> Result<(), pika_incus::Error> {
    let label = |key: &str| instance.config.get(key).filter(|v| !v.is_empty());
    if label(incus_keys::POOL_KEY).is_none() || label(incus_keys::AGENT_ID_KEY).is_some() {
        return Ok(());
    }
    tracing::info!(agent = %row.id, instance = %instance.name, "reconcile: stamping a pool guest claimed before a crash");
    stamp(project, &instance.name, &row.id, &row.owner).await
}

/// The names of the ready members (reconcile leaves these alone).
pub(crate) async fn ready_members(agents: &Agents) -> Result<HashSet<String>, AgentError> {
    Ok(agents
        .db(|s| s.pool_members())
        .await?
        .into_iter()
        .filter(|m| m.state == PoolMemberState::Ready)
        .map(|m| m.instance_name)
        .collect())
}

/// After reconcile, before the first refill: members a crash left half-launched, members whose
/// instance is gone, and members of a role without a pool now, leave the pool (their instances
/// removed).
pub async fn recover(agents: &Agents) -> Result<(), AgentError> {
    for member in agents.db(|s| s.pool_members()).await? {
        let pool = agents.pool.of_role(&member.role);
        let target = match pool {
            Some(pool) => pool.target.clone(),
            None => match resolved_incus_params(
                &agents.defaults,
                &IncusProvisionParams {
                    guest_role: member.role.parse().ok(),
                    ..Default::default()
                },
            ) {
                Ok(target) => target,
                Err(err) => {
                    tracing::warn!(instance = %member.instance_name, error = %err, "pool: a member of an unknown target is left as it is");
                    continue;
                }
            },
        };
        let project = agents
            .connector
            .project(&target)
            .map_err(|err| AgentError::incus(&err, "connecting to Incus"))?;
        let present = match project.get_instance(&member.instance_name).await {
            Ok(_) => true,
            Err(err) if err.is_not_found() => false,
            Err(err) => return Err(AgentError::incus(&err, "pool: reading a member")),
        };
        if pool.is_some() && member.state == PoolMemberState::Ready && present {
            continue;
        }
        tracing::info!(instance = %member.instance_name, state = ?member.state, present, "pool: removing a member left by the previous run or no longer wanted");
        drain(agents, &project, &member).await;
    }
    Ok(())
}

/// Takes `member` out of the pool (unless a claim took it first) and removes its instance.
async fn drain(agents: &Agents, project: &pika_incus::ProjectClient, member: &PoolMember) {
    let name = member.instance_name.clone();
    match agents.db(move |s| s.pool_remove(&name)).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(instance = %member.instance_name, error = %err.message, "pool: draining");
            return;
        }
    }
    let removed = {
        let _slot = agents.slot().await;
        remove_instance(project, &member.instance_name).await
    };
    match removed {
        Ok(()) => {
            let name = member.instance_name.clone();
            let _ = agents.db(move |s| s.forget_created(&name)).await;
        }
        // The ledger keeps the name (agent ID empty): the next reconcile removes it.
        Err(err) => {
            tracing::warn!(instance = %member.instance_name, error = %err, "pool: removing a drained member failed; reconcile will retry")
        }
    }
}

/// The refill task: runs until the server stops.
pub async fn run(agents: &Agents) {
    if agents.pool.is_empty() {
        return;
    }
    loop {
        for pool in &agents.pool.pools {
            let due = {
                let status = pool.status.lock().unwrap_or_else(|p| p.into_inner());
                status.retry_at.is_none_or(|at| Instant::now() >= at)
            };
            if !due {
                continue;
            }
            let result = refill(agents, pool).await;
            let mut status = pool.status.lock().unwrap_or_else(|p| p.into_inner());
            match result {
                Ok(()) => *status = Status::default(),
                Err(err) => {
                    status.failures = status.failures.saturating_add(1);
                    let pause = BACKOFF_FIRST
                        .saturating_mul(2u32.saturating_pow(status.failures.saturating_sub(1)))
                        .min(BACKOFF_MAX);
                    status.retry_at = Some(Instant::now() + pause);
                    tracing::warn!(role = %pool.role, failures = status.failures, retry_in = ?pause, error = %err.message, "pool: refill failed");
                    status.error = Some(err.message);
                }
            }
        }
        let _ = tokio::time::timeout(POLL, agents.pool.wake.notified()).await;
    }
}

/// Drains members of another image or environment (and any beyond the size), then launches
/// the missing ones.
async fn refill(agents: &Agents, pool: &Pool) -> Result<(), AgentError> {
    let project = agents
        .connector
        .project(&pool.target)
        .map_err(|err| AgentError::incus(&err, "connecting to Incus"))?;
    let checked = preflight(&project, &pool.target, agents.cluster_group(&pool.target))
        .await
        .map_err(|err| match err {
            crate::incus::PreflightError::Missing(_, message) => {
                AgentError::new(ErrorKind::Invalid, message)
            }
            crate::incus::PreflightError::Incus(err) => AgentError::incus(&err, "pool preflight"),
        })?;
    let env = env_sha256(agents)?;
    let role = pool.role.as_str().to_owned();
    let members: Vec<PoolMember> = agents
        .db(|s| s.pool_members())
        .await?
        .into_iter()
        .filter(|m| m.role == role)
        .collect();
    let mut kept = 0;
    for member in &members {
        let stale = member.state == PoolMemberState::Ready
            && (member.image.as_deref() != Some(checked.image.as_str())
                || member.env_sha256 != env);
        if stale || kept >= pool.size {
            tracing::info!(instance = %member.instance_name, image = ?member.image, serving = %checked.image, "pool: draining a member of another image or environment, or beyond the size");
            drain(agents, &project, member).await;
        } else {
            kept += 1;
        }
    }
    let missing = pool.size.saturating_sub(kept);
    let launches = (0..missing).map(|_| launch(agents, pool, &project, &checked, &env));
    let results = futures_util::future::join_all(launches).await;
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(drop)
}

/// Launches one member and marks it ready; on failure nothing of it is left.
async fn launch(
    agents: &Agents,
    pool: &Pool,
    project: &pika_incus::ProjectClient,
    checked: &Preflight,
    env: &str,
) -> Result<(), AgentError> {
    let name = incus_keys::pool_instance_name(&crate::agents::new_hex_id(6));
    let plan = agents.gateway_plan(pool.role)?;
    if plan.is_some() && checked.instance_type == pika_incus::InstanceType::VirtualMachine {
        return Err(AgentError::new(
            ErrorKind::Invalid,
            "the pool's image is a virtual machine; pika-server provisions gateways from container images only",
        ));
    }
    let listen = {
        let (name, role, env) = (name.clone(), pool.role.as_str().to_owned(), env.to_owned());
        let ports = plan.as_ref().map(|_| agents.gateway_ports.clone());
        let probe = project.client().is_local();
        agents
            .db(move |s| {
                let avoid = ports
                    .as_ref()
                    .map(|ports| crate::agents::port_avoid(probe, ports.address, Vec::new()));
                let ports = ports
                    .as_ref()
                    .zip(avoid.as_ref())
                    .map(|(p, a)| (p, a as PortAvoid<'_>));
                s.pool_launching(&name, &role, &env, ports)
            })
            .await?
    };
    let gateway = match (&plan, listen) {
        (Some(plan), Some(listen)) => Some(GatewayLaunch {
            listen,
            role: plan.role,
            file: plan.file.clone(),
        }),
        _ => None,
    };
    let labels = [
        (incus_keys::SERVER_ID_KEY, agents.server_id()),
        (incus_keys::POOL_KEY, pool.role.as_str()),
    ];
    let created = {
        let _slot = agents.slot().await?;
        create_labelled(
            project,
            &pool.target,
            checked,
            &name,
            &labels,
            gateway.as_ref(),
        )
        .await
    };
    let image = match created {
        Ok(_) => project.get_instance(&name).await.map(|i| {
            i.config
                .get("volatile.base_image")
                .cloned()
                .unwrap_or_default()
        }),
        Err(err) => Err(err),
    };
    match image {
        Ok(image) => {
            let name_owned = name.clone();
            if agents
                .db(move |s| s.pool_ready(&name_owned, &image))
                .await?
            {
                tracing::info!(instance = %name, role = %pool.role, "pool: member ready");
            }
            Ok(())
        }
        Err(err) => {
            // create_labelled removed a half-made instance; the rows go too.
            let _ = remove_instance(project, &name).await;
            let name_owned = name.clone();
            let _ = agents
                .db(move |s| {
                    s.pool_remove(&name_owned)?;
                    s.forget_created(&name_owned)
                })
                .await;
            Err(AgentError::incus(
                &err,
                format!("launching pool member {name}"),
            ))
        }
    }
}

/// One health check per pool: size, ready members per image, launching ones, refill errors.
pub(crate) async fn health(agents: &Agents) -> Vec<(String, Result<String, String>)> {
    if agents.pool.is_empty() {
        return Vec::new();
    }
    let members = match agents.db(|s| s.pool_members()).await {
        Ok(members) => members,
        Err(err) => return vec![("pool".into(), Err(err.message))],
    };
    agents
        .pool
        .pools
        .iter()
        .map(|pool| {
            let role = pool.role.as_str();
            let mut per_image: BTreeMap<&str, usize> = BTreeMap::new();
            let mut launching = 0;
            for member in members.iter().filter(|m| m.role == role) {
                match member.state {
                    PoolMemberState::Ready => {
                        *per_image
                            .entry(member.image.as_deref().unwrap_or("?"))
                            .or_default() += 1
                    }
                    PoolMemberState::Launching => launching += 1,
                }
            }
            let ready: usize = per_image.values().sum();
            let images = per_image
                .iter()
                .map(|(image, n)| format!("{}: {n}", &image[..image.len().min(12)]))
                .collect::<Vec<_>>()
                .join(", ");
            let detail = format!(
                "{role}: size {}, ready {ready} (images {{{images}}}), launching {launching}",
                pool.size
            );
            let status = pool.status.lock().unwrap_or_else(|p| p.into_inner());
            let result = match &status.error {
                None => Ok(detail),
                Some(error) => {
                    let next = status
                        .retry_at
                        .map(|at| at.saturating_duration_since(Instant::now()).as_secs())
                        .unwrap_or(0);
                    Err(format!(
                        "{detail}; refill failed {} time(s), next attempt in {next} s: {error}",
                        status.failures
                    ))
                }
            };
            (format!("pool.{role}"), result)
        })
        .collect()
}
