//! The request cycle below [`crate::client`] and [`crate::project`]: one HTTP client with its
//! base URL and bounds; requests, error mapping, Incus's JSON envelope and operation waits. It
//! knows no Incus object, only paths, so both the server-wide and the project calls stand on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pika_runtime::error_chain;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api;
use crate::error::{Error, Result};
use crate::types::Operation;

/// One connection to one Incus server: the HTTP client, where it points, and its bounds.
#[derive(Clone)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Arc<str>,
    endpoint: Arc<str>,
    pub(crate) timeout: Duration,
    pub(crate) operation_timeout: Duration,
}

/// The JSON envelope of every Incus answer (`sync`, `async`, `error`).
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_code: u16,
}

impl Transport {
    pub(crate) fn new(
        http: reqwest::Client,
        base: &str,
        endpoint: String,
        timeout: Duration,
        operation_timeout: Duration,
    ) -> Self {
        Transport {
            http,
            base: base.into(),
            endpoint: endpoint.into(),
            timeout,
            operation_timeout,
        }
    }

    /// `unix:/path/to/socket` or `https://host:port`: what errors name.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A request to `path` (`/1.0/...`) with query parameters, bounded by the client timeout.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> RequestBuilder {
        let mut url = format!("{}{}", self.base, path);
        let mut query = query
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .peekable();
        if query.peek().is_some() {
            url.push(if path.contains('?') { '&' } else { '?' });
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(query)
                .finish();
            url.push_str(&encoded);
        }
        self.http.request(method, url).timeout(self.timeout)
    }

    /// Sends, logs (method, path, status, duration; never headers or bodies) and turns any
    /// non-2xx answer into the matching [`Error`].
    pub(crate) async fn send(&self, what: &str, request: RequestBuilder) -> Result<Response> {
        let request = request
            .build()
            .map_err(|e| self.transport(what, e, self.timeout))?;
        let method = request.method().clone();
        let path = request.url().path().to_string();
        let bound = request.timeout().copied().unwrap_or(self.timeout);
        let started = Instant::now();
        let outcome = self.http.execute(request).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let response = match outcome {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(%method, %path, error = %error_chain(&e), elapsed_ms, "incus request failed");
                return Err(self.transport(what, e, bound));
            }
        };
        let status = response.status();
        tracing::debug!(%method, %path, status = status.as_u16(), elapsed_ms, "incus request");
        if status.is_success() {
            return Ok(response);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(what, e, bound))?;
        Err(self.status_error(what, status, &body))
    }

    fn status_error(&self, what: &str, status: StatusCode, body: &[u8]) -> Error {
        let message = match serde_json::from_slice::<Envelope>(body) {
            Ok(envelope) if !envelope.error.is_empty() => envelope.error,
            _ => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.to_string()
                } else {
                    text.chars().take(500).collect()
                }
            }
        };
        let what = what.to_string();
        match status {
            StatusCode::NOT_FOUND => Error::NotFound { what, message },
            StatusCode::CONFLICT => Error::Conflict { what, message },
            _ if status.is_server_error() && api::means_conflict(&message) => {
                Error::Conflict { what, message }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
                what,
                endpoint: self.endpoint.to_string(),
                status: status.as_u16(),
                message,
            },
            _ => Error::Api {
                what,
                status: status.as_u16(),
                message,
            },
        }
    }

    pub(crate) fn transport(&self, what: &str, error: reqwest::Error, bound: Duration) -> Error {
        if error.is_timeout() {
            return Error::Timeout {
                what: what.to_string(),
                after: bound,
            };
        }
        Error::Transport {
            what: what.to_string(),
            endpoint: self.endpoint.to_string(),
            message: error_chain(&error),
            source: error,
        }
    }

    async fn envelope(&self, what: &str, response: Response) -> Result<Envelope> {
        let body = response
            .bytes()
            .await
            .map_err(|e| self.transport(what, e, self.timeout))?;
        let envelope: Envelope = serde_json::from_slice(&body)
            .map_err(|e| Error::protocol(what, format!("not an Incus JSON answer: {e}")))?;
        if envelope.kind == "error" {
            // Incus sends some errors with HTTP 200 (an operation wait, for one): the envelope's
            // own code decides.
            let status = StatusCode::from_u16(envelope.error_code)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Err(self.status_error(what, status, &body));
        }
        Ok(envelope)
    }

    /// Sends and decodes the `metadata` of a `sync` answer.
    pub(crate) async fn expect_sync<T: DeserializeOwned>(
        &self,
        what: &str,
        request: RequestBuilder,
    ) -> Result<T> {
        let response = self.send(what, request).await?;
        let envelope = self.envelope(what, response).await?;
        if envelope.kind != "sync" {
            return Err(Error::protocol(
                what,
                format!("expected a sync answer, got {:?}", envelope.kind),
            ));
        }
        serde_json::from_value(envelope.metadata)
            .map_err(|e| Error::protocol(what, format!("unexpected metadata: {e}")))
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        self.expect_sync(what, self.request(Method::GET, path, query))
            .await
    }

    /// Sends a request that starts a background operation and waits for it (up to `timeout`).
    /// A `sync` answer counts as an operation that already succeeded.
    pub(crate) async fn run_operation(
        &self,
        what: &str,
        request: RequestBuilder,
        project: Option<&str>,
        timeout: Duration,
    ) -> Result<Operation> {
        let response = self.send(what, request).await?;
        let envelope = self.envelope(what, response).await?;
        match envelope.kind.as_str() {
            "async" => {
                let id = if envelope.operation.is_empty() {
                    envelope
                        .metadata
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                } else {
                    api::operation_id(&envelope.operation).to_string()
                };
                if id.is_empty() {
                    return Err(Error::protocol(what, "async answer without an operation"));
                }
                self.wait(what, &id, project, timeout).await
            }
            "sync" => Ok(Operation {
                status: "Success".into(),
                status_code: 200,
                metadata: Some(envelope.metadata),
                ..Operation::default()
            }),
            other => Err(Error::protocol(
                what,
                format!("expected an operation, got a {other:?} answer"),
            )),
        }
    }

    pub(crate) async fn wait(
        &self,
        what: &str,
        id: &str,
        project: Option<&str>,
        timeout: Duration,
    ) -> Result<Operation> {
        // Incus waits server-side in whole seconds; the HTTP request gets a few more so the server
        // answers first, and the whole wait is bounded client-side as well.
        let seconds = (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1);
        let bound = timeout + Duration::from_secs(5);
        let seconds_text = seconds.to_string();
        let request = self
            .request(
                Method::GET,
                &api::operation_wait(id),
                &[
                    (api::Q_TIMEOUT, &seconds_text),
                    (api::Q_PROJECT, project.unwrap_or_default()),
                ],
            )
            .timeout(bound);
        let timed_out = || Error::Timeout {
            what: what.to_string(),
            after: timeout,
        };
        let waited = tokio::time::timeout(bound, self.expect_sync::<Operation>(what, request))
            .await
            .map_err(|_| timed_out())?;
        let operation = match waited {
            Ok(operation) => operation,
            Err(Error::Timeout { .. }) => return Err(timed_out()),
            // Incus 6 answers the wait of a failed operation with an error (the operation's code
            // and message, e.g. 400 "The instance is already stopped").
            Err(Error::Api { message, .. }) => return Err(operation_failed(what, message)),
            Err(other) => return Err(other),
        };
        if !operation.is_done() {
            return Err(timed_out());
        }
        if !operation.is_success() {
            let message = if operation.err.is_empty() {
                operation.status.clone()
            } else {
                operation.err.clone()
            };
            return Err(operation_failed(what, message));
        }
        Ok(operation)
    }
}

/// A failed operation: [`Error::Conflict`] when Incus says the object already exists.
fn operation_failed(what: &str, message: String) -> Error {
    let what = what.to_string();
    if api::means_conflict(&message) {
        Error::Conflict { what, message }
    } else {
        Error::OperationFailed { what, message }
    }
}
