//! The PostgreSQL backend, which many registry nodes share: a pool of connections, every
//! multi-row change in one transaction, and row locks where two nodes could race.
//!
//! What SQLite gets from its one writer, this backend gets from locks taken in a fixed order:
//! - a manifest's references are read `FOR SHARE`, so a blob cannot be unlinked (nor a child
//!   manifest deleted) between the check and the commit; unlinking and deleting remove the
//!   row first and check for references after, so a put that committed first is seen;
//! - an immutable tag moves only with `ON CONFLICT ... WHERE` the digest is the same, one
//!   statement, so two nodes pushing it at once cannot both win;
//! - every transaction that changes an `agents` row locks the `catalogue_version` row first
//!   ([`lock_catalogue`]), so catalogue change numbers commit in order and a node's search
//!   index (see `catalogue_index.rs`) never skips one.
//!
//! Bookkeeping writes (download counts, the access log, upload records) commit with
//! `synchronous_commit = off`, like SQLite's non-durable jobs.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use agent_registry_oci::{Digest, Reference, RepoName, RepoPattern, Tag};
use bytes::Bytes;
use deadpool_postgres::{
    Client, GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Transaction,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

mod access;
mod catalogue;
mod import;
mod schema;

pub use import::Imported;

use crate::catalogue_index::CatalogueIndex;
use crate::{
    AgentRecord, BlobGuard, Held, MetadataError, MetadataStore, NewManifest, Page, RefKind,
    Referrer, Result, Search, SearchPage, StoredManifest, UploadRecord,
};

/// Connections each node keeps at most, unless the URL's settings say otherwise.
pub const DEFAULT_CONNECTIONS: usize = 16;

pub struct PostgresStore {
    pool: Pool,
    /// Connections that hold blob guards (advisory locks) for as long as they are held, apart
    /// from `pool`: a commit holding a guard still needs a connection to link its blob.
    locks: Pool,
    /// The URL without its password, for logs.
    shown: String,
    index: RwLock<CatalogueIndex>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("database", &self.shown)
            .finish_non_exhaustive()
    }
}

fn poisoned() -> MetadataError {
    MetadataError::backend("searching the catalogue", "catalogue index poisoned")
}

/// SQLSTATE 53100: the disk holding the database is full.
const DISK_FULL: &str = "53100";

/// Whether SQLSTATE `code` says the server cannot take work now rather than that the work
/// was wrong: a connection exception (08), insufficient resources such as too many
/// connections (53), or a server shutting down or starting (57P01-57P03).
fn unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03")
}

