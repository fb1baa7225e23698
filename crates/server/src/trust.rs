//! Pull policies: in a repository whose policy is `signed_only`, a manifest is served only
//! when one of its signatures (cosign's format, `oci::signature`) verifies with a key the
//! policy trusts (its own keys, else the registry's `signing.trusted_keys`) and signs that
//! very manifest. Attachments (signatures, SBOMs, agent.yaml: anything with a `subject`, and
//! cosign's `.sig` manifests) are always served, so verifiers can read them.
//!
//! A verified manifest is remembered for [`VERIFIED_FOR`] under the policy version it was
//! checked against, so pulls of a signed image do not re-read and re-verify its signatures
//! every time; a policy change re-checks at once, a removed signature within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_registry_access::Policy;
use agent_registry_metadata::StoredManifest;
use agent_registry_oci::signature::{self, PublicKey, Verdict};
use agent_registry_oci::{Digest, ErrorCode, RepoName};
use agent_registry_registry::Registry;
use anyhow::Context as _;

use crate::config::SigningConfig;
use crate::error::ApiError;

/// How long a verified manifest stays verified without a second look.
pub const VERIFIED_FOR: Duration = Duration::from_secs(10);
/// Verified manifests remembered at most; past this the memory starts over.
const REMEMBERED: usize = 10_000;

#[derive(Debug)]
pub struct Trust {
    registry_keys: Arc<[PublicKey]>,
    /// (repository, manifest) -> (policy version, when) of its last successful check.
    verified: Mutex<HashMap<(RepoName, Digest), (i64, Instant)>>,
}

impl Trust {
    /// Reads the registry's trusted keys; a file that is missing or holds no public key stops
    /// the start, naming it.
    pub fn load(config: &SigningConfig) -> anyhow::Result<Trust> {
        let mut keys = Vec::new();
        for path in &config.trusted_keys {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading signing.trusted_keys {}", path.display()))?;
            keys.extend(
                PublicKey::parse_pem(&text)
                    .with_context(|| format!("signing.trusted_keys {}", path.display()))?,
            );
        }
        Ok(Trust {
            registry_keys: keys.into(),
            verified: Mutex::default(),
        })
    }

    pub fn registry_keys(&self) -> &[PublicKey] {
        &self.registry_keys
    }

    /// Fails with DENIED when `manifest` of `repo` may not be pulled under `policy`.
    pub async fn check(
        &self,
        registry: &Registry,
        policy: &Policy,
        repo: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<(), ApiError> {
        let Some(rule) = policy.pull_rule(repo).filter(|r| r.signed_only) else {
            return Ok(());
        };
        if signature::is_attachment(&manifest.content) {
            return Ok(());
        }
        let remembered = (repo.clone(), manifest.digest.clone());
        if self.is_remembered(&remembered, policy.version) {
            return Ok(());
        }
        let pattern = &rule.pattern;
        let keys: &[PublicKey] = if rule.keys.is_empty() {
            &self.registry_keys
        } else {
            &rule.keys
        };
        let denied = |why: String| ApiError::new(ErrorCode::Denied, why);
        if keys.is_empty() {
            return Err(denied(format!(
                "the pull policy for {pattern} allows only signed images, but names no trusted \
                 keys and the registry has none (signing.trusted_keys)"
            )));
        }
        let digest = &manifest.digest;
        let found = registry.signatures(repo, digest).await?;
        if found.is_empty() {
            return Err(denied(format!(
                "{repo}@{digest} is not signed, and the pull policy for {pattern} allows only \
                 images signed by a trusted key (sign it with `agent push --sign`)"
            )));
        }
        let mut reasons = Vec::new();
        for f in &found {
            match Verdict::of(&f.payload, &f.layer.signature, digest, keys).0 {
                Verdict::Valid(_) => {
                    self.remember(remembered, policy.version);
                    return Ok(());
                }
                other => reasons.push(other.describe()),
            }
        }
        reasons.dedup();
        Err(denied(format!(
            "no signature of {repo}@{digest} verifies with a key the pull policy for {pattern} \
             trusts ({}): {}",
            keys.iter()
                .map(PublicKey::id)
                .collect::<Vec<_>>()
                .join(", "),
            reasons.join("; ")
        )))
    }

    fn is_remembered(&self, key: &(RepoName, Digest), version: i64) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified
            .get(key)
            .is_some_and(|(v, at)| *v == version && at.elapsed() < VERIFIED_FOR)
    }

    fn remember(&self, key: (RepoName, Digest), version: i64) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key, (version, Instant::now()));
    }
}
