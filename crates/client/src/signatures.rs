//! Finding an image's signatures (cosign's format, `oci::signature`) on a registry: the
//! signature manifests the referrers API lists, and the one under the `sha256-<hex>.sig` tag
//! for registries and signers that predate referrers.

use agent_registry_oci::Digest;
use agent_registry_oci::signature::{self, Layer};
use bytes::Bytes;

use crate::client::Client;
use crate::error::{Error, Result};

/// A signature of an image, with its payload (not yet verified).
#[derive(Debug, Clone)]
pub struct FoundSignature {
    /// The signature manifest holding it.
    pub manifest: Digest,
    pub layer: Layer,
    pub payload: Bytes,
}

impl Client {
    /// Every signature of `digest` in `repo`, each once however many manifests hold it.
    /// A registry without the referrers API is asked for the tag alone.
    pub async fn signatures(&self, repo: &str, digest: &Digest) -> Result<Vec<FoundSignature>> {
        let mut manifests: Vec<Digest> = match self.referrers(repo, digest).await {
            Ok(referrers) => referrers
                .iter()
                .filter(|r| r["artifactType"] == signature::ARTIFACT_TYPE)
                .filter_map(|r| r["digest"].as_str()?.parse().ok())
                .collect(),
            Err(Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let tag = signature::signature_tag(digest);
        if let Some(tagged) = self.manifest_digest(repo, &tag).await?
            && !manifests.contains(&tagged)
        {
            manifests.push(tagged);
        }
        let mut found: Vec<FoundSignature> = Vec::new();
        for manifest in manifests {
            let fetched = self.manifest(repo, &manifest.to_string()).await?;
            for layer in signature::layers(&fetched.bytes) {
                if found.iter().any(|f| f.layer == layer) {
                    continue;
                }
                let payload = self
                    .small_blob(repo, &layer.payload, signature::PAYLOAD_MAX)
                    .await?;
                found.push(FoundSignature {
                    manifest: manifest.clone(),
                    layer,
                    payload,
                });
            }
        }
        Ok(found)
    }

    /// The signatures now under `digest`'s `.sig` tag, to add one to.
    pub async fn tagged_signatures(&self, repo: &str, digest: &Digest) -> Result<Vec<Layer>> {
        let tag = signature::signature_tag(digest);
        match self.manifest(repo, &tag).await {
            Ok(fetched) => Ok(signature::layers(&fetched.bytes)),
            Err(Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}
