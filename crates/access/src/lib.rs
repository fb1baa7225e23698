//! Access control: who a request comes from, and what it may do.
//!
//! [`Access`] authenticates credentials (Basic with a password or an API token, Bearer with
//! an API token or a registry JWT), issues registry JWTs for the token endpoint, answers
//! authorization questions from a cached [`Policy`], brakes failed logins, applies rate
//! limits and queues the access log. Accounts, tokens, grants and visibility are kept by an
//! [`AccessStore`]; this crate decides what they mean.
//!
//! Call direction: the server's middleware and routes -> [`Access`] -> `AccessStore`. Per
//! request, a registry JWT costs one HMAC and a policy lookup in memory; Basic and API-token
//! credentials are checked against the store once and then cached until the policy moves.

pub mod audit;
pub mod jwt;
pub mod limiter;
pub mod permission;
pub mod policy;
pub mod secret;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agent_registry_metadata::MetadataError;
use agent_registry_metadata::access::{
    AccessEvent, AccessStore, GrantRecord, PrincipalKind, PrincipalRecord, Readable, TokenKind,
    TokenRecord,
};
use agent_registry_oci::{RepoName, RepoPattern};
use base64::Engine as _;

pub use audit::AuditLog;
pub use limiter::Rate;
pub use permission::{Action, Actions, Permission, ResourceScope, Scope, ScopeError};
pub use policy::{Caller, CallerKind, Policy};

pub type Result<T, E = AccessError> = std::result::Result<T, E>;

/// How often a node asks the store whether the policy moved.
const POLICY_CHECK: Duration = Duration::from_secs(1);
/// How long a checked Basic or API-token credential is trusted without the store.
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
    /// SHA-256 of an Authorization header -> what checking it answered, and when.
    known: Mutex<HashMap<Vec<u8>, (Known, Instant)>>,
    /// Failed logins per user name, and (more leniently: many users may share one) per
    /// client address.
    user_brake: limiter::LoginBrake,
    ip_brake: limiter::LoginBrake,
    per_ip: Option<limiter::Limiter<IpAddr>>,
    per_principal: Option<limiter::Limiter<Arc<str>>>,
    audit: AuditLog,
}