pub(crate) fn db_err(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> MetadataError {
    move |e| {
        let Some(db) = e.as_db_error() else {
            // No answer from the server at all: it is unreachable, the connection broke, or
            // TLS failed (the causes say which).
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(inner) = source {
                cause.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            return MetadataError::Unavailable { doing, cause };
        };
        let code = db.code().code();
        let cause = format!("{code}: {}", db.message());
        if code == DISK_FULL {
            MetadataError::Full { doing, cause }
        } else if unavailable(code) {
            MetadataError::Unavailable { doing, cause }
        } else {
            MetadataError::Backend { doing, cause }
        }
    }
}

fn pool_err(doing: &'static str) -> impl Fn(deadpool_postgres::PoolError) -> MetadataError {
    move |e| match e {
        deadpool_postgres::PoolError::Backend(e) => db_err(doing)(e),
        deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Closed => {
            MetadataError::Unavailable {
                doing,
                cause: e.to_string(),
            }
        }
        other => MetadataError::backend(doing, other),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A stored text that does not parse as what its column holds.
fn parse<T: FromStr>(doing: &'static str, s: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| MetadataError::backend(doing, format!("stored value {s:?}: {e}")))
}

fn size(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Runs `sql` (prepared once per connection) and returns its rows.
async fn rows(
    c: &impl GenericClient,
    doing: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(db_err(doing))?;
    c.query(&statement, params).await.map_err(db_err(doing))
}

/// Runs `sql` and returns its one row, if any.
async fn row(
    c: &impl GenericClient,
    doing: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(db_err(doing))?;
    c.query_opt(&statement, params).await.map_err(db_err(doing))
}

/// Runs `sql` and returns how many rows it changed.
async fn exec(
    c: &impl GenericClient,
    doing: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64> {
    let statement = c.prepare_cached(sql).await.map_err(db_err(doing))?;
    c.execute(&statement, params).await.map_err(db_err(doing))
}

/// Locks the catalogue for a change to `agents` rows; see the module's docs.
async fn lock_catalogue(tx: &Transaction<'_>) -> Result<()> {
    exec(
        tx,
        "locking the catalogue",
        "SELECT version FROM catalogue_version FOR UPDATE",
        &[],
    )
    .await
    .map(drop)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db?...`, or the
    /// `host=... dbname=...` form), keeping at most `connections` open, and applies the
    /// schema migrations not yet run.
    pub async fn connect(url: &str, connections: usize) -> Result<PostgresStore> {
        Self::connect_tls(url, connections, None).await
    }

    /// As [`PostgresStore::connect`]; with `sslmode=require` in `url` the connections use TLS,
    /// and the server's certificate must chain to the system's roots or to a certificate in
    /// `ca_file` (PEM). Without it (`prefer`, the default, or `disable`) they are plain TCP.
    pub async fn connect_tls(
        url: &str,
        connections: usize,
        ca_file: Option<&std::path::Path>,
    ) -> Result<PostgresStore> {
        let config = tokio_postgres::Config::from_str(url)
            .map_err(|e| MetadataError::backend("reading the database URL", e))?;
        let shown = shown(&config);
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Require => Some(tls_config(ca_file)?),
            _ => None,
        };
        let pool = |config: tokio_postgres::Config, size: usize| {
            let recycling = ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            };
            let manager = match &tls {
                Some(tls) => {
                    Manager::from_config(config, MakeRustlsConnect::new(tls.clone()), recycling)
                }
                None => Manager::from_config(config, NoTls, recycling),
            };
            Pool::builder(manager)
                .max_size(size.max(1))
                .build()
                .map_err(|e| MetadataError::backend("opening the connection pool", e))
        };
        let locks = pool(config.clone(), (connections / 2).max(4))?;
        let pool = pool(config, connections)?;
        let mut client = pool.get().await.map_err(pool_err("connecting"))?;
        schema::migrate(&mut client).await?;
        Ok(PostgresStore {
            pool,
            locks,
            shown,
            index: RwLock::default(),
        })
    }

    async fn client(&self) -> Result<Client> {
        self.pool
            .get()
            .await
            .map_err(pool_err("taking a database connection"))
    }

    /// Brings the catalogue up to date with every tag change committed so far.
    async fn catch_up(&self) -> Result<()> {
        let mut client = self.client().await?;
        while catalogue::behind(&client).await? {
            let tx = begin(&mut client, true).await?;
            let caught = catalogue::catch_up(&tx).await?;
            tx.commit()
                .await
                .map_err(db_err("updating the catalogue"))?;
            tracing::debug!(repositories = caught, "catalogue caught up");
        }
        Ok(())
    }

    /// Brings the in-memory catalogue index up to the database's catalogue version.
    async fn sync_index(&self) -> Result<()> {
        let mut client = self.client().await?;
        let version = catalogue::version(&client).await?;
        if self.index.read().map_err(|_| poisoned())?.version() >= Some(version) {
            return Ok(());
        }
        let from = self.index.read().map_err(|_| poisoned())?.version();
        let (version, changes) = catalogue::changes(&mut client, from).await?;
        let mut index = self.index.write().map_err(|_| poisoned())?;
        if index.version() >= Some(version) {
            return Ok(());
        }
        if index.version() != from {
            // Another search moved the index while this one read; its changes are as good.
            return Ok(());
        }
        let loaded = index.apply(version, changes.into_iter().map(Ok::<_, MetadataError>))?;
        tracing::debug!(loaded, agents = index.len(), "catalogue index in step");
        Ok(())
    }
}

/// Starts a transaction; one that is not `durable` commits without waiting for the WAL flush.
async fn begin(client: &mut Client, durable: bool) -> Result<Transaction<'_>> {
    let tx = client
        .transaction()
        .await
        .map_err(db_err("starting a transaction"))?;
    if !durable {
        tx.batch_execute("SET LOCAL synchronous_commit = off")
            .await
            .map_err(db_err("starting a transaction"))?;
    }
    Ok(tx)
}

/// `url` (a `postgres://` URL or a `key=value` string) with its password masked, for
/// configuration listings and logs.
pub fn redacted(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{path}");
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|part| match part.split_once('=') {
            Some(("password", _)) => "password=***".to_owned(),
            _ => part.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The TLS settings for `sslmode=require`: the system's trusted roots and those in `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig> {
    let doing = "setting up TLS to the database";
    let mut roots = rustls::RootCertStore::empty();
    // Certificates the system store holds but rustls cannot parse are skipped, as browsers do.
    let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
            .map_err(|e| MetadataError::backend(doing, format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(MetadataError::backend(
                doing,
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| MetadataError::backend(doing, format!("{}: {e}", path.display())))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MetadataError::backend(doing, e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A read-only transaction on one snapshot, for reads that must agree with each other (a
/// version and the rows it numbers).
async fn snapshot<'a>(client: &'a mut Client, doing: &'static str) -> Result<Transaction<'a>> {
    client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(db_err(doing))
}

/// The URL's parts a log may show: never the password.
fn shown(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// A condition on `repo` (parameter `$1`) selecting what `pattern` matches. Names hold no
/// `%` or `_`-free guarantee, so a prefix compares with `starts_with`.
fn repos_matching(pattern: &RepoPattern) -> (&'static str, String) {
    match pattern.prefix() {
        Some(prefix) => ("starts_with(repo, $1)", prefix.to_owned()),
        None => ("repo = $1", pattern.as_str().to_owned()),
    }
}

async fn ensure_repo(tx: &Transaction<'_>, repo: &RepoName) -> Result<()> {
    exec(
        tx,
        "creating a repository",
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&repo.as_str(), &now()],
    )
    .await
    .map(drop)
}

async fn link(tx: &Transaction<'_>, repo: &RepoName, digest: &str, bytes: u64) -> Result<()> {
    ensure_repo(tx, repo).await?;
    exec(
        tx,
        "recording a blob",
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&digest, &size(bytes), &now()],
    )
    .await?;
    exec(
        tx,
        "linking a blob",
        "INSERT INTO repo_blobs (repo, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        &[&repo.as_str(), &digest],
    )
    .await
    .map(drop)
}

/// How `manifest_refs.kind` stores a [`RefKind`].
fn ref_code(kind: RefKind) -> i16 {
    match kind {
        RefKind::Blob => 0,
        RefKind::Manifest => 1,
    }
}

/// Fails with `StillReferenced` if a manifest in `repo` references `digest` as a `kind`.
async fn refuse_if_referenced(
    tx: &Transaction<'_>,
    repo: &RepoName,
    digest: &Digest,
    kind: RefKind,
) -> Result<()> {
    let by = row(
        tx,
        "checking references",
        "SELECT digest FROM manifest_refs WHERE repo = $1 AND child = $2 AND kind = $3 LIMIT 1",
        &[&repo.as_str(), &digest.to_string(), &ref_code(kind)],
    )
    .await?;
    match by {
        Some(by) => Err(MetadataError::StillReferenced {
            repo: repo.clone(),
            digest: digest.clone(),
            by: by.get(0),
        }),
        None => Ok(()),
    }
}

fn upload_of(r: &Row) -> Result<UploadRecord> {
    Ok(UploadRecord {
        id: r.get(0),
        repo: parse("reading an upload", r.get(1))?,
        started_at: r.get(2),
    })
}

/// Stores a manifest's rows and moves its tag; the caller commits.
async fn put_manifest(tx: &Transaction<'_>, m: &NewManifest) -> Result<()> {
    let repo = m.repo.as_str();
    ensure_repo(tx, &m.repo).await?;
    let checks = [
        (
            RefKind::Blob,
            &m.blobs,
            "SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2 FOR SHARE",
        ),
        (
            RefKind::Manifest,
            &m.manifests,
            "SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2 FOR SHARE",
        ),
    ];
    for (kind, list, sql) in checks {
        for d in list {
            if row(
                tx,
                "checking manifest references",
                sql,
                &[&repo, &d.to_string()],
            )
            .await?
            .is_none()
            {
                return Err(MetadataError::MissingReference {
                    repo: m.repo.clone(),
                    kind,
                    digest: d.clone(),
                });
            }
        }
    }
    let digest = m.digest.to_string();
    let annotations = serde_json::to_string(&m.annotations)
        .map_err(|e| MetadataError::backend("encoding annotations", e))?;
    let inserted = exec(
        tx,
        "storing a manifest",
        "INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, size, content, annotations, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
        &[
            &repo,
            &digest,
            &m.media_type,
            &m.artifact_type,
            &m.subject.as_ref().map(ToString::to_string),
            &size(m.content.len() as u64),
            &&m.content[..],
            &annotations,
            &now(),
        ],
    )
    .await?;
    if inserted > 0 {
        for (kind, list) in [(RefKind::Blob, &m.blobs), (RefKind::Manifest, &m.manifests)] {
            for child in list {
                exec(
                    tx,
                    "storing manifest references",
                    "INSERT INTO manifest_refs (repo, digest, child, kind) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&repo, &digest, &child.to_string(), &ref_code(kind)],
                )
                .await?;
            }
        }
    }
    catalogue::store_listing(tx, &m.repo, &digest, &m.listing).await?;
    if let Some(tag) = &m.tag {
        // An immutable tag only "moves" to the digest it already has: one statement, so a
        // concurrent push on another node cannot slip in between a check and the move.
        let sql = if m.tag_immutable {
            "INSERT INTO tags (repo, name, digest, updated_at, pushed_by) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at,
                 pushed_by = excluded.pushed_by WHERE tags.digest = excluded.digest"
        } else {
            "INSERT INTO tags (repo, name, digest, updated_at, pushed_by) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at,
                 pushed_by = excluded.pushed_by"
        };
        let moved = exec(
            tx,
            "moving a tag",
            sql,
            &[&repo, &tag.as_str(), &digest, &now(), &m.pushed_by],
        )
        .await?;
        if moved == 0 {
            return Err(MetadataError::TagImmutable {
                repo: m.repo.clone(),
                tag: tag.clone(),
            });
        }
        catalogue::mark(tx, &m.repo).await?;
    }
    Ok(())
}

/// A blob guard: a session advisory lock on a connection of the lock pool, keyed by the
/// digest's first 64 bits. Dropping it unlocks on a task of its own; if that fails, the
/// connection is closed instead, which releases the lock too.
struct AdvisoryLock {
    client: Option<Client>,
    key: i64,
    exclusive: bool,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let (key, exclusive) = (self.key, self.exclusive);
        let unlock = async move {
            let sql = if exclusive {
                "SELECT pg_advisory_unlock($1)"
            } else {
                "SELECT pg_advisory_unlock_shared($1)"
            };
            if client.query_one(sql, &[&key]).await.is_err() {
                drop(deadpool_postgres::Object::take(client));
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(unlock)),
            Err(_) => drop(unlock),
        }
    }
}

/// A lock connection while its lock request is in flight. If the wait is abandoned (the
/// request was cancelled) or fails, the connection is closed rather than pooled: its backend
/// may still get the lock, and closing is what gives it back.
struct Unsettled(Option<Client>);

impl Unsettled {
    fn settle(mut self) -> Option<Client> {
        self.0.take()
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The advisory lock key of `digest`: its first 64 bits (a digest is already uniform).
fn lock_key(digest: &Digest) -> i64 {
    let hex = digest.hex();
    let head = hex.get(..16).unwrap_or(hex);
    u64::from_str_radix(head, 16).map_or(0, |k| k as i64)
}

#[async_trait::async_trait]
impl MetadataStore for PostgresStore {
    async fn guard_blob(&self, digest: &Digest, exclusive: bool) -> Result<BlobGuard> {
        let doing = "guarding a blob";
        let key = lock_key(digest);
        let sql = if exclusive {
            "SELECT pg_advisory_lock($1)"
        } else {
            "SELECT pg_advisory_lock_shared($1)"
        };
        let waiting = Unsettled(Some(self.locks.get().await.map_err(pool_err(doing))?));
        if let Some(client) = &waiting.0 {
            client
                .query_one(sql, &[&key])
                .await
                .map_err(db_err(doing))?;
        }
        Ok(BlobGuard(Box::new(AdvisoryLock {
            client: waiting.settle(),
            key,
            exclusive,
        })))
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let c = self.client().await?;
        let r = row(
            &c,
            "looking up a blob",
            "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = $1 AND r.digest = $2",
            &[&repo.as_str(), &digest.to_string()],
        )
        .await?;
        Ok(r.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn blob_size_anywhere(&self, digest: &Digest) -> Result<Option<u64>> {
        let c = self.client().await?;
        let r = row(
            &c,
            "looking up a blob",
            "SELECT size FROM blobs WHERE digest = $1 AND EXISTS (SELECT 1 FROM repo_blobs WHERE digest = $1)",
            &[&digest.to_string()],
        )
        .await?;
        Ok(r.map(|r| r.get::<_, i64>(0) as u64))
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, bytes: u64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        link(&tx, repo, &digest.to_string(), bytes).await?;
        tx.commit().await.map_err(db_err("linking a blob"))
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        // Delete first (waiting for any put that holds the row), then look for references:
        // a manifest committed meanwhile is seen, and the delete rolls back.
        let n = exec(
            &tx,
            "unlinking a blob",
            "DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2",
            &[&repo.as_str(), &digest.to_string()],
        )
        .await?;
        refuse_if_referenced(&tx, repo, digest, RefKind::Blob).await?;
        tx.commit().await.map_err(db_err("unlinking a blob"))?;
        Ok(n > 0)
    }

    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<bool> {
        let c = self.client().await?;
        let r = row(
            &c,
            "looking up blob links",
            "SELECT 1 FROM repo_blobs WHERE digest = $1 LIMIT 1",
            &[&digest.to_string()],
        )
        .await?;
        Ok(r.is_some())
    }

    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "recording an upload",
            "INSERT INTO uploads (id, repo, started_at) VALUES ($1, $2, $3)",
            &[&id, &repo.as_str(), &now()],
        )
        .await
        .map(drop)
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let c = self.client().await?;
        row(
            &c,
            "looking up an upload",
            "SELECT id, repo, started_at FROM uploads WHERE id = $1",
            &[&id],
        )
        .await?
        .as_ref()
        .map(upload_of)
        .transpose()
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "removing an upload",
            "DELETE FROM uploads WHERE id = $1",
            &[&id],
        )
        .await
        .map(drop)
    }

    async fn finish_upload(
        &self,
        id: &str,
        repo: &RepoName,
        digest: &Digest,
        bytes: u64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        link(&tx, repo, &digest.to_string(), bytes).await?;
        exec(
            &tx,
            "removing an upload",
            "DELETE FROM uploads WHERE id = $1",
            &[&id],
        )
        .await?;
        tx.commit().await.map_err(db_err("finishing an upload"))
    }

    async fn list_uploads(&self) -> Result<Vec<UploadRecord>> {
        let c = self.client().await?;
        rows(
            &c,
            "listing uploads",
            "SELECT id, repo, started_at FROM uploads ORDER BY started_at",
            &[],
        )
        .await?
        .iter()
        .map(upload_of)
        .collect()
    }

    async fn put_manifest(&self, m: NewManifest) -> Result<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        put_manifest(&tx, &m).await?;
        tx.commit().await.map_err(db_err("storing a manifest"))
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        let c = self.client().await?;
        let found = match reference {
            Reference::Tag(tag) => {
                row(
                    &c,
                    "looking up a manifest",
                    "SELECT m.digest, m.media_type, m.content FROM tags t
                     JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = $1 AND t.name = $2",
                    &[&repo.as_str(), &tag.as_str()],
                )
                .await?
            }
            Reference::Digest(d) => {
                row(
                    &c,
                    "looking up a manifest",
                    "SELECT digest, media_type, content FROM manifests WHERE repo = $1 AND digest = $2",
                    &[&repo.as_str(), &d.to_string()],
                )
                .await?
            }
        };
        found
            .map(|r| {
                Ok(StoredManifest {
                    digest: parse("looking up a manifest", r.get(0))?,
                    media_type: r.get(1),
                    content: Bytes::from(r.get::<_, Vec<u8>>(2)),
                })
            })
            .transpose()
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        let n = exec(
            &tx,
            "deleting a manifest",
            "DELETE FROM manifests WHERE repo = $1 AND digest = $2",
            &[&repo.as_str(), &digest.to_string()],
        )
        .await?;
        refuse_if_referenced(&tx, repo, digest, RefKind::Manifest).await?;
        catalogue::mark(&tx, repo).await?;
        tx.commit().await.map_err(db_err("deleting a manifest"))?;
        Ok(n > 0)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        let n = exec(
            &tx,
            "deleting a tag",
            "DELETE FROM tags WHERE repo = $1 AND name = $2",
            &[&repo.as_str(), &tag.as_str()],
        )
        .await?;
        catalogue::mark(&tx, repo).await?;
        tx.commit().await.map_err(db_err("deleting a tag"))?;
        Ok(n > 0)
    }

    async fn tags_version(&self, repo: &RepoName) -> Result<Option<i64>> {
        let c = self.client().await?;
        let r = row(
            &c,
            "reading the tags version",
            "SELECT tags_version FROM repositories WHERE name = $1",
            &[&repo.as_str()],
        )
        .await?;
        Ok(r.map(|r| r.get(0)))
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>> {
        let c = self.client().await?;
        let exists = row(
            &c,
            "listing tags",
            "SELECT 1 FROM repositories WHERE name = $1",
            &[&repo.as_str()],
        )
        .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let items = rows(
            &c,
            "listing tags",
            "SELECT name FROM tags WHERE repo = $1 AND name > $2 ORDER BY name LIMIT $3",
            &[&repo.as_str(), &last.unwrap_or(""), &Page::rows_for(n)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        Ok(Some(Page::of(items, n)))
    }

    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page> {
        let c = self.client().await?;
        let items = rows(
            &c,
            "listing repositories",
            "SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2",
            &[&last.unwrap_or(""), &Page::rows_for(n)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
        Ok(Page::of(items, n))
    }

    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        let doing = "listing a manifest's parents";
        let c = self.client().await?;
        rows(
            &c,
            doing,
            "SELECT digest FROM manifest_refs WHERE repo = $1 AND child = $2 AND kind = $3
             ORDER BY digest",
            &[
                &repo.as_str(),
                &digest.to_string(),
                &ref_code(RefKind::Manifest),
            ],
        )
        .await?
        .iter()
        .map(|r| parse(doing, r.get(0)))
        .collect()
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let c = self.client().await?;
        rows(
            &c,
            "listing referrers",
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
             WHERE repo = $1 AND subject = $2 AND ($3::text IS NULL OR artifact_type = $3) ORDER BY digest",
            &[&repo.as_str(), &subject.to_string(), &artifact_type],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(Referrer {
                digest: parse("listing referrers", r.get(0))?,
                media_type: r.get(1),
                size: r.get::<_, i64>(2) as u64,
                artifact_type: r.get(3),
                annotations: serde_json::from_str::<BTreeMap<String, String>>(r.get(4))
                    .unwrap_or_default(),
            })
        })
        .collect()
    }

    async fn search(&self, search: &Search) -> Result<SearchPage> {
        self.catch_up().await?;
        self.sync_index().await?;
        let c = self.client().await?;
        catalogue::search(&c, &self.index, search).await
    }

    async fn agent(&self, repo: &RepoName) -> Result<Option<AgentRecord>> {
        self.catch_up().await?;
        let c = self.client().await?;
        catalogue::agent(&c, repo).await
    }

    async fn add_downloads(&self, counts: Vec<(RepoName, u64)>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, false).await?;
        catalogue::add_downloads(&tx, &counts).await?;
        tx.commit().await.map_err(db_err("counting downloads"))
    }

    async fn rate(&self, repo: &RepoName, rater: &str, stars: u8) -> Result<Option<(u64, u64)>> {
        self.catch_up().await?;
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        let rated = catalogue::rate(&tx, repo, rater, stars).await?;
        tx.commit().await.map_err(db_err("recording a rating"))?;
        Ok(rated)
    }

    async fn ping(&self) -> Result<()> {
        let c = self.client().await?;
        row(&c, "reaching the database", "SELECT 1", &[])
            .await
            .map(drop)
    }

    async fn usage(&self) -> Result<Held> {
        let c = self.client().await?;
        let r = row(
            &c,
            "measuring what is stored",
            "SELECT (SELECT count(*) FROM repositories), (SELECT count(*) FROM blobs),
                    (SELECT COALESCE(sum(size), 0)::BIGINT FROM blobs), (SELECT count(*) FROM uploads)",
            &[],
        )
        .await?
        .ok_or_else(|| MetadataError::backend("measuring what is stored", "no row"))?;
        Ok(Held {
            repositories: r.get::<_, i64>(0) as u64,
            blobs: r.get::<_, i64>(1) as u64,
            blob_bytes: r.get::<_, i64>(2) as u64,
            uploads: r.get::<_, i64>(3) as u64,
        })
    }

    async fn bytes_under(&self, pattern: &RepoPattern) -> Result<u64> {
        let (filter, param) = repos_matching(pattern);
        let c = self.client().await?;
        let r = row(
            &c,
            "measuring a quota",
            &format!(
                "SELECT COALESCE(sum(size), 0)::BIGINT FROM blobs WHERE digest IN (SELECT digest FROM repo_blobs WHERE {filter})"
            ),
            &[&param],
        )
        .await?;
        Ok(r.map_or(0, |r| r.get::<_, i64>(0) as u64))
    }

    async fn holds_under(&self, pattern: &RepoPattern, digest: &Digest) -> Result<bool> {
        let (filter, param) = repos_matching(pattern);
        let c = self.client().await?;
        let r = row(
            &c,
            "measuring a quota",
            &format!("SELECT 1 FROM repo_blobs WHERE digest = $2 AND {filter} LIMIT 1"),
            &[&param, &digest.to_string()],
        )
        .await?;
        Ok(r.is_some())
    }
}

#[cfg(test)]
mod tests;
