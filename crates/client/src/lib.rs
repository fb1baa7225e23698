//! A client for OCI registries, usable without the CLI: image references, credentials and
//! where to find them, the auth challenge flow with token caching, retries with backoff, and
//! blob transfer that skips, mounts, chunks, resumes and verifies.
//!
//! Call direction: [`Client`] sends every request through one place (`Client::send`), which
//! owns authentication and retries; `push` and `pull` build blob transfer on it. This crate
//! depends on `oci` only; it knows nothing of local image stores or of the server.

mod access;
pub mod auth;
mod catalogue;
mod client;
pub mod credentials;
pub mod error;
mod health;
mod metrics;
mod pull;
mod push;
pub mod reference;
pub mod retry;
mod signatures;

pub use auth::Credential;
pub use client::{Client, ClientOptions, FetchedManifest, MANIFEST_ACCEPT, registry_url};
pub use error::{Class, Error, Result};
pub use health::RoundTrip;
pub use metrics::Prometheus;
pub use push::BlobPushed;
pub use reference::{ImageRef, ReferenceError};
pub use retry::RetryPolicy;
pub use signatures::FoundSignature;

/// Transfer progress, reported as bytes move. A retry or resume sets the position back.
pub trait Progress: Send + Sync {
    fn set_position(&self, _bytes: u64) {}
    fn advance(&self, _bytes: u64) {}
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