impl Access {
    /// Loads the policy and the shared signing key (making one if this is the first node),
    /// and starts the access log writer.
    pub async fn open(store: Arc<dyn AccessStore>, settings: Settings) -> Result<Access> {
        let key = store
            .shared_secret(SIGNING_KEY, secret::random_bytes::<32>().to_vec())
            .await?;
        let policy = Policy::new(store.policy().await?, settings.public_by_default);
        Ok(Access(Arc::new(Inner {
            signer: jwt::Signer::new(&key, &settings.issuer, &settings.service),
            policy: RwLock::new(Arc::new(policy)),
            checked_ms: AtomicU64::new(0),
            started: Instant::now(),
            refreshing: tokio::sync::Mutex::new(()),
            known: Mutex::new(HashMap::new()),
            user_brake: limiter::LoginBrake::new(5),
            ip_brake: limiter::LoginBrake::new(20),
            per_ip: settings.per_ip.map(limiter::Limiter::new),
            per_principal: settings.per_principal.map(limiter::Limiter::new),
            audit: AuditLog::start(store.clone()),
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

    // ---- authentication ----

    /// Who an `Authorization` header proves the caller to be; no header is anonymous.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(Caller::anonymous());
        };
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") && secret::parse_token(value).is_none() {
            // A registry JWT: no store, no cache.
            return self.jwt_caller(value);
        }
        let key = secret::sha256(header.as_bytes());
        if let Some(known) = self.cached(&key).await {
            return known;
        }
        let result = if scheme.eq_ignore_ascii_case("basic") {
            match decode_basic(value) {
                Ok((user, password)) => self.login(&user, &password, client).await,
                Err(e) => Err(e),
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let result = self.api_token(value, TokenKind::Api).await;
            self.record_login("", &result, client);
            result
        } else {
            Err(AccessError::Unauthenticated(format!(
                "the {scheme} authorization scheme is not supported; use Basic or Bearer"
            )))
        };
        // Both answers are remembered: a client retrying the same wrong credentials (a
        // stale docker login) costs no more hashing and does not lock its user out; only
        // different wrong passwords count as guessing.
        let remembered = match &result {
            Ok(c) => Some(Known::Caller(c.clone())),
            Err(AccessError::Unauthenticated(m)) => Some(Known::Refused(m.clone())),
            Err(_) => None,
        };
        if let (Some(r), Ok(mut known)) = (remembered, self.0.known.lock()) {
            if known.len() >= CREDENTIAL_CACHE {
                known.clear();
            }
            known.insert(key, (r, Instant::now()));
        }
        result
    }

    async fn cached(&self, key: &[u8]) -> Option<Result<Caller>> {
        // Refreshing the policy clears the cache when anything moved (a revoked token, a
        // deleted user, a new password), so a cached answer never outlives a change by more
        // than a policy check.
        self.policy().await;
        let known = self.0.known.lock().ok()?;
        let (answer, at) = known.get(key)?;
        if at.elapsed() >= CREDENTIAL_TTL {
            return None;
        }
        Some(match answer {
            Known::Caller(c) => Ok(c.clone()),
            Known::Refused(m) => Err(AccessError::Unauthenticated(m.clone())),
        })
    }

    fn jwt_caller(&self, token: &str) -> Result<Caller> {
        let claims = self.0.signer.verify(token).ok_or_else(|| {
            AccessError::Unauthenticated("the token is invalid or has expired".into())
        })?;
        let kind = CallerKind::parse(&claims.kind);
        let limit: Vec<Scope> = claims
            .access
            .iter()
            .filter(|a| a.kind == "repository")
            .filter_map(|a| {
                Some(Scope {
                    pattern: a.name.parse().ok()?,
                    actions: Actions::from_docker(&a.actions.join(",")),
                })
            })
            .collect();
        Ok(Caller {
            name: (kind != CallerKind::Anonymous).then(|| Arc::from(claims.sub.as_str())),
            kind,
            admin: claims.adm,
            groups: claims.grp.into(),
            limit: Some(limit.into()),
        })
    }

    /// Checks a name and a password (or an API token given as the password), braking
    /// repeated failures per name and per address.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        let ip_key = client.map(|ip| ip.to_string());
        let braked = self
            .0
            .user_brake
            .wait(user)
            .or_else(|| ip_key.as_ref().and_then(|k| self.0.ip_brake.wait(k)));
        if let Some(wait) = braked {
            let refused = Err(AccessError::Throttled(wait));
            self.record_login(user, &refused, client);
            return refused;
        }
        let result = if secret::parse_token(password).is_some() {
            // `docker login -u NAME -p TOKEN`: the token says who it belongs to.
            self.api_token(password, TokenKind::Api).await
        } else {
            self.password(user, password).await
        };
        match &result {
            Ok(_) => self.0.user_brake.succeeded(user),
            Err(AccessError::Unauthenticated(_)) => {
                self.0.user_brake.failed(user);
                if let Some(k) = &ip_key {
                    self.0.ip_brake.failed(k);
                }
            }
            Err(_) => {}
        }
        self.record_login(user, &result, client);
        result
    }

    /// Puts a login attempt in the access log (secrets never reach it).
    fn record_login(&self, who: &str, result: &Result<Caller>, client: Option<IpAddr>) {
        let (allowed, status) = match result {
            Ok(_) => (true, 200),
            Err(AccessError::Throttled(_)) => (false, 429),
            Err(AccessError::Unauthenticated(_)) => (false, 401),
            Err(_) => return,
        };
        let principal = match result {
            Ok(c) => c.display_name().to_owned(),
            Err(_) => who.to_owned(),
        };
        self.record(AccessEvent {
            at: jwt::now_secs() as i64,
            principal: (!principal.is_empty()).then_some(principal),
            action: "login".into(),
            repo: None,
            target: None,
            allowed,
            status,
            client: client.map(|c| c.to_string()),
        });
    }

    async fn password(&self, user: &str, password: &str) -> Result<Caller> {
        let record = self.0.store.principal(user).await?;
        let hash = record.as_ref().and_then(|p| p.password_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            secret::verify_password(&password, hash.as_deref())
        })
        .await
        .map_err(|e| AccessError::Internal(format!("checking a password: {e}")))?;
        match record {
            Some(p) if ok => Ok(caller_of(&p, None)),
            _ => Err(AccessError::Unauthenticated(
                "wrong user name or password".into(),
            )),
        }
    }

    /// Checks an `art_...` token of `kind`.
    async fn api_token(&self, token: &str, kind: TokenKind) -> Result<Caller> {
        let bad =
            || AccessError::Unauthenticated("the token is invalid, expired or revoked".into());
        let (id, secret) = secret::parse_token(token).ok_or_else(bad)?;
        let record = self.0.store.token(id).await?.ok_or_else(bad)?;
        let now = jwt::now_secs() as i64;
        let live = record.kind == kind
            && record.revoked_at.is_none()
            && record.expires_at.is_none_or(|t| t > now);
        if !(secret::constant_time_eq(&secret::sha256(secret.as_bytes()), &record.secret_hash)
            && live)
        {
            return Err(bad());
        }
        let owner = self
            .0
            .store
            .principal(&record.owner)
            .await?
            .ok_or_else(bad)?;
        let limit = if record.scopes.is_empty() {
            None
        } else {
            let scopes = record
                .scopes
                .iter()
                .filter_map(|s| Scope::parse_token_scope(s).ok())
                .collect::<Vec<_>>();
            Some(scopes.into())
        };
        Ok(caller_of(&owner, limit))
    }

    // ---- authorization ----

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

    pub async fn allows(&self, caller: &Caller, repo: &RepoName, action: Action) -> bool {
        !self.enabled() || self.policy().await.allows(caller, repo, action)
    }

    pub async fn readable(&self, caller: &Caller) -> Readable {
        if !self.enabled() {
            return Readable::All;
        }
        self.policy().await.readable(caller)
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

    // ---- the token endpoint ----

    /// A registry token for `caller` holding the subset of `scopes` the caller may have
    /// (possibly none, as the token specification asks), and a refresh token if `offline`.
    pub async fn issue(
        &self,
        caller: &Caller,
        scopes: &[ResourceScope],
        offline: bool,
    ) -> Result<Issued> {
        let policy = self.policy().await;
        let mut access: Vec<(RepoName, Actions)> = Vec::new();
        for s in scopes {
            let granted = if self.enabled() {
                policy.actions(caller, &s.repo).intersect(s.actions)
            } else {
                s.actions
            };
            if granted.is_empty() {
                continue;
            }
            match access.iter_mut().find(|(r, _)| r == &s.repo) {
                Some((_, a)) => *a = a.union(granted),
                None => access.push((s.repo.clone(), granted)),
            }
        }
        let entries = access
            .iter()
            .map(|(repo, actions)| jwt::AccessEntry {
                kind: "repository".into(),
                name: repo.to_string(),
                actions: actions.to_docker(),
            })
            .collect();
        let ttl = self.0.settings.token_ttl;
        let token = self
            .0
            .signer
            .sign(
                caller.display_name(),
                caller.kind.as_str(),
                caller.admin,
                caller.groups.to_vec(),
                entries,
                ttl,
            )
            .map_err(|e| AccessError::Internal(format!("signing a token: {e}")))?;
        let refresh_token = match (&caller.name, offline) {
            (Some(name), true) => {
                let created = self
                    .new_token(
                        name,
                        TokenKind::Refresh,
                        "refresh token",
                        Vec::new(),
                        Some(self.0.settings.refresh_ttl),
                    )
                    .await?;
                Some(created.secret)
            }
            _ => None,
        };
        Ok(Issued {
            token,
            expires_in: ttl.as_secs(),
            refresh_token,
            access,
        })
    }

    /// Who a refresh token (from an earlier `issue`) belongs to.
    pub async fn refresh(&self, token: &str) -> Result<Caller> {
        self.api_token(token, TokenKind::Refresh).await
    }

    // ---- administration ----

    pub async fn principals(&self) -> Result<Vec<PrincipalRecord>> {
        Ok(self.0.store.principals().await?)
    }

    pub async fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>> {
        Ok(self.0.store.principal(name).await?)
    }

    /// Creates a user (with a password) or a robot (without); fails if the name is taken.
    pub async fn add_principal(
        &self,
        name: &str,
        kind: PrincipalKind,
        admin: bool,
        groups: Vec<String>,
        password: Option<&str>,
    ) -> Result<PrincipalRecord> {
        check_name("user name", name)?;
        for g in &groups {
            check_name("group name", g)?;
        }
        if self.0.store.principal(name).await?.is_some() {
            return Err(AccessError::Exists(format!("user {name}")));
        }
        let record = PrincipalRecord {
            name: name.to_owned(),
            kind,
            admin,
            groups,
            password_hash: match password {
                Some(p) => Some(hash(p).await?),
                None => None,
            },
            created_at: jwt::now_secs() as i64,
        };
        self.0.store.put_principal(record.clone()).await?;
        self.changed().await?;
        Ok(record)
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<()> {
        let mut record = self
            .0
            .store
            .principal(name)
            .await?
            .ok_or_else(|| AccessError::NotFound(format!("user {name}")))?;
        record.password_hash = Some(hash(password).await?);
        self.0.store.put_principal(record).await?;
        self.changed().await
    }

    pub async fn remove_principal(&self, name: &str) -> Result<()> {
        if !self.0.store.delete_principal(name).await? {
            return Err(AccessError::NotFound(format!("user {name}")));
        }
        self.changed().await
    }

    /// Creates the first administrator when there is no account at all; returns whether
    /// it did.
    pub async fn bootstrap_admin(&self, name: &str, password: &str) -> Result<bool> {
        if !self.0.store.principals().await?.is_empty() {
            return Ok(false);
        }
        self.add_principal(name, PrincipalKind::User, true, Vec::new(), Some(password))
            .await?;
        Ok(true)
    }

    /// Creates an API token for `owner`, limited to `scopes` (`team/*:read`; none means
    /// everything the owner may do), expiring after `ttl` if given.
    pub async fn create_token(
        &self,
        owner: &str,
        name: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
    ) -> Result<CreatedToken> {
        for s in &scopes {
            Scope::parse_token_scope(s).map_err(|e| AccessError::Invalid(e.to_string()))?;
        }
        if name.is_empty() || name.len() > 100 {
            return Err(AccessError::Invalid(
                "a token name is 1 to 100 characters".into(),
            ));
        }
        if self.0.store.principal(owner).await?.is_none() {
            return Err(AccessError::NotFound(format!("user {owner}")));
        }
        self.new_token(owner, TokenKind::Api, name, scopes, ttl)
            .await
    }

    async fn new_token(
        &self,
        owner: &str,
        kind: TokenKind,
        name: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
    ) -> Result<CreatedToken> {
        let made = secret::new_token();
        let now = jwt::now_secs() as i64;
        let record = TokenRecord {
            id: made.id,
            owner: owner.to_owned(),
            kind,
            name: name.to_owned(),
            secret_hash: made.hash,
            scopes,
            created_at: now,
            expires_at: ttl.map(|t| now.saturating_add(t.as_secs() as i64)),
            revoked_at: None,
        };
        self.0.store.put_token(record.clone()).await?;
        Ok(CreatedToken {
            record,
            secret: made.secret,
        })
    }

    pub async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>> {
        Ok(self.0.store.tokens(owner).await?)
    }

    /// Revokes token `id`; `owner`, when given, must own it.
    pub async fn revoke_token(&self, id: &str, owner: Option<&str>) -> Result<()> {
        let record = self.0.store.token(id).await?;
        let found = record.filter(|t| owner.is_none_or(|o| o == t.owner));
        if found.is_none()
            || !self
                .0
                .store
                .revoke_token(id, jwt::now_secs() as i64)
                .await?
        {
            return Err(AccessError::NotFound(format!("token {id}")));
        }
        self.changed().await
    }

    pub async fn grants(&self) -> Result<Vec<GrantRecord>> {
        Ok(self.0.store.policy().await?.grants)
    }

    pub async fn grant(
        &self,
        subject: &str,
        pattern: &RepoPattern,
        permission: Permission,
    ) -> Result<()> {
        check_subject(subject)?;
        self.0
            .store
            .put_grant(GrantRecord {
                subject: subject.to_owned(),
                pattern: pattern.clone(),
                permission: permission.as_str().to_owned(),
            })
            .await?;
        self.changed().await
    }

    pub async fn revoke_grant(&self, subject: &str, pattern: &RepoPattern) -> Result<()> {
        if !self.0.store.delete_grant(subject, pattern).await? {
            return Err(AccessError::NotFound(format!(
                "a grant to {subject} on {pattern}"
            )));
        }
        self.changed().await
    }

    pub async fn set_visibility(&self, repo: &RepoName, public: bool) -> Result<()> {
        self.0.store.set_visibility(repo, public).await?;
        self.changed().await
    }

    pub async fn is_public(&self, repo: &RepoName) -> bool {
        self.policy().await.is_public(repo)
    }
}

fn caller_of(p: &PrincipalRecord, limit: Option<Arc<[Scope]>>) -> Caller {
    Caller {
        name: Some(Arc::from(p.name.as_str())),
        kind: match p.kind {
            PrincipalKind::User => CallerKind::User,
            PrincipalKind::Robot => CallerKind::Robot,
        },
        admin: p.admin,
        groups: p.groups.clone().into(),
        limit,
    }
}

fn decode_basic(value: &str) -> Result<(String, String)> {
    let bad = || {
        AccessError::Unauthenticated("the Basic credentials are not base64 of NAME:PASSWORD".into())
    };
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (user, password) = raw.split_once(':').ok_or_else(bad)?;
    Ok((user.to_owned(), password.to_owned()))
}

async fn hash(password: &str) -> Result<String> {
    if password.len() < 8 {
        return Err(AccessError::Invalid(
            "a password needs at least 8 characters".into(),
        ));
    }
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || secret::hash_password(&password))
        .await
        .map_err(|e| AccessError::Internal(format!("hashing a password: {e}")))?
        .map_err(|e| AccessError::Internal(format!("hashing a password: {e}")))
}

/// Names of users, robots and groups: lower-case letters, digits and `._-`, starting and
/// ending with a letter or digit, at most 64 characters.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok = !b.is_empty()
        && b.len() <= 64
        && edge(b[0])
        && edge(b[b.len() - 1])
        && b.iter()
            .all(|&c| edge(c) || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AccessError::Invalid(format!(
            "{name:?} is not a valid {what}: use lower-case letters, digits, '.', '_' and '-' (at most 64)"
        )))
    }
}

/// A grant's subject: a principal name, `group:NAME`, or a Kubernetes service account
/// `system:serviceaccount:NAMESPACE:NAME`.
pub fn check_subject(subject: &str) -> Result<()> {
    if let Some(group) = subject.strip_prefix("group:") {
        return check_name("group name", group);
    }
    if let Some(rest) = subject.strip_prefix("system:serviceaccount:") {
        let ok = rest.split_once(':').is_some_and(|(ns, n)| {
            check_name("namespace", ns).is_ok() && check_name("name", n).is_ok()
        });
        return if ok {
            Ok(())
        } else {
            Err(AccessError::Invalid(format!(
                "{subject:?} is not a service account: use system:serviceaccount:NAMESPACE:NAME"
            )))
        };
    }
    check_name("user name", subject)
}

#[cfg(test)]
mod tests;
