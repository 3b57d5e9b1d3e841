//! The HTTP surface: routes, bearer-token auth, strict JSON bodies, the one error shape, request
//! IDs and request tracing. The only place that knows HTTP status codes.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pika_managed_agent_contract::{
    AGENTS_PATH, AgentList, AgentProvisionRequest, AgentReprovisionRequest, AgentWithToken,
    ApiError, HEALTH_PATH, HEALTHZ_PATH, Health, IDEMPOTENCY_KEY_HEADER, REQUEST_ID_HEADER,
};
use rand::RngCore;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetRequestHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::agents::{Agents, Deleted, Idempotency, Provisioned};
use crate::auth::Tokens;
use crate::error::{AgentError, ErrorKind};

/// Largest request body accepted (requests are a few hundred bytes).
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub agents: Agents,
    pub tokens: Tokens,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(healthz))
        .route(HEALTH_PATH, get(health_details))
        .route(AGENTS_PATH, post(provision).get(list))
        .route(&format!("{AGENTS_PATH}/{{id}}"), get(show).delete(delete))
        .route(
            &format!("{AGENTS_PATH}/{{id}}/reprovision"),
            post(reprovision),
        )
        .route(
            &format!("{AGENTS_PATH}/{{id}}/gateway-token"),
            post(rotate_gateway_token),
        )
        .fallback(|| async {
            HttpFailure::new(
                StatusCode::NOT_FOUND,
                "no-such-endpoint",
                "no such endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(error_shape))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let path = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("(no route)");
                let request_id = request_id_of(request);
                tracing::info_span!("request", method = %request.method(), path, request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(request_id_header()))
        // A fresh ID for every request: a client-sent one is not trusted (it would go into our
        // logs), so the header is overridden, never merely set when missing.
        .layer(SetRequestHeaderLayer::overriding(
            request_id_header(),
            |_: &Request| {
                let mut bytes = [0u8; 8];
                rand::rng().fill_bytes(&mut bytes);
                HeaderValue::from_str(&hex::encode(bytes)).ok()
            },
        ))
        .with_state(state)
}

fn request_id_header() -> HeaderName {
    HeaderName::from_static(REQUEST_ID_HEADER)
}

/// The ID of one request (in the trace span, the `x-request-id` header and every error body).
fn request_id_of(request: &Request) -> &str {
    let id = request.headers().get(REQUEST_ID_HEADER);
    id.and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Every error response gets the one JSON shape with the request ID, whoever produced it (our
/// handlers, axum's 405 and body-limit rejections, the fallback).
async fn error_shape(request: Request, next: Next) -> Response {
    let id = request_id_of(&request).to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<NotAnError>().is_some()
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Ours carry their ApiError as an extension; what axum answers itself (405, 413, its
    // extractors' rejections) is a status and a line of text.
    let mut error = match parts.extensions.remove::<ApiError>() {
        Some(error) => error,
        None => {
            let bytes = axum::body::to_bytes(body, BODY_LIMIT)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).trim().to_owned();
            let (code, message) = match status {
                StatusCode::METHOD_NOT_ALLOWED => (
                    "method-not-allowed",
                    format!("method {method} is not allowed on {path}"),
                ),
                StatusCode::PAYLOAD_TOO_LARGE => (
                    "payload-too-large",
                    format!("request body larger than {BODY_LIMIT} bytes"),
                ),
                s if s.is_client_error() && !text.is_empty() => ("invalid", text),
                s => (
                    "error",
                    s.canonical_reason().unwrap_or("error").to_lowercase(),
                ),
            };
            ApiError {
                error: message,
                code: code.into(),
                field: None,
                request_id: String::new(),
                agent: None,
            }
        }
    };
    error.request_id = id;
    let body = serde_json::to_vec(&error).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// Marks a response whose error status is a verdict with its own body (health checks), not a
/// failed request.
#[derive(Clone, Copy)]
struct NotAnError;

/// A health verdict: 200 when ok, 503 otherwise, with `body` as it is.
fn verdict(ok: bool, body: impl serde::Serialize) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = (status, Json(body)).into_response();
    response.extensions_mut().insert(NotAnError);
    response
}

/// A failed request as HTTP sees it.
#[derive(Debug)]
pub struct HttpFailure {
    status: StatusCode,
    body: ApiError,
}

impl HttpFailure {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        HttpFailure {
            status,
            body: ApiError {
                error: message.into(),
                code: code.into(),
                field: None,
                request_id: String::new(),
                agent: None,
            },
        }
    }

    fn field(mut self, field: &str) -> Self {
        self.body.field = Some(field.into());
        self
    }
}

/// The one mapping from the service's error kinds to HTTP.
pub fn status_of(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not-found"),
        ErrorKind::Busy => (StatusCode::CONFLICT, "busy"),
        ErrorKind::IdempotencyMismatch => {
            (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-mismatch")
        }
        ErrorKind::IncusUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "incus-unavailable"),
        ErrorKind::IncusFailed => (StatusCode::BAD_GATEWAY, "incus-failed"),
        ErrorKind::TokensUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "tokens-unavailable"),
        ErrorKind::PortsExhausted => (StatusCode::SERVICE_UNAVAILABLE, "gateway-ports-exhausted"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl From<AgentError> for HttpFailure {
    fn from(err: AgentError) -> Self {
        let (status, code) = status_of(err.kind);
        let message = if err.kind == ErrorKind::Internal {
            // Details (paths, SQL) stay in the log, correlated by the request ID of the span.
            tracing::error!(error = %err.message, "internal error");
            "internal error; the server log has the details under this request ID".to_owned()
        } else {
            tracing::info!(code, error = %err.message, field = err.field.as_deref(), "request refused");
            err.message
        };
        HttpFailure {
            status,
            body: ApiError {
                error: message,
                code: code.into(),
                field: err.field,
                request_id: String::new(),
                agent: err.agent,
            },
        }
    }
}

impl IntoResponse for HttpFailure {
    fn into_response(self) -> Response {
        // error_shape writes the body, with the request ID.
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self.body);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The owner behind the request's bearer token.
pub struct Owner(pub String);

/// The request's token holder with the operator's `admin` mark.
pub struct Caller(pub crate::auth::Principal);

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(char::is_whitespace)?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && !token.is_empty()
        && !token.contains(char::is_whitespace))
    .then_some(token)
}

impl FromRequestParts<Shared> for Owner {
    type Rejection = HttpFailure;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, HttpFailure> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        Ok(Owner(principal.owner))
    }
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = HttpFailure;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, HttpFailure> {
        let unauthorized =
            |message: &str| HttpFailure::new(StatusCode::UNAUTHORIZED, "unauthorized", message);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
        let token = bearer_token(value)
            .ok_or_else(|| unauthorized("Authorization header must be `Bearer <token>`"))?;
        match state.tokens.principal_of(token) {
            Ok(Some(principal)) => Ok(Caller(principal)),
            Ok(None) => Err(unauthorized("unknown token")),
            Err(err) => {
                tracing::error!(error = %err, line = err.line(), "refusing the request: the tokens file is unusable");
                Err(AgentError::new(
                    ErrorKind::TokensUnavailable,
                    "authentication is unavailable: the server's tokens file is unusable (the operator must fix it)",
                )
                .into())
            }
        }
    }
}

/// Parses a JSON body strictly: an empty body is the type's default; anything else must be
/// `Content-Type: application/json` (415 otherwise) holding a JSON object whose `incus`, if
/// present, is an object too; unknown fields are refused. Errors name the field.
fn parse_body<T: DeserializeOwned + Default>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, HttpFailure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(HttpFailure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "the body must be JSON with Content-Type: application/json",
        ));
    }
    let invalid = |message: String| HttpFailure::new(StatusCode::BAD_REQUEST, "invalid", message);
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| invalid(format!("the body is not valid JSON: {err}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| invalid("the body must be a JSON object".into()))?;
    if let Some(incus) = object.get("incus")
        && !incus.is_object()
    {
        return Err(invalid("incus must be a JSON object".into()).field("incus"));
    }
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let failure = invalid(format!("{path}: {}", err.inner()));
        if path == "." {
            failure
        } else {
            failure.field(&path)
        }
    })
}

