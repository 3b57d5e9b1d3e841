//! The operator's boundaries: which endpoint, project, profile, storage pool and image alias a
//! request may name. By default only the configured ones; the operator widens each field with an
//! explicit list. A request outside them is refused (403 naming the field) before any row is
//! written or any Incus call is made.

use std::collections::BTreeSet;

use crate::endpoint::Endpoint;
use crate::params::ResolvedIncusParams;

/// A request outside the operator's boundaries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incus.{field} = {value:?} is not allowed by this server's operator (allowed: {allowed})")]
pub struct Forbidden {
    pub field: &'static str,
    pub value: String,
    pub allowed: String,
}

/// What requests may name: the operator's lists, built from the settings
/// (`config::IncusSettings::policy`).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `None` stands for the local socket (allowed only when it is the configured default).
    pub endpoints: BTreeSet<Option<Endpoint>>,
    /// The endpoints a request may reach with insecure TLS.
    pub insecure: BTreeSet<Endpoint>,
    pub projects: BTreeSet<String>,
    pub profiles: BTreeSet<String>,
    pub storage_pools: BTreeSet<String>,
    pub image_aliases: BTreeSet<String>,
}

impl Policy {
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
