//! `GET /v2/<name>/tags/list?n=&last=`.

use agent_registry_oci::RepoName;
use agent_registry_registry::Registry;
use agent_registry_registry::listing::MAX_PAGE;
use axum::Json;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::distribution::{Request, next_link, page_size};
use crate::error::ApiResult;

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<String>,
}

pub async fn list(registry: &Registry, name: &RepoName, req: &Request) -> ApiResult {
    let n = page_size(req, MAX_PAGE)?;
    let page = registry.tags(name, req.query("last"), n).await?;
    let link = match (page.more, page.items.last()) {
        (true, Some(last)) => Some(next_link(&format!("/v2/{name}/tags/list"), last, n)),
        _ => None,
    };
    let body = Json(TagList {
        name: name.as_str(),
        tags: page.items,
    });
    Ok(match link {
        Some(link) => ([(header::LINK, link)], body).into_response(),
        None => body.into_response(),
    })
}