async fn healthz(State(state): State<Shared>) -> Response {
    let ok = state.agents.health().await.ok;
    verdict(ok, Health { ok })
}

/// The checks with their details for `admin` tokens; other tokens (tenants) get each check's
/// name and verdict only: the socket path, Incus version, auth mode, project, profile, pool and
/// image provenance are the operator's business.
async fn health_details(State(state): State<Shared>, Caller(caller): Caller) -> Response {
    let mut report = state.agents.health().await;
    if !caller.admin {
        for check in &mut report.checks {
            check.detail = String::new();
        }
    }
    verdict(report.ok, report)
}

/// The `Idempotency-Key` header: 1-255 visible ASCII characters.
fn idempotency_key(headers: &HeaderMap, body: &Bytes) -> Result<Option<Idempotency>, HttpFailure> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let more = values.count();
    if more > 0 {
        // Which one would be meant is a guess; a guess could bind the wrong key.
        return Err(HttpFailure::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("send one Idempotency-Key header, not {}", more + 1),
        )
        .field(IDEMPOTENCY_KEY_HEADER));
    }
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.chars().all(|c| c.is_ascii_graphic()))
        .ok_or_else(|| {
            HttpFailure::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Idempotency-Key must be 1-255 visible ASCII characters",
            )
            .field(IDEMPOTENCY_KEY_HEADER)
        })?;
    Ok(Some(Idempotency::new(key.to_owned(), body)))
}

