//! Permissions (grants) and repository visibility.

use agent_registry_access::{Action, Permission};
use agent_registry_oci::access::{Grant, GrantFilter, Repository, SetVisibility};
use agent_registry_oci::{RepoName, RepoPattern};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};

use super::{body, created, denied, invalid, no_content, pattern, query, signed_in, who};
use crate::AppState;
use crate::auth::{self, Who};
use crate::error::ApiResult;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/permissions",
            get(list_permissions)
                .post(add_permission)
                .delete(remove_permission),
        )
        .route(
            "/api/v1/repositories/{*name}",
            get(repository).put(set_repository),
        )
}

/// Fails unless the caller may manage grants on `pattern`: registry administrators on any,
/// a repository's administrators on exactly that repository.
async fn may_manage(
    state: &AppState,
    headers: &HeaderMap,
    w: &Who,
    p: &RepoPattern,
) -> ApiResult<()> {
    signed_in(state, headers, w)?;
    if !state.access.enabled() || w.caller.admin {
        return Ok(());
    }
    if p.prefix().is_none()
        && let Ok(repo) = p.as_str().parse::<RepoName>()
        && state.access.allows(&w.caller, &repo, Action::Admin).await
    {
        return Ok(());
    }
    Err(denied(&w.caller, &format!("manage permissions on {p}")))
}

async fn list_permissions(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<GrantFilter>, QueryRejection>,
) -> ApiResult {
    let w = who(w);
    signed_in(&state, &headers, &w)?;
    let filter = query(q)?;
    let repo = match &filter.repository {
        Some(r) => Some(
            r.parse::<RepoName>()
                .map_err(|_| invalid(format!("repository {r:?} is not a repository name")))?,
        ),
        None => None,
    };
    let repo_admin = match &repo {
        Some(r) => state.access.allows(&w.caller, r, Action::Admin).await,
        None => false,
    };
    let everything = !state.access.enabled() || w.caller.admin;
    let grants: Vec<Grant> = state
        .access
        .grants()
        .await?
        .into_iter()
        .filter(|g| filter.subject.as_ref().is_none_or(|s| *s == g.subject))
        .filter(|g| repo.as_ref().is_none_or(|r| g.pattern.matches(r)))
        // Others see the grants naming them, or, on a repository they administer, its grants.
        .filter(|g| {
            everything
                || repo_admin
                || w.caller.name.as_deref() == Some(g.subject.as_str())
                || g.subject
                    .strip_prefix("group:")
                    .is_some_and(|grp| w.caller.groups.iter().any(|m| m == grp))
        })
        .map(|g| Grant {
            subject: g.subject,
            repository: g.pattern.to_string(),
            permission: g.permission,
        })
        .collect();
    Ok(Json(grants).into_response())
}

async fn add_permission(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    json: Result<Json<Grant>, JsonRejection>,
) -> ApiResult {
    let w = who(w);
    let new = body(json)?;
    let p = pattern(&new.repository)?;
    may_manage(&state, &headers, &w, &p).await?;
    let permission: Permission = new
        .permission
        .parse()
        .map_err(|e: agent_registry_access::ScopeError| invalid(e.to_string()))?;
    state.access.grant(&new.subject, &p, permission).await?;
    Ok(created(Grant {
        subject: new.subject,
        repository: p.to_string(),
        permission: permission.to_string(),
    }))
}

async fn remove_permission(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<GrantFilter>, QueryRejection>,
) -> ApiResult {
    let w = who(w);
    let filter = query(q)?;
    let (Some(subject), Some(repository)) = (filter.subject, filter.repository) else {
        return Err(invalid("subject and repository are both required"));
    };
    let p = pattern(&repository)?;
    may_manage(&state, &headers, &w, &p).await?;
    state.access.revoke_grant(&subject, &p).await?;
    Ok(no_content())
}

fn visibility(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

async fn repository(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let repo = name.parse::<RepoName>()?;
    auth::require(&state, &headers, &who(w), &repo, Action::Pull).await?;
    let public = state.access.is_public(&repo).await;
    Ok(Json(Repository {
        name: repo.to_string(),
        visibility: visibility(public).to_owned(),
    })
    .into_response())
}

async fn set_repository(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Result<Json<SetVisibility>, JsonRejection>,
) -> ApiResult {
    let repo = name.parse::<RepoName>()?;
    auth::require(&state, &headers, &who(w), &repo, Action::Admin).await?;
    let public = match body(json)?.visibility.as_str() {
        "public" => true,
        "private" => false,
        other => {
            return Err(invalid(format!(
                "visibility {other:?} is not public or private"
            )));
        }
    };
    state.access.set_visibility(&repo, public).await?;
    Ok(Json(Repository {
        name: repo.to_string(),
        visibility: visibility(public).to_owned(),
    })
    .into_response())
}
