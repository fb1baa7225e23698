//! Pull policies: in a repository whose policy blocks vulnerabilities, a manifest is served
//! only when its scan (with the current database; `scanning.rs`) has no finding at or above
//! the policy's severity that the policy does not accept. Under `signed_only`, only when one
//! of its signatures (cosign's format, `oci::signature`) verifies with a key the
//! policy trusts (its own keys, else the registry's `signing.trusted_keys`) and signs that
//! very manifest. Attachments (signatures, SBOMs, agent.yaml: anything with a `subject`, and
//! cosign's `.sig` manifests) are always served, so verifiers can read them.
//!
//! A manifest that passed is remembered for [`VERIFIED_FOR`] under the policy version and
//! vulnerability database it was checked against, so pulls of a signed image do not re-read
//! and re-verify its signatures every time; a policy change or an import re-checks at once, a
//! removed signature counts within that time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_registry_access::{Policy, PullRule};
use agent_registry_metadata::StoredManifest;
use agent_registry_oci::signature::{self, PublicKey, Verdict};
use agent_registry_oci::{Digest, ErrorCode, RepoName};
use agent_registry_registry::Registry;
use agent_registry_registry::signatures::StoredSignature;
use agent_registry_scan::Severity;
use anyhow::Context as _;

use crate::config::SigningConfig;
use crate::error::ApiError;
use crate::scanning::Scanner;

/// How long a verified manifest stays verified without a second look.
pub const VERIFIED_FOR: Duration = Duration::from_secs(10);
/// Verified manifests remembered at most; past this the memory starts over.
const REMEMBERED: usize = 10_000;

/// A check a manifest passed: the policy version, the vulnerability database, and when.
type Passed = (i64, String, Instant);

#[derive(Debug)]
pub struct Trust {
    registry_keys: Arc<[PublicKey]>,
    /// (repository, manifest) -> (policy version, vulnerability database, when) of its last
    /// successful check.
    verified: Mutex<HashMap<(RepoName, Digest), Passed>>,
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

    /// Fails with DENIED when `manifest` of `repo` may not be pulled under `policy`: unsigned
    /// under `signed_only`, or with a scan finding the policy blocks.
    pub async fn check(
        &self,
        registry: &Registry,
        scanner: &Scanner,
        policy: &Policy,
        repo: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<(), ApiError> {
        let Some(rule) = policy.pull_rule(repo) else {
            return Ok(());
        };
        let block = rule
            .block_vulnerabilities
            .as_deref()
            .and_then(Severity::parse);
        if (!rule.signed_only && block.is_none()) || signature::is_attachment(&manifest.content) {
            return Ok(());
        }
        let database = match block {
            Some(_) => scanner.database().await.stamp.clone(),
            None => String::new(),
        };
        let remembered = (repo.clone(), manifest.digest.clone());
        if self.is_remembered(&remembered, policy.version, &database) {
            return Ok(());
        }
        if rule.signed_only {
            self.check_signed(registry, rule, repo, manifest).await?;
        }
        if let Some(threshold) = block {
            scanner
                .check(
                    registry,
                    repo,
                    manifest,
                    rule.pattern.as_str(),
                    threshold,
                    &rule.allowed_advisories,
                )
                .await?;
        }
        self.remember(remembered, policy.version, database);
        Ok(())
    }

    async fn check_signed(
        &self,
        registry: &Registry,
        rule: &PullRule,
        repo: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<(), ApiError> {
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
        let mut reasons = Vec::new();
        let own = registry.signatures(repo, digest).await?;
        let mut signed = !own.is_empty();
        if any_valid(&own, digest, keys, &mut reasons) {
            return Ok(());
        }
        // A platform's manifest counts as signed when an index listing it is: cosign signs
        // the index a multi-platform tag names, and clients fetch its children by digest.
        for parent in registry.parents(repo, digest).await? {
            let theirs = registry.signatures(repo, &parent).await?;
            signed |= !theirs.is_empty();
            if any_valid(&theirs, &parent, keys, &mut reasons) {
                return Ok(());
            }
        }
        if !signed {
            return Err(denied(format!(
                "{repo}@{digest} is not signed, and the pull policy for {pattern} allows only \
                 images signed by a trusted key (sign it with `agent push --sign`)"
            )));
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

    fn is_remembered(&self, key: &(RepoName, Digest), version: i64, database: &str) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        verified.get(key).is_some_and(|(v, db, at)| {
            *v == version && db == database && at.elapsed() < VERIFIED_FOR
        })
    }

    fn remember(&self, key: (RepoName, Digest), version: i64, database: String) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key, (version, database, Instant::now()));
    }
}

/// Whether one of `found` is a valid signature of `subject` by one of `keys`; why not, for
/// each that is not, goes to `reasons`.
fn any_valid(
    found: &[StoredSignature],
    subject: &Digest,
    keys: &[PublicKey],
    reasons: &mut Vec<String>,
) -> bool {
    for f in found {
        match Verdict::of(&f.payload, &f.layer.signature, subject, keys).0 {
            Verdict::Valid(_) => return true,
            other => reasons.push(other.describe()),
        }
    }
    false
}
