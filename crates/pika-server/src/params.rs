//! Incus provisioning parameters: the defaults from the environment, their merge with a request,
//! and the resolved (complete, validated) parameters an instance is created with.

use std::fmt;

use pika_managed_agent_contract::{IncusGuestRole, IncusProvisionParams};

use crate::endpoint::Endpoint;
use crate::incus_keys::env;

/// The only role the managed runtime provisions today.
pub const MANAGED_ROLE: IncusGuestRole = IncusGuestRole::ManagedOpenclaw;

/// Why a request's parameters cannot be used (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "managed runtime currently only supports incus.guest_role = {}",
        MANAGED_ROLE.as_str()
    )]
    UnsupportedRole(IncusGuestRole),
    #[error("incus.{field} is required: pass it in the request or set {var} on the server")]
    Missing {
        field: &'static str,
        var: &'static str,
    },
    #[error("incus.{field} = {value:?} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

fn non_blank(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Whether a request carries any Incus parameter at all (the guest role counts).
pub fn incus_params_provided(params: &IncusProvisionParams) -> bool {
    let IncusProvisionParams {
        guest_role,
        endpoint,
        project,
        profile,
        storage_pool,
        image_alias,
        insecure_tls,
    } = params;
    guest_role.is_some()
        || insecure_tls.is_some()
        || [endpoint, project, profile, storage_pool, image_alias]
            .into_iter()
            .any(|field| non_blank(field.as_deref()).is_some())
}

/// Field-wise merge: a present, non-blank field of `requested` wins over `base`.
///
/// Used both for "env defaults + request" and, on reprovision, for "stored params + request".
pub fn merge_incus_provision_params(
    base: &IncusProvisionParams,
    requested: &IncusProvisionParams,
) -> IncusProvisionParams {
    let pick = |requested: &Option<String>, base: &Option<String>| {
        non_blank(requested.as_deref()).or_else(|| non_blank(base.as_deref()))
    };
    IncusProvisionParams {
        guest_role: requested.guest_role.or(base.guest_role),
        endpoint: pick(&requested.endpoint, &base.endpoint),
        project: pick(&requested.project, &base.project),
        profile: pick(&requested.profile, &base.profile),
        storage_pool: pick(&requested.storage_pool, &base.storage_pool),
        image_alias: pick(&requested.image_alias, &base.image_alias),
        insecure_tls: requested.insecure_tls.or(base.insecure_tls),
    }
}

/// Complete, validated parameters of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedIncusParams {
    pub guest_role: IncusGuestRole,
    /// `None`: the local Unix socket.
    pub endpoint: Option<String>,
    pub project: String,
    pub profile: String,
    pub storage_pool: String,
    pub image_alias: String,
    pub insecure_tls: bool,
}

impl ResolvedIncusParams {
    /// The role the instance really runs: `Some` only when the alias is the role's default alias
    /// (a custom alias may hold any image, so no role is claimed for it).
    pub fn materialized_guest_role(&self) -> Option<IncusGuestRole> {
        self.guest_role
            .uses_default_image_alias(&self.image_alias)
            .then_some(self.guest_role)
    }

    /// The parameters as stored in the row and returned in the agent record.
    pub fn materialized(&self) -> IncusProvisionParams {
        IncusProvisionParams {
            guest_role: self.materialized_guest_role(),
            endpoint: self.endpoint.clone(),
            project: Some(self.project.clone()),
            profile: Some(self.profile.clone()),
            storage_pool: Some(self.storage_pool.clone()),
            image_alias: Some(self.image_alias.clone()),
            insecure_tls: self.endpoint.as_ref().map(|_| self.insecure_tls),
        }
    }
}

impl fmt::Display for ResolvedIncusParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} project={} profile={} pool={} alias={} role={}",
            self.endpoint.as_deref().unwrap_or("local socket"),
            self.project,
            self.profile,
            self.storage_pool,
            self.image_alias,
            self.guest_role
        )
    }
}

