//! The watcher of a running server: agents whose instance vanished become `lost` ([`vanished`]),
//! and agents on Incus cluster members that go offline such an agent becomes `unreachable` (never
//! deleted, never `lost`: its instance still exists, Incus lists it on that member), and `running`
//! again once the member is back and the instance runs. The location column follows the instance
//! when it moves (e.g. an evacuation).
//!
//! Scope, as for reconciliation: only the (endpoint, project) pairs the operator configured. An
//! endpoint that is not a cluster is left alone.

use std::collections::HashMap;
use std::time::Duration;

use pika_incus::{ClusterMember, IncusClient, Instance};
use pika_managed_agent_contract::{AgentRecord, AgentState};

use crate::agents::Agents;
use crate::endpoint::Endpoint;
use crate::error::AgentError;

/// What one check changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MemberCheck {
    pub unreachable: usize,
    pub back: usize,
    pub moved: usize,
}

/// Checks every `interval` until the process ends (a zero interval never checks).
pub async fn watch(agents: &Agents, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match vanished(agents).await {
            Ok(0) => {}
            Ok(lost) => tracing::warn!(lost, "agents whose instance vanished marked lost"),
            Err(err) => tracing::warn!(error = %err.message, "checking agent instances"),
        }
        match check(agents).await {
            Ok(changed) if changed != MemberCheck::default() => {
                tracing::info!(?changed, "cluster members checked")
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err.message, "checking cluster members"),
        }
    }
}

/// A client of each configured endpoint, with the endpoint; one that cannot be set up is
/// skipped (the next check tries again).
fn clients(agents: &Agents) -> impl Iterator<Item = (Option<&Endpoint>, IncusClient)> {
    agents
        .policy
        .endpoints()
        .filter_map(|(endpoint, insecure)| {
            let client = agents
                .connector
                .client(endpoint.map(Endpoint::as_str), insecure)
                .ok()?;
            Some((endpoint, client))
        })
}

/// Marks `running` and `unreachable` agents whose instance is no longer listed `lost`, while the
/// server runs (startup reconciliation does the same once). The rows are read before the
/// instances are listed, and the update is guarded by state *and* instance name, so an agent
/// created, reprovisioned or deleted meanwhile is never marked. Only the configured (endpoint,
/// project) pairs; a project that cannot be listed is skipped (an outage is not a loss).
pub async fn vanished(agents: &Agents) -> Result<usize, AgentError> {
    let rows = agents.db(|s| s.list(None)).await?;
    let mut lost = 0;
    for (endpoint, client) in clients(agents) {
        let endpoint = endpoint.map(Endpoint::to_string);
        for project in agents.policy.projects() {
            let in_scope: Vec<&AgentRecord> = rows
                .iter()
                .filter(|row| {
                    matches!(row.state, AgentState::Running | AgentState::Unreachable)
                        && row.incus.endpoint == endpoint
                        && row.incus.project.as_deref() == Some(project)
                })
                .collect();
            if in_scope.is_empty() {
                continue;
            }
            let instances = match client.in_project(project).list_instances().await {
                Ok(instances) => instances,
                Err(err) => {
                    tracing::debug!(%project, error = %err, "listing instances");
                    continue;
                }
            };
            let names: std::collections::HashSet<&str> =
                instances.iter().map(|i| i.name.as_str()).collect();
            let gone: Vec<&AgentRecord> = in_scope
                .into_iter()
                .filter(|row| !names.contains(row.instance_name.as_str()))
                .collect();
            for row in gone {
                let message = format!(
                    "instance {} disappeared from project {project}; reprovision or delete the agent",
                    row.instance_name
                );
                let (id, name) = (row.id.clone(), row.instance_name.clone());
                let marked = agents
                    .db(move |s| s.mark_lost(&id, &name, &message))
                    .await?;
                if marked {
                    tracing::warn!(agent = %row.id, instance = %row.instance_name, "lost: its instance vanished");
                    lost += 1;
                }
            }
        }
    }
    Ok(lost)
}

