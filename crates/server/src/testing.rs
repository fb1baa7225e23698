//! A real server for other crates' tests (feature `testing`): [`TestServer`] serves on
//! 127.0.0.1:<random port> over a temporary directory, in-process, and stops when dropped.
//!
//! With `AGENT_REGISTRY_TEST_STORAGE=s3` in the environment, every test server keeps its
//! blobs in a real S3 server (s3s-fs, see `agent_registry_storage::s3_server`) of its own,
//! so one test suite covers both blob backends (`scripts/test` runs it both ways). Likewise
//! `AGENT_REGISTRY_TEST_DATABASE=postgres` gives each one a PostgreSQL database of its own
//! (see `agent_registry_metadata::test_database`) instead of SQLite.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use agent_registry_metadata::test_database::TestDatabase;
use agent_registry_storage::s3_server::S3Server;

use crate::Config;
use crate::config::{DatabaseBackend, StorageBackend};
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
    /// The server's URL; with several nodes, a round-robin proxy's in front of them all.
    pub url: String,
    /// This node's own URL (the same as `url` for a single node).
    node_url: String,
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    /// The other nodes of this registry, when the environment asks for several.
    others: Vec<TestServer>,
    proxy: Option<Proxy>,
    /// The S3 server holding the blobs, when the environment asks for S3.
    s3: Option<Arc<S3Server>>,
    /// The PostgreSQL database holding the metadata, when the environment asks for one.
    db: Option<Arc<TestDatabase>>,
}

/// Databases of stopped servers by their root, for [`TestServer::start_on`] to serve again.
fn parked() -> &'static Mutex<HashMap<PathBuf, Arc<TestDatabase>>> {
    static PARKED: OnceLock<Mutex<HashMap<PathBuf, Arc<TestDatabase>>>> = OnceLock::new();
    PARKED.get_or_init(Mutex::default)
}

/// The database a new test server should keep its metadata in: `AGENT_REGISTRY_TEST_DATABASE`
/// picks the backend.
async fn database_from_env() -> Option<Arc<TestDatabase>> {
    match std::env::var("AGENT_REGISTRY_TEST_DATABASE").as_deref() {
        Ok("postgres") => Some(Arc::new(TestDatabase::create().await)),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => panic!("AGENT_REGISTRY_TEST_DATABASE={other:?}: use sqlite or postgres"),
    }
}

/// How many nodes a test server runs: `AGENT_REGISTRY_TEST_NODES` (default 1). Several nodes
/// share one S3 bucket and one PostgreSQL database (made for them when the environment names
/// none) and serve behind a proxy that hands each connection to the next node in turn; the
/// suite's clients open a connection per request then (see `tests/it/support.rs`), so
/// successive requests of one upload land on different nodes.
pub fn nodes_from_env() -> usize {
    match std::env::var("AGENT_REGISTRY_TEST_NODES") {
        Ok(n) => n
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .unwrap_or_else(|| panic!("AGENT_REGISTRY_TEST_NODES={n:?}: use a count from 1")),
        Err(_) => 1,
    }
}

