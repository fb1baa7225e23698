//! `GET /v2/_catalog?n=&last=`.

use agent_registry_access::Action;
use serde::Serialize;

use super::distribution::{Request, page_size, paged};
use crate::AppState;
use crate::error::ApiResult;

/// Repositories per page when the client does not say.
const DEFAULT_PAGE: usize = 1000;

#[derive(Serialize)]
struct Catalog {
    repositories: Vec<String>,
}

/// Only repositories the caller may pull are listed.
pub async fn list(state: &AppState, req: &Request) -> ApiResult {
    let n = page_size(req, DEFAULT_PAGE)?;
    let access = &state.access;
    let policy = access.fresh_policy().await;
    let visible = |name: &str| {
        !access.enabled()
            || name
                .parse()
                .is_ok_and(|repo| policy.allows(&req.who.caller, &repo, Action::Pull))
    };
    let page = state
        .registry
        .catalog(req.query("last"), n, visible)
        .await?;
    Ok(paged("/v2/_catalog", page, n, |repositories| Catalog {
        repositories,
    }))
}
