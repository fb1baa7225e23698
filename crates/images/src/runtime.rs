//! Which image an agent runs on: a language and version resolved through the runtime table
//! (`runtime-registry.yaml`), or a custom image named in full.
//!
//! ```yaml
//! apiVersion: aegis.ai/v1
//! kind: RuntimeRegistry
//! spec:
//!   registry_url: docker.io
//!   runtimes:
//!     python:
//!       "3.11": {image: "python:3.11-slim", description: "Python 3.11", deprecated: false}
//! ```
//!
//! The table in `runtime-registry.yaml` beside this file ships inside the binary; a file of
//! the same shape replaces it.

use std::collections::BTreeMap;
use std::path::Path;

use agent_registry_client::ImageRef;
use serde::Deserialize;

const EMBEDDED: &str = include_str!("runtime-registry.yaml");

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime table {source_name} is invalid: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("unknown runtime language {language:?}; available: {}", available.join(", "))]
    UnknownLanguage {
        language: String,
        available: Vec<String>,
    },
    #[error("unknown {language} version {version:?}; available: {}", available.join(", "))]
    UnknownVersion {
        language: String,
        version: String,
        available: Vec<String>,
    },
    #[error(
        "custom runtime image {0:?} must be fully qualified with its registry (for example registry.example.com/team/base:1.0)"
    )]
    NotQualified(String),
    #[error("runtime needs exactly one of language+version or image; {0}")]
    Ambiguous(&'static str),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    spec: Spec,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    registry_url: Option<String>,
    runtimes: BTreeMap<String, BTreeMap<String, RuntimeEntry>>,
}

/// One language version in the table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeEntry {
    pub image: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub deprecated: bool,
}

/// The runtime table.
#[derive(Debug, Clone)]
pub struct RuntimeRegistry {
    registry_url: Option<String>,
    runtimes: BTreeMap<String, BTreeMap<String, RuntimeEntry>>,
}

/// What an agent's `spec.runtime` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentRuntime {
    Standard { language: String, version: String },
    Custom { image: String },
}

/// A runtime resolved to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRuntime {
    pub image: ImageRef,
    /// Set when the table marks the version deprecated: callers warn with it.
    pub deprecated: Option<String>,
}

impl AgentRuntime {
    /// Builds a runtime from the fields an agent manifest may set, checking that exactly one
    /// way of naming an image is used.
    pub fn from_fields(
        language: Option<&str>,
        version: Option<&str>,
        image: Option<&str>,
    ) -> Result<AgentRuntime, RuntimeError> {
        match (language, version, image) {
            (Some(l), Some(v), None) => Ok(AgentRuntime::Standard {
                language: l.to_owned(),
                version: v.to_owned(),
            }),
            (None, None, Some(i)) => Ok(AgentRuntime::Custom {
                image: i.to_owned(),
            }),
            (Some(_), None, None) => Err(RuntimeError::Ambiguous("language needs a version")),
            (None, Some(_), None) => Err(RuntimeError::Ambiguous("version needs a language")),
            (None, None, None) => Err(RuntimeError::Ambiguous("neither is set")),
            _ => Err(RuntimeError::Ambiguous("both are set")),
        }
    }
}

impl RuntimeRegistry {
    /// The table that ships with the binary.
    pub fn embedded() -> RuntimeRegistry {
        match Self::parse("the embedded runtime table", EMBEDDED) {
            Ok(table) => table,
            // The embedded table is checked by a test; an empty one is the safe failure.
            Err(_) => RuntimeRegistry {
                registry_url: None,
                runtimes: BTreeMap::new(),
            },
        }
    }

