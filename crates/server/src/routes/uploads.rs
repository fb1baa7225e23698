//! Blob uploads: `POST /v2/<name>/blobs/uploads/` (start, monolithic, mount) and
//! `GET`/`PATCH`/`PUT`/`DELETE /v2/<name>/blobs/uploads/<id>`.

use std::io;

use agent_registry_oci::{Digest, RepoName};
use agent_registry_registry::upload::{ChunkInfo, ChunkRange, UploadStatus};
use agent_registry_registry::{Error, Registry};
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::distribution::{Request, empty};
use super::{content_length, header_str, set_header};
use crate::endpoint;
use crate::error::{ApiError, ApiResult};

fn stream(body: Body) -> agent_registry_registry::Body {
    Box::pin(body.into_data_stream().map_err(io::Error::other))
}

fn upload_url(name: &RepoName, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// `Range: 0-<last byte>`, which docker reads as "0-0" for an empty upload.
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn in_progress(status: StatusCode, name: &RepoName, upload: &UploadStatus) -> Response {
    let mut r = empty(status);
    set_header(&mut r, header::LOCATION, upload_url(name, &upload.id));
    set_header(&mut r, header::RANGE, range_value(upload.size));
    set_header(&mut r, "docker-upload-uuid", upload.id.clone());
    r
}

fn created(name: &RepoName, digest: &Digest) -> Response {
    let mut r = empty(StatusCode::CREATED);
    set_header(
        &mut r,
        header::LOCATION,
        format!("/v2/{name}/blobs/{digest}"),
    );
    set_header(&mut r, "docker-content-digest", digest.to_string());
    r
}

/// A 416 carries where the upload stands, so the client can resume.
fn with_resume_point(e: Error, name: &RepoName, id: &str) -> ApiError {
    match e {
        Error::RangeInvalid { size, .. } => ApiError::from(e)
            .with_header(header::LOCATION, upload_url(name, id))
            .with_header(header::RANGE, range_value(size)),
        other => other.into(),
    }
}

fn chunk_info(req: &Request) -> ApiResult<ChunkInfo> {
    let range = match header_str(&req.headers, "content-range") {
        Some(v) => Some(ChunkRange::parse(v).ok_or_else(|| {
            ApiError::from(Error::UploadInvalid(format!(
                "Content-Range {v:?} is not of the form start-end"
            )))
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
        })?),
        None => None,
    };
    Ok(ChunkInfo {
        range,
        content_length: content_length(&req.headers),
    })
}

pub async fn start(registry: &Registry, name: &RepoName, req: &Request, body: Body) -> ApiResult {
    if let Some(mount) = req.query("mount").filter(|_| req.may_mount) {
        let digest = endpoint::digest(mount)?;
        let from = match req.query("from") {
            Some(f) => Some(f.parse::<RepoName>().map_err(Error::NameInvalid)?),
            None => None,
        };
        if registry
            .mount_blob(name, &digest, from.as_ref())
            .await?
            .is_some()
        {
            return Ok(created(name, &digest));
        }
        // Nothing to mount: fall through to an ordinary upload, as the spec says.
    } else if let Some(digest) = req.query("digest") {
        let digest = endpoint::digest(digest)?;
        let length = content_length(&req.headers);
        registry
            .put_blob(name, &digest, length, stream(body))
            .await?;
        return Ok(created(name, &digest));
    }
    let upload = registry.start_upload(name).await?;
    Ok(in_progress(StatusCode::ACCEPTED, name, &upload))
}

pub async fn status(registry: &Registry, name: &RepoName, id: &str) -> ApiResult {
    let upload = registry.upload_status(name, id).await?;
    Ok(in_progress(StatusCode::NO_CONTENT, name, &upload))
}

pub async fn patch(
    registry: &Registry,
    name: &RepoName,
    id: &str,
    req: &Request,
    body: Body,
) -> ApiResult {
    let info = chunk_info(req)?;
    let upload = registry
        .append_chunk(name, id, info, stream(body))
        .await
        .map_err(|e| with_resume_point(e, name, id))?;
    Ok(in_progress(StatusCode::ACCEPTED, name, &upload))
}

pub async fn put(
    registry: &Registry,
    name: &RepoName,
    id: &str,
    req: &Request,
    body: Body,
) -> ApiResult {
    let digest = req.query("digest").ok_or_else(|| {
        ApiError::from(Error::DigestInvalid(
            "the digest query parameter is required to finish an upload".into(),
        ))
    })?;
    let digest = endpoint::digest(digest)?;
    let info = chunk_info(req)?;
    registry
        .finish_upload(name, id, &digest, info, stream(body))
        .await
        .map_err(|e| with_resume_point(e, name, id))?;
    Ok(created(name, &digest))
}

pub async fn cancel(registry: &Registry, name: &RepoName, id: &str) -> ApiResult {
    registry.cancel_upload(name, id).await?;
    Ok(empty(StatusCode::NO_CONTENT).into_response())
}
