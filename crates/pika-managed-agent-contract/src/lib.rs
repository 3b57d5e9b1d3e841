//! Wire types of the Pika managed-agent API, shared by `pika-server` and the `pika` CLI.
//!
//! The guest role comes from the registry ([`IncusGuestRole`], generated from `roles.toml` into
//! crate `pika-incus-guest-role`) and is re-exported here so API users need one dependency. This is
//! the one crate that re-exports it; everything else in the workspace names
//! `pika_incus_guest_role::IncusGuestRole`.
//!
//! Every field of [`IncusProvisionParams`] is optional and skipped when `None`: a payload written
//! before `guest_role` existed still parses, and `None` is never serialized (no `"guest_role": null`).
//!
//! ```
//! use pika_managed_agent_contract::{AgentProvisionRequest, IncusGuestRole};
//!
//! let request: AgentProvisionRequest =
//!     serde_json::from_str(r#"{"incus":{"guest_role":"managed-openclaw"}}"#).unwrap();
//! assert_eq!(request.incus.guest_role, Some(IncusGuestRole::ManagedOpenclaw));
//! ```

use serde::{Deserialize, Serialize};

#[cfg(feature = "client")]
pub mod client;

pub use pika_incus_guest_role::{IncusGuestRole, ParseIncusGuestRoleError};

/// Path of the agent collection (`POST` provisions, `GET` lists).
pub const AGENTS_PATH: &str = "/v1/agents";
/// Path of the liveness check: `{"ok": bool}` only, no token needed.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Path of the detailed health report (bearer token needed).
pub const HEALTH_PATH: &str = "/v1/health";
/// Request header that makes `POST /v1/agents` safe to retry: the same key returns the same agent.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// Header carrying the request ID on every response (also in every error body).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Characters escaped in a path segment: everything but RFC 3986 unreserved characters, so an ID
/// like `../../healthz` stays one segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One URL path segment, percent-encoded (`.` and `..` are encoded too: they are not IDs).
pub fn path_segment(value: &str) -> String {
    match value {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => percent_encoding::utf8_percent_encode(value, SEGMENT).to_string(),
    }
}

/// Path of one agent (the ID is percent-encoded).
pub fn agent_path(id: &str) -> String {
    format!("{AGENTS_PATH}/{}", path_segment(id))
}

/// Path that reprovisions one agent.
pub fn agent_reprovision_path(id: &str) -> String {
    format!("{}/reprovision", agent_path(id))
}

/// Path that rotates one agent's gateway token (`POST`, owner only).
pub fn agent_gateway_token_path(id: &str) -> String {
    format!("{}/gateway-token", agent_path(id))
}

/// Where and how an agent's Incus instance is provisioned.
///
/// In a request every field is optional: the server fills what is missing from its environment
/// (`PIKA_AGENT_INCUS_*`). In an agent record the fields are the materialized values that were used;
/// `guest_role` is present there only when the image alias is the role's default alias, i.e. when the
/// instance really runs that role's image.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncusProvisionParams {
    /// The guest role of the instance (`managed-openclaw`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_role: Option<IncusGuestRole>,
    /// Incus HTTPS endpoint (`https://host:8443`); absent means the server's local Unix socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Incus project the instance lives in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Incus profile applied to the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Storage pool of the instance's root disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_pool: Option<String>,
    /// Image alias the instance is created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_alias: Option<String>,
    /// Skip verification of the Incus server certificate (HTTPS endpoints only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_tls: Option<bool>,
}

/// Body of `POST /v1/agents`. Unknown fields are refused (a removed or misspelt field must not be
/// silently ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProvisionRequest {
    /// Optional human-readable name of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Provisioning parameters; missing fields come from the server's environment.
    #[serde(default)]
    pub incus: IncusProvisionParams,
}

/// Body of `POST /v1/agents/{id}/reprovision`: fields given here replace the stored ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentReprovisionRequest {
    #[serde(default)]
    pub incus: IncusProvisionParams,
}

