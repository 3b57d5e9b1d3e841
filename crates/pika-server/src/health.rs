//! `GET /v1/health`: the configuration is complete, Incus answers, the defaults' objects exist,
//! what the alias serves, and how the cluster members and warm pools fare.

use std::time::{Duration, Instant};

use pika_managed_agent_contract::{HealthCheck, HealthReport};

use crate::agents::Agents;
use crate::incus::{PreflightError, preflight};
use crate::params::resolved_incus_params;

/// How long a health report is reused: health checks cost several Incus calls.
pub const HEALTH_CACHE: Duration = Duration::from_secs(1);

impl Agents {
    /// The health report, computed at most once per [`HEALTH_CACHE`].
    pub async fn health(&self) -> HealthReport {
        let mut cache = self.health.lock().await;
        if let Some((at, report)) = cache.as_ref()
            && at.elapsed() < HEALTH_CACHE
        {
            return report.clone();
        }
        let report = self.check_health().await;
        *cache = Some((Instant::now(), report.clone()));
        report
    }

    /// The configuration is complete, Incus answers, and the defaults' project, profile, storage
    /// pool and image alias exist.
    async fn check_health(&self) -> HealthReport {
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
        let (reachable, clustered) = match client.server_info().await {
            Ok(info) => (
                check(
                    "incus",
                    Ok(format!(
                        "{} (incus {}, auth {})",
                        client.endpoint(),
                        info.environment.server_version,
                        info.auth
                    )),
                ),
                info.environment.server_clustered,
            ),
            Err(err) => (check("incus", Err(err.to_string())), false),
        };
        if !reachable {
            return report(checks);
        }
        if clustered {
            check(
                "cluster",
                crate::members::health_detail(self, &client).await,
            );
        }
        let project = client.in_project(resolved.project.clone());
        let objects_exist = match preflight(&project, &resolved, self.cluster_group(&resolved))
            .await
        {
            Ok(_) => check(
                "incus_objects",
                Ok(format!(
                    "project {}, profile {}, storage pool {} and image alias {} exist",
                    resolved.project, resolved.profile, resolved.storage_pool, resolved.image_alias
                )),
            ),
            Err(PreflightError::Missing(_, message)) => check("incus_objects", Err(message)),
            Err(PreflightError::Incus(err)) => check("incus_objects", Err(err.to_string())),
        };
        if objects_exist {
            check(
                "image",
                serving_image(&project, &resolved.image_alias).await,
            );
        }
        for (name, result) in crate::pool::health(self).await {
            check(&name, result);
        }
        report(checks)
    }
}

/// What the alias serves and who built it (the image's `pika.*` provenance), for the health details.
async fn serving_image(project: &pika_incus::ProjectClient, alias: &str) -> Result<String, String> {
    let target = project
        .get_image_alias(alias)
        .await
        .map_err(|e| e.to_string())?
        .target;
    let image = project
        .get_image(&target)
        .await
        .map_err(|e| e.to_string())?;
    let provenance = pika_incus::ImageProvenance::from_properties(&image.properties);
    Ok(format!(
        "alias {alias} -> {target} ({})",
        provenance.describe()
    ))
}

fn report(checks: Vec<HealthCheck>) -> HealthReport {
    HealthReport {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}
