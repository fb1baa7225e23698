//! Authentication: Basic (a password, or an API token as the password), Bearer (an API
//! token or a registry JWT), with the checked answers cached and failed guesses braked.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use agent_registry_metadata::access::{AccessEvent, PrincipalKind, PrincipalRecord, TokenKind};
use base64::Engine as _;

use crate::{
    Access, AccessError, Actions, CREDENTIAL_CACHE, CREDENTIAL_TTL, Caller, CallerKind, Known,
    Result, Scope, jwt, secret,
};

impl Access {
    /// Who an `Authorization` header proves the caller to be; no header is anonymous.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        client: Option<IpAddr>,
    ) -> Result<Caller> {
        let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(Caller::anonymous());
        };
        let (scheme, value) = scheme_and_value(header);
        let key = secret::sha256(header.as_bytes());
        if let Some(known) = self.cached(&key).await {
            self.0.cache_hits.fetch_add(1, Ordering::Relaxed);
            return known;
        }
        self.0.cache_misses.fetch_add(1, Ordering::Relaxed);
        let mut until = Instant::now() + CREDENTIAL_TTL;
        let result = if is_registry_token(header) {
            // A registry JWT: checked once, then trusted from the cache until it expires
            // (the policy still decides each request; the claims only say who it is).
            // A workload's token (a Kubernetes service account) is the other kind.
            let checked = match self.jwt_caller(value) {
                Ok(found) => Ok(found),
                Err(e) => self.0.workloads.verify(value).await.ok_or(e),
            };
            checked.map(|(caller, expires)| {
                let left = expires.saturating_sub(jwt::now_secs());
                until = until.min(Instant::now() + Duration::from_secs(left));
                caller
            })
        } else if scheme.eq_ignore_ascii_case("basic") {
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
            known.insert(key, (r, until));
        }
        result
    }

    async fn cached(&self, key: &[u8]) -> Option<Result<Caller>> {
        // Refreshing the policy clears the cache when anything moved (a revoked token, a
        // deleted user, a new password), so a cached answer never outlives a change by more
        // than a policy check.
        self.policy().await;
        if matches!(self.known(key), Some(Known::Refused(_))) {
            // A refusal is only repeated after checking the store: the account or token may
            // have been made on another node a moment ago.
            self.fresh_policy().await;
        }
        Some(match self.known(key)? {
            Known::Caller(c) => Ok(c),
            Known::Refused(m) => Err(AccessError::Unauthenticated(m)),
        })
    }

    /// The cached answer for credential `key`, while it is fresh.
    fn known(&self, key: &[u8]) -> Option<Known> {
        let known = self.0.known.lock().ok()?;
        let (answer, until) = known.get(key)?;
        (Instant::now() < *until).then(|| answer.clone())
    }

    /// Who a registry JWT says it is, and when it expires.
    fn jwt_caller(&self, token: &str) -> Result<(Caller, u64)> {
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
        let caller = Caller {
            name: (kind != CallerKind::Anonymous).then(|| Arc::from(claims.sub.as_str())),
            kind,
            admin: claims.adm,
            groups: claims.grp.into(),
            limit: Some(limit.into()),
            scoped: claims.lim,
        };
        Ok((caller, claims.exp))
    }

    /// The workload a trusted issuer's token identifies (for a token exchange at `/token`).
    pub async fn workload(&self, token: &str) -> Result<Caller> {
        let result = match self.0.workloads.verify(token).await {
            Some((caller, _)) => Ok(caller),
            None => Err(AccessError::Unauthenticated(
                "the token was not signed by a trusted issuer for this registry, or it expired"
                    .into(),
            )),
        };
        self.record_login("", &result, None);
        result
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
        } else if let Some((caller, _)) = self.0.workloads.verify(password).await {
            // A service-account token as the password: the token says who it is.
            Ok(caller)
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
            at: crate::unix_now(),
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
    pub(crate) async fn api_token(&self, token: &str, kind: TokenKind) -> Result<Caller> {
        let bad =
            || AccessError::Unauthenticated("the token is invalid, expired or revoked".into());
        let (id, secret) = secret::parse_token(token).ok_or_else(bad)?;
        let record = self.0.store.token(id).await?.ok_or_else(bad)?;
        let now = crate::unix_now();
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
}

/// `Basic xyz` -> (`Basic`, `xyz`).
fn scheme_and_value(header: &str) -> (&str, &str) {
    let header = header.trim();
    let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
    (scheme, value.trim())
}

/// Whether an `Authorization` header carries a registry token (a JWT from `/token`, or a
/// workload's), rather than a password or an API token.
pub fn is_registry_token(header: &str) -> bool {
    let (scheme, value) = scheme_and_value(header);
    scheme.eq_ignore_ascii_case("bearer") && secret::parse_token(value).is_none()
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
        scoped: limit.is_some(),
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
