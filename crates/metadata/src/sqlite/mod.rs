//! The SQLite backend: one file in WAL mode, one writer connection, a pool of readers.
//!
//! Reads run on the calling thread with a pooled connection (WAL readers never wait for the
//! writer). Writes go to the one writer thread ([`writer`]), which commits them in groups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use agent_registry_oci::{Digest, Reference, RepoName, RepoPattern, Tag};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};

mod access;
mod catalogue;
mod recent;
mod schema;
mod writer;

use crate::catalogue_index::CatalogueIndex;
use crate::{
    AgentRecord, BlobGuard, Held, MetadataError, MetadataStore, NewManifest, Page, RefKind,
    Referrer, Result, Search, SearchPage, StoredManifest, UploadRecord,
};

/// Readers kept open; reads run on the async workers, so few are ever in use at once.
const READERS: usize = 8;
/// How much of the database file reads may map (address space, not memory).
const MMAP_BYTES: u64 = 1 << 30;

pub struct SqliteStore {
    path: PathBuf,
    durable: bool,
    writer: writer::Writer,
    readers: Mutex<Vec<Connection>>,
    /// Blob sizes and manifests read since the last commit.
    recent: Arc<recent::RecentReads>,
    index: RwLock<CatalogueIndex>,
    /// One node by construction: a lock in this process guards every blob.
    blob_lifecycle: std::sync::Arc<tokio::sync::RwLock<()>>,
}

