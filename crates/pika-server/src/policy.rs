//! The operator's boundaries: which endpoint, project, profile, storage pool and image alias a
//! request may name. By default only the configured ones; the operator widens each field with an
//! explicit list. A request outside them is refused (403 naming the field) before any row is
//! written or any Incus call is made.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use crate::config::IncusSettings;
use crate::params::ResolvedIncusParams;

/// The port Incus listens on unless told otherwise.
pub const DEFAULT_INCUS_PORT: u16 = 8443;

/// A normalised Incus HTTPS endpoint: `https://host:port`, host lowercase, port explicit, nothing
/// else (no user, path, query or fragment), so two spellings of one endpoint compare equal.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint(String);

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let url = url::Url::parse(text).map_err(|err| format!("not a URL: {err}"))?;
        if url.scheme() != "https" {
            return Err(
                "expected an https://HOST[:PORT] URL (leave it unset for the local socket)".into(),
            );
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL may not carry a user or password".into());
        }
        if url.query().is_some() || url.fragment().is_some() || !matches!(url.path(), "" | "/") {
            return Err(
                "expected only https://HOST[:PORT], without path, query or fragment".into(),
            );
        }
        if host.contains('*') {
            return Err("wildcards are not supported: list each endpoint".into());
        }
        let port = url.port().unwrap_or(DEFAULT_INCUS_PORT);
        Ok(Endpoint(format!(
            "https://{}:{port}",
            host.to_ascii_lowercase()
        )))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A request outside the operator's boundaries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incus.{field} = {value:?} is not allowed by this server's operator (allowed: {allowed})")]
pub struct Forbidden {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

/// What requests may name, built from the settings.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `None` stands for the local socket (allowed only when it is the configured default).
    endpoints: BTreeSet<Option<Endpoint>>,
    insecure: BTreeSet<Endpoint>,
    projects: BTreeSet<String>,
    profiles: BTreeSet<String>,
    storage_pools: BTreeSet<String>,
    image_aliases: BTreeSet<String>,
}

fn with_default(default: &Option<String>, extra: &[String]) -> BTreeSet<String> {
    default
        .iter()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .chain(extra.iter().cloned())
        .collect()
}

impl Policy {
    pub fn new(settings: &IncusSettings) -> Self {
        let mut endpoints: BTreeSet<Option<Endpoint>> = BTreeSet::new();
        endpoints.insert(settings.endpoint.clone());
        endpoints.extend(settings.allowed_endpoints.iter().cloned().map(Some));
        let mut insecure: BTreeSet<Endpoint> =
            settings.insecure_tls_endpoints.iter().cloned().collect();
        if settings.insecure_tls
            && let Some(endpoint) = &settings.endpoint
        {
            insecure.insert(endpoint.clone());
        }
        let role = settings.guest_role.unwrap_or(crate::params::MANAGED_ROLE);
        let default_alias = settings
            .image_alias
            .clone()
            .or_else(|| Some(role.default_image_alias().to_owned()));
        Policy {
            endpoints,
            insecure,
            projects: with_default(&settings.project, &settings.allowed_projects),
            profiles: with_default(&settings.profile, &settings.allowed_profiles),
            storage_pools: with_default(&settings.storage_pool, &settings.allowed_storage_pools),
            image_aliases: with_default(&default_alias, &settings.allowed_image_aliases),
        }
    }

    /// Every endpoint agents may live on (`None`: the local socket), with whether insecure TLS
    /// may be used there.
    pub fn endpoints(&self) -> impl Iterator<Item = (Option<&Endpoint>, bool)> {
        self.endpoints.iter().map(|e| {
            (
                e.as_ref(),
                e.as_ref().is_some_and(|e| self.insecure.contains(e)),
            )
        })
    }

    pub fn projects(&self) -> impl Iterator<Item = &str> {
        self.projects.iter().map(String::as_str)
    }

    /// Whether `(endpoint, project)` is a place the operator configured.
    pub fn covers(&self, endpoint: Option<&str>, project: &str) -> bool {
        let endpoint = endpoint.and_then(|e| e.parse::<Endpoint>().ok());
        self.endpoints.contains(&endpoint) && self.projects.contains(project)
    }

