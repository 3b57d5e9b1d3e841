//! Where an Incus job runs: role, image alias, project and profile, from the job and the
//! `PIKACI_REMOTE_LINUX_VM_INCUS_*` environment. The Incus-specific names of jerichoci live here.
//!
//! Every env-reading function has a `_from(lookup)` twin taking the lookup explicitly, so tests do not
//! touch the process environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pika_incus_guest_role::IncusGuestRole;

use crate::job::{JobRuntimeConfig, JobSpec};
use crate::naming::instance_name;
use crate::record::RemoteLinuxVmImageRecord;

/// Overrides the guest role of every Incus job.
pub const GUEST_ROLE_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_GUEST_ROLE";
/// Overrides the image alias (default: the role's `default_image_alias()`).
pub const IMAGE_ALIAS_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_IMAGE_ALIAS";
/// Incus project the CI guests run in.
pub const PROJECT_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_PROJECT";
/// Incus profile the CI guests are created with.
pub const PROFILE_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_PROFILE";
/// How long a guest may take to become ready by its role's readiness, in seconds.
pub const READY_TIMEOUT_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_READY_TIMEOUT_SECS";
/// Incus cluster group the CI guests are placed in, overriding the role's `cluster-group` (used
/// only when the Incus server is a cluster).
pub const CLUSTER_GROUP_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_CLUSTER_GROUP";
/// An Incus HTTPS endpoint (`https://host:8443`) instead of the local socket.
pub const ENDPOINT_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_ENDPOINT";
/// The TLS client certificate (PEM file) presented to [`ENDPOINT_ENV`].
pub const CLIENT_CERT_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_CLIENT_CERT_PATH";
/// Its key (PEM file).
pub const CLIENT_KEY_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_CLIENT_KEY_PATH";
/// The endpoint's certificate (PEM file), pinned; without it the system roots verify it.
pub const SERVER_CERT_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_SERVER_CERT_PATH";
/// Host directories for the role's optional mounts, `NAME=DIR` separated by commas
/// (`cargo-home=/var/cache/pikaci/cargo-home,cargo-target=/var/cache/pikaci/cargo-target`):
/// each names an optional mount of the role (roles.toml `optional = true`) and an absolute
/// directory of the Incus host. An optional mount without one is not attached.
pub const MOUNT_SOURCES_ENV: &str = "PIKACI_REMOTE_LINUX_VM_INCUS_MOUNT_SOURCES";
/// The Incus unix socket (default: `pika_incus::api::DEFAULT_UNIX_SOCKET`).
pub const INCUS_SOCKET_ENV: &str = "INCUS_SOCKET";
/// Project used when [`PROJECT_ENV`] is unset.
pub const DEFAULT_PROJECT: &str = "pika-managed-agents";
/// Profile used when [`PROFILE_ENV`] is unset.
pub const DEFAULT_PROFILE: &str = "pika-agent-dev";

/// The process environment as a lookup.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A variable's trimmed value, `None` when unset or blank.
fn lookup_trimmed(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Why an Incus job's placement could not be resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteIncusError {
    #[error("{var}={value:?} is not a guest role; valid roles: {valid}")]
    InvalidGuestRoleEnv {
        var: &'static str,
        value: String,
        valid: String,
    },
    #[error("{var}: {detail}")]
    InvalidReadyTimeout { var: &'static str, detail: String },
    #[error("job `{job}` runs on the {runtime} runtime, not on Incus; it has no guest role")]
    NotAnIncusJob { job: String, runtime: &'static str },
    #[error("{var}: {detail}")]
    InvalidMountSources { var: &'static str, detail: String },
}

/// Parses [`MOUNT_SOURCES_ENV`]'s value for `role`: every entry `NAME=DIR` names one of the role's
/// optional mounts (once) and an absolute directory.
/// The names of `role`'s optional mounts (caches), the ones a mount source may name.
fn optional_mount_names(role: IncusGuestRole) -> Vec<&'static str> {
    role.mounts()
        .iter()
        .filter(|m| m.optional)
        .map(|m| m.name)
        .collect()
}

pub fn parse_mount_sources(
    role: IncusGuestRole,
    value: &str,
) -> Result<BTreeMap<String, PathBuf>, RemoteIncusError> {
    let invalid = |detail: String| RemoteIncusError::InvalidMountSources {
        var: MOUNT_SOURCES_ENV,
        detail,
    };
    let optional = optional_mount_names(role);
    let valid = if optional.is_empty() {
        format!("role {role} has no optional mounts")
    } else {
        format!("optional mounts of role {role}: {}", optional.join(", "))
    };
    let mut sources = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, dir)) = entry.split_once('=') else {
            return Err(invalid(format!("`{entry}` is not NAME=DIR")));
        };
        let (name, dir) = (name.trim(), dir.trim());
        if !optional.contains(&name) {
            return Err(invalid(format!(
                "`{name}` is not an optional mount ({valid})"
            )));
        }
        if !Path::new(dir).is_absolute() {
            return Err(invalid(format!(
                "the directory of `{name}` must be absolute: `{dir}`"
            )));
        }
        if sources
            .insert(name.to_owned(), PathBuf::from(dir))
            .is_some()
        {
            return Err(invalid(format!("`{name}` is given twice")));
        }
    }
    Ok(sources)
}

