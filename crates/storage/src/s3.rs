//! The S3 backend, for many registry nodes sharing one bucket (AWS S3, Garage, MinIO, Ceph,
//! s3s), through the `object_store` crate.
//!
//! Object storage cannot append, so an upload is a directory of immutable segment objects,
//! one per append, each named by the offset it starts at:
//!
//! ```text
//! <prefix>/uploads/<id>/begun                         empty marker: the upload exists
//! <prefix>/uploads/<id>/00000000000000000000          bytes 0..n of the first append
//! <prefix>/uploads/<id>/00000000000000001024          bytes 1024.. of the next one
//! <prefix>/blobs/sha256/e3/e3b0c442…b855              committed blobs, as on the filesystem
//! ```
//!
//! Every node sees the same segments, so successive PATCHes of one upload may land on
//! different nodes: the size is the end of the last segment, and the bytes so far (to rebuild
//! the hash state) are the segments read in order. A small append is one conditional PUT
//! (`If-None-Match: *`), so two nodes racing to write the same offset cannot both win; a large
//! one streams as a multipart upload with [`PART_SIZE`] parts, [`PARTS_IN_FLIGHT`] at a time.
//! Commit copies a lone segment to the blob's key server-side, or streams the segments into
//! one multipart upload, then removes the upload's objects. Uploads abandoned on the way are
//! listed by [`BlobStore::list_uploads`] and cleaned up by the registry like any others.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_registry_oci::Digest;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
    WriteMultipart,
};

use crate::{BlobStore, ByteStream, Result, StorageError, UploadWriter};

/// The size of a multipart part, and the most an append buffers for one conditional PUT:
/// past it, the append streams as multipart. S3 wants parts of at least 5 MiB. A PATCH of
/// exactly this size (registry-bench's and many clients' chunk) stays one PUT.
const PART_SIZE: usize = 8 << 20;
/// Parts uploaded at once by one writer: bounds the memory an upload holds to this many parts.
const PARTS_IN_FLIGHT: usize = 2;
/// The marker object that says an upload exists, before any bytes arrive.
const MARKER: &str = "begun";
/// The object naming the registry (its metadata store) the bucket's blobs belong to.
const OWNER: &str = "registry-owner";

/// Where the bucket is and how to reach it.
#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// The service's URL (`http://127.0.0.1:9000` for a local Garage or s3s); `None` for AWS.
    pub endpoint: Option<String>,
    pub region: String,
    /// Static credentials; when absent, the usual AWS sources (environment, profile,
    /// instance metadata) are used.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// A key prefix, so one bucket can hold several registries (`registry/`).
    pub prefix: String,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    s3: Arc<AmazonS3>,
    /// Empty, or ends with `/`.
    prefix: String,
}

fn s3_error(doing: &'static str, e: object_store::Error) -> StorageError {
    StorageError::io(doing, io::Error::other(e))
}

