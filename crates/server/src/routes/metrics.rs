//! `GET /metrics`: the Prometheus page (see `crate::metrics`). With access control on, only
//! administrators may read it (it names repository namespaces); 404 when metrics are off.

use agent_registry_oci::ErrorCode;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};

use crate::AppState;
use crate::auth::Who;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
) -> ApiResult {
    let Some(metrics) = &state.metrics else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "metrics are off on this registry (metrics.enabled: false)",
        )
        .with_status(StatusCode::NOT_FOUND));
    };
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    super::access::admin(&state, &headers, &who)?;
    let page = metrics.render(&state.registry).await.map_err(|e| {
        ApiError::new(ErrorCode::Unknown, format!("reading storage usage: {e}"))
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
    })?;
    Ok(([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], page).into_response())
}