/// One pass over the configured clustered endpoints.
pub async fn check(agents: &Agents) -> Result<MemberCheck, AgentError> {
    let mut changed = MemberCheck::default();
    let rows = agents.db(|s| s.list(None)).await?;
    for (endpoint, client) in clients(agents) {
        let members = match client.cluster_members().await {
            Ok(members) if !members.is_empty() => members,
            Ok(_) => continue,
            Err(err) => {
                tracing::debug!(error = %err, "cluster members unavailable");
                continue;
            }
        };
        let offline: HashMap<&str, &ClusterMember> = members
            .iter()
            .filter(|m| !m.is_online())
            .map(|m| (m.server_name.as_str(), m))
            .collect();
        let endpoint = endpoint.map(Endpoint::to_string);
        for project in agents.policy.projects() {
            let instances = match client.in_project(project).list_instances().await {
                Ok(instances) => instances,
                Err(err) => {
                    tracing::debug!(%project, error = %err, "listing instances");
                    continue;
                }
            };
            let by_name: HashMap<&str, &Instance> =
                instances.iter().map(|i| (i.name.as_str(), i)).collect();
            let in_scope = rows.iter().filter(|row| {
                row.incus.endpoint == endpoint && row.incus.project.as_deref() == Some(project)
            });
            for row in in_scope {
                if let Some(instance) = by_name.get(row.instance_name.as_str()) {
                    settle(agents, row, instance, &offline, &mut changed).await?;
                }
            }
        }
    }
    Ok(changed)
}

/// Brings one row in line with its instance and the member it is on.
async fn settle(
    agents: &Agents,
    row: &AgentRecord,
    instance: &Instance,
    offline: &HashMap<&str, &ClusterMember>,
    changed: &mut MemberCheck,
) -> Result<(), AgentError> {
    if !matches!(row.state, AgentState::Running | AgentState::Unreachable) {
        return Ok(());
    }
    let id = row.id.clone();
    if row.location.as_deref() != Some(instance.location.as_str()) && !instance.location.is_empty()
    {
        let location = instance.location.clone();
        agents
            .db(move |s| s.set_location(&id, Some(&location)))
            .await?;
        changed.moved += 1;
    }
    let id = row.id.clone();
    match offline.get(instance.location.as_str()) {
        Some(member) if row.state == AgentState::Running => {
            let message = format!(
                "cluster member {} is {} ({}); the agent is kept and comes back with it",
                member.server_name, member.status, member.message
            );
            let moved = agents
                .db(move |s| {
                    s.transition(
                        &id,
                        &[AgentState::Running],
                        AgentState::Unreachable,
                        Some(&message),
                    )
                })
                .await?;
            if moved {
                tracing::warn!(agent = %row.id, member = %member.server_name, "unreachable: its member is offline");
                changed.unreachable += 1;
            }
        }
        None if row.state == AgentState::Unreachable && instance.is_running() => {
            let moved = agents
                .db(move |s| {
                    s.transition(&id, &[AgentState::Unreachable], AgentState::Running, None)
                })
                .await?;
            if moved {
                tracing::info!(agent = %row.id, member = %instance.location, "running again: its member is back");
                changed.back += 1;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The health detail of a cluster (`client`, whose `GET /1.0` said it is one): its members'
/// status and the agents they make unreachable.
pub async fn health_detail(
    agents: &Agents,
    client: &pika_incus::IncusClient,
) -> Result<String, String> {
    let members = client
        .cluster_members()
        .await
        .map_err(|err| format!("listing cluster members: {err}"))?;
    let unreachable = agents
        .db(|s| s.list(None))
        .await
        .map(|rows| {
            rows.iter()
                .filter(|r| r.state == AgentState::Unreachable)
                .count()
        })
        .unwrap_or_default();
    let listed: Vec<String> = members
        .iter()
        .map(|m| {
            if m.is_online() {
                format!("{} {}", m.server_name, m.status)
            } else {
                format!("{} {} ({})", m.server_name, m.status, m.message)
            }
        })
        .collect();
    let offline = members.iter().filter(|m| !m.is_online()).count();
    let verdict = if offline == 0 { "ok" } else { "degraded" };
    Ok(format!(
        "cluster of {} members, {verdict}: {}; {unreachable} agents unreachable",
        members.len(),
        listed.join(", ")
    ))
}
