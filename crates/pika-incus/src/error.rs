//! The one error type of the crate. Every variant names the Incus object the call was about
//! (`what`: `instance pika-test-x/c1`, `image alias pika-test-x/pika/dev`, `project pika-test-x`).

use std::time::Duration;

/// Result of every call of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to Incus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Incus answered 404: the object does not exist (or is in another project).
    #[error("{what}: not found: {message}")]
    NotFound { what: String, message: String },

    /// The object already exists (or is in a conflicting state): Incus answered 409, or said
    /// "already exists" in another way (see `api::means_conflict`).
    #[error("{what}: conflict: {message}")]
    Conflict { what: String, message: String },

    /// Incus answered 401 or 403: the client certificate is not trusted, or not for this project.
    #[error("{what}: not authorized by {endpoint} (HTTP {status}): {message}")]
    Unauthorized {
        what: String,
        endpoint: String,
        status: u16,
        message: String,
    },

    /// A background operation ended in failure; `message` is Incus's own. (A failure saying
    /// "already exists" is a [`Error::Conflict`] instead.)
    #[error("{what}: operation failed: {message}")]
    OperationFailed { what: String, message: String },

    /// Incus could not be reached or the connection broke (socket missing, connection refused,
    /// TLS handshake refused, e.g. a server certificate that does not match the pinned one).
    #[error("{what}: cannot talk to incus at {endpoint}: {message}")]
    Transport {
        what: String,
        endpoint: String,
        /// The whole cause chain, flattened (reqwest's own message is only its first line).
        message: String,
        #[source]
        source: reqwest::Error,
    },

    /// No answer (or the operation did not finish) within the given time.
    #[error("{what}: no result within {after:?}")]
    Timeout { what: String, after: Duration },

    /// Any other error answer from Incus.
    #[error("{what}: incus answered HTTP {status}: {message}")]
    Api {
        what: String,
        status: u16,
        message: String,
    },

    /// Incus answered something this client does not understand.
    #[error("{what}: unexpected answer from incus: {message}")]
    Protocol { what: String, message: String },

    /// The client was set up with something unusable (bad URL, bad PEM, unreadable file).
    #[error("{what}: {message}")]
    Config { what: String, message: String },
}

impl Error {
    /// The Incus object the failed call was about.
    pub fn what(&self) -> &str {
        match self {
            Error::NotFound { what, .. }
            | Error::Conflict { what, .. }
            | Error::Unauthorized { what, .. }
            | Error::OperationFailed { what, .. }
            | Error::Transport { what, .. }
            | Error::Timeout { what, .. }
            | Error::Api { what, .. }
            | Error::Protocol { what, .. }
            | Error::Config { what, .. } => what,
        }
    }

    /// True for [`Error::NotFound`]: handy for "delete if present" and "create unless present".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True for [`Error::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// True when Incus refused because another operation holds the instance ("Instance is busy
    /// running a ... operation"); Incus gives no code for it, only this text.
    pub fn is_busy(&self) -> bool {
        match self {
            Error::OperationFailed { message, .. } | Error::Api { message, .. } => {
                message.contains("is busy running")
            }
            _ => false,
        }
    }

    pub(crate) fn config(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            what: what.into(),
            message: message.into(),
        }
    }

    pub(crate) fn protocol(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Protocol {
            what: what.into(),
            message: message.into(),
        }
    }
}
