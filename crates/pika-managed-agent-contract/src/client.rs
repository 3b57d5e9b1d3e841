//! The one typed client of the agent API (feature `client`, on reqwest): every path, method and
//! body comes from this crate, so the CLI, the tests and the benchmarks cannot drift from the
//! server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pika_managed_agent_contract::client::ClientError> {
//! use pika_managed_agent_contract::AgentProvisionRequest;
//! use pika_managed_agent_contract::client::AgentClient;
//!
//! let api = AgentClient::new("http://127.0.0.1:8080", "TOKEN")?;
//! let created = api.provision(&AgentProvisionRequest::default()).await?;
//! let record = api.get(&created.agent.id).await?;
//! api.delete(&record.id, false).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Errors say what was asked (`GET http://.../v1/agents`) and, for an answer that is not 2xx,
//! carry the server's [`ApiError`] body: [`ClientError::status`], [`ClientError::api_error`].
//! Tokens appear in no error text and no `Debug` output.

use std::fmt;
use std::time::Duration;

use pika_runtime::error_chain;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{
    AGENTS_PATH, AgentList, AgentProvisionRequest, AgentRecord, AgentReprovisionRequest,
    AgentWithToken, ApiError, HEALTH_PATH, HEALTHZ_PATH, Health, HealthReport,
    IDEMPOTENCY_KEY_HEADER, agent_gateway_token_path, agent_path, agent_reprovision_path,
};

/// Header the server sets on a replayed idempotent `POST /v1/agents`.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "idempotent-replayed";

/// What went wrong with one call.
#[derive(Debug)]
pub enum ClientError {
    /// The base URL given to [`AgentClient::new`] is not an http(s) URL with a host.
    Url { url: String, message: String },
    /// The request did not get an answer within the client's timeout.
    Timeout {
        method: Method,
        url: String,
        after: Duration,
    },
    /// The connection failed (refused, reset, TLS).
    Transport {
        method: Method,
        url: String,
        message: String,
    },
    /// The server answered with a non-2xx status; `body` is its error body when it had one.
    Api {
        method: Method,
        url: String,
        status: StatusCode,
        body: Option<Box<ApiError>>,
        text: String,
    },
    /// A 2xx answer whose body is not what the API promises.
    Decode {
        method: Method,
        url: String,
        message: String,
    },
}

impl ClientError {
    /// The HTTP status of an [`ClientError::Api`] answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's error body of an [`ClientError::Api`] answer.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api { body, .. } => body.as_deref(),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Url { url, message } => write!(f, "{url:?}: {message}"),
            ClientError::Timeout { method, url, after } => {
                write!(f, "{method} {url}: no answer within {after:?}")
            }
            ClientError::Transport {
                method,
                url,
                message,
            } => write!(f, "{method} {url}: {message}"),
            ClientError::Api {
                status,
                body: Some(body),
                ..
            } if !body.request_id.is_empty() => write!(
                f,
                "{} (HTTP {}, request {})",
                body.error,
                status.as_u16(),
                body.request_id
            ),
            ClientError::Api {
                status,
                body: Some(body),
                ..
            } => write!(f, "{} (HTTP {})", body.error, status.as_u16()),
            ClientError::Api {
                method,
                url,
                status,
                body: None,
                text,
            } => write!(f, "{method} {url}: HTTP {status}: {text}"),
            ClientError::Decode {
                method,
                url,
                message,
            } => write!(f, "{method} {url}: unexpected answer: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// The outcome of [`AgentClient::delete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// 204: the agent and its instance are gone.
    Gone,
    /// 200 (forced delete): the row is kept as `abandoned`, naming the leftover instance.
    Abandoned(Box<AgentRecord>),
}

/// A 2xx answer: its status, headers and (possibly empty) body.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// A client of one agent API server, with one bearer token. Cheap to clone.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
    token: String,
    timeout: Option<Duration>,
}

impl fmt::Debug for AgentClient {
    /// Names the server; never the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client of the server at `base` (`http(s)://host[:port]`, no query or fragment; a trailing
    /// `/` is dropped) with no request timeout.
    pub fn new(base: &str, token: impl Into<String>) -> Result<Self, ClientError> {
        Self::with_timeout(base, token, None)
    }

