//! `/api/v1` access administration: who am I, users and robots, API tokens, permissions,
//! repository visibility and the access log. Errors have the `{"errors":[..]}` shape.
//!
//! Registry administrators may do everything here. Anyone signed in may see themselves,
//! change their password and manage their own tokens. A repository's administrators may
//! change its visibility and the grants naming exactly it.

use agent_registry_access::{Action, Caller, Permission};
use agent_registry_metadata::access::{
    AccessEvent, AccessLogQuery, PrincipalKind, PrincipalRecord, TokenRecord,
};
use agent_registry_oci::catalogue::{format_rfc3339, parse_rfc3339};
use agent_registry_oci::{ErrorCode, RepoName, RepoPattern};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::auth::{self, Who};
use crate::error::{ApiError, ApiResult};

/// Access log lines returned when the query does not say.
const DEFAULT_LOG_LINES: u32 = 100;
const MAX_LOG_LINES: u32 = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/whoami", get(whoami))
        .route("/api/v1/users", get(list_users).post(add_user))
        .route("/api/v1/users/{name}", delete(remove_user))
        .route("/api/v1/users/{name}/password", put(set_password))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
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
        .route("/api/v1/access-logs", get(access_logs))
}

fn who(w: Option<Extension<Who>>) -> Who {
    w.map_or_else(Who::anonymous, |Extension(w)| w)
}

fn body<T>(json: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    json.map(|Json(t)| t).map_err(|e| {
        ApiError::new(
            ErrorCode::ParameterInvalid,
            format!("bad request body: {}", e.body_text()),
        )
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t).map_err(|e| {
        ApiError::new(
            ErrorCode::ParameterInvalid,
            format!("bad query parameters: {}", e.body_text()),
        )
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
fn admin(state: &AppState, headers: &HeaderMap, who: &Who) -> ApiResult<()> {
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

#[derive(Serialize)]
struct WhoAmI<'a> {
    name: &'a str,
    kind: &'a str,
    authenticated: bool,
    admin: bool,
    groups: &'a [String],
    access_control: bool,
}

async fn whoami(State(state): State<AppState>, w: Option<Extension<Who>>) -> Response {
    let w = who(w);
    Json(WhoAmI {
        name: w.caller.display_name(),
        kind: w.caller.kind.as_str(),
        authenticated: w.caller.name.is_some(),
        admin: w.caller.admin,
        groups: &w.caller.groups,
        access_control: state.access.enabled(),
    })
    .into_response()
}

#[derive(Serialize)]
struct User {
    name: String,
    kind: &'static str,
    admin: bool,
    groups: Vec<String>,
    has_password: bool,
    created: String,
}

impl From<PrincipalRecord> for User {
    fn from(p: PrincipalRecord) -> User {
        User {
            kind: p.kind.as_str(),
            has_password: p.password_hash.is_some(),
            created: format_rfc3339(p.created_at),
            name: p.name,
            admin: p.admin,
            groups: p.groups,
        }
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
        .map(User::from)
        .collect();
    Ok(Json(users).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    #[serde(default)]
    robot: bool,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    groups: Vec<String>,
    password: Option<String>,
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
    Ok(created(User::from(record)))
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
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

#[derive(Serialize)]
struct Token {
    id: String,
    owner: String,
    name: String,
    scopes: Vec<String>,
    created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revoked: Option<String>,
    /// The secret, present only in the answer that created the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl From<TokenRecord> for Token {
    fn from(t: TokenRecord) -> Token {
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFilter {
    owner: Option<String>,
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
        .map(Token::from)
        .collect();
    Ok(Json(tokens).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    /// Whose token; default the caller. Only administrators make tokens for others (robots).
    owner: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    expires_in_days: Option<u64>,
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
    if w.caller.limit.is_some() {
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
        ..Token::from(made.record)
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

#[derive(Serialize)]
struct Grant {
    subject: String,
    repository: String,
    permission: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantFilter {
    subject: Option<String>,
    repository: Option<String>,
}

fn pattern(s: &str) -> ApiResult<RepoPattern> {
    s.parse().map_err(|_| {
        invalid(format!(
            "{s:?} is not a repository or pattern (team/agent, team/* or *)"
        ))
    })
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewGrant {
    subject: String,
    repository: String,
    permission: String,
}

async fn add_permission(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    json: Result<Json<NewGrant>, JsonRejection>,
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

#[derive(Serialize)]
struct Repository {
    name: String,
    visibility: &'static str,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetRepository {
    visibility: String,
}

fn repo_name(s: &str) -> ApiResult<RepoName> {
    s.parse().map_err(|e: agent_registry_oci::NameError| {
        ApiError::new(ErrorCode::NameInvalid, e.to_string())
    })
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
    let repo = repo_name(&name)?;
    auth::require(&state, &headers, &who(w), &repo, Action::Pull).await?;
    let public = state.access.is_public(&repo).await;
    Ok(Json(Repository {
        name: repo.to_string(),
        visibility: visibility(public),
    })
    .into_response())
}

async fn set_repository(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    json: Result<Json<SetRepository>, JsonRejection>,
) -> ApiResult {
    let repo = repo_name(&name)?;
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
        visibility: visibility(public),
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFilter {
    user: Option<String>,
    action: Option<String>,
    repository: Option<String>,
    /// RFC 3339 time, or a duration back from now (`30m`, `24h`, `7d`).
    since: Option<String>,
    #[serde(default)]
    denied: bool,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct LogLine {
    time: String,
    user: Option<String>,
    action: String,
    repository: Option<String>,
    target: Option<String>,
    allowed: bool,
    status: u16,
    client: Option<String>,
}

impl From<AccessEvent> for LogLine {
    fn from(e: AccessEvent) -> LogLine {
        LogLine {
            time: format_rfc3339(e.at),
            user: e.principal,
            action: e.action,
            repository: e.repo,
            target: e.target,
            allowed: e.allowed,
            status: e.status,
            client: e.client,
        }
    }
}

/// `24h`, `30m`, `7d`, `90s` back from `now`, or an RFC 3339 time.
fn since(s: &str, now: i64) -> Option<i64> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(now.saturating_sub(n.saturating_mul(secs)))
}

async fn access_logs(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<LogFilter>, QueryRejection>,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let f = query(q)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let since = match &f.since {
        Some(s) => Some(since(s, now).ok_or_else(|| {
            invalid(format!(
                "since={s:?} is neither a time (2026-01-02T03:04:05Z) nor a duration (30m, 24h, 7d)"
            ))
        })?),
        None => None,
    };
    let limit = f.limit.unwrap_or(DEFAULT_LOG_LINES);
    if limit == 0 || limit > MAX_LOG_LINES {
        return Err(invalid(format!(
            "limit must be between 1 and {MAX_LOG_LINES}"
        )));
    }
    let lines: Vec<LogLine> = state
        .access
        .store()
        .access_log(&AccessLogQuery {
            principal: f.user,
            action: f.action,
            repo: f.repository,
            since,
            denied_only: f.denied,
            limit,
        })
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(LogLine::from)
        .collect();
    Ok(Json(lines).into_response())
}

#[cfg(test)]
mod tests {
    use super::since;

    #[test]
    fn since_takes_times_and_durations() {
        assert_eq!(since("24h", 100_000), Some(100_000 - 86_400));
        assert_eq!(since("30m", 10_000), Some(10_000 - 1_800));
        assert_eq!(since("1970-01-01T00:01:00Z", 0), Some(60));
        assert_eq!(since("yesterday", 0), None);
        assert_eq!(since("5w", 0), None);
    }
}