async fn provision(
    State(state): State<Shared>,
    Owner(owner): Owner,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpFailure> {
    let request: AgentProvisionRequest = parse_body(&headers, &body)?;
    let idempotency = idempotency_key(&headers, &body)?;
    let provisioned = state.agents.provision(&owner, request, idempotency).await?;
    let replayed = provisioned.replayed;
    let mut response =
        no_store((StatusCode::CREATED, Json(with_token(provisioned))).into_response());
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn list(State(state): State<Shared>, Owner(owner): Owner) -> Result<Response, HttpFailure> {
    let agents = state.agents.list(&owner).await?;
    Ok(Json(AgentList { agents }).into_response())
}

async fn show(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Response, HttpFailure> {
    Ok(Json(state.agents.show(&owner, &id).await?).into_response())
}

async fn reprovision(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpFailure> {
    let request: AgentReprovisionRequest = parse_body(&headers, &body)?;
    let provisioned = state
        .agents
        .reprovision(&owner, &id, &request.incus)
        .await?;
    Ok(no_store(Json(with_token(provisioned)).into_response()))
}

/// `POST /v1/agents/{id}/gateway-token`: a new gateway token, in this response only. The body
/// must be empty (or `{}`).
async fn rotate_gateway_token(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpFailure> {
    let _: EmptyBody = parse_body(&headers, &body)?;
    let provisioned = state.agents.rotate_gateway_token(&owner, &id).await?;
    Ok(no_store(Json(with_token(provisioned)).into_response()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EmptyBody {}

fn with_token(provisioned: Provisioned) -> AgentWithToken {
    AgentWithToken {
        agent: provisioned.record,
        gateway_token: provisioned
            .gateway_token
            .map(|token| token.expose().to_owned()),
    }
}

/// A response carrying a token is for its one reader: no cache keeps it.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn delete(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<Response, HttpFailure> {
    match state.agents.delete(&owner, &id, query.force).await? {
        Deleted::Gone => Ok(StatusCode::NO_CONTENT.into_response()),
        Deleted::Abandoned(record) => Ok((StatusCode::OK, Json(record)).into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_strict() {
        for (header, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Basic abc", None),
            ("Bearer a b", None),
            ("Bearerabc", None),
        ] {
            let value = HeaderValue::from_str(header).unwrap();
            assert_eq!(bearer_token(&value), token, "{header:?}");
        }
    }

    #[test]
    fn bodies_must_be_json_objects_of_known_fields() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let parse = |headers: &HeaderMap, body: &str| {
            parse_body::<AgentProvisionRequest>(headers, &Bytes::from(body.to_owned()))
        };
        assert!(parse(&headers, "").is_ok());
        assert!(parse(&headers, "{}").is_ok());
        for bad in [
            "[]",
            "null",
            "1",
            "{\"incus\":[]}",
            "{\"x\":1}",
            "{",
            "{\"name\":5}",
        ] {
            let err = parse(&headers, bad).unwrap_err();
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        let err = parse(&HeaderMap::new(), "{}").unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
}
