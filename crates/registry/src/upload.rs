//! Upload sessions: start, append chunks, report status, finish as a blob, cancel, and
//! cross-repository mount.
//!
//! An upload's bytes live in the blob store and its record (id, repository) in metadata, so a
//! session survives a restart. The running hash lives in memory beside them; when it is missing
//! or stale (after a restart, or after a failed chunk) it is rebuilt by reading the upload back.
//! One request at a time works on an upload: each holds the upload's lock while it runs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_registry_oci::{Algorithm, Digest, Hasher, RepoName};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tracing::{debug, warn};

use crate::hashing::{HashPipe, INLINE_MAX, PendingHash, hash_stream};
use crate::{Body, Error, Registry, Result};

/// How often a body of unknown length is weighed against quotas and the free-space floor.
const SPACE_CHECK_EVERY: u64 = 64 << 20;
/// Most of a refused body read (and dropped) so its client can hear the refusal.
const DRAIN_LIMIT: u64 = 256 << 20;

/// The running hash of an upload's first `offset` bytes: current when `offset` equals the
/// upload's size. The last chunk's hashing may still be finishing when its PATCH is answered,
/// so it overlaps the client sending the next chunk.
pub(crate) struct HashState {
    offset: u64,
    hasher: Option<PendingHash>,
}

/// Where an upload stands after a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    /// Bytes received so far.
    pub size: u64,
}

/// A chunk's declared place: `Content-Range: start-end` (inclusive), if sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

impl ChunkRange {
    /// Parses `start-end`, also accepting the `bytes ` / `bytes=` prefixes some clients send.
    pub fn parse(s: &str) -> Option<ChunkRange> {
        let s = s.trim();
        let s = s
            .strip_prefix("bytes")
            .map_or(s, |r| r.trim_start_matches([' ', '=']));
        let (a, b) = s.split_once('-')?;
        let (start, end) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
        (start <= end).then_some(ChunkRange { start, end })
    }

    /// Bytes in the range; saturates for `0-18446744073709551615`, which no body can match.
    fn len(self) -> u64 {
        (self.end - self.start).saturating_add(1)
    }
}

/// A chunk of body with what the client declared about it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChunkInfo {
    pub range: Option<ChunkRange>,
    pub content_length: Option<u64>,
}

