//! `agent-registry migrate`: moves a single-node registry onto the shared backends its
//! configuration names: blobs from its filesystem root into the S3 bucket, metadata from
//! `<root>/registry.db` into PostgreSQL, so the same registry goes on serving from many nodes.
//!
//! Every blob is read, hashed and written through the [`BlobStore`] contract, so a blob that
//! arrives is whole and matches its digest; a blob already in the bucket with the right size
//! is left alone, so the command can be run again after an interruption. Metadata moves in
//! one PostgreSQL transaction into an empty database (see `PostgresStore::import_sqlite`),
//! after the blobs, so it never names a blob the bucket lacks. The filesystem store is opened
//! with its lock, so a server still serving that root stops the migration before it starts.

use agent_registry_metadata::postgres::{Imported, redacted};
use agent_registry_metadata::{PostgresStore, SqliteStore};
use agent_registry_oci::{Digest, Hasher};
use agent_registry_storage::{BlobStore, FsBlobStore, S3BlobStore};
use anyhow::Context;
use futures_util::TryStreamExt;

use crate::Config;
use crate::config::{DatabaseBackend, StorageBackend};

/// What a migration did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub copied: u64,
    /// Already in the destination with the same size.
    pub present: u64,
    pub bytes: u64,
}

/// Whether the configuration names a destination for blobs and for metadata.
pub fn destinations(config: &Config) -> (bool, bool) {
    (
        config.storage.backend == StorageBackend::S3,
        config.database.backend == DatabaseBackend::Postgres,
    )
}

/// Copies the metadata in `<config.root>/registry.db` into the (empty) PostgreSQL database of
/// `config.database`. The root's lock is held meanwhile, so no server changes the file.
pub async fn metadata_to_postgres(config: &Config) -> anyhow::Result<Imported> {
    if config.database.backend != DatabaseBackend::Postgres {
        anyhow::bail!(
            "the configuration must select the destination: database.backend: postgres with database.url"
        );
    }
    let root = &config.root;
    let db = root.join("registry.db");
    if !db.is_file() {
        anyhow::bail!(
            "{} holds no registry database (no registry.db); --root names the registry to migrate",
            root.display()
        );
    }
    let _lock = FsBlobStore::open(root, false)
        .with_context(|| format!("locking the registry in {}", root.display()))?;
    let to =
        PostgresStore::connect_tls(&config.database.url, 2, config.database.ca_file.as_deref())
            .await
            .with_context(|| format!("opening {}", redacted(&config.database.url)))?;
    to.import_sqlite(&db)
        .await
        .with_context(|| format!("copying {} into PostgreSQL", db.display()))
}

/// Copies the blobs under `config.root` into the bucket of `config.storage.s3`, calling
/// `progress(digest, size, copied)` after each blob (`copied` is false when it was there).
pub async fn blobs_to_s3(
    config: &Config,
    progress: impl FnMut(&Digest, u64, bool),
) -> anyhow::Result<Moved> {
    let s3 = match (config.storage.backend, &config.storage.s3) {
        (StorageBackend::S3, Some(s3)) => s3,
        _ => anyhow::bail!(
            "the configuration must select the destination: storage.backend: s3 with a storage.s3 section"
        ),
    };
    let root = &config.root;
    if !root.join("blobs").is_dir() {
        anyhow::bail!(
            "{} holds no registry blobs (no blobs/ directory); --root names the registry to migrate",
            root.display()
        );
    }
    let from = FsBlobStore::open(root, false)
        .with_context(|| format!("opening the blobs in {}", root.display()))?;
    let db = root.join("registry.db");
    let meta = SqliteStore::open(&db, true)
        .with_context(|| format!("opening metadata database {}", db.display()))?;
    let to = S3BlobStore::open(&s3.store_config())
        .with_context(|| format!("opening S3 bucket {}", s3.bucket))?;
    to.probe()
        .await
        .with_context(|| format!("writing to S3 bucket {}", s3.bucket))?;
    // The bucket becomes this registry's before a byte is copied, as `serve` will find it.
    crate::claim_blobs(&to, &meta).await?;
    copy_all(&from, &to, progress).await
}

/// Copies every blob of `from` that `to` lacks, verifying each one's digest on the way.
pub async fn copy_all(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    mut progress: impl FnMut(&Digest, u64, bool),
) -> anyhow::Result<Moved> {
    let mut moved = Moved::default();
    let mut digests = from
        .list_blobs()
        .await
        .context("listing the blobs to copy")?;
    digests.sort();
    for digest in digests {
        let Some(size) = from.stat(&digest).await? else {
            continue; // removed while we listed
        };
        let copy = to.stat(&digest).await? != Some(size);
        if copy {
            copy_one(from, to, &digest, size)
                .await
                .with_context(|| format!("copying blob {digest}"))?;
            moved.copied += 1;
            moved.bytes += size;
        } else {
            moved.present += 1;
        }
        progress(&digest, size, copy);
    }
    Ok(moved)
}

async fn copy_one(
    from: &dyn BlobStore,
    to: &dyn BlobStore,
    digest: &Digest,
    size: u64,
) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().to_string();
    to.begin_upload(&id).await?;
    let copied = async {
        let mut bytes = from.read(digest, 0..size).await?;
        let mut writer = to.append(&id, 0).await?;
        let mut hasher = Hasher::new(digest.algorithm());
        while let Some(chunk) = bytes.try_next().await.context("reading the blob")? {
            hasher.update(&chunk);
            writer.write(chunk).await?;
        }
        writer.finish().await?;
        let actual = hasher.finish();
        if actual != *digest {
            anyhow::bail!("its bytes on disk hash to {actual}: the source copy is damaged");
        }
        to.commit_upload(&id, digest).await?;
        Ok(())
    }
    .await;
    if copied.is_err() {
        let _ = to.abort_upload(&id).await;
    }
    copied
}
