//! Reading and deleting blobs, always through the repository that links them.

use std::ops::Range;

use agent_registry_oci::{Digest, RepoName};
use agent_registry_storage::ByteStream;
use tracing::debug;

use crate::{Error, Registry, Result};

impl Registry {
    /// The size of `digest` in `repo`.
    pub async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        self.inner
            .meta
            .blob_size(repo, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            })
    }

    /// Streams `range` of a blob of `repo`; the caller has checked the range against its size.
    pub async fn read_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        range: Range<u64>,
    ) -> Result<ByteStream> {
        match self.inner.blobs.read(digest, range).await {
            Ok(stream) => Ok(stream),
            Err(agent_registry_storage::StorageError::BlobUnknown(_)) => Err(Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// A blob of `repo` in memory, if the repository has it and it is at most `max` bytes
    /// (signature payloads, scan reports).
    pub async fn small_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        max: usize,
    ) -> Result<Option<bytes::Bytes>> {
        use futures_util::TryStreamExt as _;
        let size = match self.blob_size(repo, digest).await {
            Ok(size) if size <= max as u64 => size,
            Ok(_) | Err(Error::BlobUnknown { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut stream = self.read_blob(repo, digest, 0..size).await?;
        let mut bytes = bytes::BytesMut::with_capacity(size as usize);
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| Error::Internal(format!("reading blob {digest}: {e}")))?
        {
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(bytes.freeze()))
    }

    /// A URL the client may fetch the blob's bytes from directly for the next `expiry`, when
    /// the blob store can sign one; the caller has checked that `repo` links the blob.
    pub async fn blob_url(
        &self,
        digest: &Digest,
        expiry: std::time::Duration,
    ) -> Result<Option<String>> {
        Ok(self.inner.blobs.presigned_url(digest, expiry).await?)
    }

    /// Removes a blob from `repo` (refused while a manifest there references it); its bytes go
    /// when no repository links them any more.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if !self.inner.meta.unlink_blob(repo, digest).await? {
            return Err(Error::BlobUnknown {
                repo: repo.clone(),
                digest: digest.clone(),
            });
        }
        let _exclusive = self.inner.meta.guard_blob(digest, true).await?;
        if !self.inner.meta.blob_linked_anywhere(digest).await? {
            self.inner.blobs.delete(digest).await?;
            debug!(%digest, "blob bytes removed");
        }
        Ok(())
    }
}
