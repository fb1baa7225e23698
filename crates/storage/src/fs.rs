//! The filesystem backend: the embedded default.
//!
//! Writes go through one blocking thread per upload writer so the async runtime never waits on
//! the disk; reads map the blob a window at a time on a blocking thread, so a GET touches a
//! bounded amount of memory however large the blob, and bytes go to the socket with one copy.
//! Lookups of sizes and free space, and opening a file, run on the calling task: served from
//! the kernel's inode and dentry caches they take microseconds, less than a hand-off to a
//! blocking thread (the same reasoning as the metadata store's inline reads). With `fsync` on
//! (the default), a commit syncs the upload file before the rename and the directory after
//! it, so a blob that is visible is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agent_registry_oci::Digest;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{BlobStore, ByteStream, Result, StorageError, UploadWriter};

/// Bytes mapped at a time for a download.
const WINDOW: usize = 4 << 20;
/// Windows mapped ahead of the socket per download.
const READ_AHEAD: usize = 2;
/// Reads at most this long are done with one `pread` on the calling task.
const SMALL_READ: u64 = 64 << 10;
/// How much an upload writer lets pile up in the page cache before syncing it, when fsync is
/// on, so the final sync at commit has little left to do.
const SYNC_EVERY: u64 = 32 << 20;

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    root: PathBuf,
    fsync: bool,
    /// Held open for the store's life: its exclusive lock keeps a second process off this root.
    _lock: Arc<File>,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store under `root`. `fsync` makes commits durable
    /// against power loss; turn it off only for throwaway data.
    ///
    /// One process at a time: the registry's guard between committing a blob and deleting
    /// its bytes lives in memory, so the store takes an exclusive lock on `<root>/.lock` and
    /// fails with [`StorageError::InUse`] while another process holds it.
    pub fn open(root: impl Into<PathBuf>, fsync: bool) -> Result<FsBlobStore> {
        let root = root.into();
        for dir in ["blobs", "uploads"] {
            fs::create_dir_all(root.join(dir))
                .map_err(|e| StorageError::io("creating storage directories", e))?;
        }
        let lock_path = root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StorageError::io("opening the storage lock", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StorageError::InUse(root)),
            Err(fs::TryLockError::Error(e)) => return Err(StorageError::io("locking storage", e)),
        }
        Ok(FsBlobStore {
            root,
            fsync,
            _lock: Arc::new(lock),
        })
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(crate::blob_key(digest))
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        if !crate::upload_id_ok(id) {
            return Err(StorageError::UploadUnknown(id.to_owned()));
        }
        Ok(self.root.join("uploads").join(id))
    }

    fn open_upload(&self, id: &str, options: &OpenOptions) -> Result<File> {
        let path = self.upload_path(id)?;
        options.open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::UploadUnknown(id.to_owned()),
            _ => StorageError::io("opening an upload", e),
        })
    }

    /// Commits upload `id` as blob `digest`, first appending `tail` at its offset, in one
    /// blocking step: write, sync the file, rename it into place, sync the directory. With
    /// fsync on, a blob that is visible is durable.
    async fn commit(&self, id: &str, tail: Option<(u64, Bytes)>, digest: &Digest) -> Result<()> {
        let store = self.clone();
        let blob = self.blob_path(digest);
        let id = id.to_owned();
        blocking(move || {
            let upload = store.upload_path(&id)?;
            if tail.is_some() || store.fsync {
                let mut file = store.open_upload(&id, OpenOptions::new().append(true))?;
                if let Some((at, tail)) = tail {
                    check_end(&file, &id, at)?;
                    file.write_all(&tail)
                        .map_err(|e| StorageError::io("writing an upload", e))?;
                }
                if store.fsync {
                    file.sync_all()
                        .map_err(|e| StorageError::io("syncing an upload", e))?;
                }
            }
            let dir = blob.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir)
                .map_err(|e| StorageError::io("creating a blob directory", e))?;
            // Same digest, same bytes: renaming over an existing blob changes nothing a reader sees.
            fs::rename(&upload, &blob).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => StorageError::UploadUnknown(id.clone()),
                _ => StorageError::io("committing a blob", e),
            })?;
            if store.fsync {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| StorageError::io("syncing a blob directory", e))?;
            }
            Ok(())
        })
        .await
    }
}

/// Checks that an upload opened for appending ends at `at`. The registry appends to one
/// upload at a time (one process holds the root), so this only catches a caller that lost
/// track of the size.
fn check_end(file: &File, id: &str, at: u64) -> Result<()> {
    let len = file
        .metadata()
        .map_err(|e| StorageError::io("reading upload size", e))?
        .len();
    if len != at {
        return Err(StorageError::UploadMoved {
            id: id.to_owned(),
            at,
        });
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::io("running a storage task", io::Error::other(e)))?
}

/// Names probe files apart when health checks overlap.
static PROBES: AtomicU64 = AtomicU64::new(0);

