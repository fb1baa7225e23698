//! `GET /v2/<name>/referrers/<digest>?artifactType=`: an image index of the manifests whose
//! `subject` is that digest.

use std::collections::BTreeMap;

use agent_registry_oci::{Digest, RepoName, media};
use agent_registry_registry::Registry;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::distribution::Request;
use crate::endpoint;
use crate::error::ApiResult;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

pub async fn list(registry: &Registry, name: &RepoName, digest: &str, req: &Request) -> ApiResult {
    let subject = endpoint::digest(digest)?;
    let artifact_type = req.query("artifactType").filter(|a| !a.is_empty());
    let referrers = registry.referrers(name, &subject, artifact_type).await?;
    let index = Index {
        schema_version: 2,
        media_type: media::OCI_INDEX,
        manifests: referrers
            .into_iter()
            .map(|r| Descriptor {
                media_type: r.media_type,
                digest: r.digest,
                size: r.size,
                artifact_type: r.artifact_type,
                annotations: r.annotations,
            })
            .collect(),
    };
    let body = serde_json::to_vec(&index).unwrap_or_default();
    let mut response = ([(header::CONTENT_TYPE, media::OCI_INDEX)], body).into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            "oci-filters-applied",
            header::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}
