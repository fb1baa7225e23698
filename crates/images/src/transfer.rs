//! Moving images between a registry and the local store: [`pull`] and [`push`], each
//! transferring up to `concurrency` blobs at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_registry_client::{BlobPushed, Client, ImageRef, NoProgress, Progress};
use agent_registry_oci::Digest;
use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::image::{Blob, Parts, host_platform};
use crate::store::{Descriptor, LocalStore};

#[derive(Debug, Clone)]
pub struct TransferOptions {
    /// Blobs in flight at once.
    pub concurrency: usize,
    /// The platform to pick from a multi-platform index (`linux/amd64`).
    pub platform: String,
    /// Fetch this manifest rather than what the reference names now: a digest already
    /// checked (a verified signature's subject), so what is stored is what was checked. The
    /// image is still stored under the reference's name.
    pub manifest: Option<Digest>,
}

impl Default for TransferOptions {
    fn default() -> Self {
        TransferOptions {
            concurrency: 4,
            platform: host_platform(),
            manifest: None,
        }
    }
}

/// Watches transfers, one blob at a time.
pub trait TransferProgress: Send + Sync {
    /// A blob starts moving; its bytes are reported to what this returns.
    fn blob(&self, _blob: &Blob) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
    /// A blob is done; `how` says whether it moved, was there already, or was mounted.
    fn blob_done(&self, _blob: &Blob, _how: &str) {}
}

/// Nobody watching.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl TransferProgress for Quiet {}

/// Whether a pull moved any bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PullSource {
    /// Everything was in the local store already.
    Cached,
    Downloaded,
}

/// An image now in the local store.
#[derive(Debug, Clone, Serialize)]
pub struct Pulled {
    /// The name it is stored under.
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    /// The image ID: its config's digest.
    pub id: Digest,
    /// Bytes of manifest, config and layers.
    pub size: u64,
    pub source: PullSource,
}

/// Pulls `remote` through `client` into `store`, naming it `remote.familiar()`. From a
/// multi-platform index it takes the manifest for `options.platform`.
pub async fn pull(
    client: &Client,
    remote: &ImageRef,
    store: &LocalStore,
    options: &TransferOptions,
    progress: &dyn TransferProgress,
) -> Result<Pulled> {
    let repo = remote.api_repository();
    let reference = options
        .manifest
        .as_ref()
        .map_or_else(|| remote.manifest_reference(), Digest::to_string);
    let mut fetched = client.manifest(&repo, &reference).await?;
    let mut parts = Parts::parse(&remote.to_string(), &fetched.bytes)?;
    if let Parts::Index { manifests } = &parts {
        let chosen = manifests
            .iter()
            .find(|(_, p)| p.as_deref() == Some(options.platform.as_str()))
            .or_else(|| {
                manifests.iter().find(|(_, p)| {
                    p.as_deref()
                        .is_some_and(|p| p.starts_with(&format!("{}/", options.platform)))
                })
            })
            .or(if manifests.len() == 1 {
                manifests.first()
            } else {
                None
            });
        let Some((child, _)) = chosen else {
            let available: Vec<_> = manifests.iter().filter_map(|(_, p)| p.clone()).collect();
            return Err(Error::Unsupported {
                reference: remote.to_string(),
                reason: format!(
                    "it has no manifest for {}; it has {}",
                    options.platform,
                    available.join(", ")
                ),
            });
        };
        fetched = client.manifest(&repo, &child.digest.to_string()).await?;
        parts = Parts::parse(&remote.to_string(), &fetched.bytes)?;
    }
    if let Parts::Index { .. } = &parts {
        return Err(Error::Unsupported {
            reference: remote.to_string(),
            reason: "an index inside an index".into(),
        });
    }

    let _writing = store.write_guard()?;
    let missing: Vec<Blob> = parts
        .blobs()
        .into_iter()
        .filter(|b| !store.has_blob(&b.digest))
        .collect();
    let source = if missing.is_empty() {
        PullSource::Cached
    } else {
        PullSource::Downloaded
    };
    stream::iter(missing)
        .map(|blob| pull_blob(client, &repo, store, blob, progress))
        .buffer_unordered(options.concurrency.max(1))
        .try_collect::<()>()
        .await?;

    let digest = store.write_blob(&fetched.bytes)?;
    let name = remote.familiar();
    let size = fetched.bytes.len() as u64;
    store.tag(
        &name,
        Descriptor {
            media_type: fetched.media_type.clone(),
            digest: digest.clone(),
            size,
            annotations: BTreeMap::new(),
        },
    )?;
    Ok(Pulled {
        name,
        id: parts.image_id(&digest),
        digest,
        media_type: fetched.media_type,
        size: size + parts.content_size(),
        source,
    })
}

async fn pull_blob(
    client: &Client,
    repo: &str,
    store: &LocalStore,
    blob: Blob,
    progress: &dyn TransferProgress,
) -> Result<()> {
    let ingest = {
        let store = store.clone();
        let digest = blob.digest.clone();
        tokio::task::spawn_blocking(move || store.ingest(&digest))
            .await
            .map_err(|e| Error::io("waiting for a download", std::io::Error::other(e)))??
    };
    // Another process may have fetched it while we waited for its lock.
    if store.has_blob(&blob.digest) {
        progress.blob_done(&blob, "exists");
        return Ok(());
    }
    let bar = progress.blob(&blob);
    client
        .pull_blob(repo, &blob.digest, Some(blob.size), &ingest.partial, bar)
        .await?;
    store.commit(ingest, &blob.digest)?;
    progress.blob_done(&blob, "downloaded");
    Ok(())
}

