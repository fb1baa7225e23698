//! `/token`: Docker's token authentication.
//!
//! - `GET /token?service=&scope=...&offline_token=true` with Basic credentials (a password, or
//!   an API token as the password) or none (anonymous: public pulls only); docker, podman,
//!   skopeo and containerd use this.
//! - `POST /token` with an OAuth2 form: `grant_type=password` (`username`, `password`),
//!   `refresh_token` (`refresh_token`) or `client_credentials` (`client_id` = a robot or
//!   user, `client_secret` = one of its API tokens), or
//!   `urn:ietf:params:oauth:grant-type:token-exchange` (`subject_token` = a token from a
//!   trusted issuer, such as a Kubernetes service account's); `access_type=offline` adds a
//!   refresh token for accounts. Errors follow OAuth2 (`{"error", "error_description"}`).
//!
//! The token holds the subset of the requested scopes the caller may have; asking for more
//! is not an error, as the specification says.

use agent_registry_access::{AccessError, Caller, Issued, ResourceScope};
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;

use crate::AppState;
use crate::auth::{self, Who};
use crate::error::ApiError;

/// RFC 8693's grant, for workloads trading their issuer's token for ours.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

pub fn routes() -> Router<AppState> {
    Router::new().route("/token", get(get_token).post(post_token))
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
    access_token: String,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
}

impl TokenResponse {
    fn new(issued: Issued, oauth: bool) -> TokenResponse {
        TokenResponse {
            access_token: issued.token.clone(),
            token: issued.token,
            expires_in: issued.expires_in,
            issued_at: agent_registry_oci::catalogue::format_rfc3339(crate::unix_now()),
            refresh_token: issued.refresh_token,
            token_type: oauth.then_some("Bearer"),
        }
    }
}

/// All values of `key` (scope may repeat), joined with spaces.
fn scopes(pairs: &[(String, String)]) -> Vec<ResourceScope> {
    let joined: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str())
        .collect();
    ResourceScope::parse_all(&joined.join(" "))
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn check_service(state: &AppState, pairs: &[(String, String)]) -> Result<(), String> {
    match first(pairs, "service") {
        Some(s) if s != state.access.settings().service => Err(format!(
            "unknown service {s:?}; this registry is {:?}",
            state.access.settings().service
        )),
        _ => Ok(()),
    }
}

async fn get_token(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(message) = check_service(&state, &pairs) {
        return ApiError::new(agent_registry_oci::ErrorCode::ParameterInvalid, message)
            .into_response();
    }
    // The middleware checked the credentials; with access control off it did not, and a
    // token for anyone is a token for everything anyway.
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    if who.registry_token {
        return auth::challenge(
            &state,
            &headers,
            None,
            "authentication failed: use a password or API token to get a registry token".into(),
        )
        .into_response();
    }
    let offline = first(&pairs, "offline_token") == Some("true");
    match state
        .access
        .issue(&who.caller, &scopes(&pairs), offline)
        .await
    {
        Ok(issued) => Json(TokenResponse::new(issued, false)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[derive(Serialize)]
struct OAuthError {
    error: &'static str,
    error_description: String,
}

fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> Response {
    (
        status,
        Json(OAuthError {
            error,
            error_description: description.into(),
        }),
    )
        .into_response()
}

async fn post_token(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let pairs = match form {
        Ok(Form(p)) => p,
        Err(e) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body is not a form: {}", e.body_text()),
            );
        }
    };
    if let Err(message) = check_service(&state, &pairs) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", message);
    }
    let client = who.and_then(|Extension(w)| w.client);
    let field = |k: &str| first(&pairs, k).filter(|v| !v.is_empty());
    let missing = |k: &str| {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("{k} is required for this grant_type"),
        )
    };
    let access = &state.access;
    let caller: Result<Caller, AccessError> = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return missing("username and password");
            };
            access.login(user, password, client).await
        }
        Some("refresh_token") => {
            let Some(token) = field("refresh_token") else {
                return missing("refresh_token");
            };
            access.refresh(token).await
        }
        Some("client_credentials") => {
            let (Some(id), Some(secret)) = (field("client_id"), field("client_secret")) else {
                return missing("client_id and client_secret");
            };
            access.login(id, secret, client).await
        }
        Some(TOKEN_EXCHANGE) => {
            let Some(token) = field("subject_token") else {
                return missing("subject_token");
            };
            access.workload(token).await
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!(
                    "grant_type {other:?} is not supported: use password, refresh_token, client_credentials or {TOKEN_EXCHANGE}"
                ),
            );
        }
        None => return missing("grant_type"),
    };
    let caller = match caller {
        Ok(c) => c,
        Err(AccessError::Unauthenticated(m)) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_grant",
                format!("authentication failed: {m}"),
            );
        }
        Err(e @ AccessError::Throttled(wait)) => {
            let mut response =
                oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", e.to_string());
            if let Ok(v) = wait.as_secs().max(1).to_string().parse() {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let offline = field("access_type") == Some("offline");
    match access.issue(&caller, &scopes(&pairs), offline).await {
        Ok(issued) => Json(TokenResponse::new(issued, true)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
