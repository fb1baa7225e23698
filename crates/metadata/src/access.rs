//! What access control keeps: principals (users and robots), tokens, grants, repository
//! visibility, the access log and the registry's shared secrets.
//!
//! [`AccessStore`] only stores and returns records; what they mean (who may do what, how a
//! secret is checked) is the `agent-registry-access` crate's business. Every change to
//! principals, grants, visibility or a token's state moves [`AccessStore::access_version`],
//! so each node can cache the policy and notice, with one cheap read, when it went stale.

use agent_registry_oci::{RepoName, RepoPattern};

use crate::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Robot,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::Robot => "robot",
        }
    }
}

/// A user or robot account.
#[derive(Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub name: String,
    pub kind: PrincipalKind,
    pub admin: bool,
    pub groups: Vec<String>,
    /// An argon2 PHC string; robots (and users who only use tokens) have none.
    pub password_hash: Option<String>,
    pub created_at: i64,
}

impl std::fmt::Debug for PrincipalRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash stays out of logs too.
        f.debug_struct("PrincipalRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("admin", &self.admin)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A personal or robot API token, created by a person and shown once.
    Api,
    /// An OAuth2 refresh token the token endpoint handed out.
    Refresh,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Api => "api",
            TokenKind::Refresh => "refresh",
        }
    }
}

/// A token; only a SHA-256 of its secret is kept.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    pub owner: String,
    pub kind: TokenKind,
    pub name: String,
    pub secret_hash: Vec<u8>,
    /// What the token may do, narrower than its owner (`pattern:permission`); empty means
    /// everything the owner may do.
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl std::fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// `subject` (a principal, `group:NAME`, or a workload such as
/// `system:serviceaccount:NS:NAME`) holds `permission` on repositories matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub subject: String,
    pub pattern: RepoPattern,
    /// `read`, `write`, `delete` or `admin`.
    pub permission: String,
}

/// Everything authorization reads, in one consistent snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRecords {
    pub version: i64,
    pub grants: Vec<GrantRecord>,
    /// Repositories whose visibility was set; the others have the configured default.
    pub visibility: Vec<(RepoName, bool)>,
    pub pull_policies: Vec<PullPolicyRecord>,
}

/// What must hold of a manifest before it may be pulled from the repositories `pattern`
/// matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPolicyRecord {
    pub pattern: RepoPattern,
    /// Only manifests with a valid signature by a trusted key.
    pub signed_only: bool,
    /// The trusted public keys, PEM; empty means the registry's own list.
    pub trusted_keys: String,
    /// Refuse manifests with scan findings at or above this severity (`critical`, `high`,
    /// `medium`, `low`).
    pub block_vulnerabilities: Option<String>,
    /// Advisories (ids or aliases) accepted despite the block.
    pub allowed_advisories: Vec<String>,
}

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// Who (absent: anonymous, or a login that named nobody).
    pub principal: Option<String>,
    /// `login`, `pull`, `push`, `delete`, `admin`, ...
    pub action: String,
    pub repo: Option<String>,
    /// A tag, digest or other object the action was on.
    pub target: Option<String>,
    pub allowed: bool,
    pub status: u16,
    pub client: Option<String>,
}

/// Which access-log lines to return: newest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLogQuery {
    pub principal: Option<String>,
    pub action: Option<String>,
    pub repo: Option<String>,
    pub since: Option<i64>,
    pub denied_only: bool,
    pub limit: u32,
}

/// Which repositories a caller may see in listings and search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Readable {
    /// Everything (access control off, or an administrator).
    #[default]
    All,
    /// Public repositories (those set public, or every unset one when `public_by_default`)
    /// and those matching `patterns`.
    Some {
        public_by_default: bool,
        patterns: Vec<RepoPattern>,
    },
}

#[async_trait::async_trait]
pub trait AccessStore: std::fmt::Debug + Send + Sync + 'static {
    async fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>>;
    async fn principals(&self) -> Result<Vec<PrincipalRecord>>;
    /// Creates or replaces a principal (its tokens and grants stay).
    async fn put_principal(&self, principal: PrincipalRecord) -> Result<()>;
    /// Deletes a principal with its tokens and grants; returns whether it existed.
    async fn delete_principal(&self, name: &str) -> Result<bool>;

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    /// Tokens of `owner`, or of everyone; refresh tokens are left out.
    async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>>;
    async fn put_token(&self, token: TokenRecord) -> Result<()>;
    /// Marks a token revoked at `at`; returns whether an unrevoked token had that id.
    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool>;

    async fn access_version(&self) -> Result<i64>;
    async fn policy(&self) -> Result<PolicyRecords>;
    /// Adds a grant or changes its permission.
    async fn put_grant(&self, grant: GrantRecord) -> Result<()>;
    async fn delete_grant(&self, subject: &str, pattern: &RepoPattern) -> Result<bool>;
    async fn set_visibility(&self, repo: &RepoName, public: bool) -> Result<()>;
    /// Sets the pull policy of a pattern, replacing the one it had.
    async fn put_pull_policy(&self, policy: PullPolicyRecord) -> Result<()>;
    async fn delete_pull_policy(&self, pattern: &RepoPattern) -> Result<bool>;

    /// Appends to the access log. Bookkeeping: not synced before it returns.
    async fn record_access(&self, events: Vec<AccessEvent>) -> Result<()>;
    async fn access_log(&self, query: &AccessLogQuery) -> Result<Vec<AccessEvent>>;
    /// Drops lines older than `before`; returns how many.
    async fn prune_access_log(&self, before: i64) -> Result<u64>;

    /// The secret stored under `name`, storing `candidate` first if there is none, so every
    /// node sharing the database ends up with the same one.
    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>>;
}

/// The non-empty lines of a column holding one item per line (a pull policy's allowed
/// advisories).
pub(crate) fn lines(s: &str) -> Vec<String> {
    s.lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
