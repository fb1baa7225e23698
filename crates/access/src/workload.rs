//! Workload identities: Kubernetes service accounts and other OIDC workloads.
//!
//! A trusted issuer is configured with its JWKS (a file, or a URL fetched at start and again
//! when a token names a key it does not hold, at most once a minute) and the audience its
//! tokens must carry. A token it signed (a projected service-account token) is accepted as a
//! Bearer credential, as the password of a Basic one, or in exchange for a registry token at
//! `/token`; its `sub` (`system:serviceaccount:NAMESPACE:NAME`) is the principal that grants
//! name. Only asymmetric algorithms are accepted, so no one can sign with a public key.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::{AccessError, Caller, CallerKind, Result};

/// How often an unknown key may send us back to a JWKS URL.
const REFETCH_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

/// An issuer whose tokens identify workloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedIssuer {
    /// The `iss` its tokens carry, e.g. `https://kubernetes.default.svc.cluster.local`.
    pub issuer: String,
    /// The `aud` its tokens must carry for us (the projected token's audience).
    pub audience: String,
    pub jwks: JwksSource,
}

#[derive(Deserialize)]
struct WorkloadClaims {
    sub: String,
    exp: u64,
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
}

struct Issuer {
    trusted: TrustedIssuer,
    keys: RwLock<Keys>,
}

/// The configured issuers and their keys.
#[derive(Clone, Default)]
pub struct Workloads(Arc<Vec<Issuer>>);

impl std::fmt::Debug for Workloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|i| &i.trusted.issuer))
            .finish()
    }
}

impl Workloads {
    /// Loads every issuer's keys; a key set that cannot be read is an error naming it.
    pub async fn load(trusted: Vec<TrustedIssuer>) -> Result<Workloads> {
        let mut issuers = Vec::with_capacity(trusted.len());
        for t in trusted {
            let set = fetch(&t.jwks).await?;
            issuers.push(Issuer {
                trusted: t,
                keys: RwLock::new(Keys {
                    set,
                    fetched: Instant::now(),
                }),
            });
        }
        Ok(Workloads(Arc::new(issuers)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The workload a token identifies, and when the token expires; `None` if no trusted
    /// issuer signed it for us (or it expired).
    pub async fn verify(&self, token: &str) -> Option<(Caller, u64)> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if !matches!(
            header.alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
                | Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::EdDSA
        ) {
            return None;
        }
        for issuer in self.0.iter() {
            let mut key = issuer.key(header.kid.as_deref());
            if key.is_none() && issuer.refetch().await {
                key = issuer.key(header.kid.as_deref());
            }
            let Some(key) = key else { continue };
            let mut validation = Validation::new(header.alg);
            validation.set_issuer(&[&issuer.trusted.issuer]);
            validation.set_audience(&[&issuer.trusted.audience]);
            validation.leeway = 30;
            if let Ok(data) = jsonwebtoken::decode::<WorkloadClaims>(token, &key, &validation) {
                let caller = Caller {
                    name: Some(Arc::from(data.claims.sub.as_str())),
                    kind: CallerKind::Workload,
                    admin: false,
                    groups: Arc::from([]),
                    limit: None,
                    scoped: false,
                };
                return Some((caller, data.claims.exp));
            }
        }
        None
    }
}

impl Issuer {
    /// The key `kid` names, or with no `kid` the only key there is.
    fn key(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let keys = self.keys.read().ok()?;
        let jwk = match kid {
            Some(kid) => keys.set.find(kid)?,
            None if keys.set.keys.len() == 1 => &keys.set.keys[0],
            None => return None,
        };
        DecodingKey::from_jwk(jwk).ok()
    }

    /// Fetches the keys again if they come from a URL and were not fetched within the last
    /// minute; says whether it did.
    async fn refetch(&self) -> bool {
        if !matches!(self.trusted.jwks, JwksSource::Url(_)) {
            return false;
        }
        let due = self
            .keys
            .read()
            .is_ok_and(|k| k.fetched.elapsed() >= REFETCH_AT_MOST_EVERY);
        if !due {
            return false;
        }
        if let Ok(mut keys) = self.keys.write() {
            // Claim the slot before fetching, so concurrent misses fetch once.
            keys.fetched = Instant::now();
        }
        match fetch(&self.trusted.jwks).await {
            Ok(set) => {
                if let Ok(mut keys) = self.keys.write() {
                    keys.set = set;
                }
                true
            }
            Err(e) => {
                tracing::warn!(issuer = self.trusted.issuer, error = %e, "refreshing a JWKS failed");
                false
            }
        }
    }
}

async fn fetch(source: &JwksSource) -> Result<JwkSet> {
    let bad = |what: String| AccessError::Invalid(what);
    match source {
        JwksSource::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| bad(format!("reading the JWKS file {}: {e}", path.display())))?;
            serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "the JWKS file {} is not a JWK set: {e}",
                    path.display()
                ))
            })
        }
        JwksSource::Url(url) => {
            let response = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map(|c| c.get(url))
                .map_err(|e| bad(format!("fetching the JWKS {url}: {e}")))?
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| bad(format!("fetching the JWKS {url}: {e}")))?;
            response
                .json()
                .await
                .map_err(|e| bad(format!("the JWKS at {url} is not a JWK set: {e}")))
        }
    }
}
