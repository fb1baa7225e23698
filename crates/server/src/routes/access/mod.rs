//! `/api/v1` access administration: who am I, users and robots, API tokens, permissions,
//! repository visibility and the access log. Errors have the `{"errors":[..]}` shape.
//!
//! Registry administrators may do everything here. Anyone signed in may see themselves,
//! change their password and manage their own tokens. A repository's administrators may
//! change its visibility and the grants naming exactly it.

mod accounts;
mod grants;
pub(super) mod logs;
mod policies;

use agent_registry_access::Caller;
use agent_registry_oci::ErrorCode;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::AppState;
use crate::auth::{self, Who};
use crate::error::{ApiError, ApiResult};
pub fn routes() -> Router<AppState> {
    accounts::routes()
        .merge(grants::routes())
        .merge(logs::routes())
        .merge(policies::routes())
}

fn who(w: Option<Extension<Who>>) -> Who {
    w.map_or_else(Who::anonymous, |Extension(w)| w)
}

use super::body;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    super::parameters("query", q)
}

/// A repository pattern from a request: `team/agent`, `team/*` or `*`.
fn pattern(s: &str) -> ApiResult<agent_registry_oci::RepoPattern> {
    s.parse().map_err(|_| {
        invalid(format!(
            "{s:?} is not a repository or pattern (team/agent, team/* or *)"
        ))
    })
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::ParameterInvalid, message)
}

/// Fails unless the caller is signed in (always true with access control off).
fn signed_in(state: &AppState, headers: &HeaderMap, who: &Who) -> ApiResult<()> {
    if state.access.enabled() && who.caller.name.is_none() {
        return Err(auth::challenge(
            state,
            headers,
            None,
            "authentication required: sign in first (agent login)".into(),
        ));
    }
    Ok(())
}

/// Fails unless the caller administers the registry.
pub(super) fn admin(state: &AppState, headers: &HeaderMap, who: &Who) -> ApiResult<()> {
    signed_in(state, headers, who)?;
    if state.access.enabled() && !who.caller.admin {
        return Err(denied(&who.caller, "administer the registry"));
    }
    Ok(())
}

fn denied(caller: &Caller, what: &str) -> ApiError {
    ApiError::new(
        ErrorCode::Denied,
        format!(
            "requested access to the resource is denied: {} may not {what}",
            caller.display_name()
        ),
    )
    .with_status(StatusCode::FORBIDDEN)
}

/// Whether the caller is `name` or administers the registry.
fn is_self_or_admin(state: &AppState, who: &Who, name: &str) -> bool {
    !state.access.enabled() || who.caller.admin || who.caller.name.as_deref() == Some(name)
}

fn created(value: impl Serialize) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

fn no_content() -> Response {
    super::distribution::empty(StatusCode::NO_CONTENT)
}
