//! The HTTP surface: routes, bearer-token auth, JSON bodies and JSON errors.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pika_managed_agent_contract::{
    AGENTS_PATH, AgentList, AgentProvisionRequest, AgentReprovisionRequest, ApiError, HEALTHZ_PATH,
};
use serde::de::DeserializeOwned;

use crate::agents::{Agents, Failure};
use crate::auth::Tokens;

pub struct AppState {
    pub agents: Agents,
    pub tokens: Tokens,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route(HEALTHZ_PATH, get(healthz))
        .route(AGENTS_PATH, post(provision).get(list))
        .route(&format!("{AGENTS_PATH}/{{id}}"), get(show).delete(delete))
        .route(
            &format!("{AGENTS_PATH}/{{id}}/reprovision"),
            post(reprovision),
        )
        .fallback(|| async { Failure::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(state)
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ApiError {
            error: self.message,
            agent: self.agent,
        };
        let mut response = (self.status, Json(body)).into_response();
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

impl FromRequestParts<Shared> for Owner {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Failure> {
        let unauthorized = |message: &str| Failure::new(StatusCode::UNAUTHORIZED, message);
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer <token> header"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthorized("Authorization header must be `Bearer <token>`"))?;
        state
            .tokens
            .owner_of(token)
            .map(Owner)
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

/// Parses a JSON body (an empty body is the type's default); errors name the bad field.
fn parse_body<T: DeserializeOwned + Default>(body: &Bytes) -> Result<T, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    Json::<T>::from_bytes(body)
        .map(|Json(value)| value)
        .map_err(|err: JsonRejection| Failure::new(StatusCode::BAD_REQUEST, err.body_text()))
}

async fn healthz(State(state): State<Shared>) -> Response {
    let report = state.agents.health().await;
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn provision(
    State(state): State<Shared>,
    Owner(owner): Owner,
    body: Bytes,
) -> Result<Response, Failure> {
    let request: AgentProvisionRequest = parse_body(&body)?;
    let record = state
        .agents
        .provision(&owner, request.name, &request.incus)
        .await?;
    Ok((StatusCode::CREATED, Json(record)).into_response())
}

async fn list(State(state): State<Shared>, Owner(owner): Owner) -> Result<Response, Failure> {
    let agents = state.agents.list(&owner)?;
    Ok(Json(AgentList { agents }).into_response())
}

async fn show(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    Ok(Json(state.agents.show(&owner, &id)?).into_response())
}

async fn reprovision(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let request: AgentReprovisionRequest = parse_body(&body)?;
    let record = state
        .agents
        .reprovision(&owner, &id, &request.incus)
        .await?;
    Ok(Json(record).into_response())
}

async fn delete(
    State(state): State<Shared>,
    Owner(owner): Owner,
    Path(id): Path<String>,
) -> Result<Response, Failure> {
    state.agents.delete(&owner, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
