//! Access control: who a request comes from, and what it may do.
//!
//! [`Access`] authenticates credentials (Basic with a password or an API token, Bearer with
//! an API token or a registry JWT), issues registry JWTs for the token endpoint, answers
//! authorization questions from a cached [`Policy`], brakes failed logins, applies rate
//! limits and queues the access log. Accounts, tokens, grants and visibility are kept by an
//! [`AccessStore`]; this crate decides what they mean.
//!
//! Call direction: the server's middleware and routes -> [`Access`] -> `AccessStore`. Every
//! credential is checked once (a JWT's HMAC, an API token's record, a password's argon2) and
//! its answer cached under a SHA-256 of the header, for a minute at most, never past a JWT's
//! expiry, and dropped when the policy moves; a request then costs that hash, a map lookup and
//! a policy lookup in memory.

pub mod audit;
mod authenticate;
mod issue;
pub mod jwt;
pub mod limiter;
mod manage;
pub mod permission;
pub mod policy;
pub mod secret;
pub mod workload;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agent_registry_metadata::MetadataError;
use agent_registry_metadata::access::{AccessEvent, AccessStore, Readable, TokenRecord};
use agent_registry_oci::RepoName;

pub use audit::AuditLog;
pub use authenticate::is_registry_token;
pub use limiter::Rate;
pub use manage::{check_name, check_subject};
pub use permission::{Action, Actions, Permission, ResourceScope, Scope, ScopeError};
pub use policy::{Caller, CallerKind, Policy, PullRule};
pub use workload::{JwksSource, TrustedIssuer, Workloads};

pub type Result<T, E = AccessError> = std::result::Result<T, E>;

/// Seconds since the Unix epoch, as the store keeps time.
pub fn unix_now() -> i64 {
    i64::try_from(jwt::now_secs()).unwrap_or(i64::MAX)
}

/// How often a node asks the store whether the policy moved.
const POLICY_CHECK: Duration = Duration::from_secs(1);
/// How long a checked credential's answer is trusted without checking again (a registry
/// token's only until it expires).
const CREDENTIAL_TTL: Duration = Duration::from_secs(60);
/// Checked credentials kept; beyond this the cache starts over.
const CREDENTIAL_CACHE: usize = 10_000;
/// The name under which the token signing key is shared between nodes.
const SIGNING_KEY: &str = "token-signing-key";

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// Credentials were presented and are wrong (or expired, or revoked).
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// Too many failed logins from this name or address.
    #[error("too many failed logins; try again in {} seconds", .0.as_secs().max(1))]
    Throttled(Duration),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] MetadataError),
    #[error("{0}")]
    Internal(String),
}

/// How access control is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Off: every request may do everything, as in a registry without auth.
    pub enabled: bool,
    /// Whether repositories nobody set a visibility for are public.
    pub public_by_default: bool,
    /// `iss` of registry tokens.
    pub issuer: String,
    /// `service` in challenges and `aud` of registry tokens.
    pub service: String,
    pub token_ttl: Duration,
    pub refresh_ttl: Duration,
    pub per_ip: Option<Rate>,
    pub per_principal: Option<Rate>,
    /// Issuers whose tokens identify workloads (Kubernetes service accounts).
    pub trusted_issuers: Vec<TrustedIssuer>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            public_by_default: false,
            issuer: "agent-registry".into(),
            service: "agent-registry".into(),
            token_ttl: Duration::from_secs(300),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            per_ip: None,
            per_principal: None,
            trusted_issuers: Vec::new(),
        }
    }
}

/// A registry token as the token endpoint returns it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub refresh_token: Option<String>,
    /// The access granted, per repository (a subset of what was asked).
    pub access: Vec<(RepoName, Actions)>,
}

/// A token just created: the record, and its secret (shown once, stored nowhere).
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub record: TokenRecord,
    pub secret: String,
}

#[derive(Clone, Debug)]
pub struct Access(Arc<Inner>);

/// How the credential cache has served (see [`Access::credential_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheFigures {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
}

/// A checked credential's answer.
#[derive(Debug, Clone)]
enum Known {
    Caller(Caller),
    Refused(String),
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn AccessStore>,
    settings: Settings,
    signer: jwt::Signer,
    policy: RwLock<Arc<Policy>>,
    /// Milliseconds after `started` at which the policy was last checked.
    checked_ms: AtomicU64,
    started: Instant,
    refreshing: tokio::sync::Mutex<()>,
    /// SHA-256 of an Authorization header -> what checking it answered, and until when
    /// that answer holds.
    known: Mutex<HashMap<Vec<u8>, (Known, Instant)>>,
    /// Headers answered from `known`, and headers that had to be checked.
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    /// Failed logins per user name, and (more leniently: many users may share one) per
    /// client address.
    user_brake: limiter::LoginBrake,
    ip_brake: limiter::LoginBrake,
    per_ip: Option<limiter::Limiter<IpAddr>>,
    per_principal: Option<limiter::Limiter<Arc<str>>>,
    audit: AuditLog,
    workloads: Workloads,
}

