//! Advisories in the OSV format (<https://ossf.github.io/osv-schema/>), as the OSV project
//! publishes them per ecosystem (`https://osv-vulnerabilities.storage.googleapis.com/<ecosystem>/all.zip`,
//! one JSON file per advisory), and matching installed packages against them.
//!
//! A package is affected when its version is listed in `versions`, or falls in a range of type
//! `ECOSYSTEM` or `SEMVER`: the events, in order, switch it on at `introduced` and off at
//! `fixed` (or after `last_affected`). `GIT` ranges name commits, which installed packages do
//! not carry, and are skipped. Severity is the advisory's own word when it gives one
//! (`database_specific.severity`, as GitHub's advisories do), else the band of its CVSS v3
//! base score, else unknown.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::version::compare;
use crate::{Ecosystem, Package, Severity};

#[derive(Debug, thiserror::Error)]
pub enum OsvError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not an OSV advisory: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: not a zip archive: {source}")]
    Zip {
        path: String,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{path}: neither a directory of OSV JSON files nor an OSV .zip")]
    Unknown { path: String },
}

/// The advisories in `source`: a directory of OSV JSON files (searched recursively) or a zip
/// of them (as OSV publishes each ecosystem). A file that is not an advisory stops the read,
/// named.
pub fn read_source(source: &Path) -> Result<Vec<Advisory>, OsvError> {
    let mut out = Vec::new();
    if source.is_dir() {
        read_dir(source, &mut out)?;
        return Ok(out);
    }
    let name = source.display().to_string();
    if !source
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
    {
        return Err(OsvError::Unknown { path: name });
    }
    let file = std::fs::File::open(source).map_err(|e| OsvError::Io {
        path: name.clone(),
        source: e,
    })?;
    let zip_err = |e| OsvError::Zip {
        path: name.clone(),
        source: e,
    };
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(zip_err)?;
        if !entry.is_file() || !entry.name().ends_with(".json") {
            continue;
        }
        let path = format!("{name}:{}", entry.name());
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        std::io::Read::read_to_end(&mut entry, &mut bytes).map_err(|e| OsvError::Io {
            path: path.clone(),
            source: e,
        })?;
        out.push(Advisory::parse(&bytes).map_err(|source| OsvError::Json { path, source })?);
    }
    Ok(out)
}

fn read_dir(dir: &Path, out: &mut Vec<Advisory>) -> Result<(), OsvError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| OsvError::Io { path, source }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .collect::<Result<_, _>>()
        .map_err(io(dir))?;
    entries.sort_by_key(std::fs::DirEntry::path);
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            read_dir(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            out.push(Advisory::parse(&bytes).map_err(|source| OsvError::Json {
                path: path.display().to_string(),
                source,
            })?);
        }
    }
    Ok(())
}

/// One OSV advisory, as much of it as matching and reporting need.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Advisory {
    pub id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub severity: Vec<ScoreEntry>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ScoreEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Affected {
    pub package: AffectedPackage,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AffectedPackage {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Event {
    #[serde(default)]
    pub introduced: Option<String>,
    #[serde(default)]
    pub fixed: Option<String>,
    #[serde(default)]
    pub last_affected: Option<String>,
}

/// A package an advisory affects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub advisory: String,
    pub aliases: Vec<String>,
    pub summary: String,
    pub severity: Severity,
    pub package: String,
    pub ecosystem: Ecosystem,
    pub installed: String,
    /// The first version that fixes it, when the advisory names one.
    pub fixed: Option<String>,
    /// Where the package was found.
    pub path: String,
}

impl Advisory {
    pub fn parse(bytes: &[u8]) -> Result<Advisory, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// How bad the advisory is: its own word, an affected entry's word, else its CVSS score.
    pub fn severity(&self) -> Severity {
        let word = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| v.get("severity"))
                .and_then(serde_json::Value::as_str)
                .and_then(Severity::parse)
        };
        word(&self.database_specific)
            .or_else(|| {
                self.affected.iter().find_map(|a| {
                    word(&a.ecosystem_specific).or_else(|| word(&a.database_specific))
                })
            })
            .or_else(|| {
                self.severity
                    .iter()
                    .filter(|s| s.kind.starts_with("CVSS_V3"))
                    .find_map(|s| cvss3_base_score(&s.score))
                    .map(Severity::of_score)
            })
            .unwrap_or_default()
    }

    /// The finding for `package` (of an image whose distribution release is `release`, e.g.
    /// Debian `12`), if this advisory affects it.
    pub fn affects(&self, package: &Package, release: Option<&str>) -> Option<Finding> {
        if self.withdrawn.is_some() {
            return None;
        }
        let (name, version) = match &package.source {
            Some((name, version)) => (name.as_str(), version.as_str()),
            None => (package.name.as_str(), package.version.as_str()),
        };
        let ecosystem = package.ecosystem;
        let wanted = ecosystem.normalize(name);
        for affected in &self.affected {
            let Some((e, their_release)) = Ecosystem::parse(&affected.package.ecosystem) else {
                continue;
            };
            if e != ecosystem || e.normalize(&affected.package.name) != wanted {
                continue;
            }
            if let (Some(theirs), Some(ours)) = (their_release, release)
                && !same_release(e, theirs, ours)
            {
                continue;
            }
            let listed = affected.versions.iter().any(|v| v == version);
            let (in_range, fixed) = in_ranges(e, &affected.ranges, version);
            if listed || in_range {
                return Some(Finding {
                    advisory: self.id.clone(),
                    aliases: self.aliases.clone(),
                    summary: self.summary.clone(),
                    severity: self.severity(),
                    package: package.name.clone(),
                    ecosystem,
                    installed: package.version.clone(),
                    fixed,
                    path: package.path.clone(),
                });
            }
        }
        None
    }
}

