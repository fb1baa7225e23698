//! Registry metadata: which repositories exist, which blobs each may see, manifests with their
//! references, tags, referrers, upload sessions, and the agent catalogue (search, versions,
//! downloads, ratings).
//!
//! [`MetadataStore`] is the contract for content and [`access::AccessStore`] for who may
//! touch it; [`SqliteStore`] is the embedded backend (WAL, one writer, a small pool of
//! readers) and [`PostgresStore`] the shared one that many registry nodes use at once. All SQL lives in the backend modules. Every change that touches
//! several rows happens in one transaction, so a manifest, its references and its tag appear
//! together or not at all, and the existence checks for what a manifest references run inside
//! that same transaction.

pub mod access;
#[cfg(any(test, feature = "testsuite"))]
pub mod access_suite;
mod catalogue_index;
mod catalogue_rows;
pub mod postgres;
mod sqlite;
#[cfg(any(test, feature = "testsuite"))]
pub mod suite;
#[cfg(any(test, feature = "testsuite"))]
pub mod test_database;

use std::collections::BTreeMap;

use agent_registry_oci::catalogue::{AgentInfo, SearchHit, SortKey};
use agent_registry_oci::{Digest, Reference, RepoName, RepoPattern, Tag};
use bytes::Bytes;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("manifest references {kind} {digest}, which is not in repository {repo}")]
    MissingReference {
        repo: RepoName,
        kind: RefKind,
        digest: Digest,
    },
    #[error(
        "{digest} is still referenced by manifest {by} in repository {repo}; delete that first"
    )]
    StillReferenced {
        repo: RepoName,
        digest: Digest,
        by: String,
    },
    #[error("metadata database failed while {doing}: {cause}")]
    Backend { doing: &'static str, cause: String },
    #[error(
        "tag {tag} in repository {repo} is an immutable release; push a new version instead of moving it"
    )]
    TagImmutable { repo: RepoName, tag: Tag },
    /// The disk (or quota) holding the database is full: the write did not happen.
    #[error("metadata database has no space left while {doing}: {cause}")]
    Full { doing: &'static str, cause: String },
    /// The database cannot take the request now (unreachable, restarting, or out of
    /// connections): nothing happened, and the same request may succeed in a moment.
    #[error("metadata database unavailable while {doing}: {cause}")]
    Unavailable { doing: &'static str, cause: String },
}

impl MetadataError {
    pub fn backend(doing: &'static str, cause: impl std::fmt::Display) -> MetadataError {
        MetadataError::Backend {
            doing,
            cause: cause.to_string(),
        }
    }
}

/// What a manifest points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    Blob,
    Manifest,
}

impl std::fmt::Display for RefKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefKind::Blob => "blob",
            RefKind::Manifest => "manifest",
        })
    }
}

/// A manifest to store, already parsed and validated.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    pub content: Bytes,
    pub blobs: Vec<Digest>,
    pub manifests: Vec<Digest>,
    pub annotations: BTreeMap<String, String>,
    pub tag: Option<Tag>,
    /// What the catalogue shows for this manifest when a tag points at it.
    pub listing: Listing,
    /// Who pushed it (recorded on the tag it moves).
    pub pushed_by: Option<String>,
    /// Refuse to move `tag` if it already points at another manifest.
    pub tag_immutable: bool,
}

/// A manifest's catalogue facts: agent metadata from its annotations and labels, when it was
/// created and how large its content is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub info: AgentInfo,
    /// Seconds since the Unix epoch.
    pub created: i64,
    pub size: u64,
}

/// A catalogue search, validated: every bound already parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Search {
    pub text: Option<String>,
    pub name: Option<String>,
    pub tag: Option<String>,
    pub capability: Option<String>,
    /// Matches any part of the author, ignoring case.
    pub author: Option<String>,
    pub created_after: Option<i64>,
    pub created_before: Option<i64>,
    pub size_min: Option<u64>,
    pub size_max: Option<u64>,
    pub sort: SortKey,
    /// Which repositories the caller may see.
    pub readable: access::Readable,
    pub offset: u64,
    pub limit: u32,
}

/// One page of search hits and how many match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    pub total: u64,
}

/// One tag of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    pub tag: String,
    pub digest: Digest,
    pub size: u64,
    pub pushed_at: i64,
    pub pushed_by: Option<String>,
}

/// An agent (a repository with at least one tag) as the catalogue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub name: RepoName,
    /// The tag search shows: `latest`, else the highest release, else the newest tag.
    pub tag: String,
    pub listing: Listing,
    pub tags: Vec<TagRecord>,
    pub downloads: u64,
    pub rating_sum: u64,
    pub rating_count: u64,
}

/// A stored manifest, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Bytes,
}

/// A manifest whose `subject` is some digest, as the referrers API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// An upload session's record; its bytes live in the blob store under the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub repo: RepoName,
    /// Seconds since the Unix epoch.
    pub started_at: i64,
}

