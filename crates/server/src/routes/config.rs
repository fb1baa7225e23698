//! `GET /api/v1/config`: the configuration this server runs with, after its file, environment
//! and flags (administrators only when access control is on). Secrets (the first
//! administrator's password) are never serialized.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};

use crate::AppState;
use crate::auth::Who;
use crate::error::ApiResult;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/config", get(show))
}

async fn show(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
) -> ApiResult {
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    super::access::admin(&state, &headers, &who)?;
    Ok(Json(state.config.as_ref()).into_response())
}