/// Whether an advisory's release (`12`, `v3.18`) is the image's (`12`, `3.18.4`).
fn same_release(ecosystem: Ecosystem, theirs: &str, ours: &str) -> bool {
    match ecosystem {
        Ecosystem::Alpine => {
            let theirs = theirs.trim_start_matches('v');
            let ours: Vec<&str> = ours.trim_start_matches('v').split('.').take(2).collect();
            theirs == ours.join(".")
        }
        _ => theirs.split('.').next() == ours.split('.').next(),
    }
}

/// Whether `version` is in one of `ranges`, and the first fix above it.
fn in_ranges(ecosystem: Ecosystem, ranges: &[Range], version: &str) -> (bool, Option<String>) {
    let mut affected = false;
    let mut fixed = None;
    for range in ranges {
        if range.kind != "ECOSYSTEM" && range.kind != "SEMVER" {
            continue;
        }
        let cmp = |other: &str| compare(ecosystem, version, other);
        let mut on = false;
        for event in &range.events {
            if let Some(intro) = &event.introduced
                && (intro == "0" || cmp(intro) != Ordering::Less)
            {
                on = true;
            }
            if let Some(fix) = &event.fixed {
                if cmp(fix) != Ordering::Less {
                    on = false;
                } else if on && fixed.is_none() {
                    fixed = Some(fix.clone());
                }
            }
            if let Some(last) = &event.last_affected
                && cmp(last) == Ordering::Greater
            {
                on = false;
            }
        }
        affected |= on;
    }
    (affected, if affected { fixed } else { None })
}

/// The base score of a CVSS v3.x vector (`CVSS:3.1/AV:N/AC:L/...`), per the specification's
/// formulas, or `None` if a base metric is missing or unknown.
pub fn cvss3_base_score(vector: &str) -> Option<f64> {
    let metrics: HashMap<&str, &str> = vector
        .split('/')
        .skip(1)
        .filter_map(|m| m.split_once(':'))
        .collect();
    let get = |k: &str| metrics.get(k).copied();
    let changed = match get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (get("PR")?, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |k: &str| match get(k)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let iss = 1.0 - (1.0 - cia("C")?) * (1.0 - cia("I")?) * (1.0 - cia("A")?);
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02_f64).powi(15)
    } else {
        6.42 * iss
    };
    if impact <= 0.0 {
        return Some(0.0);
    }
    let exploitability = 8.22 * av * ac * pr * ui;
    let base = if changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Some(roundup(base.min(10.0)))
}

/// CVSS v3.1's Roundup: the smallest number with one decimal that is at least `x`, computed
/// on integers so that float error does not round 4.0 up to 4.1.
fn roundup(x: f64) -> f64 {
    let int = (x * 100_000.0).round() as i64;
    if int % 10_000 == 0 {
        int as f64 / 100_000.0
    } else {
        ((int / 10_000) + 1) as f64 / 10.0
    }
}

/// Advisories by (ecosystem, normalized package name).
#[derive(Debug, Default)]
pub struct Database {
    by_package: HashMap<(Ecosystem, String), Vec<Advisory>>,
    count: usize,
}