/// The result of a push.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub digest: Digest,
    /// Bytes of manifest, config and layers.
    pub size: u64,
    /// Blobs sent, found already there, and mounted.
    pub uploaded: usize,
    pub existed: usize,
    pub mounted: usize,
}

/// Pushes the stored image `entry` to `target` (its tag, or its digest when it has none).
/// `mount_from` names a repository on the same registry that may hold its blobs already.
pub async fn push(
    client: &Client,
    store: &LocalStore,
    entry: &Descriptor,
    target: &ImageRef,
    mount_from: Option<&str>,
    options: &TransferOptions,
    progress: &dyn TransferProgress,
) -> Result<Pushed> {
    let repo = target.api_repository();
    let mount_from = mount_from.filter(|from| *from != repo);
    let mut counts = Pushed {
        digest: entry.digest.clone(),
        size: entry.size,
        uploaded: 0,
        existed: 0,
        mounted: 0,
    };
    push_manifest_tree(
        client,
        store,
        &repo,
        mount_from,
        entry,
        options,
        progress,
        &mut counts,
    )
    .await?;
    let bytes = Bytes::from(store.read_blob(&entry.digest)?);
    let reference = match target.tag_or_latest() {
        Some(tag) => tag.to_string(),
        None => entry.digest.to_string(),
    };
    counts.digest = client
        .put_manifest(&repo, &reference, bytes, &entry.media_type)
        .await?;
    Ok(counts)
}

/// Pushes every blob `entry` reaches and, for an index, its child manifests by digest.
#[allow(clippy::too_many_arguments)] // one recursive walk; a struct would only rename these
async fn push_manifest_tree(
    client: &Client,
    store: &LocalStore,
    repo: &str,
    mount_from: Option<&str>,
    entry: &Descriptor,
    options: &TransferOptions,
    progress: &dyn TransferProgress,
    counts: &mut Pushed,
) -> Result<()> {
    let bytes = store.read_blob(&entry.digest)?;
    let parts = Parts::parse(&entry.digest.to_string(), &bytes)?;
    if let Parts::Index { manifests } = &parts {
        for (child, _) in manifests {
            if !store.has_blob(&child.digest) {
                // Pulls keep one platform; an index can only be pushed whole.
                return Err(Error::NotLocal(format!(
                    "{} (a manifest of index {}; pull it with all its platforms first)",
                    child.digest, entry.digest
                )));
            }
            let child_entry = Descriptor {
                media_type: child.media_type.clone(),
                digest: child.digest.clone(),
                size: child.size,
                annotations: BTreeMap::new(),
            };
            Box::pin(push_manifest_tree(
                client,
                store,
                repo,
                mount_from,
                &child_entry,
                options,
                progress,
                counts,
            ))
            .await?;
            let child_bytes = Bytes::from(store.read_blob(&child.digest)?);
            client
                .put_manifest(
                    repo,
                    &child.digest.to_string(),
                    child_bytes,
                    &child.media_type,
                )
                .await?;
        }
    }
    counts.size += parts.content_size();
    let outcomes: Vec<BlobPushed> = stream::iter(parts.blobs())
        .map(|blob| async move {
            if !store.has_blob(&blob.digest) {
                return Err(Error::Corrupt {
                    root: store.root().to_owned(),
                    reason: format!("blob {} of {} is missing", blob.digest, entry.digest),
                });
            }
            let bar = progress.blob(&blob);
            let how = client
                .push_blob(
                    repo,
                    &blob.digest,
                    blob.size,
                    &store.blob_path(&blob.digest),
                    mount_from,
                    bar,
                )
                .await?;
            progress.blob_done(
                &blob,
                match how {
                    BlobPushed::Existed => "exists",
                    BlobPushed::Mounted => "mounted",
                    BlobPushed::Uploaded => "pushed",
                },
            );
            Ok(how)
        })
        .buffer_unordered(options.concurrency.max(1))
        .try_collect()
        .await?;
    for how in outcomes {
        match how {
            BlobPushed::Existed => counts.existed += 1,
            BlobPushed::Mounted => counts.mounted += 1,
            BlobPushed::Uploaded => counts.uploaded += 1,
        }
    }
    Ok(())
}

/// The image stored under `name`, described as a pull that moved nothing.
pub fn stored(store: &LocalStore, name: &str) -> Result<Option<Pulled>> {
    let Some(entry) = store
        .entries()?
        .into_iter()
        .find(|e| e.name() == Some(name))
    else {
        return Ok(None);
    };
    let parts = Parts::parse(name, &store.read_blob(&entry.digest)?)?;
    let id = parts.image_id(&entry.digest);
    Ok(Some(Pulled {
        name: name.to_owned(),
        digest: entry.digest.clone(),
        media_type: entry.media_type.clone(),
        id,
        size: entry.size + parts.content_size(),
        source: PullSource::Cached,
    }))
}