impl Access {
    /// Loads the policy and the shared signing key (making one if this is the first node),
    /// and starts the access log writer.
    pub async fn open(store: Arc<dyn AccessStore>, settings: Settings) -> Result<Access> {
        let key = store
            .shared_secret(SIGNING_KEY, secret::random_bytes::<32>().to_vec())
            .await?;
        let policy = Policy::new(store.policy().await?, settings.public_by_default);
        let workloads = Workloads::load(settings.trusted_issuers.clone()).await?;
        Ok(Access(Arc::new(Inner {
            signer: jwt::Signer::new(&key, &settings.issuer, &settings.service),
            policy: RwLock::new(Arc::new(policy)),
            checked_ms: AtomicU64::new(0),
            started: Instant::now(),
            refreshing: tokio::sync::Mutex::new(()),
            known: Mutex::new(HashMap::new()),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            user_brake: limiter::LoginBrake::new(5),
            ip_brake: limiter::LoginBrake::new(20),
            per_ip: settings.per_ip.map(limiter::Limiter::new),
            per_principal: settings.per_principal.map(limiter::Limiter::new),
            audit: AuditLog::start(store.clone()),
            workloads,
            store,
            settings,
        })))
    }

    pub fn enabled(&self) -> bool {
        self.0.settings.enabled
    }

    pub fn settings(&self) -> &Settings {
        &self.0.settings
    }

    pub fn store(&self) -> &Arc<dyn AccessStore> {
        &self.0.store
    }

    pub fn record(&self, event: AccessEvent) {
        self.0.audit.record(event);
    }

    /// Records a pull, once per caller, address, reference and outcome within
    /// [`audit::PULL_WINDOW`].
    pub fn record_pull(&self, pull: audit::Pull<'_>, at: i64) {
        self.0.audit.record_pull(pull, at);
    }

    /// The policy in force, checking the store for changes at most once a second (and
    /// never making a request wait for another's check).
    pub async fn policy(&self) -> Arc<Policy> {
        let now_ms = self.0.started.elapsed().as_millis() as u64;
        let checked = self.0.checked_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(checked) >= POLICY_CHECK.as_millis() as u64
            && let Ok(_guard) = self.0.refreshing.try_lock()
        {
            self.0.checked_ms.store(now_ms, Ordering::Relaxed);
            if let Err(e) = self.reload(false).await {
                tracing::warn!(error = %e, "checking the access policy failed; using the last one");
            }
        }
        self.current()
    }

    /// The policy in force after asking the store whether it moved, whenever this node last
    /// checked: for answers that must see a change another node made a moment ago (a denial
    /// about to be given, a listing about to be filtered).
    pub async fn fresh_policy(&self) -> Arc<Policy> {
        if let Err(e) = self.reload(false).await {
            tracing::warn!(error = %e, "checking the access policy failed; using the last one");
        }
        self.current()
    }

    fn current(&self) -> Arc<Policy> {
        match self.0.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the policy if its version moved (or always, when `force`).
    async fn reload(&self, force: bool) -> Result<()> {
        let current = self.current();
        if !force && self.0.store.access_version().await? == current.version {
            return Ok(());
        }
        let fresh = Policy::new(
            self.0.store.policy().await?,
            self.0.settings.public_by_default,
        );
        if let Ok(mut known) = self.0.known.lock() {
            known.clear();
        }
        if let Ok(mut p) = self.0.policy.write() {
            *p = Arc::new(fresh);
        }
        Ok(())
    }

    /// After a change made here: this node sees it at once, others within a second.
    async fn changed(&self) -> Result<()> {
        self.reload(true).await
    }

    /// Whether `caller` may do `action` on `repo`. A denial is only given after checking the
    /// store for a newer policy, so a grant made on any node counts on every node at once.
    pub async fn allows(&self, caller: &Caller, repo: &RepoName, action: Action) -> bool {
        !self.enabled()
            || self.policy().await.allows(caller, repo, action)
            || self.fresh_policy().await.allows(caller, repo, action)
    }

    /// What `caller` may see in listings and search, by the store's latest policy.
    pub async fn readable(&self, caller: &Caller) -> Readable {
        if !self.enabled() {
            return Readable::All;
        }
        self.fresh_policy().await.readable(caller)
    }

    /// The credential cache, for metrics: hits and misses since start, and entries now.
    pub fn credential_cache(&self) -> CacheFigures {
        CacheFigures {
            hits: self.0.cache_hits.load(Ordering::Relaxed),
            misses: self.0.cache_misses.load(Ordering::Relaxed),
            entries: self.0.known.lock().map_or(0, |k| k.len() as u64),
        }
    }

    /// Whether any rate limit is configured.
    pub fn has_rate_limits(&self) -> bool {
        self.0.per_ip.is_some() || self.0.per_principal.is_some()
    }

    /// Takes one request from the caller's and the address's rate limits; says how long to
    /// wait when either is spent.
    pub fn throttle(&self, caller: &Caller, client: Option<IpAddr>) -> Result<(), Duration> {
        if let (Some(limiter), Some(ip)) = (&self.0.per_ip, client) {
            limiter.take(&ip)?;
        }
        if let (Some(limiter), Some(name)) = (&self.0.per_principal, &caller.name) {
            limiter.take(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