/// The guest role an Incus job runs in: [`GUEST_ROLE_ENV`] (trimmed, non-empty) wins, otherwise the
/// job's own Incus config. A non-Incus job or an invalid env value is an error.
pub fn remote_linux_vm_incus_guest_role(job: &JobSpec) -> Result<IncusGuestRole, RemoteIncusError> {
    remote_linux_vm_incus_guest_role_from(job, process_env)
}

/// [`remote_linux_vm_incus_guest_role`] with an explicit env lookup.
pub fn remote_linux_vm_incus_guest_role_from(
    job: &JobSpec,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<IncusGuestRole, RemoteIncusError> {
    let JobRuntimeConfig::Incus(config) = &job.runtime else {
        return Err(RemoteIncusError::NotAnIncusJob {
            job: job.id.clone(),
            runtime: job.runtime.kind(),
        });
    };
    match lookup_trimmed(&lookup, GUEST_ROLE_ENV) {
        Some(value) => {
            value
                .parse::<IncusGuestRole>()
                .map_err(|_| RemoteIncusError::InvalidGuestRoleEnv {
                    var: GUEST_ROLE_ENV,
                    value,
                    valid: IncusGuestRole::valid_ids(),
                })
        }
        None => Ok(config.guest_role),
    }
}

/// The image alias for `role`: [`IMAGE_ALIAS_ENV`] (trimmed, non-empty) or the role's default alias.
pub fn remote_linux_vm_incus_image_alias(role: IncusGuestRole) -> String {
    remote_linux_vm_incus_image_alias_from(role, process_env)
}

/// [`remote_linux_vm_incus_image_alias`] with an explicit env lookup.
pub fn remote_linux_vm_incus_image_alias_from(
    role: IncusGuestRole,
    lookup: impl Fn(&str) -> Option<String>,
) -> String {
    lookup_trimmed(&lookup, IMAGE_ALIAS_ENV)
        .unwrap_or_else(|| role.default_image_alias().to_owned())
}

/// Everything needed to place one Incus job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteIncusContext {
    pub guest_role: IncusGuestRole,
    pub project: String,
    pub profile: String,
    pub image_alias: String,
    /// Ephemeral instance name, from the run and job IDs (valid for Incus).
    pub instance_name: String,
    /// How long the guest may take to become ready ([`READY_TIMEOUT_ENV`]).
    pub ready_timeout: std::time::Duration,
    /// Cluster group to place the guest in: [`CLUSTER_GROUP_ENV`], else the role's.
    pub cluster_group: Option<String>,
    /// Host directories of the role's optional mounts that are attached ([`MOUNT_SOURCES_ENV`]).
    pub mount_sources: BTreeMap<String, PathBuf>,
}

impl RemoteIncusContext {
    /// Resolves the context of `job` in run `run_id` from the process environment.
    pub fn for_job(job: &JobSpec, run_id: &str) -> Result<Self, RemoteIncusError> {
        Self::for_job_from(job, run_id, process_env)
    }

