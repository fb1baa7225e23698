//! Vulnerability scanning of OCI images, without network access: the packages an image's
//! layers install ([`inventory`]), advisories in the OSV format imported offline ([`osv`]),
//! version order as each package manager defines it ([`version`]), and the results as a
//! report and a CycloneDX SBOM ([`report`]).
//!
//! Call direction: a caller hands [`inventory::Inventory::read_layers`] the layer bytes,
//! then [`osv::Database::scan`] the packages; nothing here fetches or stores anything.

pub mod inventory;
pub mod osv;
pub mod report;
pub mod version;

use serde::{Deserialize, Serialize};

/// The package ecosystems scanned, named as OSV names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    Debian,
    Alpine,
    PyPI,
    #[serde(rename = "npm")]
    Npm,
    #[serde(rename = "crates.io")]
    CratesIo,
    Go,
}

impl Ecosystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::PyPI => "PyPI",
            Ecosystem::Npm => "npm",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Go => "Go",
        }
    }

    /// The ecosystem of an OSV `ecosystem` value (`Debian:12` is Debian, release 12).
    pub fn parse(osv: &str) -> Option<(Ecosystem, Option<&str>)> {
        let (name, release) = match osv.split_once(':') {
            Some((n, r)) => (n, Some(r)),
            None => (osv, None),
        };
        let e = match name {
            "Debian" => Ecosystem::Debian,
            "Alpine" => Ecosystem::Alpine,
            "PyPI" => Ecosystem::PyPI,
            "npm" => Ecosystem::Npm,
            "crates.io" => Ecosystem::CratesIo,
            "Go" => Ecosystem::Go,
            _ => return None,
        };
        Some((e, release))
    }

    /// A package name as the ecosystem compares names: PyPI's are case- and
    /// separator-insensitive (PEP 503), the others exact.
    pub fn normalize(self, name: &str) -> String {
        match self {
            Ecosystem::PyPI => {
                let mut out = String::with_capacity(name.len());
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !out.ends_with('-') {
                            out.push('-');
                        }
                    } else {
                        out.push(c.to_ascii_lowercase());
                    }
                }
                out
            }
            _ => name.to_owned(),
        }
    }
}

/// An installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    /// The source package advisories name (Debian's `Source:`, Alpine's origin), when it
    /// differs from `name`, with its version when that differs too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<(String, String)>,
    /// The file the package was found in.
    pub path: String,
}

/// How bad a finding is, in the order the block policy compares.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s.to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" | "important" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" => Severity::Low,
            "unknown" => Severity::Unknown,
            _ => return None,
        })
    }

    /// The band of a CVSS base score (CVSS v3.1 specification, table 14).
    pub fn of_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}
