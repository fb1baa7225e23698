//! Blob storage: content-addressed, immutable blobs and the in-progress uploads that become them.
//!
//! [`BlobStore`] is the whole contract the registry relies on; backends implement it and pass
//! the shared [`suite`]. The store knows nothing of repositories, manifests or HTTP: which
//! repository may see a blob is metadata, kept by the `metadata` crate. Hashing is the
//! caller's job too (the registry hashes while it writes), so a backend only moves bytes.
//!
//! Layout, the same keys on every backend:
//!
//! ```text
//! <root>/
//! ├── blobs/
//! │   └── sha256/
//! │       └── e3/
//! │           └── e3b0c442…b855      immutable; appears only by an atomic rename of a durable upload
//! └── uploads/
//!     └── 6f1c…-…-…                  one file per upload session, appended to in order
//! ```

mod fs;
mod s3;
#[cfg(any(test, feature = "testsuite"))]
pub mod s3_server;
#[cfg(any(test, feature = "testsuite"))]
pub mod suite;

use std::io;
use std::ops::Range;
use std::pin::Pin;

use agent_registry_oci::Digest;
use bytes::Bytes;
use futures_util::Stream;

pub use fs::FsBlobStore;
pub use s3::{S3BlobStore, S3Config};

/// A stream of blob bytes, in order.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob {0} is not in storage")]
    BlobUnknown(Digest),
    #[error("upload {0} is not in storage")]
    UploadUnknown(String),
    #[error("upload {id} no longer ends at byte {at}: another request appended to it first")]
    UploadMoved { id: String, at: u64 },
    #[error("insufficient storage space: {0}")]
    Full(io::Error),
    #[error(
        "this storage belongs to another registry (metadata {theirs}; this one's is {ours}): nodes that share blob storage must share their metadata store too"
    )]
    Claimed { ours: String, theirs: String },
    #[error("storage at {} is in use by another process (it holds {}/.lock); stop it or choose another root", .0.display(), .0.display())]
    InUse(std::path::PathBuf),
    #[error("storage i/o failed while {doing}: {source}")]
    Io {
        doing: &'static str,
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error, keeping "the disk is full" apart from other failures.
    pub fn io(doing: &'static str, source: io::Error) -> StorageError {
        match source.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => StorageError::Full(source),
            _ => StorageError::Io { doing, source },
        }
    }
}

/// The key of a committed blob under a store's root, the same on every backend:
/// `blobs/<algorithm>/<first two hex digits>/<hex>`.
fn blob_key(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("blobs/{}/{}/{hex}", digest.algorithm().as_str(), &hex[..2])
}

/// The digest a blob key names, or `None` for a key that is not a blob's (a stray file).
fn digest_of_key(key: &str) -> Option<Digest> {
    let mut parts = key.rsplit('/');
    let (hex, _, algorithm) = (parts.next()?, parts.next()?, parts.next()?);
    format!("{algorithm}:{hex}").parse().ok()
}

/// Whether an upload id is safe to use as a path segment. Ids come from callers, which take
/// them from URLs: never let one walk the tree.
fn upload_id_ok(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Where blobs live. Every method is safe to call concurrently.
///
/// Uploads are named by an opaque id the caller chooses. An upload is a byte sequence that
/// only grows (by [`BlobStore::append`]) until it is committed as a blob or aborted.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// The size of a committed blob, or `None` if it is not stored.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;

    /// Streams `range` of a committed blob. The range must lie within the blob.
    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream>;

    /// Every committed blob, in no particular order (for copying a store to another).
    async fn list_blobs(&self) -> Result<Vec<Digest>>;

    /// Removes a committed blob. Removing one that is not there is not an error.
    async fn delete(&self, digest: &Digest) -> Result<()>;

    /// Starts an empty upload.
    async fn begin_upload(&self, id: &str) -> Result<()>;

    /// How many bytes the upload holds so far.
    async fn upload_size(&self, id: &str) -> Result<u64>;

    /// A writer that appends to the end of the upload, which the caller has found to be at
    /// byte `at` (the caller knows; a backend need not ask storage again). Bytes written are
    /// part of the upload once [`UploadWriter::finish`] returns; on error, the upload holds
    /// some prefix of them and [`BlobStore::upload_size`] says how much. If the upload has
    /// grown past `at` meanwhile (another request appended), the append fails with
    /// [`StorageError::UploadMoved`] and writes nothing, where the backend can tell: S3
    /// cannot for an append larger than one multipart part (see `s3.rs`).
    async fn append(&self, id: &str, at: u64) -> Result<Box<dyn UploadWriter>>;

    /// Streams the upload's bytes from offset `from` to its end so far (to rebuild or catch up
    /// a hash state after a restart, or after other nodes appended).
    async fn read_upload(&self, id: &str, from: u64) -> Result<ByteStream>;

    /// Makes the upload durable and visible as blob `digest`, atomically, and removes the
    /// upload. The caller has verified the digest. If the blob already exists, the upload is
    /// simply dropped.
    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<()>;

    /// Appends `tail` to the upload, which the caller has found to be at byte `at`, then
    /// commits it as blob `digest` (the caller has verified the digest of all of it). A
    /// small push ends this way, its body in memory; backends that can do both in one step
    /// (the filesystem) save a round of work per blob.
    async fn commit_with_tail(
        &self,
        id: &str,
        at: u64,
        tail: Bytes,
        digest: &Digest,
    ) -> Result<()> {
        append_then_commit(self, id, at, tail, digest).await
    }

    /// Discards the upload. Aborting an unknown upload is not an error.
    async fn abort_upload(&self, id: &str) -> Result<()>;

    /// Ids of every upload in storage, for cleaning up abandoned ones.
    async fn list_uploads(&self) -> Result<Vec<String>>;

    /// Bytes free for new data where the store writes; `None` when it cannot tell (object
    /// storage has no such figure).
    async fn available(&self) -> Result<Option<u64>>;

    /// Proves the store can write right now, by writing and removing a small file.
    async fn probe(&self) -> Result<()>;

    /// Marks the store as the blob store of the registry whose metadata is named `owner`, or
    /// refuses with [`StorageError::Claimed`] if another registry's metadata claimed it first.
    /// Two registries writing one store would each delete what only the other knows (its
    /// uploads in flight, blobs only its manifests use). The filesystem store is already
    /// one process's alone (its lock); shared stores keep the claim in the store itself.
    async fn claim(&self, _owner: &str) -> Result<()> {
        Ok(())
    }

    /// A URL from which a client can fetch the blob directly for the next `expiry`, when the
    /// backend can sign one (object storage, perhaps behind a CDN); `None` means the registry
    /// serves the bytes itself. Signing does not check that the blob exists.
    async fn presigned_url(
        &self,
        _digest: &Digest,
        _expiry: std::time::Duration,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}

/// [`BlobStore::commit_with_tail`] in two steps: an append, then a commit.
async fn append_then_commit<S: BlobStore + ?Sized>(
    store: &S,
    id: &str,
    at: u64,
    tail: Bytes,
    digest: &Digest,
) -> Result<()> {
    if !tail.is_empty() {
        let mut writer = store.append(id, at).await?;
        writer.write(tail).await?;
        writer.finish().await?;
    }
    store.commit_upload(id, digest).await
}

/// Appends to an upload. Dropping it without `finish` leaves a prefix of what was written.
#[async_trait::async_trait]
pub trait UploadWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;

    /// Waits until everything written is in the upload; returns the upload's new size.
    async fn finish(self: Box<Self>) -> Result<u64>;
}
