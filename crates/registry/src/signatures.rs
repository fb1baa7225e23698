//! An image's signatures as the registry holds them (cosign's format, `oci::signature`): the
//! signature manifests in its repository whose subject it is, and the one under its
//! `sha256-<hex>.sig` tag, each signature with its payload. Verifying them is the caller's.

use agent_registry_oci::signature::{self, Layer};
use agent_registry_oci::{Digest, Reference, RepoName};
use bytes::Bytes;

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
                if let Some(payload) = self
                    .small_blob(repo, &layer.payload, signature::PAYLOAD_MAX)
                    .await?
                {
                    found.push(StoredSignature { layer, payload });
                }
            }
        }
        Ok(found)
    }
}
