//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use agent_registry_metadata::StoredManifest;
use agent_registry_oci::{Reference, RepoName};
use agent_registry_registry::{Error, Registry};
use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

use super::distribution::{Request, empty};
use super::{content_length, header_str, set_header};
use crate::AppState;
use crate::endpoint;
use crate::error::ApiResult;

pub async fn get(state: &AppState, name: &RepoName, reference: &str, req: &Request) -> ApiResult {
    let registry = &state.registry;
    let reference = endpoint::reference(reference)?;
    let manifest = registry.manifest(name, &reference).await?;
    let len = manifest.content.len();
    let mut response = if req.method == Method::HEAD {
        Response::new(Body::empty())
    } else {
        // Pull policies apply to pulls; HEAD tells only what the reference points at.
        let policy = state.access.policy().await;
        state
            .trust
            .check(registry, &state.scanner, &policy, name, &manifest)
            .await?;
        // A GET is a pull; HEAD is how clients poll for changes, and does not count.
        if let Some(client) = req.client {
            registry.count_download(name, &client.to_string());
        }
        Response::new(Body::from(manifest.content))
    };
    set_header(&mut response, header::CONTENT_TYPE, manifest.media_type);
    set_header(&mut response, header::CONTENT_LENGTH, len.to_string());
    set_header(
        &mut response,
        header::ETAG,
        format!("\"{}\"", manifest.digest),
    );
    set_header(
        &mut response,
        "docker-content-digest",
        manifest.digest.to_string(),
    );
    Ok(response)
}

pub async fn put(
    state: &AppState,
    name: &RepoName,
    reference: &str,
    req: &Request,
    body: Body,
) -> ApiResult {
    let registry = &state.registry;
    let reference = endpoint::reference(reference)?;
    let limit = registry.limits().manifest_max_bytes;
    let too_large = || Error::TooLarge {
        what: "manifest",
        limit,
    };
    if content_length(&req.headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large().into());
    }
    let content_type = header_str(&req.headers, "content-type").map(str::to_owned);
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                Error::ManifestInvalid(format!("reading the manifest body failed: {e}"))
            }
        })?
        .to_bytes();
    // Who pushed: the signed-in principal, or for anonymous pushes (access control off) the
    // address it came from.
    let pushed_by = match &req.who.caller.name {
        Some(name) => Some(name.to_string()),
        None => req.client.map(|ip| ip.to_string()),
    };
    let stored = registry
        .put_manifest(
            name,
            &reference,
            content_type.as_deref(),
            body.clone(),
            pushed_by.as_deref(),
        )
        .await?;
    if state.scanner.on_push {
        let stored = StoredManifest {
            digest: stored.digest.clone(),
            media_type: stored.media_type.to_owned(),
            content: body,
        };
        let (state, name) = (state.clone(), name.clone());
        // After the answer: a push does not wait for its scan.
        tokio::spawn(async move {
            if let Err(e) = state.scanner.scan(&state.registry, &name, &stored).await {
                tracing::warn!(repo = %name, digest = %stored.digest, error = %e.message(), "scan on push failed");
            }
        });
    }
    let mut response = empty(StatusCode::CREATED);
    set_header(
        &mut response,
        header::LOCATION,
        format!("/v2/{name}/manifests/{}", stored.digest),
    );
    set_header(
        &mut response,
        "docker-content-digest",
        stored.digest.to_string(),
    );
    if let Some(subject) = stored.subject {
        set_header(&mut response, "oci-subject", subject.to_string());
    }
    if let Reference::Tag(_) = reference {
        tracing::debug!(%name, %reference, digest = %stored.digest, "tag moved");
    }
    Ok(response)
}

pub async fn delete(registry: &Registry, name: &RepoName, reference: &str) -> ApiResult {
    let reference = endpoint::reference(reference)?;
    registry.delete_manifest(name, &reference).await?;
    Ok(empty(StatusCode::ACCEPTED).into_response())
}