#[async_trait::async_trait]
impl BlobStore for FsBlobStore {
    async fn available(&self) -> Result<Option<u64>> {
        let stat = rustix::fs::statvfs(&self.root)
            .map_err(|e| StorageError::io("reading free space", e.into()))?;
        Ok(Some(stat.f_bavail.saturating_mul(stat.f_frsize)))
    }

    async fn probe(&self) -> Result<()> {
        let n = PROBES.fetch_add(1, Ordering::Relaxed);
        // Where uploads begin, so the probe fails exactly when pushes would; upload ids
        // never start with a dot, and listings leave dotfiles out.
        let path = self.root.join("uploads").join(format!(".probe-{n}"));
        blocking(move || {
            let written = File::create_new(&path).and_then(|mut f| f.write_all(b"probe"));
            let removed = fs::remove_file(&path);
            written
                .and(removed)
                .map_err(|e| StorageError::io("writing a probe file", e))
        })
        .await
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StorageError::io("reading blob size", e)),
        }
    }

    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream> {
        let file = File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StorageError::BlobUnknown(digest.clone()),
            _ => StorageError::io("opening a blob", e),
        })?;
        Ok(stream_file(file, range))
    }

    async fn list_blobs(&self) -> Result<Vec<Digest>> {
        let blobs = self.root.join("blobs");
        blocking(move || {
            let failed = |e| StorageError::io("listing blobs", e);
            let mut digests = Vec::new();
            // blobs/<algorithm>/<2 hex>/<hex>
            for algorithm in fs::read_dir(&blobs).map_err(failed)? {
                let algorithm = algorithm.map_err(failed)?.path();
                for prefix in fs::read_dir(&algorithm).map_err(failed)? {
                    for blob in fs::read_dir(prefix.map_err(failed)?.path()).map_err(failed)? {
                        let path = blob.map_err(failed)?.path();
                        let key = path.strip_prefix(&blobs).unwrap_or(&path);
                        if let Some(digest) = key.to_str().and_then(crate::digest_of_key) {
                            digests.push(digest);
                        }
                    }
                }
            }
            Ok(digests)
        })
        .await
    }

    async fn delete(&self, digest: &Digest) -> Result<()> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("deleting a blob", e)),
        }
    }

    async fn begin_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        blocking(move || {
            File::create_new(&path)
                .map(drop)
                .map_err(|e| StorageError::io("creating an upload", e))
        })
        .await
    }

    async fn upload_size(&self, id: &str) -> Result<u64> {
        match fs::metadata(self.upload_path(id)?) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StorageError::UploadUnknown(id.to_owned()))
            }
            Err(e) => Err(StorageError::io("reading upload size", e)),
        }
    }

    async fn append(&self, id: &str, at: u64) -> Result<Box<dyn UploadWriter>> {
        let file = self.open_upload(id, OpenOptions::new().append(true))?;
        check_end(&file, id, at)?;
        Ok(Box::new(FsUploadWriter::spawn(file, at, self.fsync)))
    }

    async fn read_upload(&self, id: &str, from: u64) -> Result<ByteStream> {
        let file = self.open_upload(id, OpenOptions::new().read(true))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io("reading an upload", e))?
            .len();
        Ok(stream_file(file, from.min(len)..len))
    }

    async fn commit_upload(&self, id: &str, digest: &Digest) -> Result<()> {
        self.commit(id, None, digest).await
    }

    async fn commit_with_tail(
        &self,
        id: &str,
        at: u64,
        tail: Bytes,
        digest: &Digest,
    ) -> Result<()> {
        self.commit(id, Some((at, tail)), digest).await
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        let path = self.upload_path(id)?;
        match tokio::fs::remove_file(path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io("removing an upload", e)),
        }
    }

    async fn list_uploads(&self) -> Result<Vec<String>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut ids = Vec::new();
            for entry in fs::read_dir(dir).map_err(|e| StorageError::io("listing uploads", e))? {
                let entry = entry.map_err(|e| StorageError::io("listing uploads", e))?;
                if let Some(name) = entry.file_name().to_str()
                    && !name.starts_with('.')
                {
                    ids.push(name.to_owned());
                }
            }
            Ok(ids)
        })
        .await
    }
}

/// Streams `range` of `file`: a blocking thread maps it a window at a time, faulting the
/// pages in there (so the async workers never wait on the disk), and the socket writes go
/// straight from the page cache. Memory held per download is bounded by [`READ_AHEAD`] windows.
/// A range of at most [`SMALL_READ`] bytes (configs, small layers) is read on the calling task
/// instead: from the page cache that costs less than a thread hand-off and a mapping.
fn stream_file(file: File, range: Range<u64>) -> ByteStream {
    if range.is_empty() {
        return Box::pin(futures_util::stream::empty());
    }
    if range.end - range.start <= SMALL_READ {
        let item = read_range(&file, range);
        return Box::pin(futures_util::stream::once(async move { item }));
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut pos = range.start;
        while pos < range.end {
            let len = usize::try_from(range.end - pos).map_or(WINDOW, |r| r.min(WINDOW));
            let item = map_window(&file, pos, len);
            pos += len as u64;
            let failed = item.is_err();
            // The receiver is gone when the client hung up: stop reading.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

fn read_range(file: &File, range: Range<u64>) -> io::Result<Bytes> {
    use std::os::unix::fs::FileExt;
    let len = usize::try_from(range.end - range.start).map_err(io::Error::other)?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, range.start)
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                io::Error::new(e.kind(), "blob is shorter than expected")
            }
            _ => e,
        })?;
    Ok(Bytes::from(buf))
}

