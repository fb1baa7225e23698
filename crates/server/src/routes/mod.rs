//! The HTTP surface, composed per area. `/v2/` is the distribution API: every path under it is
//! parsed into an [`Endpoint`](crate::endpoint::Endpoint) and dispatched to the handler of its
//! resource (one module each). Handlers are thin: extract, call the registry, map the result.
//!
//! Call direction: routes -> `agent_registry_registry::Registry` -> stores. Nothing here
//! touches storage or SQL.

mod blobs;
mod catalog;
mod distribution;
mod manifests;
mod referrers;
mod tags;
mod uploads;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;

use crate::AppState;

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(distribution::routes())
        .layer(axum::middleware::map_response(api_version_header))
        .with_state(state)
}

/// Every response says which API it speaks, as docker expects.
async fn api_version_header(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}