impl Database {
    /// Adds an advisory under every package it names in an ecosystem scanned here.
    pub fn add(&mut self, advisory: Advisory) {
        if advisory.withdrawn.is_some() {
            return;
        }
        let mut keys: Vec<(Ecosystem, String)> = advisory
            .affected
            .iter()
            .filter_map(|a| {
                let (e, _) = Ecosystem::parse(&a.package.ecosystem)?;
                Some((e, e.normalize(&a.package.name)))
            })
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return;
        }
        self.count += 1;
        for key in keys {
            self.by_package
                .entry(key)
                .or_default()
                .push(advisory.clone());
        }
    }

    /// The advisories of a directory of OSV files or an OSV zip ([`read_source`]).
    pub fn load(source: &Path) -> Result<Database, OsvError> {
        Ok(Database::of(read_source(source)?))
    }

    pub fn of(advisories: impl IntoIterator<Item = Advisory>) -> Database {
        let mut db = Database::default();
        for a in advisories {
            db.add(a);
        }
        db
    }

    /// How many advisories the database holds.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The findings for `packages`, worst first, each (advisory, package) once.
    pub fn scan(&self, packages: &[Package], releases: &Releases) -> Vec<Finding> {
        let mut findings: Vec<Finding> = Vec::new();
        for package in packages {
            let name = match &package.source {
                Some((source, _)) => source,
                None => &package.name,
            };
            let key = (package.ecosystem, package.ecosystem.normalize(name));
            let release = releases.of(package.ecosystem);
            for advisory in self.by_package.get(&key).into_iter().flatten() {
                if let Some(f) = advisory.affects(package, release)
                    && !findings
                        .iter()
                        .any(|have| have.advisory == f.advisory && have.package == f.package)
                {
                    findings.push(f);
                }
            }
        }
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.package.cmp(&b.package))
                .then_with(|| a.advisory.cmp(&b.advisory))
        });
        findings
    }
}

/// The distribution releases an image is built on, from its `os-release`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Releases {
    pub debian: Option<String>,
    pub alpine: Option<String>,
}

impl Releases {
    fn of(&self, ecosystem: Ecosystem) -> Option<&str> {
        match ecosystem {
            Ecosystem::Debian => self.debian.as_deref(),
            Ecosystem::Alpine => self.alpine.as_deref(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss3_scores_match_the_specifications_examples() {
        let score = |v: &str| cvss3_base_score(v).expect("a complete vector");
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 9.8);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), 10.0);
        assert_eq!(score("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:H/I:N/A:N"), 5.3);
        assert_eq!(score("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"), 6.1);
        assert_eq!(score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:N/I:N/A:N"), 0.0);
        assert_eq!(cvss3_base_score("CVSS:3.1/AV:N"), None);
    }

    fn advisory(json: serde_json::Value) -> Advisory {
        serde_json::from_value(json).expect("advisory")
    }

    fn package(e: Ecosystem, name: &str, version: &str) -> Package {
        Package {
            ecosystem: e,
            name: name.into(),
            version: version.into(),
            source: None,
            path: "x".into(),
        }
    }

    #[test]
    fn ranges_switch_on_at_introduced_and_off_at_fixed_or_after_last_affected() {
        let a = advisory(serde_json::json!({
            "id": "X-1", "database_specific": {"severity": "HIGH"},
            "affected": [{"package": {"ecosystem": "PyPI", "name": "Requests"},
                "ranges": [{"type": "ECOSYSTEM", "events": [
                    {"introduced": "2.3.0"}, {"fixed": "2.31.0"},
                    {"introduced": "3.0"}, {"last_affected": "3.1"}]}]}]
        }));
        let finding = |v: &str| a.affects(&package(Ecosystem::PyPI, "requests", v), None);
        assert!(finding("2.2.9").is_none());
        let f = finding("2.30.0").expect("affected");
        assert_eq!(f.fixed.as_deref(), Some("2.31.0"));
        assert_eq!(f.severity, Severity::High);
        assert!(finding("2.31.0").is_none());
        assert!(finding("3.1").is_some_and(|f| f.fixed.is_none()));
        assert!(finding("3.1.1").is_none());
    }

    #[test]
    fn debian_advisories_match_the_source_package_in_the_same_release() {
        let a = advisory(serde_json::json!({
            "id": "DSA-1", "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]
        }));
        let libssl = Package {
            source: Some(("openssl".into(), "3.0.11-1~deb12u1".into())),
            ..package(Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u1")
        };
        let f = a.affects(&libssl, Some("12")).expect("affected");
        assert_eq!(f.package, "libssl3");
        assert_eq!(f.severity, Severity::Unknown);
        assert!(a.affects(&libssl, Some("11")).is_none(), "another release");
        let patched = Package {
            source: Some(("openssl".into(), "3.0.11-1~deb12u2".into())),
            ..libssl
        };
        assert!(a.affects(&patched, Some("12")).is_none());
    }
}