    /// Like [`AgentClient::new`], each request bounded by `timeout` (`None`: wait forever).
    pub fn with_timeout(
        base: &str,
        token: impl Into<String>,
        timeout: Option<Duration>,
    ) -> Result<Self, ClientError> {
        let base = parse_base(base)?;
        let mut http = reqwest::Client::builder();
        if let Some(timeout) = timeout {
            http = http.timeout(timeout);
        }
        let http = http.build().map_err(|err| ClientError::Url {
            url: base.clone(),
            message: format!("cannot set up the HTTP client: {err}"),
        })?;
        Ok(AgentClient {
            http,
            base,
            token: token.into(),
            timeout,
        })
    }

    /// The same server with another token.
    pub fn with_token(&self, token: impl Into<String>) -> Self {
        AgentClient {
            token: token.into(),
            ..self.clone()
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `POST /v1/agents`.
    pub async fn provision(
        &self,
        request: &AgentProvisionRequest,
    ) -> Result<AgentWithToken, ClientError> {
        self.send_json(Method::POST, AGENTS_PATH, Some(request), &[])
            .await
    }

    /// `POST /v1/agents` with an `Idempotency-Key`; the flag says whether the server replayed an
    /// earlier answer (`idempotent-replayed: true`).
    pub async fn provision_idempotent(
        &self,
        request: &AgentProvisionRequest,
        key: &str,
    ) -> Result<(AgentWithToken, bool), ClientError> {
        let answer = self
            .call(
                Method::POST,
                AGENTS_PATH,
                Some(request),
                &[(IDEMPOTENCY_KEY_HEADER, key)],
            )
            .await?;
        let replayed = answer
            .headers
            .get(IDEMPOTENT_REPLAYED_HEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        let created = self.decode(Method::POST, AGENTS_PATH, &answer)?;
        Ok((created, replayed))
    }

    /// `GET /v1/agents`: the caller's agents.
    pub async fn list(&self) -> Result<AgentList, ClientError> {
        self.send_json::<(), _>(Method::GET, AGENTS_PATH, None, &[])
            .await
    }

    /// `GET /v1/agents/{id}`.
    pub async fn get(&self, id: &str) -> Result<AgentRecord, ClientError> {
        self.send_json::<(), _>(Method::GET, &agent_path(id), None, &[])
            .await
    }

    /// `POST /v1/agents/{id}/reprovision`.
    pub async fn reprovision(
        &self,
        id: &str,
        request: &AgentReprovisionRequest,
    ) -> Result<AgentWithToken, ClientError> {
        self.send_json(
            Method::POST,
            &agent_reprovision_path(id),
            Some(request),
            &[],
        )
        .await
    }

    /// `POST /v1/agents/{id}/gateway-token`: a new gateway token, shown in this answer only.
    pub async fn rotate_gateway_token(&self, id: &str) -> Result<AgentWithToken, ClientError> {
        self.send_json::<(), _>(Method::POST, &agent_gateway_token_path(id), None, &[])
            .await
    }

    /// `DELETE /v1/agents/{id}` (`?force=true` with `force`).
    pub async fn delete(&self, id: &str, force: bool) -> Result<Deleted, ClientError> {
        let mut path = agent_path(id);
        if force {
            path.push_str("?force=true");
        }
        let answer = self.call::<()>(Method::DELETE, &path, None, &[]).await?;
        if answer.status == StatusCode::NO_CONTENT {
            return Ok(Deleted::Gone);
        }
        self.decode(Method::DELETE, &path, &answer)
            .map(|record| Deleted::Abandoned(Box::new(record)))
    }

    /// `GET /v1/health`: the report, also when the server says it is not ok (503).
    pub async fn health(&self) -> Result<HealthReport, ClientError> {
        self.report(HEALTH_PATH).await
    }

    /// `GET /healthz` (no token sent): the verdict, also when it is not ok (503).
    pub async fn healthz(&self) -> Result<Health, ClientError> {
        self.report(HEALTHZ_PATH).await
    }

    async fn report<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        // A 503 carries the report too (the server is up but not ok).
        let answer = match self.call::<()>(Method::GET, path, None, &[]).await {
            Ok(answer) => answer,
            Err(ClientError::Api {
                status: StatusCode::SERVICE_UNAVAILABLE,
                text,
                ..
            }) => Answer {
                status: StatusCode::SERVICE_UNAVAILABLE,
                headers: reqwest::header::HeaderMap::new(),
                body: text.into_bytes(),
            },
            Err(err) => return Err(err),
        };
        self.decode(Method::GET, path, &answer)
    }

    async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let answer = self.call(method.clone(), path, body, headers).await?;
        self.decode(method, path, &answer)
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        answer: &Answer,
    ) -> Result<T, ClientError> {
        let message = if answer.body.is_empty() {
            "the server answered without a body".to_owned()
        } else {
            match serde_json::from_slice(&answer.body) {
                Ok(value) => return Ok(value),
                Err(err) => err.to_string(),
            }
        };
        Err(ClientError::Decode {
            method,
            url: self.url(path),
            message,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends one request; a non-2xx answer is [`ClientError::Api`]. A `POST` without a body
    /// sends none (the server's rotate takes an empty body).
    async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let url = self.url(path);
        let mut request = self.http.request(method.clone(), &url);
        if path != HEALTHZ_PATH {
            request = request.bearer_auth(&self.token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |err: reqwest::Error| match self.timeout {
            Some(after) if err.is_timeout() => ClientError::Timeout {
                method: method.clone(),
                url: url.clone(),
                after,
            },
            _ => ClientError::Transport {
                method: method.clone(),
                url: url.clone(),
                message: error_chain(&err),
            },
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?.to_vec();
        if !status.is_success() {
            return Err(ClientError::Api {
                method,
                url,
                status,
                body: serde_json::from_slice::<ApiError>(&body).ok().map(Box::new),
                text: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// The server's base URL: http(s), a host, no query or fragment, no trailing `/`.
pub fn parse_base(value: &str) -> Result<String, ClientError> {
    let bad = |message: String| ClientError::Url {
        url: value.to_owned(),
        message,
    };
    let url = reqwest::Url::parse(value.trim()).map_err(|err| bad(format!("not a URL: {err}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("expected an http:// or https:// URL with a host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("the URL may not have a query or fragment".into()));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_parse_strictly() {
        assert_eq!(parse_base("http://h:1/").unwrap(), "http://h:1");
        assert_eq!(parse_base(" https://h/x/ ").unwrap(), "https://h/x");
        for bad in [
            "http//x",
            "ftp://x",
            "http://",
            "x",
            "http://h/?q=1",
            "http://h/#f",
            "http://[::1",
        ] {
            let err = parse_base(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    /// A server on loopback that answers one request with `status` and `body`.
    fn one_answer(status: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            stream.write_all(answer.as_bytes()).unwrap();
        });
        url
    }

    #[tokio::test]
    async fn a_503_health_is_still_a_report_and_errors_carry_the_body() {
        let api = AgentClient::new(
            &one_answer("503 Service Unavailable", r#"{"ok":false}"#),
            "t",
        )
        .unwrap();
        assert_eq!(api.healthz().await.unwrap(), Health { ok: false });

        let body = r#"{"error":"no such agent","code":"not-found","request_id":"r1"}"#;
        let api = AgentClient::new(&one_answer("404 Not Found", body), "t").unwrap();
        let err = api.get("x").await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(err.api_error().map(|e| e.code.as_str()), Some("not-found"));
        assert_eq!(err.to_string(), "no such agent (HTTP 404, request r1)");
    }

    #[test]
    fn debug_and_errors_never_show_the_token() {
        let client = AgentClient::new("http://127.0.0.1:1", "s3cret-token").unwrap();
        assert!(!format!("{client:?}").contains("s3cret"));
        let err = ClientError::Api {
            method: Method::GET,
            url: client.url(AGENTS_PATH),
            status: StatusCode::UNAUTHORIZED,
            body: None,
            text: "unauthorized".into(),
        };
        assert_eq!(
            err.to_string(),
            "GET http://127.0.0.1:1/v1/agents: HTTP 401 Unauthorized: unauthorized"
        );
    }
}
