//! Vulnerability scanning on the server: the OSV database imported offline
//! (`agent-registry vulndb import`), scans of image manifests (on push when
//! `scanning.on_push`, on request at `/api/v1/scans`, and when a pull policy needs a current
//! result), and their results kept as referrers of the image: a CycloneDX SBOM and a report.
//!
//! The database lives in `scanning.database_dir` (default `<root>/vulndb`) as
//! `advisories.jsonl` and a `stamp` naming the import. Each node re-reads it when the stamp
//! changes (looked at most every [`RELOAD_CHECK`], or on every use while it has none); a report names the stamp it was made
//! with, so a report made before an import is stale and the image is scanned again when a
//! policy asks. Nodes sharing a registry must share this directory, or each import it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use agent_registry_metadata::StoredManifest;
use agent_registry_oci::{Algorithm, Digest, ErrorCode, Reference, RepoName, media};
use agent_registry_registry::Registry;
use agent_registry_scan::inventory::Inventory;
use agent_registry_scan::osv::{self, Advisory, Database};
use agent_registry_scan::report::{REPORT_ARTIFACT_TYPE, Report, SBOM_ARTIFACT_TYPE, cyclonedx};
use anyhow::Context as _;
use bytes::Bytes;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::config::Config;
use crate::error::ApiError;

const ADVISORIES: &str = "advisories.jsonl";
const STAMP: &str = "stamp";
/// How often a node looks for a newer import.
pub const RELOAD_CHECK: Duration = Duration::from_secs(5);
/// Scan reports larger than this are not read back.
const REPORT_MAX: usize = 64 << 20;
const CREATED: &str = "org.opencontainers.image.created";
const DATABASE: &str = "dev.agent-registry.vulndb";

/// The database as one import left it.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Which import; empty when there has been none.
    pub stamp: String,
    pub db: Database,
}

#[derive(Debug)]
pub struct Scanner {
    dir: PathBuf,
    pub on_push: bool,
    loaded: RwLock<Arc<Loaded>>,
    checked: Mutex<Option<Instant>>,
    /// One scan at a time: a scan reads every layer and holds a core.
    running: tokio::sync::Semaphore,
}

/// What an import did.
pub struct Imported {
    pub read: usize,
    pub total: usize,
    pub stamp: String,
}

/// The database directory the configuration names.
pub fn database_dir(config: &Config) -> PathBuf {
    if config.scanning.database_dir.as_os_str().is_empty() {
        config.root.join("vulndb")
    } else {
        config.scanning.database_dir.clone()
    }
}

/// Adds the advisories of `source` (a directory of OSV JSON files, or an OSV zip) to the
/// database in `dir`, replacing advisories with the same id; the new stamp is written last,
/// so a node never loads half an import.
pub fn import(dir: &Path, source: &Path) -> anyhow::Result<Imported> {
    let new = osv::read_source(source)?;
    let read = new.len();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut all: std::collections::BTreeMap<String, Advisory> = read_advisories(dir)?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    for advisory in new {
        all.insert(advisory.id.clone(), advisory);
    }
    let mut lines = Vec::new();
    for advisory in all.values() {
        serde_json::to_writer(&mut lines, advisory)?;
        lines.push(b'\n');
    }
    write_atomically(&dir.join(ADVISORIES), &lines)?;
    let stamp = format!("{}/{}", crate::unix_now(), all.len());
    write_atomically(&dir.join(STAMP), stamp.as_bytes())?;
    Ok(Imported {
        read,
        total: all.len(),
        stamp,
    })
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("new");
    std::fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::File::open(&temp)?.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
}