/// Merges the env defaults with a request and validates the result.
///
/// The guest role defaults to managed-openclaw and any other role is rejected; the image alias
/// falls back to the role's default alias; missing project/profile/pool name the field and its
/// environment variable.
pub fn resolved_incus_params(
    defaults: &IncusProvisionParams,
    requested: &IncusProvisionParams,
) -> Result<ResolvedIncusParams, ParamsError> {
    let merged = merge_incus_provision_params(defaults, requested);
    let guest_role = merged.guest_role.unwrap_or(MANAGED_ROLE);
    if guest_role != MANAGED_ROLE {
        return Err(ParamsError::UnsupportedRole(guest_role));
    }
    let endpoint = merged
        .endpoint
        .as_deref()
        .map(|endpoint| {
            endpoint
                .parse::<Endpoint>()
                .map(|e| e.to_string())
                .map_err(|reason| ParamsError::Invalid {
                    field: "endpoint",
                    value: endpoint.to_owned(),
                    reason,
                })
        })
        .transpose()?;
    let required = |value: Option<String>, field: &'static str, var: &'static str| {
        let value = value.ok_or(ParamsError::Missing { field, var })?;
        check_name(field, &value)?;
        Ok::<_, ParamsError>(value)
    };
    let image_alias = merged
        .image_alias
        .unwrap_or_else(|| guest_role.default_image_alias().to_owned());
    check_name("image_alias", &image_alias)?;
    Ok(ResolvedIncusParams {
        guest_role,
        endpoint,
        project: required(merged.project, "project", env::PROJECT)?,
        profile: required(merged.profile, "profile", env::PROFILE)?,
        storage_pool: required(merged.storage_pool, "storage_pool", env::STORAGE_POOL)?,
        image_alias,
        insecure_tls: merged.insecure_tls.unwrap_or(false),
    })
}

