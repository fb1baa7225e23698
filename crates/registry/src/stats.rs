//! What the registry has done and what it holds, for metrics: counters kept as it works, and
//! usage read from the stores when asked.

use std::sync::atomic::AtomicU64;

use crate::{Registry, Result};

/// Running totals since the process started.
#[derive(Debug, Default)]
pub struct Counters {
    /// Blob bytes taken into uploads.
    pub bytes_received: AtomicU64,
    /// Abandoned uploads removed by the hourly purge.
    pub uploads_purged: AtomicU64,
    /// Tag lists served from memory, and read from the database.
    pub tag_cache_hits: AtomicU64,
    pub tag_cache_misses: AtomicU64,
}

/// What the stores hold now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub repositories: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Upload sessions open (started, not yet finished or cancelled).
    pub uploads: u64,
    /// Free space where blobs are written; `None` when the store cannot tell.
    pub free_bytes: Option<u64>,
}

impl Registry {
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    pub async fn usage(&self) -> Result<Usage> {
        let held = self.inner.meta.usage().await?;
        Ok(Usage {
            repositories: held.repositories,
            blobs: held.blobs,
            blob_bytes: held.blob_bytes,
            uploads: held.uploads,
            free_bytes: self.inner.blobs.available().await?,
        })
    }
}
