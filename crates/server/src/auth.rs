//! Authentication middleware and the authorization check handlers call.
//!
//! [`authenticate`] runs on every request: it turns the `Authorization` header into a
//! [`Who`] (anonymous when there is none), applies the rate limits, and answers bad
//! credentials with 401 and a challenge. Handlers then call [`require`] for each repository
//! and action they touch; it answers 401 with a challenge naming the scope to ask for (when
//! a token would help) or 403 `DENIED` (when no token would). The answer is the same whether
//! or not the repository exists, so it reveals nothing.

use std::net::{IpAddr, SocketAddr};

use agent_registry_access::{AccessError, Action, Actions, Caller};
use agent_registry_oci::{ErrorCode, RepoName};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiError;

/// Who a request is from, as [`authenticate`] established.
#[derive(Debug, Clone)]
pub struct Who {
    pub caller: Caller,
    pub client: Option<IpAddr>,
    /// The credential was a registry token from `/token` (whose scopes can be widened by
    /// asking for another), rather than a password or an API token.
    pub registry_token: bool,
}

impl Who {
    /// For requests that skipped the middleware (routers built without it in unit tests).
    pub fn anonymous() -> Who {
        Who {
            caller: Caller::anonymous(),
            client: None,
            registry_token: false,
        }
    }
}

pub async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip());
    let access = &state.access;
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    // With access control off, credentials are not checked: a client holding stale ones
    // for this host still works.
    let authenticated = match header {
        Some(h) if access.enabled() => access.authenticate(Some(h), client).await,
        _ => Ok(Caller::anonymous()),
    };
    if let (Some(metrics), Some(_)) = (&state.metrics, header.filter(|_| access.enabled())) {
        metrics.record_auth(match &authenticated {
            Ok(_) => "success",
            Err(AccessError::Throttled(_)) => "throttled",
            Err(_) => "failure",
        });
    }
    let caller = match authenticated {
        Ok(c) => c,
        Err(e) => return refuse(&state, request.headers(), e).into_response(),
    };
    if let Err(wait) = access.throttle(&caller, client) {
        return too_many(wait, "rate limit exceeded: too many requests").into_response();
    }
    let registry_token = header.is_some_and(agent_registry_access::is_registry_token);
    request.extensions_mut().insert(Who {
        caller,
        client,
        registry_token,
    });
    next.run(request).await
}

/// The answer to credentials that did not authenticate.
pub fn refuse(state: &AppState, headers: &HeaderMap, e: AccessError) -> ApiError {
    match e {
        AccessError::Unauthenticated(_) => challenge(state, headers, None, e.to_string()),
        AccessError::Throttled(wait) => too_many(wait, &e.to_string()),
        other => ApiError::internal(other),
    }
}

pub fn too_many(wait: std::time::Duration, message: &str) -> ApiError {
    ApiError::new(ErrorCode::Toomanyrequests, message)
        .with_header(header::RETRY_AFTER, wait.as_secs().max(1).to_string())
}

/// 401 with a `WWW-Authenticate` challenge sending the client to our token endpoint.
pub fn challenge(
    state: &AppState,
    headers: &HeaderMap,
    scope: Option<(&RepoName, Actions, bool)>,
    message: String,
) -> ApiError {
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(state, headers),
        state.access.settings().service
    );
    if let Some((repo, actions, insufficient)) = scope {
        value.push_str(&format!(
            ",scope=\"repository:{repo}:{}\"",
            actions.to_docker().join(",")
        ));
        if insufficient {
            value.push_str(",error=\"insufficient_scope\"");
        }
    }
    ApiError::new(ErrorCode::Unauthorized, message).with_header(header::WWW_AUTHENTICATE, value)
}

/// The token endpoint's URL: configured, or this server as the client reached it.
fn realm(state: &AppState, headers: &HeaderMap) -> String {
    let configured = &state.config.auth.realm;
    if !configured.is_empty() {
        return configured.clone();
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = if state.config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let proto = get("x-forwarded-proto").unwrap_or(scheme);
    let host = get("x-forwarded-host")
        .or_else(|| get(header::HOST.as_str()))
        .unwrap_or("localhost");
    format!("{proto}://{host}/token")
}

/// Fails unless `who` may do `action` to `repo`.
pub async fn require(
    state: &AppState,
    headers: &HeaderMap,
    who: &Who,
    repo: &RepoName,
    action: Action,
) -> Result<(), ApiError> {
    let access = &state.access;
    if access.allows(&who.caller, repo, action).await {
        return Ok(());
    }
    let wanted = match action {
        Action::Pull => Actions::NONE.with(Action::Pull),
        a => Actions::NONE.with(Action::Pull).with(a),
    };
    if who.caller.name.is_none() {
        return Err(challenge(
            state,
            headers,
            Some((repo, wanted, false)),
            format!("authentication required to {action} {repo}"),
        ));
    }
    // A registry token made for other scopes: a new one may hold this one.
    if who.registry_token {
        let unlimited = Caller {
            limit: None,
            ..who.caller.clone()
        };
        if access.allows(&unlimited, repo, action).await {
            return Err(challenge(
                state,
                headers,
                Some((repo, wanted, true)),
                format!("the token does not cover {action} on {repo}; ask /token for that scope"),
            ));
        }
    }
    Err(ApiError::new(
        ErrorCode::Denied,
        format!(
            "requested access to the resource is denied: {} may not {action} {repo}",
            who.caller.display_name()
        ),
    )
    .with_status(StatusCode::FORBIDDEN))
}
