//! A real server for other crates' tests (feature `testing`): [`TestServer`] serves on
//! 127.0.0.1:<random port> over a temporary directory, in-process, and stops when dropped.
//!
//! With `AGENT_REGISTRY_TEST_STORAGE=s3` in the environment, every test server keeps its
//! blobs in a real S3 server (s3s-fs, see `agent_registry_storage::s3_server`) of its own,
//! so one test suite covers both blob backends (`scripts/test` runs it both ways).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use agent_registry_storage::s3_server::S3Server;

use crate::Config;
use crate::config::StorageBackend;
use crate::logs::{Capture, LogStore};

/// The log of every in-process server of this test process, at `info` and above, as the
/// binary keeps it (tests look for lines of their own).
fn captured_logs() -> Arc<LogStore> {
    static LOGS: OnceLock<Arc<LogStore>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let store = Arc::new(LogStore::new(10_000));
        let _ = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(Capture(store.clone()))
            .try_init();
        store
    })
    .clone()
}

pub struct TestServer {
    pub url: String,
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The S3 server holding the blobs, when the environment asks for S3.
    s3: Option<Arc<S3Server>>,
}

/// The S3 server a new test server should keep its blobs in: `AGENT_REGISTRY_TEST_STORAGE`
/// picks the backend.
fn s3_from_env() -> Option<Arc<S3Server>> {
    match std::env::var("AGENT_REGISTRY_TEST_STORAGE").as_deref() {
        Ok("s3") => Some(Arc::new(S3Server::start())),
        Ok("filesystem") | Err(_) => None,
        Ok(other) => panic!("AGENT_REGISTRY_TEST_STORAGE={other:?}: use filesystem or s3"),
    }
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration adjusted by `tweak` (fsync is off unless it turns it on).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Self::serve(dir.path(), s3_from_env(), tweak).await;
        s.dir = Some(dir);
        s
    }

    async fn serve(
        root: &Path,
        s3: Option<Arc<S3Server>>,
        tweak: impl FnOnce(&mut Config),
    ) -> TestServer {
        let mut config = Config {
            root: root.to_owned(),
            ..Config::default()
        };
        config.storage.fsync = false;
        if let Some(s3) = &s3 {
            config.storage.backend = StorageBackend::S3;
            config.storage.s3 = Some(s3.bucket("registry").into());
        }
        config.shutdown_grace_secs = 5;
        tweak(&mut config);
        let logs = captured_logs();
        let mut state = crate::AppState::open(config).await.expect("open stores");
        state.logs = Some(logs);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(listener, state, async move {
            let _ = stopped.await;
        }));
        TestServer {
            url,
            root: root.to_owned(),
            dir: None,
            stop: Some(stop),
            task: Some(task),
            s3,
        }
    }

    /// The storage root the server serves.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `host:port` docker-style clients want.
    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Starts over a directory that already holds a registry (one [`TestServer::stop`]
    /// handed back), with a configuration adjusted by `tweak`.
    pub async fn start_on(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let mut s = Self::serve(dir.path(), s3_from_env(), tweak).await;
        s.dir = Some(dir);
        s
    }

    /// Stops the server gracefully and hands back the directory it served.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        self.dir
            .take()
            .expect("a server started by start_with owns its directory")
    }

    /// Stops the server gracefully and starts a new one over the same storage.
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let mut next = Self::serve(&self.root, self.s3.take(), |_| {}).await;
        next.dir = self.dir.take();
        next
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
