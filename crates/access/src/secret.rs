//! Secrets: random values, API token strings, and password hashes.
//!
//! An API token reads `art_<id>_<secret>`: the id finds the record, and only a SHA-256 of the
//! secret is stored (a 256-bit random secret needs no slow hash). Passwords are hashed with
//! argon2id. Every comparison of secret material is constant-time.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

const TOKEN_PREFIX: &str = "art_";

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // The system generator only fails if the OS has no entropy source at all, and then
    // nothing secure can run: stopping is right.
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A freshly made token: its id, the whole string to show once, and the hash to store.
pub struct NewToken {
    pub id: String,
    pub secret: String,
    pub hash: Vec<u8>,
}

pub fn new_token() -> NewToken {
    let id = hex(&random_bytes::<8>());
    let secret = URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let hash = sha256(secret.as_bytes());
    NewToken {
        secret: format!("{TOKEN_PREFIX}{id}_{secret}"),
        id,
        hash,
    }
}

/// Splits a token string into its id and secret; `None` if it is not one of ours.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 16 && !secret.is_empty()).then_some((id, secret))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An argon2id PHC string for `password`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches `hash`. With no hash (an unknown user, or a robot) it still
/// spends the time of one verification, so timing does not tell which names exist.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default());
    let (phc, real) = match hash {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_hash_their_secret() {
        let t = new_token();
        let (id, secret) = parse_token(&t.secret).expect("ours");
        assert_eq!(id, t.id);
        assert!(constant_time_eq(&sha256(secret.as_bytes()), &t.hash));
        assert_ne!(new_token().secret, t.secret);
        assert!(parse_token("ghp_abc").is_none());
        assert!(parse_token("art_short_x").is_none());
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("s3cret").expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", Some(&h)));
        assert!(!verify_password("s3cret!", Some(&h)));
        assert!(!verify_password("s3cret", None));
        assert!(!verify_password("s3cret", Some("garbage")));
    }
}
