//! Reading what a stored manifest says: its parts, and for an image its config's creation
//! time and labels.

use std::collections::BTreeMap;

use agent_registry_oci::Digest;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::Serialize;

use crate::error::{Error, Result};

/// A blob a manifest references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// What a manifest holds: an image (config and layers) or an index (child manifests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parts {
    Image {
        config: Blob,
        layers: Vec<Blob>,
    },
    Index {
        manifests: Vec<(Blob, Option<String>)>,
    },
}

impl Parts {
    /// Parses a manifest or index; `reference` names it in errors.
    pub fn parse(reference: &str, bytes: &[u8]) -> Result<Parts> {
        let unsupported = |reason: String| Error::Unsupported {
            reference: reference.to_owned(),
            reason,
        };
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| unsupported(format!("it is not JSON: {e}")))?;
        let blob = |digest: &oci_spec::image::Digest, size: u64, media_type: String| {
            digest
                .to_string()
                .parse::<Digest>()
                .map(|digest| Blob {
                    digest,
                    size,
                    media_type,
                })
                .map_err(|e| unsupported(e.to_string()))
        };
        if value.get("manifests").is_some() {
            let index: ImageIndex =
                serde_json::from_value(value).map_err(|e| unsupported(e.to_string()))?;
            let manifests = index
                .manifests()
                .iter()
                .map(|d| {
                    let platform = d.platform().as_ref().map(|p| {
                        let mut s = format!("{}/{}", p.os(), p.architecture());
                        if let Some(v) = p.variant() {
                            s.push('/');
                            s.push_str(v);
                        }
                        s
                    });
                    Ok((
                        blob(d.digest(), d.size(), d.media_type().to_string())?,
                        platform,
                    ))
                })
                .collect::<Result<_>>()?;
            return Ok(Parts::Index { manifests });
        }
        if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(unsupported(
                "it is a Docker schema 1 manifest, which is no longer supported".into(),
            ));
        }
        let manifest: ImageManifest =
            serde_json::from_value(value).map_err(|e| unsupported(e.to_string()))?;
        let c = manifest.config();
        let config = blob(c.digest(), c.size(), c.media_type().to_string())?;
        let layers = manifest
            .layers()
            .iter()
            .map(|l| blob(l.digest(), l.size(), l.media_type().to_string()))
            .collect::<Result<_>>()?;
        Ok(Parts::Image { config, layers })
    }

    /// The blobs to move for this manifest (not its children's).
    pub fn blobs(&self) -> Vec<Blob> {
        match self {
            Parts::Image { config, layers } => std::iter::once(config.clone())
                .chain(layers.iter().cloned())
                .collect(),
            Parts::Index { .. } => Vec::new(),
        }
    }

    /// The image ID of the manifest whose digest is `manifest`: its config's digest, as
    /// docker shows it, or for an index the manifest's own.
    pub fn image_id(&self, manifest: &Digest) -> Digest {
        match self {
            Parts::Image { config, .. } => config.digest.clone(),
            Parts::Index { .. } => manifest.clone(),
        }
    }

    /// Bytes of the blobs this manifest references, itself excluded.
    pub fn content_size(&self) -> u64 {
        match self {
            Parts::Image { config, layers } => {
                config.size + layers.iter().map(|l| l.size).sum::<u64>()
            }
            Parts::Index { manifests } => manifests.iter().map(|(m, _)| m.size).sum(),
        }
    }
}

/// What an image's config says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConfigSummary {
    pub created: Option<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl ConfigSummary {
    /// Reads an image config; anything unreadable (an artifact's config, say) is empty.
    pub fn parse(bytes: &[u8]) -> ConfigSummary {
        let Ok(config) = serde_json::from_slice::<ImageConfiguration>(bytes) else {
            return ConfigSummary::default();
        };
        ConfigSummary {
            created: config.created().clone(),
            os: Some(config.os().to_string()),
            architecture: Some(config.architecture().to_string()),
            labels: config
                .config()
                .as_ref()
                .and_then(|c| c.labels().clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
        }
    }
}

/// The platform this machine runs, as OCI names it (`linux/amd64`).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("linux/{arch}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn parses_docker_and_oci_image_manifests() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D1}","size":10}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{D2}","size":20}}]}}"#
        );
        let parts = Parts::parse("x", m.as_bytes()).expect("parse");
        assert_eq!(parts.blobs().len(), 2);
        assert_eq!(parts.content_size(), 30);
    }

    #[test]
    fn parses_indexes_with_platforms() {
        let m = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Parts::Index { manifests } = Parts::parse("x", m.as_bytes()).expect("parse") else {
            panic!("an index");
        };
        assert_eq!(manifests[0].1.as_deref(), Some("linux/arm64/v8"));
    }

    #[test]
    fn refuses_schema_1_and_garbage_with_reasons() {
        let e = Parts::parse("x:1", br#"{"schemaVersion":1}"#).expect_err("schema 1");
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = Parts::parse("x:1", b"nope").expect_err("garbage");
        assert!(e.to_string().contains("x:1"), "{e}");
    }
}