/// Lifecycle state of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentState {
    /// The row exists; the instance is being created or started.
    Provisioning,
    /// The instance was created and started.
    Running,
    /// Provisioning failed; `error` says why and no instance is left behind.
    Failed,
    /// The instance is being deleted.
    Deleting,
    /// The row said `running` but its instance is gone (found by reconciliation); reprovision or
    /// delete it.
    Lost,
    /// Deleted with `force` while its Incus endpoint could not remove the instance: `error` names
    /// the leftover instance. A later delete retries the removal (forced again: forgets the row).
    Abandoned,
    /// Running on an Incus cluster member that is offline (`error` names it). Nothing is deleted:
    /// the agent is `running` again by itself once the member is back.
    Unreachable,
}

impl AgentState {
    pub const ALL: &'static [AgentState] = &[
        AgentState::Provisioning,
        AgentState::Running,
        AgentState::Failed,
        AgentState::Deleting,
        AgentState::Lost,
        AgentState::Abandoned,
        AgentState::Unreachable,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AgentState::Provisioning => "provisioning",
            AgentState::Running => "running",
            AgentState::Failed => "failed",
            AgentState::Deleting => "deleting",
            AgentState::Lost => "lost",
            AgentState::Abandoned => "abandoned",
            AgentState::Unreachable => "unreachable",
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentState::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                let valid: Vec<&str> = AgentState::ALL.iter().map(|s| s.as_str()).collect();
                format!(
                    "unknown agent state {s:?}; valid states: {}",
                    valid.join(", ")
                )
            })
    }
}

/// An agent as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub id: String,
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Incus instance name (`pika-agent-<id>`).
    pub instance_name: String,
    pub state: AgentState,
    /// The materialized parameters the instance was provisioned with.
    pub incus: IncusProvisionParams,
    /// The Incus cluster member the instance runs on (absent off a cluster, or before creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Where the owner reaches the agent's gateway (`http://ADDR:PORT`, the agent's own Incus
    /// proxy device); absent for a role without a service port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_url: Option<String>,
    /// Why provisioning failed (state `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// RFC 3339 UTC timestamps.
    pub created_at: String,
    pub updated_at: String,
}

/// Body of `POST /v1/agents` (201), `POST /v1/agents/{id}/reprovision` and
/// `POST /v1/agents/{id}/gateway-token`: the agent, plus its gateway token when this response
/// made one. The token is shown here once and stored by the server only as a SHA-256 hash; an
/// idempotent replay carries no token (rotate it to get a new one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentWithToken {
    #[serde(flatten)]
    pub agent: AgentRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_token: Option<String>,
}

/// Body of `GET /v1/agents`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    pub agents: Vec<AgentRecord>,
}

/// Body of every error response, whatever the status (400, 401, 403, 404, 405, 409, 413, 415,
/// 422, 500, 502, 503).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for people.
    pub error: String,
    /// What went wrong, for programs: `invalid`, `forbidden`, `unauthorized`, `not-found`, ...
    #[serde(default)]
    pub code: String,
    /// The request field at fault (`incus.project`, `name`, ...), when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The ID of the request (also the `x-request-id` response header and in the server log).
    #[serde(default)]
    pub request_id: String,
    /// The agent the failed request left behind (state `failed`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<AgentRecord>>,
}

/// One check of `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Body of `GET /healthz` (200 when `ok`, 503 otherwise): nothing but the verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub ok: bool,
}

