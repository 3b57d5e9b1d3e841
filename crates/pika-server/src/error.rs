//! The agent service's errors, in its own terms. Only the HTTP layer turns a [`ErrorKind`] into a
//! status code (see `http::status_of`).

use pika_managed_agent_contract::AgentRecord;

use crate::params::ParamsError;
use crate::policy::Forbidden;
use crate::store::StoreError;

/// What kind of failure, independent of any transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something that does not exist.
    Invalid,
    /// The request names something the operator did not allow.
    Forbidden,
    /// No such agent (for this owner).
    NotFound,
    /// The agent is in a state that does not allow the action now.
    Busy,
    /// An idempotency key was reused with a different request.
    IdempotencyMismatch,
    /// Incus could not be reached.
    IncusUnavailable,
    /// Incus answered with a failure.
    IncusFailed,
    /// The tokens file cannot be used (authentication fails closed).
    TokensUnavailable,
    /// Every host port of the operator's gateway range is held by an agent.
    PortsExhausted,
    /// A fault of the server itself (database...): logged in full, never sent.
    Internal,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct AgentError {
    pub kind: ErrorKind,
    pub message: String,
    /// The request field at fault (`incus.project`, `name`).
    pub field: Option<String>,
    /// The agent the failed request left behind, when there is one.
    pub agent: Option<Box<AgentRecord>>,
}

impl AgentError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AgentError {
            kind,
            message: message.into(),
            field: None,
            agent: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_agent(mut self, agent: Option<AgentRecord>) -> Self {
        self.agent = agent.map(Box::new);
        self
    }

    pub fn not_found(id: &str) -> Self {
        AgentError::new(ErrorKind::NotFound, format!("agent {id:?} not found"))
    }

    pub fn busy(id: &str, state: impl std::fmt::Display) -> Self {
        AgentError::new(
            ErrorKind::Busy,
            format!("agent {id} is busy (state {state}); try again"),
        )
    }

    /// An Incus failure, classified: unreachable, or anything else Incus said.
    pub fn incus(err: &pika_incus::Error, context: impl std::fmt::Display) -> Self {
        let kind = match err {
            pika_incus::Error::Transport { .. } | pika_incus::Error::Timeout { .. } => {
                ErrorKind::IncusUnavailable
            }
            pika_incus::Error::Config { .. } => ErrorKind::Internal,
            _ => ErrorKind::IncusFailed,
        };
        AgentError::new(kind, format!("{context}: {err}"))
    }
}

impl From<ParamsError> for AgentError {
    fn from(err: ParamsError) -> Self {
        let field = match &err {
            ParamsError::UnsupportedRole(_) => "guest_role",
            ParamsError::Missing { field, .. } | ParamsError::Invalid { field, .. } => field,
        };
        AgentError::new(ErrorKind::Invalid, err.to_string()).field(format!("incus.{field}"))
    }
}

impl From<Forbidden> for AgentError {
    fn from(err: Forbidden) -> Self {
        let field = format!("incus.{}", err.field);
        AgentError::new(ErrorKind::Forbidden, err.to_string()).field(field)
    }
}

impl From<StoreError> for AgentError {
    fn from(err: StoreError) -> Self {
        match err {
            // Agent IDs are random, so a duplicate row is a second request with the same
            // idempotency key that lost the race to the first.
            StoreError::Duplicate { .. } => AgentError::new(
                ErrorKind::Busy,
                "a request with the same Idempotency-Key is being served; try again",
            ),
            err @ StoreError::PortsExhausted { .. } => {
                AgentError::new(ErrorKind::PortsExhausted, err.to_string())
            }
            err => AgentError::new(ErrorKind::Internal, err.to_string()),
        }
    }
}
