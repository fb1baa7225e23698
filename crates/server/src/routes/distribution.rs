//! `/v2/` and the dispatcher for everything below it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use agent_registry_access::Action;
use agent_registry_access::audit::Pull;
use agent_registry_metadata::Page;
use agent_registry_metadata::access::AccessEvent;
use agent_registry_oci::{ErrorCode, RepoName};
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{blobs, catalog, manifests, referrers, tags, uploads};
use crate::AppState;
use crate::auth::{self, Who};
use crate::endpoint::Endpoint;
use crate::error::{ApiError, ApiResult};
use crate::metrics::Observation;
use crate::notify::Notice;

/// Everything under `/v2/<name>/` and `/v2/_catalog`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v2/{*rest}", any(dispatch))
}

/// The API version check, `/v2/`.
pub fn base_routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
}

/// The API version check: 200 with an empty JSON object. With access control on, a caller
/// who presented nothing gets the challenge instead: that is how `docker login` finds the
/// token endpoint, and how it learns that the credentials it sent were checked. A registry
/// token, even an anonymous one for public pulls, is a credential.
async fn base(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
) -> Response {
    let anonymous = who.is_none_or(|Extension(w)| w.caller.name.is_none() && !w.registry_token);
    if state.access.enabled() && anonymous {
        return auth::challenge(&state, &headers, None, "authentication required".into())
            .into_response();
    }
    ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
}

