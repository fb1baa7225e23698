//! Pull policies (`/api/v1/policies`): what a manifest must satisfy before it is pulled from
//! the repositories a pattern matches. Registry administrators only.

use agent_registry_access::AccessError;
use agent_registry_metadata::access::PullPolicyRecord;
use agent_registry_oci::access::PullPolicy;
use agent_registry_oci::signature::PublicKey;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;

use super::{admin, body, invalid, no_content, pattern, query, who};
use crate::AppState;
use crate::auth::Who;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/policies", get(list).put(set).delete(remove))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    repository: Option<String>,
}

fn shown(record: PullPolicyRecord) -> PullPolicy {
    let keys = PublicKey::parse_pem(&record.trusted_keys).unwrap_or_default();
    PullPolicy {
        repository: record.pattern.to_string(),
        signed_only: record.signed_only,
        key_ids: keys.iter().map(PublicKey::id).collect(),
        trusted_keys: keys.iter().map(PublicKey::to_pem).collect(),
        block_vulnerabilities: record.block_vulnerabilities,
        allowed_advisories: record.allowed_advisories,
    }
}

async fn list(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<Which>, QueryRejection>,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let which = query(q)?;
    let policies: Vec<PullPolicy> = state
        .access
        .pull_policies()
        .await?
        .into_iter()
        .filter(|p| {
            which
                .repository
                .as_deref()
                .is_none_or(|r| r == p.pattern.as_str())
        })
        .map(shown)
        .collect();
    Ok(Json(policies).into_response())
}

async fn set(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    json: Result<Json<PullPolicy>, JsonRejection>,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let new = body(json)?;
    let pattern = pattern(&new.repository)?;
    let mut keys = Vec::new();
    for (i, pem) in new.trusted_keys.iter().enumerate() {
        keys.extend(
            PublicKey::parse_pem(pem).map_err(|e| {
                invalid(format!("trusted_keys[{i}] is not a usable public key: {e}"))
            })?,
        );
    }
    if let Some(block) = &new.block_vulnerabilities {
        if agent_registry_scan::Severity::parse(block)
            .is_none_or(|s| s == agent_registry_scan::Severity::Unknown)
        {
            return Err(invalid(format!(
                "block_vulnerabilities {block:?} is not critical, high, medium or low"
            )));
        }
        if state.scanner.database().await.stamp.is_empty() {
            return Err(invalid(
                "block_vulnerabilities needs a vulnerability database: import one first \
                 (agent-registry vulndb import DIR|ZIP)",
            ));
        }
    }
    if !new.signed_only && new.block_vulnerabilities.is_none() {
        return Err(invalid(
            "a policy needs signed_only, block_vulnerabilities or both (to lift one, remove it)",
        ));
    }
    if new.signed_only && keys.is_empty() && state.trust.registry_keys().is_empty() {
        return Err(invalid(
            "signed_only needs trusted keys: give trusted_keys, or configure the registry's \
             own (signing.trusted_keys)",
        ));
    }
    let record = PullPolicyRecord {
        pattern,
        signed_only: new.signed_only,
        trusted_keys: keys.iter().map(PublicKey::to_pem).collect(),
        block_vulnerabilities: new.block_vulnerabilities.clone(),
        allowed_advisories: new.allowed_advisories.clone(),
    };
    state.access.set_pull_policy(record.clone()).await?;
    Ok(Json(shown(record)).into_response())
}

async fn remove(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<Which>, QueryRejection>,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let Some(repository) = query(q)?.repository else {
        return Err(invalid("repository is required"));
    };
    if !state
        .access
        .remove_pull_policy(&pattern(&repository)?)
        .await?
    {
        return Err(
            AccessError::NotFound(format!("there is no pull policy for {repository}")).into(),
        );
    }
    Ok(no_content())
}