fn read_advisories(dir: &Path) -> anyhow::Result<Vec<Advisory>> {
    let path = dir.join(ADVISORIES);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

fn read_stamp(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(STAMP))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn denied(message: String) -> ApiError {
    ApiError::new(ErrorCode::Denied, message)
}

/// The layers of an image manifest (OCI or Docker), or `None` for an index or an artifact.
fn image_layers(content: &[u8]) -> Option<Vec<Digest>> {
    let m: serde_json::Value = serde_json::from_slice(content).ok()?;
    let config = m["config"]["mediaType"].as_str()?;
    if m.get("subject").is_some()
        || !(config == media::OCI_CONFIG
            || config == "application/vnd.docker.container.image.v1+json")
    {
        return None;
    }
    m["layers"]
        .as_array()?
        .iter()
        .map(|l| l["digest"].as_str()?.parse().ok())
        .collect()
}

impl Scanner {
    pub fn open(config: &Config) -> Scanner {
        Scanner {
            dir: database_dir(config),
            on_push: config.scanning.on_push,
            loaded: RwLock::default(),
            checked: Mutex::default(),
            running: tokio::sync::Semaphore::new(1),
        }
    }

    /// The database now, re-read if a newer import landed since the last look.
    pub async fn database(&self) -> Arc<Loaded> {
        let current = self.current();
        // Without a database, every call looks, so a first import counts at once.
        let due = {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            let due =
                current.stamp.is_empty() || checked.is_none_or(|at| at.elapsed() >= RELOAD_CHECK);
            if due {
                *checked = Some(Instant::now());
            }
            due
        };
        if due {
            let dir = self.dir.clone();
            let known = current.stamp.clone();
            let fresh = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Loaded>> {
                let stamp = read_stamp(&dir);
                if stamp == known {
                    return Ok(None);
                }
                let db = Database::of(read_advisories(&dir)?);
                Ok(Some(Loaded { stamp, db }))
            })
            .await;
            match fresh {
                Ok(Ok(Some(loaded))) => {
                    tracing::info!(stamp = %loaded.stamp, advisories = loaded.db.len(), "vulnerability database loaded");
                    let loaded = Arc::new(loaded);
                    *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = loaded.clone();
                    return loaded;
                }
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "reading the vulnerability database failed; keeping the last one")
                }
                Err(e) => tracing::warn!(error = %e, "reading the vulnerability database failed"),
            }
        }
        current
    }

    fn current(&self) -> Arc<Loaded> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Scans `manifest` of `repo` now and attaches the SBOM and report to it. `None` when the
    /// manifest is not an image (an index, an artifact).
    pub async fn scan(
        &self,
        registry: &Registry,
        repo: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<Option<Report>, ApiError> {
        let Some(layers) = image_layers(&manifest.content) else {
            return Ok(None);
        };
        let loaded = self.database().await;
        if loaded.stamp.is_empty() {
            return Err(ApiError::new(
                ErrorCode::Unsupported,
                "the registry has no vulnerability database: an operator imports one with \
                 `agent-registry vulndb import DIR|ZIP`",
            )
            .with_status(axum::http::StatusCode::CONFLICT));
        }
        let _one = self
            .running
            .acquire()
            .await
            .map_err(|e| ApiError::internal(format!("scan queue: {e}")))?;
        let mut streams = Vec::with_capacity(layers.len());
        for layer in &layers {
            let size = registry.blob_size(repo, layer).await?;
            streams.push(registry.read_blob(repo, layer, 0..size).await?);
        }
        let started = Instant::now();
        let inventory = tokio::task::spawn_blocking(move || {
            Inventory::read_layers(
                streams
                    .into_iter()
                    .map(|s| SyncIoBridge::new(StreamReader::new(s))),
            )
        })
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("cannot scan {repo}@{}: {e}", manifest.digest),
            )
        })?;
        let findings = loaded.db.scan(&inventory.packages, &inventory.releases);
        let now = now_rfc3339();
        let digest = manifest.digest.to_string();
        let report = Report::new(
            &digest,
            &now,
            &loaded.stamp,
            loaded.db.len(),
            &inventory.packages,
            findings,
        );
        tracing::info!(%repo, %digest, packages = report.packages, findings = report.findings.len(),
            ms = started.elapsed().as_millis() as u64, "image scanned");
        let sbom = cyclonedx(repo.as_str(), &digest, &now, &inventory.packages);
        let attach = |artifact_type: &'static str, bytes: Vec<u8>| {
            self.attach(
                registry,
                repo,
                manifest,
                artifact_type,
                bytes,
                &now,
                &loaded.stamp,
            )
        };
        attach(
            SBOM_ARTIFACT_TYPE,
            serde_json::to_vec(&sbom).map_err(ApiError::internal)?,
        )
        .await?;
        attach(
            REPORT_ARTIFACT_TYPE,
            serde_json::to_vec(&report).map_err(ApiError::internal)?,
        )
        .await?;
        Ok(Some(report))
    }

    /// Stores `bytes` as an artifact of `artifact_type` whose subject is `manifest`.
    #[allow(clippy::too_many_arguments)]
    async fn attach(
        &self,
        registry: &Registry,
        repo: &RepoName,
        manifest: &StoredManifest,
        artifact_type: &str,
        bytes: Vec<u8>,
        created: &str,
        stamp: &str,
    ) -> Result<(), ApiError> {
        let empty = Bytes::from_static(b"{}");
        let content = Bytes::from(bytes);
        for blob in [&empty, &content] {
            let digest = Digest::of(Algorithm::Sha256, blob);
            let body: agent_registry_registry::Body = Box::pin(futures_util::stream::once(
                std::future::ready(Ok(blob.clone())),
            ));
            registry
                .put_blob(repo, &digest, Some(blob.len() as u64), body)
                .await?;
        }
        let artifact = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(Algorithm::Sha256, &empty).to_string(), "size": 2},
            "layers": [{"mediaType": artifact_type, "digest": Digest::of(Algorithm::Sha256, &content).to_string(), "size": content.len()}],
            "subject": {"mediaType": manifest.media_type, "digest": manifest.digest.to_string(), "size": manifest.content.len()},
            "annotations": {CREATED: created, DATABASE: stamp},
        });
        let body = Bytes::from(serde_json::to_vec(&artifact).map_err(ApiError::internal)?);
        let digest = Digest::of(Algorithm::Sha256, &body);
        registry
            .put_manifest(
                repo,
                &Reference::Digest(digest),
                Some(media::OCI_MANIFEST),
                body,
                Some("agent-registry scanner"),
            )
            .await?;
        Ok(())
    }

    /// The newest report attached to `digest` of `repo`, if any.
    pub async fn latest(
        &self,
        registry: &Registry,
        repo: &RepoName,
        digest: &Digest,
    ) -> Result<Option<Report>, ApiError> {
        let referrers = registry
            .referrers(repo, digest, Some(REPORT_ARTIFACT_TYPE))
            .await?;
        let Some(newest) = referrers
            .iter()
            .max_by(|a, b| a.annotations.get(CREATED).cmp(&b.annotations.get(CREATED)))
        else {
            return Ok(None);
        };
        let artifact = registry
            .manifest(repo, &Reference::Digest(newest.digest.clone()))
            .await?;
        let layer: Option<Digest> = serde_json::from_slice::<serde_json::Value>(&artifact.content)
            .ok()
            .and_then(|m| m["layers"][0]["digest"].as_str()?.parse().ok());
        let Some(layer) = layer else {
            return Ok(None);
        };
        Ok(registry
            .small_blob(repo, &layer, REPORT_MAX)
            .await?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// A report of `manifest` made with the current database: the newest attached one, or a
    /// new scan. `None` when the manifest is not an image.
    pub async fn current_report(
        &self,
        registry: &Registry,
        repo: &RepoName,
        manifest: &StoredManifest,
    ) -> Result<Option<Report>, ApiError> {
        if image_layers(&manifest.content).is_none() {
            return Ok(None);
        }
        let stamp = self.database().await.stamp.clone();
        if let Some(report) = self.latest(registry, repo, &manifest.digest).await?
            && report.database == stamp
        {
            return Ok(Some(report));
        }
        self.scan(registry, repo, manifest).await
    }

    /// Refuses `manifest` when its current report has a finding at or above `threshold`
    /// that `allowed` does not accept.
    pub async fn check(
        &self,
        registry: &Registry,
        repo: &RepoName,
        manifest: &StoredManifest,
        pattern: &str,
        threshold: agent_registry_scan::Severity,
        allowed: &[String],
    ) -> Result<(), ApiError> {
        let Some(report) = self.current_report(registry, repo, manifest).await? else {
            return Ok(());
        };
        if let Some(worst) = report.worst_at_least(threshold, allowed) {
            let fixed = worst
                .fixed
                .as_ref()
                .map_or(String::new(), |f| format!(", fixed in {f}"));
            return Err(denied(format!(
                "{repo}@{} has a {} vulnerability, {} in {} {}{fixed}; the pull policy for \
                 {pattern} blocks {} and above (agent registry image scan-results shows all {})",
                manifest.digest,
                worst.severity.as_str(),
                worst.advisory,
                worst.package,
                worst.installed,
                threshold.as_str(),
                report.findings.len(),
            )));
        }
        Ok(())
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