/// A TCP proxy on a loopback port that hands each connection to the next of its targets in
/// turn: the load balancer in front of several nodes, or (with one target) a cable to a
/// database that a test can cut and mend.
#[derive(Debug)]
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    targets: Arc<Vec<String>>,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port for connections to `targets` (`host:port` each).
    pub async fn start(targets: Vec<String>) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let mut proxy = Proxy {
            addr: listener.local_addr().expect("addr"),
            targets: Arc::new(targets),
            task: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let targets = self.targets.clone();
        self.task = Some(tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            let mut next = 0;
            while let Ok((mut client, _)) = listener.accept().await {
                let target = targets[next % targets.len()].clone();
                next += 1;
                links.spawn(async move {
                    if let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        }));
    }

    /// Drops every connection through the proxy, and stops taking new ones.
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Takes connections again on the same port.
    pub async fn mend(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind the proxy");
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
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
        let nodes = nodes_from_env();
        if nodes > 1 {
            return Self::start_cluster(nodes, tweak).await;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let db = database_from_env().await;
        let mut s = Self::serve(dir.path(), s3_from_env(), db, tweak).await;
        s.dir = Some(dir);
        s
    }

    /// Starts `nodes` nodes of one registry sharing an S3 bucket and a PostgreSQL database,
    /// behind a round-robin proxy at [`TestServer::url`].
    pub async fn start_cluster(nodes: usize, tweak: impl FnOnce(&mut Config)) -> TestServer {
        let s3 = s3_from_env().unwrap_or_else(|| Arc::new(S3Server::start()));
        let db = match database_from_env().await {
            Some(db) => db,
            None => Arc::new(TestDatabase::create().await),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = None;
        let mut first = Self::serve(dir.path(), Some(s3.clone()), Some(db.clone()), |c| {
            tweak(c);
            config = Some(c.clone());
        })
        .await;
        first.dir = Some(dir);
        let config = config.expect("the first node's configuration");
        for _ in 1..nodes {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut node = Self::serve(dir.path(), Some(s3.clone()), Some(db.clone()), |c| {
                *c = Config {
                    root: c.root.clone(),
                    ..config.clone()
                };
            })
            .await;
            node.dir = Some(dir);
            first.others.push(node);
        }
        first.balance().await;
        first
    }

    /// Puts a round-robin proxy in front of every node and makes it [`TestServer::url`].
    async fn balance(&mut self) {
        let upstreams = self
            .node_urls()
            .iter()
            .map(|u| u.trim_start_matches("http://").to_owned())
            .collect();
        let proxy = Proxy::start(upstreams).await;
        self.url = format!("http://{}", proxy.addr);
        self.proxy = Some(proxy);
    }

    /// Every node's own URL (one, unless this is a cluster).
    pub fn node_urls(&self) -> Vec<String> {
        std::iter::once(self.node_url.clone())
            .chain(self.others.iter().map(|n| n.url.clone()))
            .collect()
    }

    async fn serve(
        root: &Path,
        s3: Option<Arc<S3Server>>,
        db: Option<Arc<TestDatabase>>,
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
        if let Some(db) = &db {
            config.database.backend = DatabaseBackend::Postgres;
            config.database.url = db.url.clone();
            config.database.max_connections = 8;
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
            node_url: url.clone(),
            url,
            root: root.to_owned(),
            dir: None,
            stop: Some(stop),
            task: Some(task),
            others: Vec::new(),
            proxy: None,
            s3,
            db,
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
        let parked = parked()
            .lock()
            .expect("parked databases")
            .remove(dir.path());
        let db = match parked {
            Some(db) => Some(db),
            None => database_from_env().await,
        };
        let mut s = Self::serve(dir.path(), s3_from_env(), db, tweak).await;
        s.dir = Some(dir);
        s
    }

    /// Stops the server gracefully and hands back the directory it served.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown().await;
        if let Some(db) = self.db.take() {
            parked()
                .lock()
                .expect("parked databases")
                .insert(self.root.clone(), db);
        }
        self.dir
            .take()
            .expect("a server started by start_with owns its directory")
    }

    /// Stops the server gracefully and starts a new one over the same storage.
    pub async fn restart(mut self) -> TestServer {
        self.shutdown().await;
        let mut next = Self::serve(&self.root, self.s3.take(), self.db.take(), |_| {}).await;
        next.dir = self.dir.take();
        if self.proxy.is_some() {
            for other in std::mem::take(&mut self.others) {
                next.others.push(Box::pin(other.restart()).await);
            }
            next.balance().await;
        }
        next
    }

    async fn shutdown(&mut self) {
        self.proxy = None;
        for other in &mut self.others {
            Box::pin(other.shutdown()).await;
        }
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