impl Registry {
    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<HashState>> {
        let mut map = self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned())
            .or_insert_with(|| {
                // The hash of no bytes needs no reading: a new upload's first chunk, and a
                // node catching up an upload it has not seen, start from it.
                let empty = Hasher::new(Algorithm::Sha256);
                Arc::new(tokio::sync::Mutex::new(HashState {
                    offset: 0,
                    hasher: Some(PendingHash::Ready(Box::new(empty))),
                }))
            })
            .clone()
    }

    fn forget_upload(&self, id: &str) {
        let mut map = self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// Checks that upload `id` exists and belongs to `repo`.
    async fn check_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        match self.inner.meta.upload(id).await? {
            Some(rec) if &rec.repo == repo => Ok(()),
            _ => Err(Error::UploadUnknown(id.to_owned())),
        }
    }

    /// Opens a new upload session in `repo`. The record comes before the bytes, so an upload
    /// file without a record is always an orphan (see [`Registry::purge_stale_uploads`]).
    pub async fn start_upload(&self, repo: &RepoName) -> Result<UploadStatus> {
        let id = uuid::Uuid::new_v4().to_string();
        self.inner.meta.create_upload(&id, repo).await?;
        if let Err(e) = self.inner.blobs.begin_upload(&id).await {
            let _ = self.inner.meta.delete_upload(&id).await;
            return Err(e.into());
        }
        Ok(UploadStatus { id, size: 0 })
    }

    pub async fn upload_status(&self, repo: &RepoName, id: &str) -> Result<UploadStatus> {
        self.check_upload(repo, id).await?;
        let size = self.inner.blobs.upload_size(id).await?;
        Ok(UploadStatus {
            id: id.to_owned(),
            size,
        })
    }

    /// Appends a chunk (PATCH). A chunk must start where the upload ends.
    pub async fn append_chunk(
        &self,
        repo: &RepoName,
        id: &str,
        info: ChunkInfo,
        body: Body,
    ) -> Result<UploadStatus> {
        self.check_upload(repo, id).await?;
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let size = self.append_locked(repo, id, &mut state, info, body).await?;
        Ok(UploadStatus {
            id: id.to_owned(),
            size,
        })
    }

    /// Finishes an upload (PUT `?digest=`), with an optional last chunk, and links the blob
    /// into `repo`. The digest must match every byte received. A small last chunk (most
    /// single-request pushes) is held in memory, checked against the digest before a byte of
    /// it is written, and written with the commit in one step.
    pub async fn finish_upload(
        &self,
        repo: &RepoName,
        id: &str,
        digest: &Digest,
        info: ChunkInfo,
        mut body: Body,
    ) -> Result<u64> {
        self.check_upload(repo, id).await?;
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let (size, tail) = match info.content_length.filter(|n| (1..=INLINE_MAX).contains(n)) {
            Some(len) => {
                let size = self.chunk_start(id, info).await?;
                if let Err(e) = self.weigh(repo, size, len).await {
                    return Err(self.refuse(e, &mut body).await);
                }
                (size, self.read_small_body(body, len).await?)
            }
            None => (
                self.append_locked(repo, id, &mut state, info, body).await?,
                Bytes::new(),
            ),
        };
        let mut hasher = match digest.algorithm() {
            Algorithm::Sha256 => self.take_hasher(id, &mut state, size).await?,
            other => {
                hash_stream(
                    Hasher::new(other),
                    self.inner.blobs.read_upload(id, 0).await?,
                )
                .await?
            }
        };
        hasher.update(&tail);
        let actual = hasher.finish();
        let total = size + tail.len() as u64;
        if &actual != digest {
            drop(state);
            self.cancel_upload(repo, id).await?;
            return Err(Error::DigestInvalid(format!(
                "upload received {total} bytes with digest {actual}, not {digest}; the upload was discarded, start again"
            )));
        }
        {
            let _shared = self.inner.meta.guard_blob(digest, false).await?;
            self.inner
                .blobs
                .commit_with_tail(id, size, tail, digest)
                .await?;
            self.inner
                .meta
                .finish_upload(id, repo, digest, total)
                .await?;
        }
        drop(state);
        self.forget_upload(id);
        debug!(%repo, %digest, size = total, "blob committed");
        Ok(total)
    }

    /// Pushes a whole blob in one request (POST `?digest=`, or the body of a PUT).
    pub async fn put_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        content_length: Option<u64>,
        body: Body,
    ) -> Result<u64> {
        let status = self.start_upload(repo).await?;
        let info = ChunkInfo {
            range: None,
            content_length,
        };
        match self
            .finish_upload(repo, &status.id, digest, info, body)
            .await
        {
            Ok(size) => Ok(size),
            Err(e) => {
                let _ = self.cancel_upload(repo, &status.id).await;
                Err(e)
            }
        }
    }

    /// Cancels an upload (DELETE on its URL), discarding its bytes.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &str) -> Result<()> {
        self.check_upload(repo, id).await?;
        self.inner.blobs.abort_upload(id).await?;
        self.inner.meta.delete_upload(id).await?;
        self.forget_upload(id);
        Ok(())
    }

    /// Mounts `digest` into `repo` from `from`, or, when `from` is absent, from any repository
    /// holding it. Returns the blob's size, or `None` if there is nothing to mount (the
    /// caller then starts an ordinary upload).
    pub async fn mount_blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>> {
        let _shared = self.inner.meta.guard_blob(digest, false).await?;
        let size = match from {
            Some(from) => self.inner.meta.blob_size(from, digest).await?,
            None => self.inner.meta.blob_size_anywhere(digest).await?,
        };
        let Some(size) = size else { return Ok(None) };
        if self.inner.blobs.stat(digest).await?.is_none() {
            return Ok(None);
        }
        if self.inner.meta.blob_size(repo, digest).await?.is_none() {
            self.check_quota(repo, size, Some(digest)).await?;
        }
        self.inner.meta.link_blob(repo, digest, size).await?;
        Ok(Some(size))
    }

    /// Removes uploads untouched for longer than `max_age`, and upload files with no record.
    pub async fn purge_stale_uploads(&self, max_age: Duration) -> Result<usize> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let cutoff = i64::try_from(now.saturating_sub(max_age.as_secs())).unwrap_or(0);
        // Files first, then records: a record always exists before its file, so a file
        // listed here without a record below is truly orphaned.
        let files = self.inner.blobs.list_uploads().await?;
        let records = self.inner.meta.list_uploads().await?;
        let known: std::collections::HashSet<&str> =
            records.iter().map(|r| r.id.as_str()).collect();
        // Uploads finished or cancelled through other nodes leave their hash state here; a
        // request already holding one keeps it, and a later one rebuilds it.
        self.inner
            .uploads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| known.contains(id.as_str()));
        let mut purged = 0;
        for id in files.iter().filter(|id| !known.contains(id.as_str())) {
            self.inner.blobs.abort_upload(id).await?;
            purged += 1;
        }
        for rec in records.iter().filter(|r| r.started_at < cutoff) {
            let lock = self.upload_lock(&rec.id);
            // An upload being written to right now is not stale.
            let Ok(_busy) = lock.try_lock() else { continue };
            self.inner.blobs.abort_upload(&rec.id).await?;
            self.inner.meta.delete_upload(&rec.id).await?;
            self.forget_upload(&rec.id);
            purged += 1;
        }
        self.inner
            .counters
            .uploads_purged
            .fetch_add(purged as u64, Ordering::Relaxed);
        Ok(purged)
    }

    /// Whether an upload to `repo` that has `written` bytes and will take `coming` more fits
    /// the quotas matching `repo` and leaves free space above the floor.
    async fn weigh(&self, repo: &RepoName, written: u64, coming: u64) -> Result<()> {
        self.check_quota(repo, written.saturating_add(coming), None)
            .await?;
        self.check_space(coming).await
    }

    /// Reads and drops what is left of a body refused for want of space, so that an HTTP/1.1
    /// client, which reads no answer before it has sent its whole body, hears why instead of
    /// a broken pipe. Nothing is written; reading stops after [`DRAIN_LIMIT`] bytes or at the
    /// idle timeout, and the connection closes with the answer.
    async fn refuse(&self, refusal: Error, body: &mut Body) -> Error {
        let idle = self.inner.limits.body_idle_timeout;
        let mut left = DRAIN_LIMIT;
        while left > 0 {
            match tokio::time::timeout(idle, body.next()).await {
                Ok(Some(Ok(chunk))) => left = left.saturating_sub(chunk.len() as u64),
                _ => break,
            }
        }
        refusal
    }

    /// Takes the hash of the upload's first `size` bytes out of `state`: the one in memory
    /// (once its last chunk has finished hashing), caught up with what other nodes appended
    /// since this one last saw the upload (bytes already written never change), or rebuilt
    /// from the start. `state` holds no hash until the caller puts back one that matches
    /// storage again, so a failure in between can never leave a wrong one.
    async fn take_hasher(&self, id: &str, state: &mut HashState, size: u64) -> Result<Hasher> {
        let held = match state.hasher.take() {
            Some(pending) if state.offset <= size => pending
                .wait()
                .await
                .inspect_err(|e| warn!(id, error = %e, "rebuilding an upload's hash"))
                .ok(),
            _ => None,
        };
        let (hasher, from) = match held {
            Some(h) if state.offset == size => return Ok(h),
            Some(h) => (h, state.offset),
            None => (Hasher::new(Algorithm::Sha256), 0),
        };
        debug!(id, from, size, "catching the upload's hash up from storage");
        hash_stream(hasher, self.inner.blobs.read_upload(id, from).await?).await
    }

    /// The upload's size, once the chunk's declared range and length are found to fit it.
    async fn chunk_start(&self, id: &str, info: ChunkInfo) -> Result<u64> {
        let size = self.inner.blobs.upload_size(id).await?;
        if let Some(range) = info.range {
            if range.start != size {
                return Err(Error::RangeInvalid {
                    start: range.start,
                    size,
                });
            }
            if info.content_length.is_some_and(|n| n != range.len()) {
                return Err(Error::SizeInvalid(format!(
                    "Content-Range {}-{} is {} bytes but Content-Length is {}",
                    range.start,
                    range.end,
                    range.len(),
                    info.content_length.unwrap_or_default()
                )));
            }
        }
        Ok(size)
    }

    /// The body's next chunk, `None` at its end; a body idle for longer than the limit fails.
    async fn next_chunk(&self, body: &mut Body) -> Result<Option<Bytes>> {
        let idle = self.inner.limits.body_idle_timeout;
        let next = tokio::time::timeout(idle, body.next())
            .await
            .map_err(|_| Error::BodyFailed(format!("no data for {}s", idle.as_secs())))?;
        next.transpose()
            .map_err(|e| Error::BodyFailed(e.to_string()))
    }

    /// Reads a body declared `len` bytes long (at most [`INLINE_MAX`]) into memory.
    async fn read_small_body(&self, mut body: Body, len: u64) -> Result<Bytes> {
        let mut held = BytesMut::with_capacity(usize::try_from(len).unwrap_or_default());
        while let Some(chunk) = self.next_chunk(&mut body).await? {
            if (held.len() + chunk.len()) as u64 > len {
                return Err(Error::SizeInvalid(format!(
                    "chunk declared {len} bytes but more arrived"
                )));
            }
            held.extend_from_slice(&chunk);
        }
        let received = held.len() as u64;
        self.inner
            .counters
            .bytes_received
            .fetch_add(received, Ordering::Relaxed);
        if received != len {
            return Err(Error::SizeInvalid(format!(
                "chunk declared {len} bytes but {received} arrived"
            )));
        }
        Ok(held.freeze())
    }

    async fn append_locked(
        &self,
        repo: &RepoName,
        id: &str,
        state: &mut HashState,
        info: ChunkInfo,
        mut body: Body,
    ) -> Result<u64> {
        let size = self.chunk_start(id, info).await?;
        if info.content_length == Some(0) {
            return Ok(size);
        }
        // A body of known length is weighed against quotas and the free-space floor before a
        // byte is written; one of unknown length as it arrives.
        if let Err(e) = self
            .weigh(repo, size, info.content_length.unwrap_or(0))
            .await
        {
            return Err(self.refuse(e, &mut body).await);
        }
        let hasher = self.take_hasher(id, state, size).await?;
        let mut pipe = HashPipe::new(hasher, info.content_length);
        let mut writer = self.inner.blobs.append(id, size).await?;
        let mut received = 0u64;
        let mut weighed = 0u64;
        let outcome: Result<()> = async {
            loop {
                if info.content_length.is_none() && received - weighed >= SPACE_CHECK_EVERY {
                    self.weigh(repo, size + received, 0).await?;
                    weighed = received;
                }
                let Some(chunk) = self.next_chunk(&mut body).await? else {
                    return Ok(());
                };
                received += chunk.len() as u64;
                pipe.feed(chunk.clone()).await?;
                writer.write(chunk).await?;
            }
        }
        .await;
        let new_size = writer.finish().await;
        let hashed = pipe.close();
        self.inner
            .counters
            .bytes_received
            .fetch_add(received, Ordering::Relaxed);
        // A storage failure (a full disk, say) is the cause of any write error in `outcome`.
        let new_size = match new_size
            .map_err(Error::from)
            .and_then(|n| outcome.map(|()| n))
        {
            Ok(n) => n,
            Err(e @ Error::StorageFull(_)) => return Err(self.refuse(e, &mut body).await),
            Err(e) => return Err(e),
        };
        if new_size != size + received {
            warn!(
                id,
                size, received, new_size, "upload size disagrees with bytes received"
            );
            return Err(Error::Internal(
                "upload size disagrees with bytes received".into(),
            ));
        }
        let declared = info.range.map(ChunkRange::len).or(info.content_length);
        if let Some(declared) = declared.filter(|&d| d != received) {
            return Err(Error::SizeInvalid(format!(
                "chunk declared {declared} bytes but {received} arrived"
            )));
        }
        state.offset = new_size;
        state.hasher = Some(hashed);
        Ok(new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_forms() {
        assert_eq!(
            ChunkRange::parse("0-9"),
            Some(ChunkRange { start: 0, end: 9 })
        );
        assert_eq!(
            ChunkRange::parse("bytes=10-19"),
            Some(ChunkRange { start: 10, end: 19 })
        );
        assert_eq!(
            ChunkRange::parse("bytes 10-19"),
            Some(ChunkRange { start: 10, end: 19 })
        );
        assert_eq!(ChunkRange::parse("9-0"), None);
        assert_eq!(ChunkRange::parse("a-b"), None);
        assert_eq!(ChunkRange::parse("5"), None);
    }

    /// A body that stops sending is abandoned after the idle limit, whether it is read into
    /// memory (a small last chunk) or streamed to storage (a chunk of unknown length), and the
    /// upload keeps only what arrived before.
    #[tokio::test]
    async fn a_stalled_body_fails_after_the_idle_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = agent_registry_storage::FsBlobStore::open(dir.path(), false).expect("open");
        let meta = agent_registry_metadata::SqliteStore::open(dir.path().join("r.db"), false)
            .expect("open metadata");
        let limits = crate::Limits {
            body_idle_timeout: Duration::from_millis(200),
            ..crate::Limits::default()
        };
        let registry = Registry::new(
            Arc::new(blobs),
            Arc::new(meta),
            limits,
            crate::CatalogueRules::default(),
        );
        let repo: RepoName = "stall/app".parse().expect("name");
        let stalled = || -> Body {
            let first = futures_util::stream::iter([Ok(bytes::Bytes::from_static(b"ab"))]);
            Box::pin(first.chain(futures_util::stream::pending()))
        };
        let digest = Digest::of(Algorithm::Sha256, b"abc");
        for content_length in [Some(3), None] {
            let upload = registry.start_upload(&repo).await.expect("start");
            let info = ChunkInfo {
                range: None,
                content_length,
            };
            let r = registry
                .finish_upload(&repo, &upload.id, &digest, info, stalled())
                .await;
            assert!(
                matches!(&r, Err(Error::BodyFailed(m)) if m.contains("no data")),
                "{content_length:?}: {r:?}"
            );
            let status = registry.upload_status(&repo, &upload.id).await;
            let kept = if content_length.is_some() { 0 } else { 2 };
            assert_eq!(status.expect("status").size, kept, "{content_length:?}");
        }
    }

    /// An upload nobody finishes goes when it is older than the limit, an upload in storage
    /// with no record (its node died between the two) goes at once, and a young one stays.
    async fn abandoned_uploads_are_purged(blobs: Arc<dyn agent_registry_storage::BlobStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = agent_registry_metadata::SqliteStore::open(dir.path().join("r.db"), false)
            .expect("open metadata");
        let registry = Registry::new(
            blobs.clone(),
            Arc::new(meta),
            crate::Limits::default(),
            crate::CatalogueRules::default(),
        );
        let repo: RepoName = "purge/app".parse().expect("name");
        let left = registry.start_upload(&repo).await.expect("start");
        let chunk: Body = Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
            b"abc",
        ))]));
        let info = ChunkInfo {
            range: None,
            content_length: Some(3),
        };
        registry
            .append_chunk(&repo, &left.id, info, chunk)
            .await
            .expect("patch");
        blobs.begin_upload("orphan-1").await.expect("orphan");

        let hour = Duration::from_secs(3600);
        assert_eq!(registry.purge_stale_uploads(hour).await.expect("purge"), 1);
        assert_eq!(
            blobs.list_uploads().await.expect("list"),
            std::slice::from_ref(&left.id)
        );

        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(
            registry
                .purge_stale_uploads(Duration::ZERO)
                .await
                .expect("purge"),
            1
        );
        assert!(blobs.list_uploads().await.expect("list").is_empty());
        assert!(matches!(
            registry.upload_status(&repo, &left.id).await,
            Err(Error::UploadUnknown(_))
        ));
    }

    #[tokio::test]
    async fn abandoned_uploads_are_purged_on_the_filesystem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blobs = agent_registry_storage::FsBlobStore::open(dir.path(), false).expect("open");
        abandoned_uploads_are_purged(Arc::new(blobs)).await;
    }

    #[tokio::test]
    #[ignore = "needs the s3s-fs S3 server: run scripts/test"]
    async fn abandoned_uploads_are_purged_from_s3() {
        let server = agent_registry_storage::s3_server::S3Server::start();
        let blobs =
            agent_registry_storage::S3BlobStore::open(&server.bucket("purge")).expect("open");
        abandoned_uploads_are_purged(Arc::new(blobs)).await;
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn content_range_parsing_never_panics(s in ".{0,60}") {
            let _ = ChunkRange::parse(&s);
        }

        #[test]
        fn any_parsed_range_has_a_length(start in any::<u64>(), end in any::<u64>()) {
            if let Some(r) = ChunkRange::parse(&format!("{start}-{end}")) {
                prop_assert!(r.len() >= 1);
            }
        }

        #[test]
        fn well_formed_ranges_parse(start in 0u64..u64::MAX / 2, len in 1u64..1 << 40) {
            let end = start + len - 1;
            let parsed = ChunkRange::parse(&format!("{start}-{end}"));
            prop_assert_eq!(parsed, Some(ChunkRange { start, end }));
            prop_assert_eq!(parsed.map(ChunkRange::len), Some(len));
        }
    }
}
