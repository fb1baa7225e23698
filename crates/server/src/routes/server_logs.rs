//! `GET /api/v1/logs?level=&since=&after=&limit=`: the server's recent log lines
//! (administrators; see `crate::logs`).

use agent_registry_oci::ErrorCode;
use agent_registry_oci::logs::LogQuery;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};

use crate::AppState;
use crate::auth::Who;
use crate::error::{ApiError, ApiResult};

/// Lines one answer holds at most.
const MAX_LIMIT: u32 = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/logs", get(logs))
}

async fn logs(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> ApiResult {
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    super::access::admin(&state, &headers, &who)?;
    let query = super::parameters("log", query)?;
    let invalid = |m: String| ApiError::new(ErrorCode::ParameterInvalid, m);
    let level = match query.level.as_deref() {
        None => tracing::Level::TRACE,
        Some(l) => l.parse().map_err(|_| {
            invalid(format!(
                "level={l:?} is not a level: error, warn, info, debug or trace"
            ))
        })?,
    };
    let since = match &query.since {
        None => None,
        Some(s) => Some(super::access::logs::since(s, agent_registry_access::unix_now()).ok_or_else(|| {
            invalid(format!(
                "since={s:?} is neither a time (2026-01-02T03:04:05Z) nor a duration (30m, 24h, 7d)"
            ))
        })?),
    };
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(invalid(format!(
            "limit={limit} must be from 1 to {MAX_LIMIT}"
        )));
    }
    let Some(store) = &state.logs else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this server keeps no log lines (it was not started by the agent-registry binary)",
        )
        .with_status(StatusCode::NOT_FOUND));
    };
    let lines = store.query(level, since, query.after.unwrap_or(0), limit as usize);
    Ok(Json(lines).into_response())
}