fn poisoned() -> MetadataError {
    MetadataError::backend("searching the catalogue", "catalogue index poisoned")
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn db_err(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> MetadataError {
    move |e| {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            MetadataError::Full {
                doing,
                cause: e.to_string(),
            }
        } else {
            MetadataError::backend(doing, e)
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A stored text that does not parse as what its column holds.
fn bad_value(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(bad_value)
}

fn parse_repo(s: String) -> rusqlite::Result<RepoName> {
    s.parse().map_err(bad_value)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`. `durable` makes every
    /// commit survive power loss (`synchronous=FULL`); without it a crash of the machine may
    /// lose the last commits, though never consistency.
    pub fn open(path: impl AsRef<Path>, durable: bool) -> Result<SqliteStore> {
        let path = path.as_ref().to_owned();
        let mut conn = Self::connect(&path, durable, false)?;
        schema::migrate(&mut conn)?;
        let recent = Arc::<recent::RecentReads>::default();
        Ok(SqliteStore {
            path,
            durable,
            writer: writer::Writer::spawn(conn, durable, recent.clone())?,
            readers: Mutex::new(Vec::new()),
            recent,
            index: RwLock::default(),
            blob_lifecycle: std::sync::Arc::default(),
        })
    }

    /// Opens a connection; `reader` ones map the file (see [`MMAP_BYTES`]) and may not write:
    /// every write goes through the writer, which is what lets [`recent`] keep answers until
    /// the next commit.
    fn connect(path: &Path, durable: bool, reader: bool) -> Result<Connection> {
        let conn = Connection::open(path).map_err(db_err("opening the database"))?;
        let sync = if durable { "FULL" } else { "NORMAL" };
        // Readers map the file instead of copying pages into each connection's small cache
        // (catalogue searches touch many pages). The writer does not: a growing file would be
        // remapped on its commits. Temporary data (savepoint journals, sorts) stays in memory:
        // as files, the writer created, wrote and unlinked one in the system's temporary
        // directory for about two images in five pushed, on the thread every commit waits for.
        let (mmap, query_only) = if reader { (MMAP_BYTES, 1) } else { (0, 0) };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=10000; PRAGMA mmap_size={mmap}; PRAGMA query_only={query_only}; PRAGMA temp_store=MEMORY;"
        ))
        .map_err(db_err("configuring the database"))?;
        Ok(conn)
    }

    /// Brings the catalogue up to date with every tag change committed so far (see
    /// `catalogue`); a read when nothing waits.
    async fn catch_up(&self) -> Result<()> {
        while self.read(catalogue::behind)? {
            let caught = self.writer.run(false, catalogue::catch_up).await?;
            tracing::debug!(repositories = caught, "catalogue caught up");
        }
        Ok(())
    }

    /// Brings the in-memory catalogue index up to the database's catalogue version: the first
    /// search loads every row, later ones only the rows changed since.
    fn sync_index(&self) -> Result<()> {
        let version = self.read(catalogue::version)?;
        if self.index.read().map_err(|_| poisoned())?.version() >= Some(version) {
            return Ok(());
        }
        let mut index = self.index.write().map_err(|_| poisoned())?;
        let loaded = self.read(|c| catalogue::sync(c, &mut index))?;
        tracing::debug!(loaded, agents = index.len(), "catalogue index in step");
        Ok(())
    }

    /// Runs a read on the calling thread. Point reads from the page cache take microseconds,
    /// far less than a hand-off to a blocking thread; WAL readers never wait for the writer.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| MetadataError::backend("taking a reader", "pool poisoned"))?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => Self::connect(&self.path, self.durable, true)?,
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READERS
        {
            pool.push(conn);
        }
        result
    }
}

/// A condition on `repo` (parameter `?1`) selecting what `pattern` matches. Names hold no
/// GLOB characters, so a prefix GLOB walks the `(repo, ...)` keys.
fn repos_matching(pattern: &RepoPattern) -> (&'static str, String) {
    match pattern.prefix() {
        Some(prefix) => ("repo GLOB ?1", format!("{prefix}*")),
        None => ("repo = ?1", pattern.as_str().to_owned()),
    }
}

fn ensure_repo(tx: &Connection, repo: &RepoName) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO repositories (name, created_at) VALUES (?1, ?2)",
        params![repo.as_str(), now()],
    )
    .map_err(db_err("creating a repository"))?;
    Ok(())
}

fn link(tx: &Connection, repo: &RepoName, digest: &str, size: u64) -> Result<()> {
    ensure_repo(tx, repo)?;
    tx.execute(
        "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING",
        params![digest, size as i64, now()],
    )
    .map_err(db_err("recording a blob"))?;
    tx.execute(
        "INSERT OR IGNORE INTO repo_blobs (repo, digest) VALUES (?1, ?2)",
        params![repo.as_str(), digest],
    )
    .map_err(db_err("linking a blob"))?;
    Ok(())
}

/// How `manifest_refs.kind` stores a [`RefKind`].
fn ref_code(kind: RefKind) -> i64 {
    match kind {
        RefKind::Blob => 0,
        RefKind::Manifest => 1,
    }
}

/// Fails with `StillReferenced` if a manifest in `repo` references `digest` as a `kind`.
fn refuse_if_referenced(
    tx: &Connection,
    repo: &RepoName,
    digest: &Digest,
    kind: RefKind,
) -> Result<()> {
    let by: Option<String> = tx
        .query_row(
            "SELECT digest FROM manifest_refs WHERE repo = ?1 AND child = ?2 AND kind = ?3 LIMIT 1",
            params![repo.as_str(), digest.to_string(), ref_code(kind)],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err("checking references"))?;
    match by {
        Some(by) => Err(MetadataError::StillReferenced {
            repo: repo.clone(),
            digest: digest.clone(),
            by,
        }),
        None => Ok(()),
    }
}

fn remove_upload(tx: &Connection, id: &str) -> Result<()> {
    tx.execute("DELETE FROM uploads WHERE id = ?1", params![id])
        .map_err(db_err("removing an upload"))?;
    Ok(())
}

#[async_trait::async_trait]
impl MetadataStore for SqliteStore {
    async fn guard_blob(&self, _digest: &Digest, exclusive: bool) -> Result<BlobGuard> {
        let lock = self.blob_lifecycle.clone();
        Ok(if exclusive {
            BlobGuard(Box::new(lock.write_owned().await))
        } else {
            BlobGuard(Box::new(lock.read_owned().await))
        })
    }

    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        self.recent.blob_size(repo, digest, || {
            self.read(|c| {
                c.prepare_cached(
                    "SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = ?1 AND r.digest = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![repo.as_str(), digest.to_string()], |r| r.get::<_, i64>(0))
                        .optional()
                })
                .map(|o| o.map(|s| s as u64))
                .map_err(db_err("looking up a blob"))
            })
        })
    }

    async fn blob_size_anywhere(&self, digest: &Digest) -> Result<Option<u64>> {
        let digest = digest.to_string();
        self.read(|c| {
            c.prepare_cached("SELECT size FROM blobs WHERE digest = ?1 AND EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)")
                .and_then(|mut s| s.query_row(params![digest], |r| r.get::<_, i64>(0)).optional())
                .map(|o| o.map(|s| s as u64))
                .map_err(db_err("looking up a blob"))
        })
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        let (repo, digest) = (repo.clone(), digest.to_string());
        self.writer
            .run(true, move |tx| link(tx, &repo, &digest, size))
            .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.writer
            .run(true, move |tx| {
                refuse_if_referenced(tx, &repo, &digest, RefKind::Blob)?;
                let n = tx
                    .execute(
                        "DELETE FROM repo_blobs WHERE repo = ?1 AND digest = ?2",
                        params![repo.as_str(), digest.to_string()],
                    )
                    .map_err(db_err("unlinking a blob"))?;
                Ok(n > 0)
            })
            .await
    }

    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<bool> {
        let digest = digest.to_string();
        self.read(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?1)",
                params![digest],
                |r| r.get(0),
            )
            .map_err(db_err("looking up blob links"))
        })
    }

    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()> {
        let (id, repo) = (id.to_owned(), repo.clone());
        self.writer
            .run(false, move |tx| {
                tx.execute(
                    "INSERT INTO uploads (id, repo, started_at) VALUES (?1, ?2, ?3)",
                    params![id, repo.as_str(), now()],
                )
                .map_err(db_err("recording an upload"))?;
                Ok(())
            })
            .await
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let id = id.to_owned();
        self.read(|c| {
            c.prepare_cached("SELECT id, repo, started_at FROM uploads WHERE id = ?1")
                .and_then(|mut s| {
                    s.query_row(params![id], |r| {
                        Ok(UploadRecord {
                            id: r.get(0)?,
                            repo: parse_repo(r.get(1)?)?,
                            started_at: r.get(2)?,
                        })
                    })
                    .optional()
                })
                .map_err(db_err("looking up an upload"))
        })
    }

    async fn delete_upload(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.writer
            .run(false, move |tx| remove_upload(tx, &id))
            .await
    }

    async fn finish_upload(
        &self,
        id: &str,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let (id, repo, digest) = (id.to_owned(), repo.clone(), digest.to_string());
        self.writer
            .run(true, move |tx| {
                link(tx, &repo, &digest, size)?;
                remove_upload(tx, &id)
            })
            .await
    }

    async fn list_uploads(&self) -> Result<Vec<UploadRecord>> {
        self.read(|c| {
            let mut s = c
                .prepare("SELECT id, repo, started_at FROM uploads ORDER BY started_at")
                .map_err(db_err("listing uploads"))?;
            let rows = s
                .query_map([], |r| {
                    Ok(UploadRecord {
                        id: r.get(0)?,
                        repo: parse_repo(r.get(1)?)?,
                        started_at: r.get(2)?,
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("listing uploads"))?;
            Ok(rows)
        })
    }

    async fn put_manifest(&self, m: NewManifest) -> Result<()> {
        self.writer.run(true, move |tx| {
            let repo = m.repo.as_str();
            ensure_repo(tx, &m.repo)?;
            {
                let mut has_blob = tx
                    .prepare_cached("SELECT 1 FROM repo_blobs WHERE repo = ?1 AND digest = ?2")
                    .map_err(db_err("checking manifest references"))?;
                for d in &m.blobs {
                    if !has_blob.exists(params![repo, d.to_string()]).map_err(db_err("checking manifest references"))? {
                        return Err(MetadataError::MissingReference { repo: m.repo.clone(), kind: RefKind::Blob, digest: d.clone() });
                    }
                }
                let mut has_manifest = tx
                    .prepare_cached("SELECT 1 FROM manifests WHERE repo = ?1 AND digest = ?2")
                    .map_err(db_err("checking manifest references"))?;
                for d in &m.manifests {
                    if !has_manifest.exists(params![repo, d.to_string()]).map_err(db_err("checking manifest references"))? {
                        return Err(MetadataError::MissingReference { repo: m.repo.clone(), kind: RefKind::Manifest, digest: d.clone() });
                    }
                }
            }
            let digest = m.digest.to_string();
            let annotations = serde_json::to_string(&m.annotations).map_err(|e| MetadataError::backend("encoding annotations", e))?;
            let inserted = tx
                .execute(
                    "INSERT INTO manifests (repo, digest, media_type, artifact_type, subject, size, content, annotations, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (repo, digest) DO NOTHING",
                    params![
                        repo,
                        digest,
                        m.media_type,
                        m.artifact_type,
                        m.subject.as_ref().map(ToString::to_string),
                        m.content.len() as i64,
                        &m.content[..],
                        annotations,
                        now()
                    ],
                )
                .map_err(db_err("storing a manifest"))?;
            if inserted > 0 {
                let mut add_ref = tx
                    .prepare_cached("INSERT OR IGNORE INTO manifest_refs (repo, digest, child, kind) VALUES (?1, ?2, ?3, ?4)")
                    .map_err(db_err("storing manifest references"))?;
                for (kind, list) in [(RefKind::Blob, &m.blobs), (RefKind::Manifest, &m.manifests)] {
                    for child in list {
                        add_ref.execute(params![repo, digest, child.to_string(), ref_code(kind)]).map_err(db_err("storing manifest references"))?;
                    }
                }
            }
            catalogue::store_listing(tx, &m.repo, &digest, &m.listing)?;
            if let Some(tag) = &m.tag {
                if m.tag_immutable {
                    let current: Option<String> = tx
                        .query_row("SELECT digest FROM tags WHERE repo = ?1 AND name = ?2", params![repo, tag.as_str()], |r| r.get(0))
                        .optional()
                        .map_err(db_err("checking a tag"))?;
                    if current.is_some_and(|c| c != digest) {
                        return Err(MetadataError::TagImmutable { repo: m.repo.clone(), tag: tag.clone() });
                    }
                }
                tx.execute(
                    "INSERT INTO tags (repo, name, digest, updated_at, pushed_by) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (repo, name) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at,
                         pushed_by = excluded.pushed_by",
                    params![repo, tag.as_str(), digest, now(), m.pushed_by],
                )
                .map_err(db_err("moving a tag"))?;
                catalogue::mark(tx, &m.repo)?;
            }
            Ok(())
        })
        .await
    }

    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>> {
        self.recent.manifest(repo, reference, || {
            self.read(|c| {
                let row = |r: &rusqlite::Row<'_>| {
                    Ok(StoredManifest {
                        digest: parse_digest(r.get(0)?)?,
                        media_type: r.get(1)?,
                        content: Bytes::from(r.get::<_, Vec<u8>>(2)?),
                    })
                };
                match reference {
                    Reference::Tag(tag) => c
                        .prepare_cached(
                            "SELECT m.digest, m.media_type, m.content FROM tags t
                             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest WHERE t.repo = ?1 AND t.name = ?2",
                        )
                        .and_then(|mut s| s.query_row(params![repo.as_str(), tag.as_str()], row).optional()),
                    Reference::Digest(d) => c
                        .prepare_cached("SELECT digest, media_type, content FROM manifests WHERE repo = ?1 AND digest = ?2")
                        .and_then(|mut s| s.query_row(params![repo.as_str(), d.to_string()], row).optional()),
                }
                .map_err(db_err("looking up a manifest"))
            })
        })
    }

    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let (repo, digest) = (repo.clone(), digest.clone());
        self.writer
            .run(true, move |tx| {
                refuse_if_referenced(tx, &repo, &digest, RefKind::Manifest)?;
                let n = tx
                    .execute(
                        "DELETE FROM manifests WHERE repo = ?1 AND digest = ?2",
                        params![repo.as_str(), digest.to_string()],
                    )
                    .map_err(db_err("deleting a manifest"))?;
                catalogue::mark(tx, &repo)?;
                Ok(n > 0)
            })
            .await
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let (repo, tag) = (repo.clone(), tag.to_string());
        self.writer
            .run(true, move |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM tags WHERE repo = ?1 AND name = ?2",
                        params![repo.as_str(), tag],
                    )
                    .map_err(db_err("deleting a tag"))?;
                catalogue::mark(tx, &repo)?;
                Ok(n > 0)
            })
            .await
    }

    async fn tags_version(&self, repo: &RepoName) -> Result<Option<i64>> {
        self.read(|c| {
            c.prepare_cached("SELECT tags_version FROM repositories WHERE name = ?1")
                .and_then(|mut s| s.query_row(params![repo.as_str()], |r| r.get(0)).optional())
                .map_err(db_err("reading the tags version"))
        })
    }

    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>> {
        let (repo, last) = (repo.to_string(), last.unwrap_or("").to_owned());
        self.read(|c| {
            let exists: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM repositories WHERE name = ?1)")
                .and_then(|mut s| s.query_row(params![repo], |r| r.get(0)))
                .map_err(db_err("listing tags"))?;
            if !exists {
                return Ok(None);
            }
            let items = c
                .prepare_cached(
                    "SELECT name FROM tags WHERE repo = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![repo, last, Page::rows_for(n)], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(db_err("listing tags"))?;
            Ok(Some(Page::of(items, n)))
        })
    }

    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page> {
        let last = last.unwrap_or("").to_owned();
        self.read(|c| {
            let items = c
                .prepare_cached(
                    "SELECT name FROM repositories WHERE name > ?1 ORDER BY name LIMIT ?2",
                )
                .and_then(|mut s| {
                    s.query_map(params![last, Page::rows_for(n)], |r| r.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(db_err("listing repositories"))?;
            Ok(Page::of(items, n))
        })
    }

    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        let (repo, digest) = (repo.to_string(), digest.to_string());
        self.read(|c| {
            c.prepare_cached(
                "SELECT digest FROM manifest_refs WHERE repo = ?1 AND child = ?2 AND kind = ?3
                 ORDER BY digest",
            )
            .and_then(|mut s| {
                s.query_map(params![repo, digest, ref_code(RefKind::Manifest)], |r| {
                    parse_digest(r.get(0)?)
                })?
                .collect()
            })
            .map_err(db_err("listing a manifest's parents"))
        })
    }

    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let (repo, subject, artifact_type) = (
            repo.to_string(),
            subject.to_string(),
            artifact_type.map(str::to_owned),
        );
        self.read(|c| {
            let mut s = c
                .prepare_cached(
                    "SELECT digest, media_type, size, artifact_type, annotations FROM manifests
                     WHERE repo = ?1 AND subject = ?2 AND (?3 IS NULL OR artifact_type = ?3) ORDER BY digest",
                )
                .map_err(db_err("listing referrers"))?;
            let rows = s
                .query_map(params![repo, subject, artifact_type], |r| {
                    let annotations: String = r.get(4)?;
                    Ok(Referrer {
                        digest: parse_digest(r.get(0)?)?,
                        media_type: r.get(1)?,
                        size: r.get::<_, i64>(2)? as u64,
                        artifact_type: r.get(3)?,
                        annotations: serde_json::from_str::<BTreeMap<String, String>>(&annotations).unwrap_or_default(),
                    })
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(db_err("listing referrers"))?;
            Ok(rows)
        })
    }

    async fn search(&self, search: &Search) -> Result<SearchPage> {
        self.catch_up().await?;
        self.sync_index()?;
        let index = self.index.read().map_err(|_| poisoned())?;
        self.read(|c| catalogue::search(c, &index, search))
    }

    async fn agent(&self, repo: &RepoName) -> Result<Option<AgentRecord>> {
        self.catch_up().await?;
        self.read(|c| catalogue::agent(c, repo))
    }

    async fn add_downloads(&self, counts: Vec<(RepoName, u64)>) -> Result<()> {
        self.writer
            .run(false, move |tx| catalogue::add_downloads(tx, &counts))
            .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|c| {
            c.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(db_err("reaching the database"))
        })
    }

    async fn usage(&self) -> Result<Held> {
        self.read(|c| {
            c.query_row(
                "SELECT (SELECT count(*) FROM repositories), (SELECT count(*) FROM blobs),
                        (SELECT total(size) FROM blobs), (SELECT count(*) FROM uploads)",
                [],
                |r| {
                    Ok(Held {
                        repositories: r.get::<_, i64>(0)? as u64,
                        blobs: r.get::<_, i64>(1)? as u64,
                        blob_bytes: r.get::<_, f64>(2)? as u64,
                        uploads: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .map_err(db_err("measuring what is stored"))
        })
    }

    async fn bytes_under(&self, pattern: &RepoPattern) -> Result<u64> {
        let (filter, param) = repos_matching(pattern);
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT total(size) FROM blobs WHERE digest IN (SELECT digest FROM repo_blobs WHERE {filter})"
            ))
            .and_then(|mut s| s.query_row([param], |r| r.get::<_, f64>(0)))
            .map(|total| total as u64)
            .map_err(db_err("measuring a quota"))
        })
    }

    async fn holds_under(&self, pattern: &RepoPattern, digest: &Digest) -> Result<bool> {
        let (filter, param) = repos_matching(pattern);
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM repo_blobs WHERE digest = ?2 AND {filter})"
            ))
            .and_then(|mut s| s.query_row(params![param, digest.to_string()], |r| r.get(0)))
            .map_err(db_err("measuring a quota"))
        })
    }

    async fn rate(&self, repo: &RepoName, rater: &str, stars: u8) -> Result<Option<(u64, u64)>> {
        self.catch_up().await?;
        let (repo, rater) = (repo.clone(), rater.to_owned());
        self.writer
            .run(true, move |tx| catalogue::rate(tx, &repo, &rater, stars))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_backend_passes_the_shared_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("registry.db"), false).expect("open");
        crate::suite::run_all(&store).await;
    }

    /// `RecentReads` is only right if the writer is the one way to change the database.
    #[tokio::test(flavor = "multi_thread")]
    async fn readers_cannot_write_and_temporary_data_stays_in_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("registry.db"), false).expect("open");
        let temp_store = |c: &Connection| {
            c.query_row("PRAGMA temp_store", [], |r| r.get::<_, i64>(0))
                .map_err(db_err("reading temp_store"))
        };
        let write = store.read(|c| {
            c.execute(
                "INSERT INTO blobs (digest, size, created_at) VALUES ('sha256:x', 1, 0)",
                [],
            )
            .map_err(db_err("writing through a reader"))
        });
        assert!(write.is_err(), "a reader wrote: {write:?}");
        assert_eq!(store.read(temp_store).expect("reader"), 2, "MEMORY");
        let writer = store
            .writer
            .run(false, move |c| temp_store(c))
            .await
            .expect("writer");
        assert_eq!(writer, 2, "MEMORY");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn sqlite_backend_passes_the_access_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("registry.db"), false).expect("open");
        crate::access_suite::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_catalogue_backlog_larger_than_one_batch_is_caught_up_in_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(dir.path().join("registry.db"), false).expect("open");
        let backlog = catalogue::CATCH_UP_BATCH * 2 + 5;
        store
            .writer
            .run(false, move |tx| {
                for i in 0..backlog {
                    catalogue::mark(tx, &format!("backlog/r{i}").parse().expect("name"))?;
                }
                Ok(())
            })
            .await
            .expect("mark");
        assert!(store.read(catalogue::behind).expect("behind"));
        let page = store
            .search(&Search {
                limit: 1,
                ..Search::default()
            })
            .await
            .expect("search");
        assert_eq!(page.total, 0);
        assert!(
            !store.read(catalogue::behind).expect("behind"),
            "nothing left pending"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn agents_listed_before_the_search_index_existed_are_found_by_tag_and_visibility() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.db");
        let mut conn = Connection::open(&path).expect("open");
        schema::migrate_to(&mut conn, 3).expect("migrate to 3");
        // What the catalogue of schema 3 held for two listed agents, one made public.
        conn.execute_batch(
            "INSERT INTO repositories (name, created_at) VALUES ('old/open', 0), ('old/closed', 0);
             INSERT INTO manifests (repo, digest, media_type, size, content, annotations, created_at)
                 VALUES ('old/open', 'sha256:aa', 'm', 1, x'00', '{}', 0),
                        ('old/closed', 'sha256:bb', 'm', 1, x'00', '{}', 0);
             INSERT INTO tags (repo, name, digest, updated_at)
                 VALUES ('old/open', 'latest', 'sha256:aa', 0), ('old/open', 'v1', 'sha256:aa', 0),
                        ('old/closed', 'latest', 'sha256:bb', 0);
             INSERT INTO agents (repo, tag, digest, info, created, size)
                 VALUES ('old/open', 'latest', 'sha256:aa', '{}', 0, 1),
                        ('old/closed', 'latest', 'sha256:bb', '{}', 0, 1);
             INSERT INTO visibility (repo, public) VALUES ('old/open', 1);",
        )
        .expect("schema 3 rows");
        drop(conn);
        let store = SqliteStore::open(&path, false).expect("upgrade");
        let found = |tag: Option<&str>, readable: crate::access::Readable| {
            let store = &store;
            let search = Search {
                tag: tag.map(str::to_owned),
                readable,
                limit: 10,
                ..Search::default()
            };
            async move {
                let page = store.search(&search).await.expect("search");
                page.hits.into_iter().map(|h| h.name).collect::<Vec<_>>()
            }
        };
        assert_eq!(
            found(Some("v1"), crate::access::Readable::All).await,
            ["old/open"]
        );
        let anonymous = crate::access::Readable::Some {
            public_by_default: false,
            patterns: Vec::new(),
        };
        assert_eq!(found(None, anonymous).await, ["old/open"]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn reopening_keeps_data_and_does_not_remigrate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.db");
        let repo: RepoName = "a/b".parse().expect("name");
        let digest = Digest::of(agent_registry_oci::Algorithm::Sha256, b"x");
        SqliteStore::open(&path, true)
            .expect("open")
            .link_blob(&repo, &digest, 1)
            .await
            .expect("link");
        let again = SqliteStore::open(&path, true).expect("reopen");
        assert_eq!(
            again.blob_size(&repo, &digest).await.expect("size"),
            Some(1)
        );
    }
}
