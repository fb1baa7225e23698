//! `GET /v2/<name>/tags/list?n=&last=`.

use agent_registry_oci::RepoName;
use agent_registry_registry::Registry;
use agent_registry_registry::listing::MAX_PAGE;
use serde::Serialize;

use super::distribution::{Request, page_size, paged};
use crate::error::ApiResult;

#[derive(Serialize)]
struct TagList<'a> {
    name: &'a str,
    tags: Vec<String>,
}

pub async fn list(registry: &Registry, name: &RepoName, req: &Request) -> ApiResult {
    let n = page_size(req, MAX_PAGE)?;
    let page = registry.tags(name, req.query("last"), n).await?;
    Ok(paged(&format!("/v2/{name}/tags/list"), page, n, |tags| {
        TagList {
            name: name.as_str(),
            tags,
        }
    }))
}
