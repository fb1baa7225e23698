//! Who am I, users and robots, passwords and API tokens.

use agent_registry_metadata::access::{PrincipalKind, PrincipalRecord, TokenRecord};
use agent_registry_oci::access::{
    NewPassword, NewToken, NewUser, Token, TokenFilter, User, WhoAmI,
};
use agent_registry_oci::catalogue::format_rfc3339;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Extension, Json, Router};

use super::{
    admin, body, created, denied, invalid, is_self_or_admin, no_content, query, signed_in, who,
};
use crate::AppState;
use crate::auth::Who;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/whoami", get(whoami))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", delete(remove_user))
        .route("/api/v1/users/{name}/password", put(set_password))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
}

async fn whoami(State(state): State<AppState>, w: Option<Extension<Who>>) -> Response {
    let w = who(w);
    Json(WhoAmI {
        name: w.caller.display_name().to_owned(),
        kind: w.caller.kind.as_str().to_owned(),
        authenticated: w.caller.name.is_some(),
        admin: w.caller.admin,
        groups: w.caller.groups.to_vec(),
        access_control: state.access.enabled(),
    })
    .into_response()
}

fn user(p: PrincipalRecord) -> User {
    User {
        kind: p.kind.as_str().to_owned(),
        has_password: p.password_hash.is_some(),
        created: format_rfc3339(p.created_at),
        name: p.name,
        admin: p.admin,
        groups: p.groups,
    }
}

async fn list_users(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let users: Vec<User> = state
        .access
        .principals()
        .await?
        .into_iter()
        .map(user)
        .collect();
    Ok(Json(users).into_response())
}

async fn add_user(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    json: Result<Json<NewUser>, JsonRejection>,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let new = body(json)?;
    let kind = if new.robot {
        PrincipalKind::Robot
    } else {
        PrincipalKind::User
    };
    if new.robot && new.password.is_some() {
        return Err(invalid(
            "robots sign in with API tokens, not passwords: leave password out",
        ));
    }
    let record = state
        .access
        .add_principal(
            &new.name,
            kind,
            new.admin,
            new.groups,
            new.password.as_deref(),
        )
        .await?;
    Ok(created(user(record)))
}

async fn remove_user(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult {
    let w = who(w);
    admin(&state, &headers, &w)?;
    if w.caller.name.as_deref() == Some(name.as_str()) {
        return Err(invalid(
            "you cannot remove yourself; ask another administrator",
        ));
    }
    state.access.remove_principal(&name).await?;
    Ok(no_content())
}

async fn set_password(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Result<Json<NewPassword>, JsonRejection>,
) -> ApiResult {
    let w = who(w);
    signed_in(&state, &headers, &w)?;
    if !is_self_or_admin(&state, &w, &name) {
        return Err(denied(&w.caller, &format!("change the password of {name}")));
    }
    let new = body(json)?;
    state.access.set_password(&name, &new.password).await?;
    Ok(no_content())
}

fn token(t: TokenRecord) -> Token {
    Token {
        id: t.id,
        owner: t.owner,
        name: t.name,
        scopes: t.scopes,
        created: format_rfc3339(t.created_at),
        expires: t.expires_at.map(format_rfc3339),
        revoked: t.revoked_at.map(format_rfc3339),
        token: None,
    }
}

async fn list_tokens(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<TokenFilter>, QueryRejection>,
) -> ApiResult {
    let w = who(w);
    signed_in(&state, &headers, &w)?;
    let filter = query(q)?;
    let owner = match (&filter.owner, &w.caller.name) {
        (Some(o), _) => Some(o.clone()),
        // Administrators see everyone's; others their own.
        (None, _) if w.caller.admin || !state.access.enabled() => None,
        (None, Some(me)) => Some(me.to_string()),
        (None, None) => None,
    };
    if let Some(o) = &owner
        && !is_self_or_admin(&state, &w, o)
    {
        return Err(denied(&w.caller, &format!("see the tokens of {o}")));
    }
    let tokens: Vec<Token> = state
        .access
        .tokens(owner.as_deref())
        .await?
        .into_iter()
        .map(token)
        .collect();
    Ok(Json(tokens).into_response())
}

async fn create_token(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    json: Result<Json<NewToken>, JsonRejection>,
) -> ApiResult {
    let w = who(w);
    signed_in(&state, &headers, &w)?;
    let new = body(json)?;
    let owner = match (&new.owner, &w.caller.name) {
        (Some(o), _) => o.clone(),
        (None, Some(me)) => me.to_string(),
        (None, None) => return Err(invalid("owner is required when access control is off")),
    };
    if !is_self_or_admin(&state, &w, &owner) {
        return Err(denied(&w.caller, &format!("create tokens for {owner}")));
    }
    // A token made with a narrowed credential may not reach further than that credential.
    if w.caller.scoped {
        return Err(denied(
            &w.caller,
            "create tokens with a scoped credential; sign in with a password",
        ));
    }
    let ttl = new
        .expires_in_days
        .map(|d| std::time::Duration::from_secs(d.saturating_mul(86_400)));
    let made = state
        .access
        .create_token(&owner, &new.name, new.scopes, ttl)
        .await?;
    Ok(created(Token {
        token: Some(made.secret),
        ..token(made.record)
    }))
}

async fn revoke_token(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let w = who(w);
    signed_in(&state, &headers, &w)?;
    let owner = if w.caller.admin || !state.access.enabled() {
        None
    } else {
        w.caller.name.as_deref()
    };
    state.access.revoke_token(&id, owner).await?;
    Ok(no_content())
}