/// The request as handlers see it; the body travels apart, to the handlers that read one.
pub struct Request {
    pub method: Method,
    pub headers: axum::http::HeaderMap,
    pub query: HashMap<String, String>,
    /// The peer's address (absent when the router runs without a listener, as in unit tests).
    pub client: Option<std::net::IpAddr>,
    pub who: Who,
    /// Whether a `mount` may take the blob from where the request asks (the caller may pull
    /// `from`, or may read everything when there is no `from`).
    pub may_mount: bool,
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

async fn dispatch(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    who: Option<Extension<Who>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().strip_prefix("/v2/").unwrap_or_default();
    let endpoint = match Endpoint::parse(path) {
        Ok(e) => e,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let observed = state.metrics.as_ref().map(|m| m.start(&endpoint, &method));
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let mut req = Request {
        method,
        headers,
        query,
        client: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
        who: who.map_or_else(Who::anonymous, |Extension(w)| w),
        may_mount: true,
    };
    let checked = authorize(&state, &endpoint, &mut req).await;
    let audited = audited(&endpoint, &req.method);
    if let Err(e) = checked {
        let response = e.into_response();
        if let Some(what) = audited {
            record_event(&state, what, &req.who, req.client, response.status());
        }
        finish(&state, observed, &response);
        return response;
    }
    // Requests that stream an upload body are bounded by the body's idle timeout instead.
    let streams_body = matches!(
        endpoint,
        Endpoint::UploadStart { .. } | Endpoint::Upload { .. }
    );
    let audit = audited.map(|what| (what, req.who.clone(), req.client));
    let notice = state
        .notifier
        .as_ref()
        .and_then(|_| Notice::of(&endpoint, &req.method, &req.headers, req.client));
    let actor = notice.as_ref().and_then(|_| req.who.caller.name.clone());
    let handled = route(state.clone(), endpoint, req, body);
    let result = if streams_body {
        handled.await
    } else {
        let limit = Duration::from_secs(state.config.limits.request_timeout_secs);
        tokio::time::timeout(limit, handled)
            .await
            .unwrap_or_else(|_| {
                Err(ApiError::new(ErrorCode::Unknown, "request timed out")
                    .with_status(StatusCode::SERVICE_UNAVAILABLE))
            })
    };
    let response = result.unwrap_or_else(IntoResponse::into_response);
    if let Some((what, who, client)) = audit {
        record_event(&state, what, &who, client, response.status());
    }
    if let (Some(notifier), Some(notice)) = (&state.notifier, notice) {
        let scheme = if state.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let source = state.config.listen.to_string();
        if let Some(event) = notice.event(&response, actor.as_deref(), &source, notifier, scheme) {
            notifier.notify(event);
        }
    }
    finish(&state, observed, &response);
    response
}

fn finish(state: &AppState, observed: Option<Observation>, response: &Response) {
    if let (Some(metrics), Some(observed)) = (&state.metrics, observed) {
        metrics.finish(observed, response);
    }
}

/// The repository and action an endpoint needs, checked before it runs.
async fn authorize(state: &AppState, endpoint: &Endpoint, req: &mut Request) -> ApiResult<()> {
    let Some((repo, action)) = needs(endpoint, &req.method) else {
        return Ok(());
    };
    auth::require(state, &req.headers, &req.who, repo, action).await?;
    if matches!(endpoint, Endpoint::UploadStart { .. }) && req.query("mount").is_some() {
        req.may_mount = match req.query("from").map(str::parse::<RepoName>) {
            Some(Ok(from)) => {
                state
                    .access
                    .allows(&req.who.caller, &from, Action::Pull)
                    .await
            }
            Some(Err(_)) => true, // the handler reports the bad name
            // A mount from anywhere could copy a blob out of a repository the caller
            // cannot read: only callers who can read everything get it.
            None => !state.access.enabled() || req.who.caller.admin,
        };
    }
    Ok(())
}

fn needs<'a>(endpoint: &'a Endpoint, method: &Method) -> Option<(&'a RepoName, Action)> {
    let write = |name| {
        if *method == Method::DELETE {
            (name, Action::Delete)
        } else {
            (name, Action::Push)
        }
    };
    Some(match endpoint {
        Endpoint::Catalog => return None,
        Endpoint::TagsList { name } | Endpoint::Referrers { name, .. } => (name, Action::Pull),
        Endpoint::Manifest { name, .. } | Endpoint::Blob { name, .. }
            if matches!(*method, Method::GET | Method::HEAD) =>
        {
            (name, Action::Pull)
        }
        Endpoint::Manifest { name, .. } | Endpoint::Blob { name, .. } => write(name),
        Endpoint::UploadStart { name } => (name, Action::Push),
        // Cancelling an upload is part of pushing, not a delete of content.
        Endpoint::Upload { name, .. } => (name, Action::Push),
    })
}

/// What the access log records: manifests pulled, pushed and deleted, and blobs deleted.
struct Audited {
    action: Action,
    repo: String,
    target: String,
}

fn audited(endpoint: &Endpoint, method: &Method) -> Option<Audited> {
    let (name, target, action) = match (endpoint, method) {
        (Endpoint::Manifest { name, reference }, &Method::GET) => (name, reference, Action::Pull),
        (Endpoint::Manifest { name, reference }, &Method::PUT) => (name, reference, Action::Push),
        (Endpoint::Manifest { name, reference }, &Method::DELETE) => {
            (name, reference, Action::Delete)
        }
        (Endpoint::Blob { name, digest }, &Method::DELETE) => (name, digest, Action::Delete),
        _ => return None,
    };
    Some(Audited {
        action,
        repo: name.to_string(),
        target: target.clone(),
    })
}

/// Puts a request in the access log (pulls through the repeat filter).
fn record_event(
    state: &AppState,
    what: Audited,
    who: &Who,
    client: Option<std::net::IpAddr>,
    status: StatusCode,
) {
    let status = status.as_u16();
    if what.action == Action::Pull {
        let pull = Pull {
            principal: who.caller.name.as_deref(),
            client,
            repo: &what.repo,
            target: &what.target,
            status,
        };
        state.access.record_pull(pull, crate::unix_now());
        return;
    }
    state.access.record(AccessEvent {
        at: crate::unix_now(),
        principal: who.caller.name.as_deref().map(str::to_owned),
        action: what.action.as_str().to_owned(),
        repo: Some(what.repo),
        target: Some(what.target),
        allowed: agent_registry_access::audit::allowed(status),
        status,
        client: client.map(|c| c.to_string()),
    });
}

async fn route(state: AppState, endpoint: Endpoint, req: Request, body: Body) -> ApiResult {
    let registry = &state.registry;
    match (endpoint, req.method.clone()) {
        (Endpoint::Catalog, Method::GET) => catalog::list(&state, &req).await,
        (Endpoint::TagsList { name }, Method::GET) => tags::list(registry, &name, &req).await,
        (Endpoint::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(&state, &name, &reference, &req).await
        }
        (Endpoint::Manifest { name, reference }, Method::PUT) => {
            manifests::put(&state, &name, &reference, &req, body).await
        }
        (Endpoint::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(registry, &name, &reference).await
        }
        (Endpoint::Blob { name, digest }, Method::GET | Method::HEAD) => {
            let redirect = state.config.blob_redirect();
            blobs::get(registry, &name, &digest, &req, redirect).await
        }
        (Endpoint::Blob { name, digest }, Method::DELETE) => {
            blobs::delete(registry, &name, &digest).await
        }
        (Endpoint::UploadStart { name }, Method::POST) => {
            uploads::start(registry, &name, &req, body).await
        }
        (Endpoint::Upload { name, id }, Method::GET) => uploads::status(registry, &name, &id).await,
        (Endpoint::Upload { name, id }, Method::PATCH) => {
            uploads::patch(registry, &name, &id, &req, body).await
        }
        (Endpoint::Upload { name, id }, Method::PUT) => {
            uploads::put(registry, &name, &id, &req, body).await
        }
        (Endpoint::Upload { name, id }, Method::DELETE) => {
            uploads::cancel(registry, &name, &id).await
        }
        (Endpoint::Referrers { name, digest }, Method::GET) => {
            referrers::list(registry, &name, &digest, &req).await
        }
        (_, method) => Err(ApiError::new(
            ErrorCode::Unsupported,
            format!("method {method} is not supported on this endpoint"),
        )),
    }
}

/// Parses the `n` paging parameter (absent means `default`).
pub fn page_size(req: &Request, default: usize) -> ApiResult<usize> {
    match req.query("n") {
        None | Some("") => Ok(default),
        Some(n) => n.parse().map_err(|_| {
            ApiError::new(
                ErrorCode::PaginationNumberInvalid,
                format!("n={n:?} is not a non-negative whole number"),
            )
        }),
    }
}

/// A page of a listing at `path` as JSON, with a `Link` to the next page when there is one.
/// `body` makes the JSON from the page's items.
pub fn paged<T: Serialize>(
    path: &str,
    page: Page,
    n: usize,
    body: impl FnOnce(Vec<String>) -> T,
) -> Response {
    let next = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(format!(
            "<{path}?last={}&n={n}>; rel=\"next\"",
            percent_encode(last)
        )),
        _ => None,
    };
    let json = Json(body(page.items));
    match next {
        Some(link) => ([(header::LINK, link)], json).into_response(),
        None => json.into_response(),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn empty(status: StatusCode) -> Response {
    (status, [(header::CONTENT_LENGTH, "0")]).into_response()
}
