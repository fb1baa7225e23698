//! Registry tokens: the short-lived JWTs the token endpoint issues and `/v2/` accepts.
//!
//! They are signed with HS256 under a key every node shares (kept in the metadata store), so
//! any node verifies what another issued, with no database read per request. The claims
//! follow Docker's token format (`access: [{type, name, actions}]`), plus who the subject
//! is (`kind`, `adm`, `grp`), so a request needs no lookup to be authorized.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::Caller;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// `user`, `robot`, `workload` or `anonymous`.
    pub kind: String,
    #[serde(default)]
    pub adm: bool,
    #[serde(default)]
    pub grp: Vec<String>,
    /// Issued to a credential narrower than its owner (a scoped API token).
    #[serde(default)]
    pub lim: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Signer {
    pub fn new(key: &[u8], issuer: &str, audience: &str) -> Signer {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        Signer {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        }
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Signs a token for `caller` holding `access`, valid for `ttl`.
    pub fn sign(
        &self,
        caller: &Caller,
        access: Vec<AccessEntry>,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = now_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: caller.display_name().to_owned(),
            aud: self.audience.clone(),
            exp: now + ttl.as_secs(),
            nbf: now,
            iat: now,
            jti: crate::secret::new_token().id,
            access,
            kind: caller.kind.as_str().to_owned(),
            adm: caller.admin,
            grp: caller.groups.to_vec(),
            lim: caller.scoped,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The claims of a token we signed that has not expired; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_with_the_same_key_issuer_and_audience() {
        let signer = Signer::new(b"0123456789abcdef0123456789abcdef", "reg", "svc");
        let access = vec![AccessEntry {
            kind: "repository".into(),
            name: "team/a".into(),
            actions: vec!["pull".into()],
        }];
        let alice = Caller {
            name: Some("alice".into()),
            kind: crate::CallerKind::User,
            admin: false,
            groups: vec!["team".to_owned()].into(),
            limit: None,
            scoped: true,
        };
        let token = signer
            .sign(&alice, access.clone(), Duration::from_secs(300))
            .expect("signs");
        let claims = signer.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub.as_str(), claims.access, claims.lim),
            ("alice", access, true)
        );
        let other_key = Signer::new(b"another key, just as long as that", "reg", "svc");
        assert!(other_key.verify(&token).is_none());
        let other_service = Signer::new(b"0123456789abcdef0123456789abcdef", "reg", "other");
        assert!(other_service.verify(&token).is_none());
        assert!(signer.verify("not.a.token").is_none());
    }
}
