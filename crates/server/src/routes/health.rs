//! Probes: `/healthz` (the process answers), `/readyz` (it can take pushes and serve pulls:
//! storage writable, database reachable, free space above the floor; 503 otherwise) and
//! `GET /api/v1/health` (the same verdict with version and uptime, and each check with
//! `?detailed=true`). None needs credentials or counts against a rate limit.

use agent_registry_oci::health::{Health, HealthStatus};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiResult;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/api/v1/health", get(health))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthQuery {
    #[serde(default)]
    detailed: bool,
}

async fn ready(State(state): State<AppState>) -> Response {
    answer(check(&state).await)
}

async fn health(
    State(state): State<AppState>,
    query: Result<Query<HealthQuery>, QueryRejection>,
) -> ApiResult {
    let query = super::parameters("health", query)?;
    let mut health = check(&state).await;
    if !query.detailed {
        health.checks.clear();
    }
    Ok(answer(health))
}

async fn check(state: &AppState) -> Health {
    Health::new(
        env!("CARGO_PKG_VERSION"),
        state.started.elapsed().as_secs(),
        state.registry.health_checks().await,
    )
}

/// 200 when healthy, 503 when not, the report as the body either way.
fn answer(health: Health) -> Response {
    let status = match health.status {
        HealthStatus::Ok => StatusCode::OK,
        HealthStatus::Failing => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, Json(health)).into_response()
}