impl S3BlobStore {
    /// Connects to the bucket. Nothing is sent until the first request; [`BlobStore::probe`]
    /// proves the bucket is reachable and writable.
    pub fn open(config: &S3Config) -> Result<S3BlobStore> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            // Self-hosted services are addressed by path (`/bucket/key`), often over plain
            // HTTP on a private network.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let s3 = builder
            .build()
            .map_err(|e| s3_error("configuring S3 storage", e))?;
        let prefix = config.prefix.trim_matches('/');
        Ok(S3BlobStore {
            s3: Arc::new(s3),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    fn blob_path(&self, digest: &Digest) -> Path {
        Path::from(format!("{}{}", self.prefix, crate::blob_key(digest)))
    }

    fn upload_dir(&self, id: &str) -> Result<Path> {
        if !crate::upload_id_ok(id) {
            return Err(StorageError::UploadUnknown(id.to_owned()));
        }
        Ok(Path::from(format!("{}uploads/{id}", self.prefix)))
    }

    /// The upload's segments in order, as (offset, size, path); `UploadUnknown` if it has no
    /// marker.
    async fn segments(&self, id: &str) -> Result<Vec<Segment>> {
        let objects = self.upload_objects(id).await?;
        let mut begun = false;
        let mut segments = Vec::new();
        for object in objects {
            match object.location.filename() {
                Some(MARKER) => begun = true,
                Some(name) => {
                    // `<offset>`, or `<offset>.<writer>` for a segment sent as multipart.
                    let offset = name.split('.').next().unwrap_or(name);
                    if let Ok(offset) = offset.parse::<u64>() {
                        segments.push(Segment {
                            offset,
                            size: object.size,
                            path: object.location,
                        });
                    }
                }
                None => {}
            }
        }
        if !begun {
            return Err(StorageError::UploadUnknown(id.to_owned()));
        }
        segments.sort_by_key(|s| s.offset);
        // Segments must follow each other exactly. Two at one offset are two requests that
        // appended at once through different nodes (possible for multipart segments, which
        // cannot be written conditionally): which bytes belong to the upload is unknowable,
        // so every later use of it fails, and the client starts again.
        let mut end = 0;
        for s in &segments {
            if s.offset != end {
                return Err(StorageError::UploadMoved {
                    id: id.to_owned(),
                    at: s.offset,
                });
            }
            end = s.offset + s.size;
        }
        Ok(segments)
    }

    /// Every object under the upload's directory: its marker and its segments.
    async fn upload_objects(&self, id: &str) -> Result<Vec<ObjectMeta>> {
        let dir = self.upload_dir(id)?;
        self.s3
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| s3_error("listing an upload", e))
    }

    /// Removes `paths`, an upload's marker last, so a half-removed upload still lists.
    async fn remove(&self, mut paths: Vec<Path>) -> Result<()> {
        paths.sort_by_key(|p| p.filename() == Some(MARKER));
        for path in paths {
            match self.s3.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(s3_error("removing an upload", e)),
            }
        }
        Ok(())
    }

    /// Writes `segments` then `tail`, together no larger than a part, as `blob` in one PUT.
    async fn put_whole(&self, blob: &Path, segments: &[Segment], tail: Bytes) -> Result<()> {
        let mut parts: Vec<Bytes> = self
            .concat(segments)
            .try_collect()
            .await
            .map_err(|e| StorageError::io("reading an upload", e))?;
        parts.push(tail);
        self.s3
            .put(blob, parts.into_iter().collect())
            .await
            .map(drop)
            .map_err(|e| s3_error("committing a blob", e))
    }

    /// Removes a committed upload: what was listed at the commit, without listing again (a
    /// segment another node appended since is not part of the blob, and goes with the
    /// abandoned uploads).
    async fn drop_segments(&self, id: &str, segments: Vec<Segment>) -> Result<()> {
        let dir = self.upload_dir(id)?;
        let mut paths: Vec<Path> = segments.into_iter().map(|s| s.path).collect();
        paths.push(dir.join(MARKER));
        self.remove(paths).await
    }

    /// The bytes of `segments`, one after another, each fetched when the one before ends.
    fn concat(&self, segments: &[Segment]) -> ByteStream {
        let streams: Vec<ByteStream> = segments
            .iter()
            .map(|s| self.stream(s.path.clone()))
            .collect();
        Box::pin(futures_util::stream::iter(streams).flatten())
    }

    /// The whole object at `path`, fetched when the stream is first polled.
    fn stream(&self, path: Path) -> ByteStream {
        self.stream_from(path, 0)
    }

    /// The object at `path` from byte `skip` on, fetched when the stream is first polled.
    fn stream_from(&self, path: Path, skip: u64) -> ByteStream {
        let s3 = self.s3.clone();
        let options = GetOptions {
            range: (skip > 0).then_some(GetRange::Offset(skip)),
            ..GetOptions::default()
        };
        let opened = async move { s3.get_opts(&path, options).await.map(|r| r.into_stream()) };
        Box::pin(
            futures_util::stream::once(opened)
                .try_flatten()
                .map_err(io::Error::other),
        )
    }
}

struct Segment {
    offset: u64,
    size: u64,
    path: Path,
}

/// Adds `chunk` to a multipart upload once fewer than [`PARTS_IN_FLIGHT`] parts are being
/// sent, so a writer holds a bounded amount in memory.
async fn put_part(writer: &mut WriteMultipart, chunk: Bytes, doing: &'static str) -> Result<()> {
    writer
        .wait_for_capacity(PARTS_IN_FLIGHT)
        .await
        .map_err(|e| s3_error(doing, e))?;
    writer.put(chunk);
    Ok(())
}

fn end_of(segments: &[Segment]) -> u64 {
    segments.last().map_or(0, |s| s.offset + s.size)
}