/// Incus names travel in URLs and config: refuse control and format characters and absurd lengths.
fn check_name(field: &'static str, value: &str) -> Result<(), ParamsError> {
    crate::names::check_incus_name(value).map_err(|reason| ParamsError::Invalid {
        field,
        value: value.to_owned(),
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_defaults() -> IncusProvisionParams {
        IncusProvisionParams {
            project: Some("agents".into()),
            profile: Some("pika-agent".into()),
            storage_pool: Some("default".into()),
            ..Default::default()
        }
    }

    /// `requested` resolved against [`env_defaults`].
    fn resolve(requested: IncusProvisionParams) -> Result<ResolvedIncusParams, ParamsError> {
        resolved_incus_params(&env_defaults(), &requested)
    }

    #[test]
    fn role_is_preserved_in_materialized_params_with_default_alias() {
        let resolved = resolve(Default::default()).unwrap();
        assert_eq!(resolved.image_alias, MANAGED_ROLE.default_image_alias());
        assert_eq!(resolved.materialized_guest_role(), Some(MANAGED_ROLE));
        let materialized = resolved.materialized();
        assert_eq!(materialized.guest_role, Some(MANAGED_ROLE));
        assert_eq!(
            materialized.image_alias.as_deref(),
            Some(MANAGED_ROLE.default_image_alias())
        );
        assert_eq!(materialized.insecure_tls, None, "no endpoint, no TLS flag");
        // Explicitly requested role + default alias with surrounding blanks still materializes.
        let resolved = resolve(IncusProvisionParams {
            guest_role: Some(MANAGED_ROLE),
            image_alias: Some(format!(" {} ", MANAGED_ROLE.default_image_alias())),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(resolved.materialized().guest_role, Some(MANAGED_ROLE));
    }

    #[test]
    fn role_is_omitted_for_a_custom_alias() {
        let resolved = resolve(IncusProvisionParams {
            image_alias: Some("my/custom".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(resolved.guest_role, MANAGED_ROLE);
        assert_eq!(resolved.materialized_guest_role(), None);
        let value = serde_json::to_value(resolved.materialized()).unwrap();
        assert!(value.get("guest_role").is_none(), "{value}");
        assert_eq!(value["image_alias"], "my/custom");
    }

    #[test]
    fn other_roles_are_rejected_with_the_upstream_message() {
        for role in IncusGuestRole::ALL.iter().filter(|r| **r != MANAGED_ROLE) {
            let err = resolve(IncusProvisionParams {
                guest_role: Some(*role),
                ..Default::default()
            })
            .unwrap_err();
            assert_eq!(err, ParamsError::UnsupportedRole(*role));
            assert_eq!(
                err.to_string(),
                format!(
                    "managed runtime currently only supports incus.guest_role = {}",
                    IncusGuestRole::ManagedOpenclaw
                )
            );
        }
    }

    #[test]
    fn env_role_other_than_managed_is_rejected_at_resolution() {
        let Some(other) = IncusGuestRole::ALL.iter().find(|r| **r != MANAGED_ROLE) else {
            return;
        };
        let defaults = IncusProvisionParams {
            guest_role: Some(*other),
            ..env_defaults()
        };
        assert!(matches!(
            resolved_incus_params(&defaults, &Default::default()),
            Err(ParamsError::UnsupportedRole(_))
        ));
    }

    #[test]
    fn missing_fields_name_the_field_and_env_variable() {
        let err = resolved_incus_params(&Default::default(), &Default::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "incus.project is required: pass it in the request or set PIKA_AGENT_INCUS_PROJECT on the server"
        );
        let defaults = IncusProvisionParams {
            project: Some("p".into()),
            profile: Some("   ".into()),
            ..Default::default()
        };
        let err = resolved_incus_params(&defaults, &Default::default()).unwrap_err();
        assert_eq!(
            err,
            ParamsError::Missing {
                field: "profile",
                var: env::PROFILE
            }
        );
    }

    #[test]
    fn merge_prefers_present_request_fields_including_guest_role() {
        let stored = IncusProvisionParams {
            guest_role: None,
            image_alias: Some("my/custom".into()),
            ..env_defaults()
        };
        let requested = IncusProvisionParams {
            guest_role: Some(MANAGED_ROLE),
            profile: Some("bigger".into()),
            project: Some("  ".into()),
            ..Default::default()
        };
        let merged = merge_incus_provision_params(&stored, &requested);
        assert_eq!(merged.guest_role, Some(MANAGED_ROLE));
        assert_eq!(merged.profile.as_deref(), Some("bigger"));
        assert_eq!(merged.project.as_deref(), Some("agents"), "blank loses");
        assert_eq!(merged.image_alias.as_deref(), Some("my/custom"));
        // The stored role survives a request without one.
        let stored = IncusProvisionParams {
            guest_role: Some(MANAGED_ROLE),
            ..env_defaults()
        };
        let merged = merge_incus_provision_params(&stored, &Default::default());
        assert_eq!(merged.guest_role, Some(MANAGED_ROLE));
    }

    #[test]
    fn provided_counts_guest_role_and_ignores_blanks() {
        assert!(!incus_params_provided(&Default::default()));
        assert!(!incus_params_provided(&IncusProvisionParams {
            project: Some(" ".into()),
            ..Default::default()
        }));
        assert!(incus_params_provided(&IncusProvisionParams {
            guest_role: Some(MANAGED_ROLE),
            ..Default::default()
        }));
        assert!(incus_params_provided(&IncusProvisionParams {
            insecure_tls: Some(false),
            ..Default::default()
        }));
        assert!(incus_params_provided(&IncusProvisionParams {
            profile: Some("p".into()),
            ..Default::default()
        }));
    }

    #[test]
    fn invalid_request_endpoint_names_the_field() {
        let err = resolve(IncusProvisionParams {
            endpoint: Some("ftp://x".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().starts_with("incus.endpoint"), "{err}");
    }
}
