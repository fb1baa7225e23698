//! `GET /v2/_catalog?n=&last=`.

use agent_registry_registry::Registry;
use serde::Serialize;

use super::distribution::{Request, page_size, paged};
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
    Ok(paged("/v2/_catalog", page, n, |repositories| Catalog {
        repositories,
    }))
}