    /// Refuses parameters that name anything the operator did not allow.
    pub fn check(&self, params: &ResolvedIncusParams) -> Result<(), Forbidden> {
        let endpoint = params
            .endpoint
            .as_deref()
            .map(|e| e.parse::<Endpoint>())
            .transpose()
            .map_err(|_| Forbidden {
                field: "endpoint",
                value: params.endpoint.clone().unwrap_or_default(),
                allowed: self.list_endpoints(),
            })?;
        if !self.endpoints.contains(&endpoint) {
            return Err(Forbidden {
                field: "endpoint",
                value: params.endpoint.clone().unwrap_or_default(),
                allowed: self.list_endpoints(),
            });
        }
        if params.insecure_tls && !endpoint.as_ref().is_some_and(|e| self.insecure.contains(e)) {
            return Err(Forbidden {
                field: "insecure_tls",
                value: format!(
                    "true for {}",
                    endpoint
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "the local socket".into())
                ),
                allowed: list(self.insecure.iter().map(Endpoint::as_str)),
            });
        }
        for (field, value, allowed) in [
            ("project", &params.project, &self.projects),
            ("profile", &params.profile, &self.profiles),
            ("storage_pool", &params.storage_pool, &self.storage_pools),
            ("image_alias", &params.image_alias, &self.image_aliases),
        ] {
            if !allowed.contains(value) {
                return Err(Forbidden {
                    field,
                    value: value.clone(),
                    allowed: list(allowed.iter().map(String::as_str)),
                });
            }
        }
        Ok(())
    }

    fn list_endpoints(&self) -> String {
        list(
            self.endpoints
                .iter()
                .map(|e| e.as_ref().map_or("the local socket", Endpoint::as_str)),
        )
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pika_managed_agent_contract::IncusGuestRole;

    fn settings() -> IncusSettings {
        IncusSettings {
            project: Some("agents".into()),
            profile: Some("agent".into()),
            storage_pool: Some("default".into()),
            ..Default::default()
        }
    }

    fn resolved() -> ResolvedIncusParams {
        ResolvedIncusParams {
            guest_role: IncusGuestRole::ManagedOpenclaw,
            endpoint: None,
            project: "agents".into(),
            profile: "agent".into(),
            storage_pool: "default".into(),
            image_alias: IncusGuestRole::ManagedOpenclaw.default_image_alias().into(),
            insecure_tls: false,
        }
    }

    #[test]
    fn endpoints_are_normalised() {
        let e: Endpoint = " HTTPS://Incus.Example ".parse().unwrap();
        assert_eq!(e.to_string(), "https://incus.example:8443");
        let e: Endpoint = "https://[::1]:9000/".parse().unwrap();
        assert_eq!(e.to_string(), "https://[::1]:9000");
        for bad in [
            "http://x",
            "https://u:p@x",
            "https://x/path",
            "https://x?q",
            "x",
            "https://*.x",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn only_the_configured_values_pass_by_default() {
        let policy = Policy::new(&settings());
        assert_eq!(policy.check(&resolved()), Ok(()));
        for (field, change) in [
            (
                "project",
                Box::new(|p: &mut ResolvedIncusParams| p.project = "other".into())
                    as Box<dyn Fn(&mut ResolvedIncusParams)>,
            ),
            ("profile", Box::new(|p| p.profile = "privileged".into())),
            ("storage_pool", Box::new(|p| p.storage_pool = "host".into())),
            (
                "image_alias",
                Box::new(|p| p.image_alias = "any/image".into()),
            ),
            (
                "endpoint",
                Box::new(|p| p.endpoint = Some("https://10.0.0.1:8443".into())),
            ),
            ("insecure_tls", Box::new(|p| p.insecure_tls = true)),
        ] {
            let mut params = resolved();
            change(&mut params);
            assert_eq!(policy.check(&params).unwrap_err().field, field);
        }
    }

    #[test]
    fn allow_lists_widen_each_field_exactly() {
        let other: Endpoint = "https://other:8443".parse().unwrap();
        let policy = Policy::new(&IncusSettings {
            allowed_projects: vec!["second".into()],
            allowed_endpoints: vec![other.clone()],
            insecure_tls_endpoints: vec![other.clone()],
            ..settings()
        });
        let mut params = resolved();
        params.project = "second".into();
        assert_eq!(policy.check(&params), Ok(()));
        params.endpoint = Some("https://OTHER".into());
        params.insecure_tls = true;
        assert_eq!(policy.check(&params), Ok(()), "normalised before comparing");
        params.project = "third".into();
        assert_eq!(policy.check(&params).unwrap_err().field, "project");
        assert!(policy.covers(Some("https://other:8443"), "second"));
        assert!(policy.covers(None, "agents"));
        assert!(!policy.covers(None, "third"));
    }
}
