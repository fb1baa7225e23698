//! The `agent-registry` HTTP server: configuration, routes and the serve loop.
//!
//! This crate is axum only. It parses requests into typed values, calls
//! `agent_registry_registry::Registry`, and maps results to responses; it never touches storage
//! directly. [`run`] takes a bound listener and a shutdown future, so tests start the real
//! server in-process on port 0.

mod auth;
pub mod config;
mod endpoint;
mod error;
pub mod history;
pub mod logs;
pub mod metrics;
pub mod migrate;
pub mod notify;
mod routes;
pub mod scanning;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod trust;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use agent_registry_access::{Access, unix_now};
use agent_registry_metadata::access::AccessStore;
use agent_registry_metadata::{MetadataStore, PostgresStore, SqliteStore};
use agent_registry_registry::Registry;
use agent_registry_storage::{BlobStore, FsBlobStore, S3BlobStore};
use anyhow::Context;
use metrics::Metrics;
use tokio::net::TcpListener;

pub use config::Config;
use config::{DatabaseBackend, StorageBackend};

/// What every handler gets: cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub registry: Registry,
    pub access: Access,
    pub config: Arc<Config>,
    /// When this server started (for its uptime).
    pub started: std::time::Instant,
    /// `None` with `metrics.enabled: false`.
    pub metrics: Option<Arc<Metrics>>,
    /// The sampled history of `metrics`; `None` when metrics or their history are off.
    pub history: Option<Arc<history::History>>,
    /// `None` when no notification destination is configured.
    pub notifier: Option<Arc<notify::Notifier>>,
    /// The recent log; `None` until the binary (or a test harness) installs the capture.
    pub logs: Option<Arc<logs::LogStore>>,
    /// Pull policies' signature checks.
    pub trust: Arc<trust::Trust>,
    pub scanner: Arc<scanning::Scanner>,
}

impl AppState {
    /// Opens the stores the configuration selects (by default filesystem + SQLite under
    /// `config.root`; blobs in S3 with `storage.backend: s3`, metadata in PostgreSQL with
    /// `database.backend: postgres`), claims the blob store for this registry's metadata, and
    /// creates the first administrator if the configuration names a password for one and
    /// there is no account yet.
    pub async fn open(config: Config) -> anyhow::Result<AppState> {
        config.check()?;
        let root = &config.root;
        std::fs::create_dir_all(root)
            .with_context(|| format!("creating storage root {}", root.display()))?;
        let blobs: Arc<dyn BlobStore> = match (config.storage.backend, &config.storage.s3) {
            (StorageBackend::S3, Some(s3)) => {
                let store = S3BlobStore::open(&s3.store_config())
                    .with_context(|| format!("opening S3 bucket {}", s3.bucket))?;
                store
                    .probe()
                    .await
                    .with_context(|| format!("writing to S3 bucket {}", s3.bucket))?;
                Arc::new(store)
            }
            _ => Arc::new(
                FsBlobStore::open(root, config.storage.fsync)
                    .with_context(|| format!("opening blob storage in {}", root.display()))?,
            ),
        };
        let (meta, access_store) = open_metadata(&config).await?;
        claim_blobs(blobs.as_ref(), access_store.as_ref()).await?;
        let access = open_access(access_store, &config).await?;
        let admin = &config.auth.admin;
        if !admin.password.is_empty()
            && access
                .bootstrap_admin(&admin.name, &admin.password)
                .await
                .context("creating the first administrator")?
        {
            tracing::info!(user = admin.name, "created the first administrator");
        }
        if !config.auth.enabled {
            tracing::warn!(
                "access control is off (auth.enabled: false): anyone who can reach this port may push, pull and delete"
            );
        }
        let registry = Registry::new(blobs, meta, config.limits()?, config.catalogue_rules()?);
        let metrics = config.metrics.enabled.then(Arc::default);
        let history = match metrics {
            Some(_) => history::History::open(root, &config.metrics.history)?.map(Arc::new),
            None => None,
        };
        let notifier = notify::Notifier::start(&config.notifications, root)
            .await?
            .map(Arc::new);
        let trust = Arc::new(trust::Trust::load(&config.signing)?);
        let scanner = Arc::new(scanning::Scanner::open(&config));
        Ok(AppState {
            registry,
            access,
            trust,
            scanner,
            config: Arc::new(config),
            started: std::time::Instant::now(),
            metrics,
            history,
            notifier,
            logs: None,
        })
    }
}