    pub fn load(path: &Path) -> Result<RuntimeRegistry, RuntimeError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::Invalid {
            source_name: name.clone(),
            reason: e.to_string(),
        })?;
        Self::parse(&name, &text)
    }

    pub fn parse(source_name: &str, text: &str) -> Result<RuntimeRegistry, RuntimeError> {
        let invalid = |reason: String| RuntimeError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let doc: Document = serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if doc.api_version != "aegis.ai/v1" || doc.kind != "RuntimeRegistry" {
            return Err(invalid(format!(
                "expected apiVersion aegis.ai/v1 and kind RuntimeRegistry, found {} and {}",
                doc.api_version, doc.kind
            )));
        }
        for (language, versions) in &doc.spec.runtimes {
            for (version, entry) in versions {
                entry
                    .image
                    .parse::<ImageRef>()
                    .map_err(|e| invalid(format!("runtimes.{language}.{version}.image: {e}")))?;
            }
        }
        Ok(RuntimeRegistry {
            registry_url: doc.spec.registry_url,
            runtimes: doc.spec.runtimes,
        })
    }

    /// Every `(language, version, entry)` in the table.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, &RuntimeEntry)> {
        self.runtimes.iter().flat_map(|(l, versions)| {
            versions
                .iter()
                .map(move |(v, e)| (l.as_str(), v.as_str(), e))
        })
    }

    /// The newest supported (not deprecated) version of `language`, for agents that name
    /// only a language.
    pub fn default_version(&self, language: &str) -> Result<String, RuntimeError> {
        let versions =
            self.runtimes
                .get(language)
                .ok_or_else(|| RuntimeError::UnknownLanguage {
                    language: language.to_owned(),
                    available: self.runtimes.keys().cloned().collect(),
                })?;
        let numeric =
            |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
        versions
            .iter()
            .filter(|(_, e)| !e.deprecated)
            .max_by(|a, b| numeric(a.0).cmp(&numeric(b.0)))
            .or_else(|| {
                versions
                    .iter()
                    .max_by(|a, b| numeric(a.0).cmp(&numeric(b.0)))
            })
            .map(|(v, _)| v.clone())
            .ok_or_else(|| RuntimeError::UnknownVersion {
                language: language.to_owned(),
                version: String::new(),
                available: Vec::new(),
            })
    }

    /// Resolves an agent's runtime to the image to run.
    pub fn resolve(&self, runtime: &AgentRuntime) -> Result<ResolvedRuntime, RuntimeError> {
        match runtime {
            AgentRuntime::Custom { image } => {
                let parsed: ImageRef = image
                    .parse()
                    .map_err(|_| RuntimeError::NotQualified(image.clone()))?;
                if parsed.registry.is_none() {
                    return Err(RuntimeError::NotQualified(image.clone()));
                }
                Ok(ResolvedRuntime {
                    image: parsed,
                    deprecated: None,
                })
            }
            AgentRuntime::Standard { language, version } => {
                let versions =
                    self.runtimes
                        .get(language)
                        .ok_or_else(|| RuntimeError::UnknownLanguage {
                            language: language.clone(),
                            available: self.runtimes.keys().cloned().collect(),
                        })?;
                let entry = versions
                    .get(version)
                    .ok_or_else(|| RuntimeError::UnknownVersion {
                        language: language.clone(),
                        version: version.clone(),
                        available: versions.keys().cloned().collect(),
                    })?;
                let mut image: ImageRef =
                    entry.image.parse().map_err(|e| RuntimeError::Invalid {
                        source_name: "the runtime table".into(),
                        reason: format!("{e}"),
                    })?;
                if image.registry.is_none() {
                    image.registry = self.registry_url.as_deref().map(str::to_owned);
                }
                let deprecated = entry.deprecated.then(|| {
                    let newer: Vec<&str> = versions
                        .iter()
                        .filter(|(_, e)| !e.deprecated)
                        .map(|(v, _)| v.as_str())
                        .collect();
                    format!(
                        "{language} {version} is deprecated; supported versions: {}",
                        newer.join(", ")
                    )
                });
                Ok(ResolvedRuntime { image, deprecated })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standard(l: &str, v: &str) -> AgentRuntime {
        AgentRuntime::Standard {
            language: l.into(),
            version: v.into(),
        }
    }

    #[test]
    fn the_embedded_table_resolves_every_entry() {
        let table = RuntimeRegistry::parse("embedded", EMBEDDED).expect("embedded table parses");
        let entries: Vec<_> = table.entries().collect();
        assert_eq!(entries.len(), 14);
        for (language, version, entry) in entries {
            let r = table
                .resolve(&standard(language, version))
                .expect("resolves");
            assert_eq!(r.image.registry(), "docker.io", "{language} {version}");
            assert_eq!(r.deprecated.is_some(), entry.deprecated);
        }
        let py = table.resolve(&standard("python", "3.11")).expect("python");
        assert_eq!(py.image.familiar(), "python:3.11-slim");
        let ts = table.resolve(&standard("typescript", "5.1")).expect("ts");
        assert_eq!(ts.image.familiar(), "node:20-alpine");
    }

    #[test]
    fn a_language_alone_means_its_newest_supported_version() {
        let table = RuntimeRegistry::embedded();
        assert_eq!(table.default_version("python").expect("python"), "3.11");
        assert_eq!(table.default_version("go").expect("go"), "1.21");
        assert!(matches!(
            table.default_version("cobol"),
            Err(RuntimeError::UnknownLanguage { .. })
        ));
    }

    #[test]
    fn deprecated_versions_say_what_to_use_instead() {
        let r = RuntimeRegistry::embedded()
            .resolve(&standard("python", "3.9"))
            .expect("python 3.9");
        assert_eq!(
            r.deprecated.as_deref(),
            Some("python 3.9 is deprecated; supported versions: 3.10, 3.11")
        );
    }

    #[test]
    fn unknown_languages_and_versions_list_what_is_available() {
        let t = RuntimeRegistry::embedded();
        let e = t.resolve(&standard("cobol", "1")).expect_err("cobol");
        assert_eq!(
            e.to_string(),
            "unknown runtime language \"cobol\"; available: go, java, javascript, nodejs, python, rust, typescript"
        );
        let e = t.resolve(&standard("go", "1.99")).expect_err("go 1.99");
        assert_eq!(
            e.to_string(),
            "unknown go version \"1.99\"; available: 1.20, 1.21"
        );
    }

    #[test]
    fn custom_images_must_name_their_registry() {
        let t = RuntimeRegistry::embedded();
        let ok = t
            .resolve(&AgentRuntime::Custom {
                image: "registry.example.com/team/base:1".into(),
            })
            .expect("qualified");
        assert_eq!(ok.image.registry(), "registry.example.com");
        for bad in ["team/base:1", "base", "NOPE"] {
            let e = t
                .resolve(&AgentRuntime::Custom { image: bad.into() })
                .expect_err(bad);
            assert!(matches!(e, RuntimeError::NotQualified(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn a_runtime_is_language_and_version_or_image() {
        assert!(AgentRuntime::from_fields(Some("python"), Some("3.11"), None).is_ok());
        assert!(AgentRuntime::from_fields(None, None, Some("r.io/x:1")).is_ok());
        for (l, v, i) in [
            (Some("python"), None, None),
            (None, Some("3.11"), None),
            (None, None, None),
            (Some("python"), Some("3.11"), Some("r.io/x:1")),
        ] {
            assert!(
                matches!(
                    AgentRuntime::from_fields(l, v, i),
                    Err(RuntimeError::Ambiguous(_))
                ),
                "{l:?} {v:?} {i:?}"
            );
        }
    }

    #[test]
    fn a_file_replaces_the_table_and_bad_files_say_why() {
        let t = RuntimeRegistry::parse(
            "mine.yaml",
            "apiVersion: aegis.ai/v1\nkind: RuntimeRegistry\nspec:\n  registry_url: registry.local:5000\n  runtimes:\n    python: {\"3.12\": {image: \"base/python:3.12\"}}\n",
        )
        .expect("parses");
        let r = t.resolve(&standard("python", "3.12")).expect("resolves");
        assert_eq!(r.image.to_string(), "registry.local:5000/base/python:3.12");
        let e = RuntimeRegistry::parse(
            "bad.yaml",
            "apiVersion: v2\nkind: X\nspec: {runtimes: {}}\n",
        )
        .expect_err("wrong kind");
        assert!(e.to_string().contains("bad.yaml"), "{e}");
    }
}
