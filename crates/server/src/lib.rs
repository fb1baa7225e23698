//! The `agent-registry` HTTP server: configuration, routes and the serve loop.
//!
//! This crate is axum only. It parses requests into typed values, calls
//! `agent_registry_registry::Registry`, and maps results to responses; it never touches storage
//! directly. [`run`] takes a bound listener and a shutdown future, so tests start the real
//! server in-process on port 0.

pub mod config;
mod endpoint;
mod error;
mod routes;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agent_registry_metadata::SqliteStore;
use agent_registry_registry::Registry;
use agent_registry_storage::FsBlobStore;
use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;

/// What every handler gets: cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub registry: Registry,
    pub config: Arc<Config>,
}

impl AppState {
    /// Opens the embedded default stores (filesystem + SQLite) under `config.root`.
    pub fn open(config: Config) -> anyhow::Result<AppState> {
        let root = &config.root;
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating storage root {}", root.display()))?;
        let blobs = FsBlobStore::open(root, config.storage.fsync)
            .with_context(|| format!("opening blob storage in {}", root.display()))?;
        let db = root.join("registry.db");
        let meta = SqliteStore::open(&db, config.storage.fsync)
            .with_context(|| format!("opening metadata database {}", db.display()))?;
        let registry = Registry::new(
            Arc::new(blobs),
            Arc::new(meta),
            config.limits(),
            config.catalogue_rules()?,
        );
        Ok(AppState {
            registry,
            config: Arc::new(config),
        })
    }
}

pub fn router(state: AppState) -> axum::Router {
    routes::router(state)
}

/// Serves until `shutdown` completes, then lets in-flight requests finish for up to
/// `shutdown_grace_secs`.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let purger = tokio::spawn(purge_stale_uploads(
        state.registry.clone(),
        state.config.uploads.expire_after_hours,
    ));
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = stopping_tx.send(());
    });
    let mut serve = std::pin::pin!(serve.into_future());
    let result = tokio::select! {
        r = &mut serve => r,
        () = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_secs = grace.as_secs(), "requests still running after the grace period; stopping anyway");
            Ok(())
        }
    };
    // Abort only takes effect at the task's next poll; wait for it, so the state (and the
    // storage lock it holds) is gone when `run` returns and the root can be reopened.
    purger.abort();
    let _ = purger.await;
    result.context("serving HTTP")
}

/// Every hour, drops uploads nobody has finished within `expire_after_hours`.
async fn purge_stale_uploads(registry: Registry, expire_after_hours: u64) {
    let max_age = Duration::from_secs(expire_after_hours.saturating_mul(3600));
    let period = Duration::from_secs(3600);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tick.tick().await;
        match registry.purge_stale_uploads(max_age).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "removed abandoned uploads"),
            Err(e) => tracing::warn!(error = %e, "purging abandoned uploads failed"),
        }
    }
}
