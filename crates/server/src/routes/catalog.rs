//! `GET /v2/_catalog?n=&last=`.

use agent_registry_registry::Registry;
use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::distribution::{Request, next_link, page_size};
use crate::error::ApiResult;

/// Repositories per page when the client does not say.
const DEFAULT_PAGE: usize = 1000;

#[derive(Serialize)]
struct Catalog {
    repositories: Vec<String>,
}

pub async fn list(registry: &Registry, req: &Request) -> ApiResult {
    let n = page_size(req, DEFAULT_PAGE)?;
    let page = registry.catalog(req.query("last"), n).await?;
    let link = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(next_link("/v2/_catalog", last, n)),
        _ => None,
    };
    let body = Json(Catalog {
        repositories: page.items,
    });
    Ok(match link {
        Some(link) => ([(header::LINK, link)], body).into_response(),
        None => body.into_response(),
    })
}
