//! `/api/v1/scans`: an image's newest vulnerability report (`GET`, needs pull; redone first
//! when it predates the database's last import) and a scan on request (`POST`, needs push:
//! it attaches the SBOM and report to the image).

use agent_registry_access::Action;
use agent_registry_oci::{ErrorCode, RepoName};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{self, Who};
use crate::endpoint;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/scans", get(latest).post(scan))
}

/// Which image: a repository and a tag or digest.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Image {
    repository: String,
    reference: String,
}

async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    who: Option<Extension<Who>>,
    image: &Image,
    action: Action,
) -> ApiResult<(RepoName, agent_registry_metadata::StoredManifest)> {
    let repo: RepoName = image.repository.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::NameInvalid,
            format!("{:?} is not a repository name", image.repository),
        )
    })?;
    let who = who.map_or_else(Who::anonymous, |Extension(w)| w);
    auth::require(state, headers, &who, &repo, action).await?;
    let reference = endpoint::reference(&image.reference)?;
    let manifest = state.registry.manifest(&repo, &reference).await?;
    Ok((repo, manifest))
}

fn not_an_image(repo: &RepoName, image: &Image) -> ApiError {
    ApiError::new(
        ErrorCode::ManifestInvalid,
        format!(
            "{repo}:{} is not an image (an index or an artifact): scan its platforms' manifests",
            image.reference
        ),
    )
}

async fn latest(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<Image>, QueryRejection>,
) -> ApiResult {
    let image = super::parameters("query", q)?;
    let (repo, manifest) = resolve(&state, &headers, who, &image, Action::Pull).await?;
    let scanner = &state.scanner;
    let latest = scanner
        .latest(&state.registry, &repo, &manifest.digest)
        .await?;
    // A report from before the last import is redone, so results follow the database.
    let stamp = scanner.database().await.stamp.clone();
    let latest = match latest {
        Some(old) if old.database != stamp && !stamp.is_empty() => scanner
            .scan(&state.registry, &repo, &manifest)
            .await?
            .or(Some(old)),
        other => other,
    };
    match latest {
        Some(report) => Ok(Json(report).into_response()),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "{repo}@{} has not been scanned (agent push --security-scan, or scanning.on_push)",
                manifest.digest
            ),
        )),
    }
}

async fn scan(
    State(state): State<AppState>,
    who: Option<Extension<Who>>,
    headers: HeaderMap,
    json: Result<Json<Image>, JsonRejection>,
) -> ApiResult {
    let image = super::body(json)?;
    let (repo, manifest) = resolve(&state, &headers, who, &image, Action::Push).await?;
    match state
        .scanner
        .scan(&state.registry, &repo, &manifest)
        .await?
    {
        Some(report) => Ok(Json(report).into_response()),
        None => Err(not_an_image(&repo, &image)),
    }
}