/// Body of `GET /v1/health` (token needed; 200 when `ok`, 503 otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub ok: bool,
    pub checks: Vec<HealthCheck>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_params() -> IncusProvisionParams {
        IncusProvisionParams {
            guest_role: Some(IncusGuestRole::ManagedOpenclaw),
            endpoint: Some("https://incus.example:8443".into()),
            project: Some("agents".into()),
            profile: Some("pika-agent".into()),
            storage_pool: Some("fast".into()),
            image_alias: Some(IncusGuestRole::ManagedOpenclaw.default_image_alias().into()),
            insecure_tls: Some(false),
        }
    }

    #[test]
    fn provision_request_round_trips_with_guest_role() {
        let request = AgentProvisionRequest {
            name: Some("alice-bot".into()),
            incus: full_params(),
        };
        let text = serde_json::to_string(&request).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value["incus"]["guest_role"],
            json!(IncusGuestRole::ManagedOpenclaw.as_str())
        );
        let back: AgentProvisionRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, request);
    }

    #[test]
    fn legacy_payload_without_guest_role_parses() {
        let legacy = json!({
            "name": "old",
            "incus": {
                "project": "agents",
                "profile": "pika-agent",
                "storage_pool": "default",
                "image_alias": IncusGuestRole::ManagedOpenclaw.default_image_alias(),
            }
        });
        let request: AgentProvisionRequest = serde_json::from_value(legacy).unwrap();
        assert_eq!(request.incus.guest_role, None);
        assert_eq!(request.incus.project.as_deref(), Some("agents"));
        assert_eq!(request.incus.endpoint, None);
    }

    #[test]
    fn empty_body_parses_and_none_is_never_serialized() {
        let request: AgentProvisionRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(request, AgentProvisionRequest::default());
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(text, r#"{"incus":{}}"#);
        assert!(!text.contains("null"));
    }

    #[test]
    fn unknown_guest_role_error_lists_valid_roles() {
        let err = serde_json::from_value::<AgentProvisionRequest>(
            json!({"incus": {"guest_role": "no-such-role"}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("no-such-role"), "{err}");
        for role in IncusGuestRole::ALL {
            assert!(err.contains(role.as_str()), "{err} should list {role}");
        }
    }

    #[test]
    fn agent_record_round_trips() {
        let record = AgentRecord {
            id: "0123456789abcdef".into(),
            owner: "alice".into(),
            name: None,
            instance_name: "pika-agent-0123456789abcdef".into(),
            state: AgentState::Running,
            incus: full_params(),
            location: Some("node2".into()),
            gateway_url: Some("http://127.0.0.1:18800".into()),
            error: None,
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
        };
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value["state"], json!("running"));
        assert_eq!(value["location"], json!("node2"));
        assert!(value.get("name").is_none());
        assert!(value.get("error").is_none());
        let back: AgentRecord = serde_json::from_value(value).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn agent_state_parses_its_own_names_only() {
        for state in AgentState::ALL {
            assert_eq!(state.as_str().parse::<AgentState>().unwrap(), *state);
        }
        let err = "gone".parse::<AgentState>().unwrap_err();
        assert!(
            err.contains("provisioning, running, failed, deleting, lost, abandoned"),
            "{err}"
        );
    }

    /// Ported from the original project: removed or unknown request fields fail closed.
    #[test]
    fn agent_provision_request_rejects_removed_legacy_fields() {
        let err = serde_json::from_str::<AgentProvisionRequest>(
            r#"{"legacy_backend":{"kind":"openclaw"}}"#,
        )
        .expect_err("removed legacy request fields must fail closed");
        assert!(err.to_string().contains("unknown field"), "{err}");
        // The issue's case: a misspelt field must not fall back to the default role.
        let err = serde_json::from_str::<AgentProvisionRequest>(
            r#"{"incus":{"guest-role":"pikaci-runner"}}"#,
        )
        .expect_err("a misspelt field is refused");
        assert!(
            err.to_string().contains("unknown field `guest-role`"),
            "{err}"
        );
        let err = serde_json::from_str::<AgentReprovisionRequest>(r#"{"name":"x"}"#)
            .expect_err("reprovision takes only incus");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn agent_paths_encode_their_segment() {
        assert_eq!(agent_path("ab12"), "/v1/agents/ab12");
        assert_eq!(agent_path("../../healthz"), "/v1/agents/..%2F..%2Fhealthz");
        assert_eq!(agent_path(".."), "/v1/agents/%2E%2E");
        assert_eq!(agent_path("a b?c#d"), "/v1/agents/a%20b%3Fc%23d");
        assert_eq!(
            agent_reprovision_path("x/y"),
            "/v1/agents/x%2Fy/reprovision"
        );
    }
}