/// Opens the metadata database the configuration selects, as the two contracts it serves.
pub(crate) async fn open_metadata(
    config: &Config,
) -> anyhow::Result<(Arc<dyn MetadataStore>, Arc<dyn AccessStore>)> {
    match config.database.backend {
        DatabaseBackend::Sqlite => {
            let db = config.root.join("registry.db");
            let store = Arc::new(
                SqliteStore::open(&db, config.storage.fsync)
                    .with_context(|| format!("opening metadata database {}", db.display()))?,
            );
            Ok((store.clone(), store))
        }
        DatabaseBackend::Postgres => {
            let store = Arc::new(
                PostgresStore::connect_tls(
                    &config.database.url,
                    config.database.max_connections,
                    config.database.ca_file.as_deref(),
                )
                .await
                .with_context(|| {
                    format!(
                        "opening metadata database {}",
                        agent_registry_metadata::postgres::redacted(&config.database.url)
                    )
                })?,
            );
            Ok((store.clone(), store))
        }
    }
}

/// Claims the blob store for the registry whose metadata is `meta`, by an id kept in that
/// metadata (made once, shared by every node that shares it): a second registry with its
/// own metadata on the same bucket would delete what only the first one knows.
pub(crate) async fn claim_blobs(
    blobs: &dyn BlobStore,
    meta: &dyn AccessStore,
) -> anyhow::Result<()> {
    let id = meta
        .shared_secret("registry-id", uuid::Uuid::new_v4().to_string().into_bytes())
        .await
        .context("reading the registry's id")?;
    blobs
        .claim(&String::from_utf8_lossy(&id))
        .await
        .context("claiming blob storage")
}

async fn open_access(meta: Arc<dyn AccessStore>, config: &Config) -> anyhow::Result<Access> {
    Access::open(meta, config.access_settings()?)
        .await
        .context("loading access control")
}

/// Opens only access control over the registry's database, for the admin commands
/// (`agent-registry user ...`); safe while a server runs on the same database.
pub async fn open_access_only(config: &Config) -> anyhow::Result<Access> {
    let db = config.root.join("registry.db");
    if config.database.backend == DatabaseBackend::Sqlite && !db.exists() {
        anyhow::bail!(
            "no registry database at {}: start the server once, or pass the --root it uses",
            db.display()
        );
    }
    let (_, access) = open_metadata(config).await?;
    open_access(access, config).await
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
    let pruner = tokio::spawn(prune_access_log(
        state.access.clone(),
        state.config.audit.retain_days,
    ));
    let warmer = tokio::spawn(warm_catalogue(state.registry.clone()));
    let sampler = tokio::spawn(match (&state.history, &state.metrics) {
        (Some(history), Some(metrics)) => {
            futures_util::future::Either::Left(history.clone().sample(
                metrics.clone(),
                state.registry.clone(),
                state.access.clone(),
            ))
        }
        _ => futures_util::future::Either::Right(std::future::ready(())),
    });
    let grace = Duration::from_secs(state.config.shutdown_grace_secs);
    let tls = state.config.tls.clone();
    let app = router(state);
    let result = match tls {
        Some(tls) => tls::serve(listener, app, &tls, shutdown, grace).await,
        None => serve_plain(listener, app, shutdown, grace).await,
    };
    // Abort only takes effect at the task's next poll; wait for it, so the state (and the
    // storage lock it holds) is gone when `run` returns and the root can be reopened.
    for task in [purger, pruner, warmer, sampler] {
        task.abort();
        let _ = task.await;
    }
    result
}

/// Loads the catalogue's search index before the first search needs it.
async fn warm_catalogue(registry: Registry) {
    let query = agent_registry_oci::catalogue::SearchQuery {
        per_page: Some(1),
        ..Default::default()
    };
    if let Err(e) = registry
        .search(&query, agent_registry_metadata::access::Readable::All)
        .await
    {
        tracing::warn!(error = %e, "loading the catalogue index failed; the first search retries");
    }
}

/// Serves plain HTTP until `shutdown`, then lets requests finish for up to `grace`.
async fn serve_plain(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    // Responses go out as soon as they are written: Nagle's algorithm would hold a small
    // second write (the end of a streamed body) until the client's delayed ACK, up to 40 ms.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
    });
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

/// Every hour, drops access log lines older than `retain_days`.
async fn prune_access_log(access: Access, retain_days: u64) {
    let period = Duration::from_secs(3600);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let retain = i64::try_from(retain_days.saturating_mul(86_400)).unwrap_or(i64::MAX);
        match access
            .store()
            .prune_access_log(unix_now().saturating_sub(retain))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "pruned the access log"),
            Err(e) => tracing::warn!(error = %e, "pruning the access log failed"),
        }
    }
}