    /// [`RemoteIncusContext::for_job`] with an explicit env lookup.
    pub fn for_job_from(
        job: &JobSpec,
        run_id: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, RemoteIncusError> {
        let guest_role = remote_linux_vm_incus_guest_role_from(job, &lookup)?;
        let ready_timeout = match lookup_trimmed(&lookup, READY_TIMEOUT_ENV) {
            None => pika_guest_launch::DEFAULT_READY_TIMEOUT,
            Some(value) => pika_guest_launch::parse_timeout_secs(&value).map_err(|detail| {
                RemoteIncusError::InvalidReadyTimeout {
                    var: READY_TIMEOUT_ENV,
                    detail,
                }
            })?,
        };
        Ok(Self {
            guest_role,
            project: lookup_trimmed(&lookup, PROJECT_ENV)
                .unwrap_or_else(|| DEFAULT_PROJECT.to_owned()),
            profile: lookup_trimmed(&lookup, PROFILE_ENV)
                .unwrap_or_else(|| DEFAULT_PROFILE.to_owned()),
            image_alias: remote_linux_vm_incus_image_alias_from(guest_role, &lookup),
            instance_name: instance_name(run_id, &job.id),
            ready_timeout,
            cluster_group: lookup_trimmed(&lookup, CLUSTER_GROUP_ENV)
                .or_else(|| guest_role.cluster_group().map(str::to_owned)),
            mount_sources: match lookup_trimmed(&lookup, MOUNT_SOURCES_ENV) {
                Some(value) => parse_mount_sources(guest_role, &value)?,
                None => BTreeMap::new(),
            },
        })
    }

    /// The role to record for the image: `Some` only when the alias is the role's default alias. A
    /// custom alias may point at any image, so it is not attributed to the role.
    pub fn recorded_guest_role(&self) -> Option<IncusGuestRole> {
        self.guest_role
            .uses_default_image_alias(&self.image_alias)
            .then_some(self.guest_role)
    }

    /// The image record for this context with a fingerprint Incus reported (or `None`).
    pub fn image_record(&self, fingerprint: Option<String>) -> RemoteLinuxVmImageRecord {
        RemoteLinuxVmImageRecord {
            guest_role: self.recorded_guest_role(),
            project: self.project.clone(),
            alias: self.image_alias.clone(),
            fingerprint,
            provenance: None,
        }
    }
}

/// Asks Incus which image the context's alias points at and returns the image record: the
/// fingerprint as Incus reports it, `guest_role` from [`RemoteIncusContext::recorded_guest_role`].
pub async fn load_remote_incus_image_record(
    incus: &pika_incus::IncusClient,
    context: &RemoteIncusContext,
) -> Result<RemoteLinuxVmImageRecord, pika_incus::Error> {
    let alias = incus
        .in_project(&context.project)
        .get_image_alias(&context.image_alias)
        .await?;
    let provenance = image_provenance(&incus.in_project(&context.project), &alias.target).await;
    Ok(RemoteLinuxVmImageRecord {
        provenance,
        ..context.image_record(Some(alias.target))
    })
}

/// The provenance of image `fingerprint`, `None` when it carries none or cannot be read (the
/// record is still written).
pub async fn image_provenance(
    project: &pika_incus::ProjectClient,
    fingerprint: &str,
) -> Option<pika_incus::ImageProvenance> {
    let image = project.get_image(fingerprint).await.ok()?;
    let provenance = pika_incus::ImageProvenance::from_properties(&image.properties);
    (provenance != pika_incus::ImageProvenance::default()).then_some(provenance)
}

/// The Incus client: [`ENDPOINT_ENV`] over HTTPS with the client certificate of
/// [`CLIENT_CERT_ENV`] / [`CLIENT_KEY_ENV`] (and [`SERVER_CERT_ENV`] pinned, when set), else the
/// local socket ([`INCUS_SOCKET_ENV`] or Incus's default socket).
pub fn incus_client_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> pika_incus::Result<pika_incus::IncusClient> {
    let Some(endpoint) = lookup_trimmed(&lookup, ENDPOINT_ENV) else {
        let socket = lookup_trimmed(&lookup, INCUS_SOCKET_ENV)
            .unwrap_or_else(|| pika_incus::api::DEFAULT_UNIX_SOCKET.to_owned());
        return pika_incus::IncusClient::unix(socket);
    };
    let read = |var: &str| -> pika_incus::Result<Option<String>> {
        let Some(path) = lookup_trimmed(&lookup, var) else {
            return Ok(None);
        };
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|err| pika_incus::Error::Config {
                what: format!("{ENDPOINT_ENV}={endpoint}"),
                message: format!("{var}={path}: {err}"),
            })
    };
    let required = |var: &str| -> pika_incus::Result<String> {
        read(var)?.ok_or_else(|| pika_incus::Error::Config {
            what: format!("{ENDPOINT_ENV}={endpoint}"),
            message: format!("{var} is not set (an HTTPS endpoint needs a client certificate)"),
        })
    };
    pika_incus::IncusClient::https(pika_incus::HttpsConfig {
        client_cert_pem: required(CLIENT_CERT_ENV)?,
        client_key_pem: required(CLIENT_KEY_ENV)?,
        server_cert_pem: read(SERVER_CERT_ENV)?,
        insecure_tls: false,
        endpoint,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn runner_job() -> JobSpec {
        JobSpec::incus("unit", "true", IncusGuestRole::PikaciRunner)
    }

    /// The role of the runner job with [`GUEST_ROLE_ENV`] set to `value`.
    fn role_with_env(value: &str) -> Result<IncusGuestRole, RemoteIncusError> {
        remote_linux_vm_incus_guest_role_from(&runner_job(), env(&[(GUEST_ROLE_ENV, value)]))
    }

    /// The context uses `role`'s own alias and so records the role.
    fn assert_alias_recorded(ctx: &RemoteIncusContext, role: IncusGuestRole) {
        assert_eq!(ctx.image_alias, role.default_image_alias());
        assert_eq!(ctx.recorded_guest_role(), Some(role));
    }

    fn assert_runner_alias_recorded(ctx: &RemoteIncusContext) {
        assert_alias_recorded(ctx, IncusGuestRole::PikaciRunner);
    }

    #[test]
    fn canonical_alias_records_the_role() {
        let ctx = RemoteIncusContext::for_job_from(&runner_job(), "run1", env(&[])).unwrap();
        assert_runner_alias_recorded(&ctx);
        assert_eq!(ctx.project, DEFAULT_PROJECT);
        assert_eq!(ctx.profile, DEFAULT_PROFILE);
        let rec = ctx.image_record(Some("f".into()));
        assert_eq!(rec.guest_role, Some(IncusGuestRole::PikaciRunner));
        assert_eq!(
            rec.alias,
            IncusGuestRole::PikaciRunner.default_image_alias()
        );
    }

    #[test]
    fn canonical_alias_with_padding_still_records_the_role() {
        let padded = format!("  {}  ", IncusGuestRole::PikaciRunner.default_image_alias());
        let ctx = RemoteIncusContext::for_job_from(
            &runner_job(),
            "r",
            env(&[(IMAGE_ALIAS_ENV, &padded)]),
        )
        .unwrap();
        assert_runner_alias_recorded(&ctx);
    }

    #[test]
    fn custom_alias_is_not_attributed_to_the_role() {
        let ctx = RemoteIncusContext::for_job_from(
            &runner_job(),
            "run1",
            env(&[(IMAGE_ALIAS_ENV, "my/experimental-runner")]),
        )
        .unwrap();
        assert_eq!(ctx.image_alias, "my/experimental-runner");
        assert_eq!(ctx.guest_role, IncusGuestRole::PikaciRunner);
        assert_eq!(ctx.recorded_guest_role(), None);
        assert_eq!(ctx.image_record(None).guest_role, None);
    }

    #[test]
    fn another_roles_default_alias_is_not_attributed_either() {
        let other = IncusGuestRole::ManagedOpenclaw.default_image_alias();
        let ctx =
            RemoteIncusContext::for_job_from(&runner_job(), "r", env(&[(IMAGE_ALIAS_ENV, other)]))
                .unwrap();
        assert_eq!(ctx.recorded_guest_role(), None);
    }

    #[test]
    fn role_env_wins_over_the_job_and_is_trimmed() {
        let role = role_with_env("  managed-openclaw\n").unwrap();
        assert_eq!(role, IncusGuestRole::ManagedOpenclaw);
        let ctx = RemoteIncusContext::for_job_from(
            &runner_job(),
            "r",
            env(&[(GUEST_ROLE_ENV, "managed-openclaw")]),
        )
        .unwrap();
        assert_alias_recorded(&ctx, IncusGuestRole::ManagedOpenclaw);
    }

    #[test]
    fn mount_sources_name_optional_mounts_with_absolute_dirs() {
        let role = IncusGuestRole::PikaciRunner;
        let optional = optional_mount_names(role);
        assert!(!optional.is_empty(), "the runner has optional cache mounts");
        let value = optional
            .iter()
            .map(|name| format!(" {name} = /var/cache/{name} "))
            .collect::<Vec<_>>()
            .join(",");
        let ctx = RemoteIncusContext::for_job_from(
            &runner_job(),
            "r",
            env(&[(MOUNT_SOURCES_ENV, &value)]),
        )
        .unwrap();
        assert_eq!(
            ctx.mount_sources
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            optional
        );
        assert_eq!(
            ctx.mount_sources[optional[0]],
            PathBuf::from(format!("/var/cache/{}", optional[0]))
        );
        let unset = RemoteIncusContext::for_job_from(&runner_job(), "r", env(&[])).unwrap();
        assert!(unset.mount_sources.is_empty());

        for (value, fragment) in [
            (
                "snapshot=/x".to_owned(),
                "`snapshot` is not an optional mount".to_owned(),
            ),
            (
                "nope=/x".to_owned(),
                format!("optional mounts of role {role}: "),
            ),
            (
                format!("{}=relative", optional[0]),
                "must be absolute".to_owned(),
            ),
            (
                format!("{0}=/a,{0}=/b", optional[0]),
                "given twice".to_owned(),
            ),
            ("no-equals".to_owned(), "is not NAME=DIR".to_owned()),
        ] {
            let err = RemoteIncusContext::for_job_from(
                &runner_job(),
                "r",
                env(&[(MOUNT_SOURCES_ENV, &value)]),
            )
            .unwrap_err()
            .to_string();
            assert!(err.starts_with(MOUNT_SOURCES_ENV), "{err}");
            assert!(err.contains(&fragment), "{value}: {err}");
        }
    }

    #[test]
    fn blank_role_env_falls_back_to_the_job() {
        let role = role_with_env("   ").unwrap();
        assert_eq!(role, IncusGuestRole::PikaciRunner);
    }

    #[test]
    fn invalid_role_env_is_rejected_naming_the_variable_and_valid_roles() {
        let err = role_with_env("runner").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(GUEST_ROLE_ENV), "{msg}");
        assert!(msg.contains("\"runner\""), "{msg}");
        for role in IncusGuestRole::ALL {
            assert!(msg.contains(role.as_str()), "{msg} should list {role}");
        }
        assert!(
            RemoteIncusContext::for_job_from(&runner_job(), "r", env(&[(GUEST_ROLE_ENV, "x")]))
                .is_err()
        );
    }

    #[test]
    fn host_job_has_no_guest_role_and_the_error_names_it() {
        let err = remote_linux_vm_incus_guest_role_from(&JobSpec::host("lint", "true"), env(&[]))
            .unwrap_err();
        assert_eq!(
            err,
            RemoteIncusError::NotAnIncusJob {
                job: "lint".into(),
                runtime: "host"
            }
        );
        assert!(err.to_string().contains("`lint`"));
    }

    #[test]
    fn ready_timeout_comes_from_env_and_bad_values_name_the_variable() {
        let ctx = RemoteIncusContext::for_job_from(&runner_job(), "r", env(&[])).unwrap();
        assert_eq!(ctx.ready_timeout, pika_guest_launch::DEFAULT_READY_TIMEOUT);
        let ctx =
            RemoteIncusContext::for_job_from(&runner_job(), "r", env(&[(READY_TIMEOUT_ENV, "7")]))
                .unwrap();
        assert_eq!(ctx.ready_timeout, std::time::Duration::from_secs(7));
        for bad in ["0", "soon", "-1"] {
            let err = RemoteIncusContext::for_job_from(
                &runner_job(),
                "r",
                env(&[(READY_TIMEOUT_ENV, bad)]),
            )
            .unwrap_err();
            assert!(err.to_string().contains(READY_TIMEOUT_ENV), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn the_cluster_group_env_overrides_the_roles() {
        let job = runner_job();
        let ctx = RemoteIncusContext::for_job_from(&job, "r", env(&[])).unwrap();
        assert_eq!(
            ctx.cluster_group.as_deref(),
            ctx.guest_role.cluster_group(),
            "without the env the role's roles.toml fact decides"
        );
        let ctx = RemoteIncusContext::for_job_from(&job, "r", env(&[(CLUSTER_GROUP_ENV, " ci ")]))
            .unwrap();
        assert_eq!(ctx.cluster_group.as_deref(), Some("ci"));
    }

    #[test]
    fn an_https_endpoint_without_a_client_certificate_names_the_variable() {
        let err = incus_client_from(env(&[(ENDPOINT_ENV, "https://127.0.0.1:8443")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains(CLIENT_CERT_ENV), "{err}");
        let err = incus_client_from(env(&[
            (ENDPOINT_ENV, "https://127.0.0.1:8443"),
            (CLIENT_CERT_ENV, "/nonexistent/client.crt"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/client.crt"), "{err}");
    }

    #[test]
    fn project_and_profile_come_from_env() {
        let ctx = RemoteIncusContext::for_job_from(
            &runner_job(),
            "r",
            env(&[(PROJECT_ENV, " ci "), (PROFILE_ENV, "ci-profile")]),
        )
        .unwrap();
        assert_eq!(ctx.project, "ci");
        assert_eq!(ctx.profile, "ci-profile");
    }
}
