//! The HTTP surface, composed per area. `/v2/` is the distribution API: every path under it is
//! parsed into an [`Endpoint`](crate::endpoint::Endpoint) and dispatched to the handler of its
//! resource (one module each). `/api/v1/` is the agent catalogue ([`catalogue`]). Handlers are
//! thin: extract, call the registry, map the result.
//!
//! Call direction: routes -> `agent_registry_registry::Registry` -> stores. Nothing here
//! touches storage or SQL.

mod access;
mod blobs;
mod catalog;
mod catalogue;
mod config;
mod distribution;
mod health;
mod manifests;
mod metrics;
mod referrers;
mod scans;
mod server_logs;
mod tags;
mod token;
mod uploads;

use agent_registry_oci::ErrorCode;
use axum::Router;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";

pub fn router(state: AppState) -> Router {
    let rest = Router::new()
        .merge(catalogue::routes())
        .merge(token::routes())
        .merge(access::routes())
        .merge(metrics::routes())
        .merge(config::routes())
        .merge(server_logs::routes())
        .merge(scans::routes())
        .merge(distribution::base_routes());
    // `/v2/<name>/...` is timed by its dispatcher, which knows the endpoint; the rest here.
    let rest = match &state.metrics {
        Some(m) => rest.layer(axum::middleware::from_fn_with_state(
            m.clone(),
            crate::metrics::observe,
        )),
        None => rest,
    };
    let routes = distribution::routes().merge(rest);
    // With access control off every caller is anonymous and may do everything; handlers
    // take a missing `Who` as anonymous, so unless rates are limited the middleware is left
    // out altogether.
    let routes = if state.access.enabled() || state.access.has_rate_limits() {
        routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
    } else {
        routes
    };
    // Probes need neither credentials nor a rate limit.
    routes
        .merge(health::routes())
        .layer(axum::middleware::map_response(api_version_header))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// A parsed query string, or 400 `PARAMETER_INVALID` saying what is wrong with it (`what`
/// names the parameters: `search`, `health`).
fn parameters<T>(what: &str, query: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    query.map(|Query(t)| t).map_err(|e| {
        ApiError::new(
            ErrorCode::ParameterInvalid,
            format!("bad {what} parameters: {}", e.body_text()),
        )
    })
}

/// A JSON request body, or PARAMETER_INVALID saying what is wrong with it.
fn body<T>(json: Result<axum::Json<T>, axum::extract::rejection::JsonRejection>) -> ApiResult<T> {
    json.map(|axum::Json(t)| t).map_err(|e| {
        ApiError::new(
            ErrorCode::ParameterInvalid,
            format!("bad request body: {}", e.body_text()),
        )
    })
}

/// Every response says which API it speaks, as docker expects.
async fn api_version_header(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    response
}

/// One debug line per request (method, path, status, time). Off at the default level, where
/// it costs one level check.
async fn log_request(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return next.run(request).await;
    }
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::debug!(%method, path, status = response.status().as_u16(), ms = started.elapsed().as_secs_f64() * 1e3, "request");
    response
}

/// Sets a computed header. A value that is not valid header text is left out; ours are digests,
/// numbers and paths, which always are.
fn set_header(
    response: &mut Response,
    name: impl header::IntoHeaderName,
    value: impl TryInto<HeaderValue>,
) {
    if let Ok(v) = value.try_into() {
        response.headers_mut().insert(name, v);
    }
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
