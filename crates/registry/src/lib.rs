//! The registry's domain services, the only crate that sees both stores.
//!
//! The server's handlers call one method here per request: upload sessions ([`upload`]),
//! blob reads and deletes ([`blob`]), manifest acceptance ([`manifest`]), and the listings
//! (tags, catalog, referrers: [`listing`]), and the agent catalogue ([`catalogue`]: search,
//! versions, downloads, ratings). This crate knows nothing of HTTP; it speaks in
//! validated OCI types and returns [`Error`]s that carry their spec error code.

pub mod blob;
pub mod catalogue;
mod error;
mod hashing;
pub mod health;
pub mod listing;
pub mod manifest;
pub mod signatures;
pub mod stats;
pub mod upload;

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_registry_metadata::MetadataStore;
use agent_registry_oci::RepoPattern;
use agent_registry_storage::BlobStore;
use bytes::Bytes;
use futures_util::Stream;

pub use catalogue::CatalogueRules;
pub use error::{Error, Result};

/// A request body, as the server hands it over.
pub type Body = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Limits the registry enforces on what clients send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest accepted, checked before buffering.
    pub manifest_max_bytes: usize,
    /// An upload body that sends nothing for this long is abandoned.
    pub body_idle_timeout: Duration,
    /// Free space to keep in blob storage: writes that would leave less are refused. 0: off.
    pub min_free_bytes: u64,
    /// Most blob bytes the repositories matching each pattern may hold together.
    pub quotas: Vec<(RepoPattern, u64)>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            manifest_max_bytes: 4 << 20,
            body_idle_timeout: Duration::from_secs(60),
            min_free_bytes: 0,
            quotas: Vec::new(),
        }
    }
}

/// The registry: both stores, the limits, and the in-memory state of open uploads.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetadataStore>,
    limits: Limits,
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<upload::HashState>>>>,
    tags_cache: listing::TagsCache,
    rules: CatalogueRules,
    recent_pulls: catalogue::RecentPulls,
    counters: stats::Counters,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetadataStore>,
        limits: Limits,
        rules: CatalogueRules,
    ) -> Registry {
        Registry {
            inner: Arc::new(Inner {
                blobs,
                meta,
                limits,
                uploads: Mutex::new(HashMap::new()),
                tags_cache: listing::TagsCache::default(),
                rules,
                recent_pulls: catalogue::RecentPulls::default(),
                counters: stats::Counters::default(),
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }
}
