//! Administration: accounts, API tokens, grants and visibility. Every change reloads this
//! node's policy at once; other nodes see it within a policy check.

use std::time::Duration;

use agent_registry_metadata::access::{
    GrantRecord, PrincipalKind, PrincipalRecord, PullPolicyRecord, TokenKind, TokenRecord,
};
use agent_registry_oci::{RepoName, RepoPattern};

use crate::{Access, AccessError, CreatedToken, Permission, Result, Scope, secret};

impl Access {
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
            created_at: crate::unix_now(),
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

    pub(crate) async fn new_token(
        &self,
        owner: &str,
        kind: TokenKind,
        name: &str,
        scopes: Vec<String>,
        ttl: Option<Duration>,
    ) -> Result<CreatedToken> {
        let made = secret::new_token();
        let now = crate::unix_now();
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
        if found.is_none() || !self.0.store.revoke_token(id, crate::unix_now()).await? {
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

    /// Sets the pull policy of `pattern` (its trusted keys as PEM, checked by the caller).
    pub async fn set_pull_policy(&self, policy: PullPolicyRecord) -> Result<()> {
        self.0.store.put_pull_policy(policy).await?;
        self.changed().await
    }

    pub async fn remove_pull_policy(&self, pattern: &RepoPattern) -> Result<bool> {
        let removed = self.0.store.delete_pull_policy(pattern).await?;
        self.changed().await?;
        Ok(removed)
    }

    pub async fn pull_policies(&self) -> Result<Vec<PullPolicyRecord>> {
        Ok(self.0.store.policy().await?.pull_policies)
    }

    pub async fn is_public(&self, repo: &RepoName) -> bool {
        self.policy().await.is_public(repo)
    }
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