/// What the metadata records: repositories, distinct blobs and their bytes, open uploads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub repositories: u64,
    pub blobs: u64,
    pub blob_bytes: u64,
    pub uploads: u64,
}

/// A page of names in lexical order; `more` says whether a later page exists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

impl Page {
    /// How many rows a backend reads for a page of `n`: one more, to learn whether another
    /// page exists.
    fn rows_for(n: usize) -> i64 {
        i64::try_from(n).unwrap_or(i64::MAX - 1) + 1
    }

    /// The page of `n` from the rows read for it ([`Page::rows_for`]).
    fn of(mut items: Vec<String>, n: usize) -> Page {
        let more = items.len() > n;
        items.truncate(n);
        Page { items, more }
    }
}

/// Held while a blob's bytes must not be deleted under a commit or a mount (shared), or while
/// they are being deleted (exclusive), on every node sharing the metadata; released when
/// dropped.
pub struct BlobGuard(#[allow(dead_code)] Box<dyn Send + Sync>);

impl std::fmt::Debug for BlobGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlobGuard")
    }
}

#[async_trait::async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Waits for and takes the guard over `digest`'s bytes: shared for a commit or mount,
    /// which must not see the bytes deleted before their link lands; exclusive for deleting
    /// them, which must not remove bytes a commit is about to link.
    async fn guard_blob(&self, digest: &Digest, exclusive: bool) -> Result<BlobGuard>;
    /// Size of `digest` if it is linked into `repo` (pushed or mounted there).
    async fn blob_size(&self, repo: &RepoName, digest: &Digest) -> Result<Option<u64>>;
    /// Size of `digest` if any repository holds it (for cross-repository mounts).
    async fn blob_size_anywhere(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Links a committed blob into `repo`, creating the repository if needed.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64) -> Result<()>;
    /// Unlinks a blob from `repo`; refuses while a manifest in `repo` references it.
    /// Returns whether it was linked.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Whether any repository still links `digest` (for deleting the bytes).
    async fn blob_linked_anywhere(&self, digest: &Digest) -> Result<bool>;

    async fn create_upload(&self, id: &str, repo: &RepoName) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>>;
    async fn delete_upload(&self, id: &str) -> Result<()>;
    /// Links a finished upload's blob into `repo` and drops the upload's record, in one
    /// durable transaction.
    async fn finish_upload(
        &self,
        id: &str,
        repo: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()>;
    async fn list_uploads(&self) -> Result<Vec<UploadRecord>>;

    /// Stores a manifest, its references and its tag in one transaction, after checking that
    /// every referenced blob and child manifest is in the repository.
    async fn put_manifest(&self, manifest: NewManifest) -> Result<()>;
    async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<Option<StoredManifest>>;
    /// Deletes a manifest and every tag pointing at it; refuses while an index in the
    /// repository references it. Returns whether it existed.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Returns whether the tag existed.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// A number that changes whenever any tag of `repo` is added, moved or removed (on every
    /// node sharing the database); `None` if the repository does not exist.
    async fn tags_version(&self, repo: &RepoName) -> Result<Option<i64>>;
    /// Tags after `last`, at most `n`; `None` if the repository does not exist.
    async fn list_tags(
        &self,
        repo: &RepoName,
        last: Option<&str>,
        n: usize,
    ) -> Result<Option<Page>>;
    async fn list_repositories(&self, last: Option<&str>, n: usize) -> Result<Page>;
    async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>>;
    /// The manifests of `repo` that list `digest` as a child manifest (the indexes a
    /// platform's manifest belongs to), in digest order.
    async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>>;

    /// Catalogue search over every repository with a tag.
    async fn search(&self, search: &Search) -> Result<SearchPage>;
    /// An agent with all its tags; `None` if the repository has no tag.
    async fn agent(&self, repo: &RepoName) -> Result<Option<AgentRecord>>;
    /// Adds counted downloads. Bookkeeping: not synced before it returns.
    async fn add_downloads(&self, counts: Vec<(RepoName, u64)>) -> Result<()>;
    /// Records `rater`'s rating of `repo` (replacing an earlier one) and returns the new
    /// `(sum, count)`; `None` if the repository has no tag.
    async fn rate(&self, repo: &RepoName, rater: &str, stars: u8) -> Result<Option<(u64, u64)>>;

    /// Answers once the database does (a health check).
    async fn ping(&self) -> Result<()>;

    /// How much the registry holds (for metrics).
    async fn usage(&self) -> Result<Held>;

    /// Bytes of the distinct blobs linked into the repositories `pattern` matches (quotas).
    async fn bytes_under(&self, pattern: &RepoPattern) -> Result<u64>;
    /// Whether a repository `pattern` matches links `digest` (so linking it again under the
    /// pattern costs its quota nothing).
    async fn holds_under(&self, pattern: &RepoPattern, digest: &Digest) -> Result<bool>;
}
