//! `GET /metrics`: the Prometheus page (see `crate::metrics`), and
//! `GET /api/v1/metrics/query` and `/api/v1/metrics/query_range`: PromQL over the built-in
//! history of that page (see `crate::history`), answered in Prometheus's own API shape.
//!
//! With access control on, only administrators may read any of them (they name repository
//! namespaces); 404 when metrics, or their history, are off.

use agent_registry_oci::ErrorCode;
use agent_registry_oci::metrics::{
    InstantQuery, InstantSample, Point, QueryData, QueryResponse, RangeQuery, RangeSeries,
};
use agent_registry_timeseries::query::Value;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};

use crate::AppState;
use crate::auth::Who;
use crate::error::{ApiError, ApiResult};
use crate::history::{History, now_millis};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/api/v1/metrics/query", get(instant))
        .route("/api/v1/metrics/query_range", get(range))
}

async fn scrape(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
) -> ApiResult {
    let Some(metrics) = &state.metrics else {
        return Err(off(
            "metrics are off on this registry (metrics.enabled: false)",
        ));
    };
    admin(&state, who, &headers)?;
    let page = metrics
        .render(&state.registry, &state.access)
        .await
        .map_err(|e| {
            ApiError::new(ErrorCode::Unknown, format!("reading storage usage: {e}"))
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
        })?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], page).into_response())
}

async fn instant(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    query: Result<Query<InstantQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let history = history(&state, who, &headers)?;
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return Ok(bad_data(format!("bad query parameters: {}", e.body_text()))),
    };
    let at = match q.time.as_deref().map(time) {
        None => now_millis(),
        Some(Some(t)) => t,
        Some(None) => return Ok(bad_data(not_a_time("time", q.time.as_deref()))),
    };
    Ok(match history.instant(q.query, at).await {
        Ok(Value::Scalar(v)) => success(QueryData::Scalar(Point::new(at, v))),
        Ok(Value::Vector(samples)) => success(QueryData::Vector(
            samples
                .into_iter()
                .map(|s| InstantSample {
                    metric: s.labels,
                    value: Point::new(at, s.value),
                })
                .collect(),
        )),
        Err(e) => failure(e),
    })
}

async fn range(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    query: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let history = history(&state, who, &headers)?;
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return Ok(bad_data(format!("bad query parameters: {}", e.body_text()))),
    };
    let (Some(start), Some(end)) = (time(&q.start), time(&q.end)) else {
        let (name, value) = if time(&q.start).is_none() {
            ("start", &q.start)
        } else {
            ("end", &q.end)
        };
        return Ok(bad_data(not_a_time(name, Some(value))));
    };
    let Some(step) = step(&q.step) else {
        return Ok(bad_data(format!(
            "step={:?} is neither a number of seconds nor a duration such as 15s or 5m",
            q.step
        )));
    };
    Ok(match history.range(q.query, start, end, step).await {
        Ok(series) => success(QueryData::Matrix(
            series
                .into_iter()
                .map(|s| RangeSeries {
                    metric: s.labels,
                    values: s
                        .points
                        .into_iter()
                        .map(|(t, v)| Point::new(t, v))
                        .collect(),
                })
                .collect(),
        )),
        Err(e) => failure(e),
    })
}

fn admin(state: &AppState, who: Option<Extension<Who>>, headers: &HeaderMap) -> ApiResult<()> {
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    super::access::admin(state, headers, &who)
}

fn history<'a>(
    state: &'a AppState,
    who: Option<Extension<Who>>,
    headers: &HeaderMap,
) -> ApiResult<&'a History> {
    let Some(history) = &state.history else {
        return Err(off(
            "this registry keeps no metric history (metrics.enabled: false or metrics.history.retain_days: 0)",
        ));
    };
    admin(state, who, headers)?;
    Ok(history)
}

fn off(message: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, message).with_status(StatusCode::NOT_FOUND)
}

/// Unix seconds (`1700000000`, `1700000000.5`) or RFC 3339, as milliseconds.
fn time(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    agent_registry_oci::catalogue::parse_rfc3339(s).map(|secs| secs.saturating_mul(1000))
}

/// Seconds (`15`, `0.5`) or a PromQL duration (`15s`, `1h30m`), as milliseconds.
fn step(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs > 0.0).then(|| (secs * 1000.0).round() as i64);
    }
    agent_registry_timeseries::query::parse_duration(s)
}

fn not_a_time(name: &str, value: Option<&str>) -> String {
    format!(
        "{name}={:?} is neither Unix seconds nor an RFC 3339 time (2026-01-02T03:04:05Z)",
        value.unwrap_or_default()
    )
}

fn success(data: QueryData) -> Response {
    Json(QueryResponse {
        status: "success".to_owned(),
        data: Some(data),
        error_type: None,
        error: None,
    })
    .into_response()
}

fn failure(e: agent_registry_timeseries::Error) -> Response {
    use agent_registry_timeseries::Error;
    match e {
        Error::BadQuery(message) => bad_data(message),
        Error::Store(_) | Error::Interrupted(_) => {
            tracing::error!(error = %e, "a metric query failed");
            prometheus_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        }
    }
}

fn bad_data(message: String) -> Response {
    prometheus_error(StatusCode::BAD_REQUEST, "bad_data", message)
}

fn prometheus_error(status: StatusCode, kind: &str, message: String) -> Response {
    let body = QueryResponse {
        status: "error".to_owned(),
        data: None,
        error_type: Some(kind.to_owned()),
        error: Some(message),
    };
    (status, Json(body)).into_response()
}