/// Names probe objects apart when health checks overlap, across processes too.
static PROBES: AtomicU64 = AtomicU64::new(0);

#[async_trait::async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.s3.head(&self.blob_path(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(s3_error("reading blob size", e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream> {
        if range.is_empty() {
            return match self.stat(digest).await? {
                Some(_) => Ok(Box::pin(futures_util::stream::empty())),
                None => Err(StorageError::BlobUnknown(digest.clone())),
            };
        }
        // The GET is sent here, not when the body is first polled, so a missing blob is an
        // error before any response starts, with no HEAD before it.
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        match self.s3.get_opts(&self.blob_path(digest), options).await {
            Ok(found) => Ok(Box::pin(found.into_stream().map_err(io::Error::other))),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::BlobUnknown(digest.clone()))
            }
            Err(e) => Err(s3_error("reading a blob", e)),
        }
    }

    async fn list_blobs(&self) -> Result<Vec<Digest>> {
        let dir = Path::from(format!("{}blobs", self.prefix));
        self.s3
            .list(Some(&dir))
            .try_filter_map(|o| async move { Ok(crate::digest_of_key(o.location.as_ref())) })
            .try_collect()
            .await
            .map_err(|e| s3_error("listing blobs", e))
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        match self.s3.delete(&self.blob_path(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(s3_error("deleting a blob", e)),
        }
    }

    async fn begin_upload(&self, id: &str) -> Result<()> {
        let marker = self.upload_dir(id)?.join(MARKER);
        self.s3
            .put_opts(&marker, PutPayload::new(), PutMode::Create.into())
            .await
            .map(drop)
            .map_err(|e| s3_error("creating an upload", e))
    }

    async fn upload_size(&self, id: &str) -> Result<u64> {
        Ok(end_of(&self.segments(id).await?))
    }

    async fn append(&self, id: &str, at: u64) -> Result<Box<dyn UploadWriter>> {
        // One HEAD, not a listing: the segment's name (its offset) and the conditional PUT
        // keep two appends at one offset apart; multipart ones get names of their own and
        // `segments` refuses the pair.
        let dir = self.upload_dir(id)?;
        match self.s3.head(&dir.clone().join(MARKER)).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::UploadUnknown(id.to_owned()));
            }
            Err(e) => return Err(s3_error("reading an upload", e)),
        }
        Ok(Box::new(S3UploadWriter {
            s3: self.s3.clone(),
            dir,
            id: id.to_owned(),
            offset: at,
            written: 0,
            buffered: Vec::new(),
            multipart: None,
        }))
    }

    async fn read_upload(&self, id: &str, from: u64) -> Result<ByteStream> {
        let segments = self.segments(id).await?;
        // Segments never change, so bytes before `from` are skipped whole or by a range.
        let after: Vec<&Segment> = segments
            .iter()
            .filter(|s| s.offset + s.size > from)
            .collect();
        let streams: Vec<ByteStream> = after
            .iter()
            .map(|s| match from.checked_sub(s.offset) {
                Some(skip) if skip > 0 => self.stream_from(s.path.clone(), skip),
                _ => self.stream(s.path.clone()),
            })
            .collect();
        Ok(Box::pin(futures_util::stream::iter(streams).flatten()))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<()> {
        let segments = self.segments(id).await?;
        let blob = self.blob_path(digest);
        if self.stat(digest).await?.is_none() {
            match segments.as_slice() {
                // The usual case (a monolithic push or a single PATCH): a server-side copy.
                [only] => self
                    .s3
                    .copy(&only.path, &blob)
                    .await
                    .map_err(|e| s3_error("committing a blob", e))?,
                small if end_of(small) <= PART_SIZE as u64 => {
                    self.put_whole(&blob, small, Bytes::new()).await?;
                }
                // S3 has no concatenation that accepts parts under 5 MiB, so stream the
                // segments through into one multipart upload.
                many => {
                    let upload = self
                        .s3
                        .put_multipart(&blob)
                        .await
                        .map_err(|e| s3_error("committing a blob", e))?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
                    let mut bytes = self.concat(many);
                    while let Some(chunk) = bytes.next().await {
                        let chunk = match chunk {
                            Ok(chunk) => chunk,
                            Err(e) => {
                                let _ = writer.abort().await;
                                return Err(StorageError::io("reading an upload", e));
                            }
                        };
                        put_part(&mut writer, chunk, "committing a blob").await?;
                    }
                    writer
                        .finish()
                        .await
                        .map_err(|e| s3_error("committing a blob", e))?;
                }
            }
        }
        self.drop_segments(id, segments).await
    }

    /// A small blob's last bytes go straight into one PUT of the whole blob, with what the
    /// upload holds before them: no segment for them, and no copy. Without a tail, or past
    /// one part, this is an append and [`BlobStore::commit_upload`] (a lone segment is copied
    /// within S3, not read back).
    async fn commit_with_tail(
        &self,
        id: &str,
        at: u64,
        tail: Bytes,
        digest: &Digest,
    ) -> Result<()> {
        if tail.is_empty() || at + tail.len() as u64 > PART_SIZE as u64 {
            return crate::append_then_commit(self, id, at, tail, digest).await;
        }
        let segments = self.segments(id).await?;
        if end_of(&segments) != at {
            return Err(StorageError::UploadMoved {
                id: id.to_owned(),
                at,
            });
        }
        if self.stat(digest).await?.is_none() {
            self.put_whole(&self.blob_path(digest), &segments, tail)
                .await?;
        }
        self.drop_segments(id, segments).await
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        let objects = self.upload_objects(id).await?;
        self.remove(objects.into_iter().map(|o| o.location).collect())
            .await
    }

    async fn list_uploads(&self) -> Result<Vec<String>> {
        let dir = Path::from(format!("{}uploads", self.prefix));
        let listing = self
            .s3
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| s3_error("listing uploads", e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    async fn available(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    async fn probe(&self) -> Result<()> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        let path = Path::from(format!(
            "{}probes/{nanos}-{}-{n}",
            self.prefix,
            std::process::id()
        ));
        self.s3
            .put(&path, PutPayload::from_static(b"probe"))
            .await
            .map_err(|e| s3_error("writing a probe object", e))?;
        self.s3
            .delete(&path)
            .await
            .map_err(|e| s3_error("removing a probe object", e))
    }

    async fn claim(&self, owner: &str) -> Result<()> {
        let path = Path::from(format!("{}{OWNER}", self.prefix));
        let put = self
            .s3
            .put_opts(
                &path,
                PutPayload::from(owner.as_bytes().to_vec()),
                PutMode::Create.into(),
            )
            .await;
        match put {
            Ok(_) => return Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(s3_error("claiming the bucket", e)),
        }
        let theirs = self
            .s3
            .get(&path)
            .await
            .map_err(|e| s3_error("reading the bucket's owner", e))?
            .bytes()
            .await
            .map_err(|e| s3_error("reading the bucket's owner", e))?;
        let theirs = String::from_utf8_lossy(&theirs);
        if theirs == owner {
            return Ok(());
        }
        Err(StorageError::Claimed {
            ours: owner.to_owned(),
            theirs: theirs.into_owned(),
        })
    }

    async fn presigned_url(&self, digest: &Digest, expiry: Duration) -> Result<Option<String>> {
        let url = self
            .s3
            .signed_url(http::Method::GET, &self.blob_path(digest), expiry)
            .await
            .map_err(|e| s3_error("signing a blob URL", e))?;
        Ok(Some(url.to_string()))
    }
}

/// One append: bytes are buffered up to [`PART_SIZE`] for a single conditional PUT; beyond
/// that they stream as a multipart upload of the same segment.
struct S3UploadWriter {
    s3: Arc<AmazonS3>,
    /// The upload's directory; the segment is `<offset>` in it (see `append`).
    dir: Path,
    id: String,
    offset: u64,
    written: u64,
    buffered: Vec<Bytes>,
    multipart: Option<WriteMultipart>,
}

#[async_trait::async_trait]
impl UploadWriter for S3UploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.written += chunk.len() as u64;
        if let Some(multipart) = &mut self.multipart {
            return put_part(multipart, chunk, "writing an upload").await;
        }
        self.buffered.push(chunk);
        let held: usize = self.buffered.iter().map(Bytes::len).sum();
        if held > PART_SIZE {
            // A name of this writer's own: a multipart upload cannot be conditional, so two
            // writers at one offset must not overwrite each other but both land, for
            // `segments` to see and refuse.
            let path =
                self.dir
                    .clone()
                    .join(format!("{:020}.{:016x}", self.offset, fastrand::u64(..)));
            let upload = self
                .s3
                .put_multipart(&path)
                .await
                .map_err(|e| s3_error("writing an upload", e))?;
            let mut multipart = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            for chunk in self.buffered.drain(..) {
                multipart.put(chunk);
            }
            self.multipart = Some(multipart);
        }
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<u64> {
        let S3UploadWriter {
            s3,
            dir,
            id,
            offset,
            written,
            buffered,
            multipart,
        } = *self;
        match multipart {
            Some(multipart) => {
                multipart
                    .finish()
                    .await
                    .map_err(|e| s3_error("writing an upload", e))?;
            }
            None if written == 0 => {}
            None => {
                let payload: PutPayload = buffered.into_iter().collect();
                let path = dir.join(format!("{offset:020}"));
                s3.put_opts(&path, payload, PutOptions::from(PutMode::Create))
                    .await
                    .map_err(|e| match e {
                        object_store::Error::AlreadyExists { .. } => {
                            StorageError::UploadMoved { id, at: offset }
                        }
                        e => s3_error("writing an upload", e),
                    })?;
            }
        }
        Ok(offset + written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3_server::S3Server;
    use agent_registry_oci::Algorithm;

    async fn write(store: &S3BlobStore, id: &str, data: &[u8]) -> Result<u64> {
        let at = store.upload_size(id).await?;
        let mut w = store.append(id, at).await?;
        for piece in data.chunks(256 << 10) {
            w.write(Bytes::copy_from_slice(piece)).await?;
        }
        w.finish().await
    }

    /// Two stores on one bucket: what two registry nodes see.
    fn two_nodes(server: &S3Server, bucket: &str) -> (S3BlobStore, S3BlobStore) {
        let config = server.bucket(bucket);
        let open = || S3BlobStore::open(&config).expect("open");
        (open(), open())
    }

    async fn read_all(stream: ByteStream) -> Vec<u8> {
        let chunks: Vec<Bytes> = stream.try_collect().await.expect("stream");
        chunks.concat()
    }

    #[tokio::test]
    #[ignore = "needs the s3s-fs S3 server: run scripts/test"]
    async fn s3_backend_passes_the_shared_suite() {
        let server = S3Server::start();
        let mut config = server.bucket("suite");
        crate::suite::run_all(&S3BlobStore::open(&config).expect("open")).await;
        config.prefix = "/shared/".into();
        crate::suite::run_all(&S3BlobStore::open(&config).expect("open")).await;
    }

    /// Two stores on one bucket are two registry nodes: a chunked upload whose PATCHes land
    /// on different nodes (one small, one large enough to stream as multipart) reads and
    /// commits the same from either.
    #[tokio::test]
    #[ignore = "needs the s3s-fs S3 server: run scripts/test"]
    async fn an_upload_grows_on_two_nodes_and_commits_on_either() {
        let server = S3Server::start();
        let (a, b) = two_nodes(&server, "nodes");
        let data: Vec<u8> = (0..(3 << 20) + PART_SIZE as u32 * 2)
            .map(|i| (i % 251) as u8)
            .collect();
        let digest = Digest::of(Algorithm::Sha256, &data);
        let (first, second) = data.split_at(3 << 20);

        a.begin_upload("x1").await.expect("begin on a");
        assert_eq!(write(&a, "x1", first).await.expect("patch on a"), 3 << 20);
        assert_eq!(b.upload_size("x1").await.expect("size on b"), 3 << 20);
        let end = write(&b, "x1", second).await.expect("patch on b");
        assert_eq!(end, data.len() as u64);
        assert_eq!(a.upload_size("x1").await.expect("size on a"), end);
        assert_eq!(
            read_all(a.read_upload("x1", 0).await.expect("read")).await,
            data
        );
        assert_eq!(b.list_uploads().await.expect("list"), ["x1"]);

        a.commit_upload("x1", &digest).await.expect("commit on a");
        assert_eq!(
            b.stat(&digest).await.expect("stat"),
            Some(data.len() as u64)
        );
        let all = b.read(&digest, 0..data.len() as u64).await.expect("read");
        assert_eq!(read_all(all).await, data);
        assert!(b.list_uploads().await.expect("list").is_empty());
        assert!(matches!(
            b.upload_size("x1").await,
            Err(StorageError::UploadUnknown(_))
        ));
    }

    /// A bucket serves one registry: its metadata's id claims it, the same id claims it again
    /// (a restart, another node on the same metadata), and another registry is refused,
    /// each under its own prefix.
    #[tokio::test]
    #[ignore = "needs the s3s-fs S3 server: run scripts/test"]
    async fn a_bucket_belongs_to_the_registry_that_claims_it_first() {
        let server = S3Server::start();
        let (a, b) = two_nodes(&server, "claimed");
        a.claim("registry-1").await.expect("first claim");
        b.claim("registry-1").await.expect("same registry");
        let refused = b.claim("registry-2").await.expect_err("another registry");
        assert!(
            matches!(&refused, StorageError::Claimed { theirs, .. } if theirs == "registry-1"),
            "{refused}"
        );
        let mut other = server.bucket("claimed");
        other.prefix = "second".into();
        let beside = S3BlobStore::open(&other).expect("open");
        beside
            .claim("registry-2")
            .await
            .expect("a prefix of its own");
    }

    /// Two PATCHes of one upload racing on two nodes both start at the same offset; the
    /// conditional PUT lets exactly one of them land.
    #[tokio::test]
    #[ignore = "needs the s3s-fs S3 server: run scripts/test"]
    async fn two_appends_at_one_offset_cannot_both_land() {
        let server = S3Server::start();
        let (a, b) = two_nodes(&server, "race");
        a.begin_upload("r1").await.expect("begin");
        let mut on_a = a.append("r1", 0).await.expect("append on a");
        let mut on_b = b.append("r1", 0).await.expect("append on b");
        on_a.write(Bytes::from_static(b"from a"))
            .await
            .expect("write");
        on_b.write(Bytes::from_static(b"from b!"))
            .await
            .expect("write");
        assert_eq!(on_a.finish().await.expect("a lands"), 6);
        let lost = on_b.finish().await.expect_err("b must not overwrite a");
        assert!(
            matches!(&lost, StorageError::UploadMoved { at: 0, .. }),
            "{lost}"
        );
        let bytes = read_all(b.read_upload("r1", 0).await.expect("read")).await;
        assert_eq!(bytes, b"from a");
    }

    /// Two large PATCHes (multipart, so not conditional) racing at one offset both land under
    /// names of their own; the upload is then refused for every use, instead of silently
    /// holding the bytes of one while the other node hashed its own.
    #[tokio::test]
    #[ignore = "needs the s3s-fs S3 server: run scripts/test"]
    async fn two_large_appends_at_one_offset_spoil_the_upload_instead_of_overwriting() {
        let server = S3Server::start();
        let (a, b) = two_nodes(&server, "large-race");
        a.begin_upload("r2").await.expect("begin");
        let big = |byte: u8| vec![byte; PART_SIZE + 1_000_000];
        let mut on_a = a.append("r2", 0).await.expect("append on a");
        let mut on_b = b.append("r2", 0).await.expect("append on b");
        on_a.write(Bytes::from(big(b'a'))).await.expect("write");
        on_b.write(Bytes::from(big(b'b'))).await.expect("write");
        on_a.finish().await.expect("a lands");
        on_b.finish().await.expect("b lands beside it");
        let digest = Digest::of(Algorithm::Sha256, &big(b'a'));
        for refused in [
            a.upload_size("r2").await.map(drop),
            b.read_upload("r2", 0).await.map(drop),
            a.commit_upload("r2", &digest).await,
        ] {
            assert!(
                matches!(&refused, Err(StorageError::UploadMoved { at: 0, .. })),
                "{refused:?}"
            );
        }
        assert_eq!(b.stat(&digest).await.expect("stat"), None);
    }

    fn store(prefix: &str) -> S3BlobStore {
        S3BlobStore::open(&S3Config {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "us-east-1".into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            prefix: prefix.into(),
        })
        .expect("open")
    }

    #[test]
    fn keys_share_the_filesystem_layout_under_the_prefix() {
        let digest = Digest::of(agent_registry_oci::Algorithm::Sha256, b"");
        let hex = digest.hex();
        assert_eq!(
            store("/reg/").blob_path(&digest).as_ref(),
            format!("reg/blobs/sha256/{}/{hex}", &hex[..2])
        );
        assert_eq!(
            store("").upload_dir("abc-1").expect("ok").as_ref(),
            "uploads/abc-1"
        );
        assert!(matches!(
            store("").upload_dir("../x"),
            Err(StorageError::UploadUnknown(_))
        ));
    }
}
