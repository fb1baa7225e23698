//! `/api/v1`: the agent catalogue. `GET /api/v1/search`, `GET /api/v1/agents/{name}` (an
//! agent and its versions) and `POST /api/v1/agents/{name}/ratings` (`{"stars": 1..5}`).
//! Errors have the same `{"errors":[..]}` shape as `/v2/`.

use std::net::SocketAddr;

use agent_registry_access::Action;
use agent_registry_oci::catalogue::{RatingRequest, SearchQuery};
use agent_registry_oci::{ErrorCode, RepoName};
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::IntoResponse;
use axum::routing::{MethodFilter, get, on};
use axum::{Extension, Json, Router};

use crate::AppState;
use crate::auth::{self, Who};
use crate::error::{ApiError, ApiResult};

/// Rating bodies are a few bytes; anything longer is not one.
const RATING_MAX_BYTES: usize = 1024;

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/search", get(search)).route(
        "/api/v1/agents/{*rest}",
        on(MethodFilter::GET.or(MethodFilter::POST), agent),
    )
}

/// Searches what the caller may pull.
async fn search(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> ApiResult {
    let query = super::parameters("search", query)?;
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    let readable = state.access.readable(&who.caller).await;
    Ok(Json(state.registry.search(&query, readable).await?).into_response())
}

/// `GET {name}` or `POST {name}/ratings`; names have slashes, so the path is read from the
/// right, as `/v2/` paths are.
async fn agent(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    who: Option<Extension<Who>>,
    method: Method,
    headers: HeaderMap,
    Path(rest): Path<String>,
    body: Bytes,
) -> ApiResult {
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    let name = |s: &str| -> ApiResult<RepoName> { Ok(s.parse()?) };
    if method == Method::GET {
        let repo = name(&rest)?;
        auth::require(&state, &headers, &who, &repo, Action::Pull).await?;
        return Ok(Json(state.registry.agent(&repo).await?).into_response());
    }
    let Some(repo) = rest.strip_suffix("/ratings") else {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "POST is only for /api/v1/agents/{name}/ratings",
        ));
    };
    let repo = name(repo)?;
    auth::require(&state, &headers, &who, &repo, Action::Pull).await?;
    if body.len() > RATING_MAX_BYTES {
        return Err(ApiError::new(
            ErrorCode::ParameterInvalid,
            "a rating body is {\"stars\": 1-5}",
        ));
    }
    let rating: RatingRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::ParameterInvalid,
            format!("a rating body is {{\"stars\": 1-5}}: {e}"),
        )
    })?;
    // A signed-in rater is their name; an anonymous one, the address the rating came from.
    let rater = match &who.caller.name {
        Some(name) => format!("user:{name}"),
        None => peer
            .map(|Extension(ConnectInfo(addr))| addr.ip().to_string())
            .unwrap_or_else(|| "unknown".into()),
    };
    let summary = state.registry.rate(&repo, &rater, rating.stars).await?;
    Ok(Json(summary).into_response())
}
