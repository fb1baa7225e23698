//! Accepting, serving and deleting manifests.

use agent_registry_metadata::{NewManifest, StoredManifest};
use agent_registry_oci::{Algorithm, Digest, Manifest, Reference, RepoName};
use bytes::Bytes;

use crate::{Error, Registry, Result};

/// What a manifest PUT stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifest {
    pub digest: Digest,
    /// The media type it was stored as.
    pub media_type: &'static str,
    pub subject: Option<Digest>,
}

impl Registry {
    /// Validates and stores a manifest under `reference` (a tag, which moves, or its digest).
    /// The body is already bounded by [`crate::Limits::manifest_max_bytes`].
    /// `pushed_by` names the pusher (or the address the push came from) for the versions list.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        pushed_by: Option<&str>,
    ) -> Result<PutManifest> {
        let parsed = Manifest::parse(content_type, &body)
            .map_err(|e| Error::ManifestInvalid(e.to_string()))?;
        let (digest, tag) = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(Error::DigestInvalid(format!(
                        "manifest body has digest {actual}, not {expected} as in the URL"
                    )));
                }
                (actual, None)
            }
            Reference::Tag(tag) => (Digest::of(Algorithm::Sha256, &body), Some(tag.clone())),
        };
        let subject = parsed.subject.clone();
        let media_type = parsed.media_type;
        let listing = self.listing(repo, &parsed).await;
        self.inner
            .meta
            .put_manifest(NewManifest {
                repo: repo.clone(),
                digest: digest.clone(),
                media_type: media_type.to_owned(),
                artifact_type: parsed.artifact_type,
                subject: parsed.subject,
                content: body,
                blobs: parsed.blobs,
                manifests: parsed.manifests,
                annotations: parsed.annotations,
                tag_immutable: self.tag_is_immutable(repo, reference),
                tag,
                listing,
                pushed_by: pushed_by.map(str::to_owned),
            })
            .await?;
        Ok(PutManifest {
            digest,
            media_type,
            subject,
        })
    }

    pub async fn manifest(&self, repo: &RepoName, reference: &Reference) -> Result<StoredManifest> {
        self.inner
            .meta
            .manifest(repo, reference)
            .await?
            .ok_or_else(|| Error::ManifestUnknown {
                repo: repo.clone(),
                reference: reference.to_string(),
            })
    }

    /// Deletes a tag, or a manifest (with its tags) by digest.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let existed = match reference {
            Reference::Tag(tag) => self.inner.meta.delete_tag(repo, tag).await?,
            Reference::Digest(digest) => self.inner.meta.delete_manifest(repo, digest).await?,
        };
        if existed {
            Ok(())
        } else {
            Err(Error::ManifestUnknown {
                repo: repo.clone(),
                reference: reference.to_string(),
            })
        }
    }
}
