//! A scan's results: the [`Report`] (counts by severity and each finding) and the image's
//! packages as a CycloneDX 1.5 SBOM with package URLs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::osv::Finding;
use crate::{Ecosystem, Package, Severity};

/// The artifact type of a scan report attached to an image.
pub const REPORT_ARTIFACT_TYPE: &str = "application/vnd.agent-registry.scan-report.v1+json";
/// The artifact type of an SBOM attached to an image.
pub const SBOM_ARTIFACT_TYPE: &str = "application/vnd.cyclonedx+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The manifest scanned.
    pub digest: String,
    /// When, RFC 3339.
    pub scanned_at: String,
    /// Which import of the vulnerability database it was checked against.
    pub database: String,
    /// How many advisories the database held.
    pub advisories: usize,
    pub packages: usize,
    pub counts: BTreeMap<Severity, usize>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(
        digest: &str,
        scanned_at: &str,
        database: &str,
        advisories: usize,
        packages: &[Package],
        findings: Vec<Finding>,
    ) -> Report {
        let mut counts = BTreeMap::new();
        for f in &findings {
            *counts.entry(f.severity).or_insert(0) += 1;
        }
        Report {
            digest: digest.to_owned(),
            scanned_at: scanned_at.to_owned(),
            database: database.to_owned(),
            advisories,
            packages: packages.len(),
            counts,
            findings,
        }
    }

    /// The worst finding at or above `threshold` that `allowed` does not accept (by its id
    /// or an alias).
    pub fn worst_at_least(&self, threshold: Severity, allowed: &[String]) -> Option<&Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity >= threshold && f.severity != Severity::Unknown)
            .filter(|f| {
                !allowed
                    .iter()
                    .any(|a| *a == f.advisory || f.aliases.contains(a))
            })
            .max_by_key(|f| f.severity)
    }
}

/// The package URL (<https://github.com/package-url/purl-spec>) of a package.
pub fn purl(p: &Package) -> String {
    let (kind, namespace) = match p.ecosystem {
        Ecosystem::Debian => ("deb", Some("debian")),
        Ecosystem::Alpine => ("apk", Some("alpine")),
        Ecosystem::PyPI => ("pypi", None),
        Ecosystem::Npm => ("npm", None),
        Ecosystem::CratesIo => ("cargo", None),
        Ecosystem::Go => ("golang", None),
    };
    let name = match p.ecosystem {
        Ecosystem::PyPI => p.ecosystem.normalize(&p.name),
        Ecosystem::Npm => p.name.replace('@', "%40"),
        _ => p.name.clone(),
    };
    let version = p.version.replace('+', "%2B");
    match namespace {
        Some(ns) => format!("pkg:{kind}/{ns}/{name}@{version}"),
        None => format!("pkg:{kind}/{name}@{version}"),
    }
}

/// The packages as a CycloneDX 1.5 JSON SBOM describing the image `digest`.
pub fn cyclonedx(
    image: &str,
    digest: &str,
    timestamp: &str,
    packages: &[Package],
) -> serde_json::Value {
    let components: Vec<serde_json::Value> = packages
        .iter()
        .map(|p| {
            serde_json::json!({
                "type": "library",
                "bom-ref": purl(p),
                "name": p.name,
                "version": p.version,
                "purl": purl(p),
                "properties": [{"name": "agent-registry:path", "value": p.path}],
            })
        })
        .collect();
    serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {"components": [{"type": "application", "name": "agent-registry"}]},
            "component": {"type": "container", "name": image, "version": digest},
        },
        "components": components,
    })
}