#[allow(unsafe_code)]
fn map_window(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    if file.metadata()?.len() < offset + len as u64 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob is shorter than expected",
        ));
    }
    // SAFETY: committed blobs are immutable. A blob file is only ever created whole under a
    // temporary name and renamed into place; nothing writes to or truncates it afterwards, and
    // deleting it unlinks the name while the inode (and this mapping) stays valid. So the
    // mapped bytes cannot change or vanish while the mapping lives.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map(file)?
    };
    Ok(Bytes::from_owner(map))
}

/// Appends chunks on a blocking thread, so hashing (on the caller's side) and disk writes overlap.
struct FsUploadWriter {
    tx: mpsc::Sender<Bytes>,
    task: JoinHandle<Result<u64>>,
}

impl FsUploadWriter {
    fn spawn(file: File, at: u64, fsync: bool) -> FsUploadWriter {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let task = tokio::task::spawn_blocking(move || append_all(file, at, fsync, rx));
        FsUploadWriter { tx, task }
    }
}

/// Writes every chunk from `rx` to `file`. With `fsync`, each [`SYNC_EVERY`] bytes start an
/// `fdatasync` on a second thread while writing goes on, so the disk works while the socket and
/// the hasher do, and the sync at commit has little left. A sync still running when the
/// writer ends is left to finish on its own: waiting for it would stall every few PATCHes of
/// a chunked upload, and the commit's `sync_all` waits for the disk anyway (and reports what
/// failed). `start` is the file's size, which `append` has checked.
fn append_all(
    mut file: File,
    start: u64,
    fsync: bool,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<u64> {
    // Count from the file's size, not from zero: a chunked upload opens a writer per PATCH,
    // and chunks smaller than SYNC_EVERY must still sync as the file grows.
    let mut unsynced = start % SYNC_EVERY;
    let mut in_flight: Option<std::thread::JoinHandle<io::Result<()>>> = None;
    while let Some(chunk) = rx.blocking_recv() {
        file.write_all(&chunk)
            .map_err(|e| StorageError::io("writing an upload", e))?;
        unsynced += chunk.len() as u64;
        let idle = in_flight.as_ref().is_none_or(|h| h.is_finished());
        if fsync && unsynced >= SYNC_EVERY && idle {
            if let Some(done) = in_flight.take() {
                done.join()
                    .unwrap_or_else(|_| Err(io::Error::other("sync thread panicked")))
                    .map_err(|e| StorageError::io("syncing an upload", e))?;
            }
            let syncing = file
                .try_clone()
                .map_err(|e| StorageError::io("opening an upload", e))?;
            in_flight = Some(std::thread::spawn(move || syncing.sync_data()));
            unsynced = 0;
        }
    }
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| StorageError::io("reading upload size", e))
}

#[async_trait::async_trait]
impl UploadWriter for FsUploadWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.tx.send(chunk).await.is_ok() {
            return Ok(());
        }
        // The writer thread stopped, which it does only on an error: `finish` reports it.
        Err(StorageError::io(
            "writing an upload",
            io::Error::other("upload writer stopped; see finish"),
        ))
    }

    async fn finish(self: Box<Self>) -> Result<u64> {
        let FsUploadWriter { tx, task } = *self;
        drop(tx);
        task.await
            .map_err(|e| StorageError::io("running an upload writer", io::Error::other(e)))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn filesystem_backend_passes_the_shared_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), true).expect("open");
        crate::suite::run_all(&store).await;
    }

    #[test]
    fn a_second_store_on_the_same_root_is_refused_until_the_first_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = FsBlobStore::open(dir.path(), false).expect("open");
        let second = FsBlobStore::open(dir.path(), false);
        assert!(matches!(second, Err(StorageError::InUse(_))), "{second:?}");
        drop(first);
        FsBlobStore::open(dir.path(), false).expect("free again");
    }

    #[tokio::test]
    async fn upload_ids_cannot_escape_the_uploads_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FsBlobStore::open(dir.path(), false).expect("open");
        for id in ["../blobs", "a/b", "", "."] {
            assert!(
                matches!(
                    store.begin_upload(id).await,
                    Err(StorageError::UploadUnknown(_))
                ),
                "{id}"
            );
        }
    }
}
