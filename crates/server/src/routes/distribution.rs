//! `/v2/` and the dispatcher for everything below it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use agent_registry_metadata::Page;
use agent_registry_oci::ErrorCode;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use serde::Serialize;

use super::{blobs, catalog, manifests, referrers, tags, uploads};
use crate::AppState;
use crate::endpoint::Endpoint;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(base))
        .route("/v2/", get(base))
        .route("/v2/{*rest}", any(dispatch))
}

/// The API version check: 200 with an empty JSON object.
async fn base() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], "{}")
}

/// The request as handlers see it; the body travels apart, to the handlers that read one.
pub struct Request {
    pub method: Method,
    pub headers: axum::http::HeaderMap,
    pub query: HashMap<String, String>,
    /// The peer's address (absent when the router runs without a listener, as in unit tests).
    pub client: Option<std::net::IpAddr>,
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

async fn dispatch(
    State(state): State<AppState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    method: Method,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let path = uri.path().strip_prefix("/v2/").unwrap_or_default();
    let endpoint = match Endpoint::parse(path) {
        Ok(e) => e,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let req = Request {
        method,
        headers,
        query,
        client: peer.map(|Extension(ConnectInfo(addr))| addr.ip()),
    };
    // Requests that stream an upload body are bounded by the body's idle timeout instead.
    let streams_body = matches!(
        endpoint,
        Endpoint::UploadStart { .. } | Endpoint::Upload { .. }
    );
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
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn route(state: AppState, endpoint: Endpoint, req: Request, body: Body) -> ApiResult {
    let registry = &state.registry;
    match (endpoint, req.method.clone()) {
        (Endpoint::Catalog, Method::GET) => catalog::list(registry, &req).await,
        (Endpoint::TagsList { name }, Method::GET) => tags::list(registry, &name, &req).await,
        (Endpoint::Manifest { name, reference }, Method::GET | Method::HEAD) => {
            manifests::get(registry, &name, &reference, &req).await
        }
        (Endpoint::Manifest { name, reference }, Method::PUT) => {
            manifests::put(registry, &name, &reference, &req, body).await
        }
        (Endpoint::Manifest { name, reference }, Method::DELETE) => {
            manifests::delete(registry, &name, &reference).await
        }
        (Endpoint::Blob { name, digest }, Method::GET | Method::HEAD) => {
            blobs::get(registry, &name, &digest, &req).await
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
