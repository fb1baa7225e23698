//! An image's signatures as the registry holds them (cosign's format, `oci::signature`): the
//! signature manifests in its repository whose subject it is, and the one under its
//! `sha256-<hex>.sig` tag, each signature with its payload. Verifying them is the caller's.

use agent_registry_oci::signature::{self, Layer};
use agent_registry_oci::{Digest, Reference, RepoName};
use bytes::{Bytes, BytesMut};
use futures_util::TryStreamExt as _;

use crate::{Error, Registry, Result};

/// One signature of an image, with its payload's bytes.
#[derive(Debug, Clone)]
pub struct StoredSignature {
    pub layer: Layer,
    pub payload: Bytes,
}

impl Registry {
    /// Every signature of `digest` in `repo`, each once however many manifests hold it.
    /// A payload that is missing or too large to be one is left out.
    pub async fn signatures(
        &self,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Vec<StoredSignature>> {
        let mut manifests = Vec::new();
        for referrer in self
            .referrers(repo, digest, Some(signature::ARTIFACT_TYPE))
            .await?
        {
            manifests.push(
                self.manifest(repo, &Reference::Digest(referrer.digest))
                    .await?,
            );
        }
        if let Ok(tag) = signature::signature_tag(digest).parse() {
            match self.manifest(repo, &Reference::Tag(tag)).await {
                Ok(m) if !manifests.iter().any(|have| have.digest == m.digest) => manifests.push(m),
                Ok(_) | Err(Error::ManifestUnknown { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut found: Vec<StoredSignature> = Vec::new();
        for manifest in manifests {
            for layer in signature::layers(&manifest.content) {
                if found.iter().any(|f| f.layer == layer) {
                    continue;
                }
                if let Some(payload) = self.payload(repo, &layer).await? {
                    found.push(StoredSignature { layer, payload });
                }
            }
        }
        Ok(found)
    }

    async fn payload(&self, repo: &RepoName, layer: &Layer) -> Result<Option<Bytes>> {
        let size = match self.blob_size(repo, &layer.payload).await {
            Ok(size) if size <= signature::PAYLOAD_MAX as u64 => size,
            Ok(_) | Err(Error::BlobUnknown { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut stream = self.read_blob(repo, &layer.payload, 0..size).await?;
        let mut bytes = BytesMut::with_capacity(size as usize);
        while let Some(chunk) = stream.try_next().await.map_err(|e| {
            Error::Internal(format!("reading signature payload {}: {e}", layer.payload))
        })? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes.freeze()))
    }
}
