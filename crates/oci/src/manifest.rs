//! Manifest parsing and validation for image manifests and indexes, OCI and Docker schema 2.
//!
//! [`Manifest::parse`] takes the request's `Content-Type` and body and returns what a registry
//! must know before storing it: its media type, what it references (blobs and child
//! manifests, which must exist), its `subject` and `artifactType` for the referrers API, and
//! its annotations for the catalogue.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::Deserialize;

use crate::digest::Digest;
use crate::media;

/// Image manifest (config + layers) or index (a list of manifests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// What a registry needs to know about an accepted manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: &'static str,
    pub kind: ManifestKind,
    /// `artifactType`, or for an image manifest without one, its config's media type
    /// (what the referrers API reports).
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// Blobs that must exist in the repository: the config and the distributable layers.
    pub blobs: Vec<Digest>,
    /// Child manifests that must exist in the repository (indexes only).
    pub manifests: Vec<Digest>,
    pub annotations: BTreeMap<String, String>,
    /// The config blob (image manifests only): where image labels live.
    pub config: Option<Digest>,
    /// Bytes of the config and layers an image manifest lists (0 for an index).
    pub content_size: u64,
    /// Child manifests that are runnable images, in the index's order: children with a real
    /// platform, not attestations (`vnd.docker.reference.type`) or `unknown/unknown`.
    pub images: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON for {media_type}: {reason}")]
    Malformed {
        media_type: &'static str,
        reason: String,
    },
    #[error(
        "manifest media type {0:?} is not supported (push an OCI or Docker schema 2 image manifest or index)"
    )]
    UnsupportedMediaType(String),
    #[error(
        "manifest declares mediaType {declared:?} but was sent with Content-Type {content_type:?}"
    )]
    MediaTypeMismatch {
        declared: String,
        content_type: String,
    },
    #[error("manifest schemaVersion must be 2, found {0}")]
    SchemaVersion(u32),
    #[error("manifest descriptor has digest {digest:?}: {reason}")]
    BadDescriptor { digest: String, reason: String },
}

/// Just enough of any manifest to decide how to parse the rest.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
}

fn known_media_type(s: &str) -> Option<(&'static str, ManifestKind)> {
    let base = s.split(';').next().unwrap_or("").trim();
    [
        (media::OCI_MANIFEST, ManifestKind::Image),
        (media::DOCKER_MANIFEST, ManifestKind::Image),
        (media::OCI_INDEX, ManifestKind::Index),
        (media::DOCKER_MANIFEST_LIST, ManifestKind::Index),
    ]
    .into_iter()
    .find(|(m, _)| *m == base)
}

impl Manifest {
    /// Parses and validates a manifest sent with `content_type` (the request header, if any).
    pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Manifest, ManifestError> {
        let malformed = |media_type, e: serde_json::Error| ManifestError::Malformed {
            media_type,
            reason: e.to_string(),
        };
        let probe: Probe = serde_json::from_slice(body).map_err(|e| malformed("a manifest", e))?;
        let content_type = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());

        for old in [media::DOCKER_MANIFEST_V1, media::DOCKER_MANIFEST_V1_SIGNED] {
            if content_type == Some(old) || probe.media_type.as_deref() == Some(old) {
                return Err(ManifestError::UnsupportedMediaType(old.to_owned()));
            }
        }
        let (media_type, kind) = match (content_type, probe.media_type.as_deref()) {
            (Some(ct), declared) => {
                let known = known_media_type(ct)
                    .ok_or_else(|| ManifestError::UnsupportedMediaType(ct.to_owned()))?;
                if let Some(declared) = declared
                    && declared != known.0
                {
                    return Err(ManifestError::MediaTypeMismatch {
                        declared: declared.to_owned(),
                        content_type: ct.to_owned(),
                    });
                }
                known
            }
            (None, Some(declared)) => known_media_type(declared)
                .ok_or_else(|| ManifestError::UnsupportedMediaType(declared.to_owned()))?,
            // No type anywhere: an OCI manifest or index, told apart by its shape.
            (None, None) if probe.manifests.is_some() => (media::OCI_INDEX, ManifestKind::Index),
            (None, None) => (media::OCI_MANIFEST, ManifestKind::Image),
        };
        match probe.schema_version {
            Some(2) => {}
            other => return Err(ManifestError::SchemaVersion(other.unwrap_or(0))),
        }

        match kind {
            ManifestKind::Image => {
                let m: ImageManifest =
                    serde_json::from_slice(body).map_err(|e| malformed(media_type, e))?;
                let mut blobs = vec![digest_of(m.config())?];
                for layer in m.layers() {
                    if !is_foreign(layer) {
                        blobs.push(digest_of(layer)?);
                    }
                }
                let artifact_type = m
                    .artifact_type()
                    .as_ref()
                    .map(ToString::to_string)
                    .or_else(|| Some(m.config().media_type().to_string()));
                let content_size = std::iter::once(m.config())
                    .chain(m.layers())
                    .map(|d| d.size())
                    .sum();
                Ok(Manifest {
                    media_type,
                    kind,
                    artifact_type,
                    subject: m.subject().as_ref().map(digest_of).transpose()?,
                    config: Some(blobs[0].clone()),
                    blobs,
                    manifests: Vec::new(),
                    annotations: sorted(m.annotations()),
                    content_size,
                    images: Vec::new(),
                })
            }
            ManifestKind::Index => {
                let m: ImageIndex =
                    serde_json::from_slice(body).map_err(|e| malformed(media_type, e))?;
                let manifests = m
                    .manifests()
                    .iter()
                    .map(digest_of)
                    .collect::<Result<Vec<_>, _>>()?;
                let images = m
                    .manifests()
                    .iter()
                    .zip(&manifests)
                    .filter(|(d, _)| is_runnable(d))
                    .map(|(_, digest)| digest.clone())
                    .collect();
                Ok(Manifest {
                    media_type,
                    kind,
                    artifact_type: m.artifact_type().as_ref().map(ToString::to_string),
                    subject: m.subject().as_ref().map(digest_of).transpose()?,
                    blobs: Vec::new(),
                    manifests,
                    annotations: sorted(m.annotations()),
                    config: None,
                    content_size: 0,
                    images,
                })
            }
        }
    }
}

fn digest_of(d: &Descriptor) -> Result<Digest, ManifestError> {
    let s = d.digest().to_string();
    s.parse()
        .map_err(|e: crate::DigestError| ManifestError::BadDescriptor {
            digest: s,
            reason: e.to_string(),
        })
}

/// Foreign (non-distributable) layers live elsewhere, by their `urls`; a registry does not hold them.
fn is_foreign(d: &Descriptor) -> bool {
    let m = d.media_type().to_string();
    m.contains("nondistributable") || m.contains(".foreign.")
}

/// Whether an index entry is an image a node could run, rather than an attestation or other
/// attached artifact.
fn is_runnable(d: &Descriptor) -> bool {
    let attached = d
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key("vnd.docker.reference.type"));
    let unknown = d
        .platform()
        .as_ref()
        .is_some_and(|p| p.os().to_string() == "unknown");
    let media_type = d.media_type().to_string();
    !attached
        && !unknown
        && (media_type == media::OCI_MANIFEST || media_type == media::DOCKER_MANIFEST)
}

fn sorted(a: &Option<std::collections::HashMap<String, String>>) -> BTreeMap<String, String> {
    a.iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn image(media_type_field: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,{media_type_field}"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D1}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{D2}","size":3}}],
            "annotations":{{"org.opencontainers.image.title":"x"}}}}"#
        )
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let m = Manifest::parse(Some(media::OCI_MANIFEST), image("").as_bytes()).expect("parses");
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(
            m.blobs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [D1, D2]
        );
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(
            m.annotations
                .get("org.opencontainers.image.title")
                .map(String::as_str),
            Some("x")
        );
    }

    #[test]
    fn media_type_comes_from_the_body_without_content_type() {
        let body = image(&format!(r#""mediaType":"{}","#, media::DOCKER_MANIFEST));
        let m = Manifest::parse(None, body.as_bytes()).expect("parses");
        assert_eq!(m.media_type, media::DOCKER_MANIFEST);
    }

    #[test]
    fn declared_media_type_must_match_content_type() {
        let body = image(&format!(r#""mediaType":"{}","#, media::DOCKER_MANIFEST));
        let err =
            Manifest::parse(Some(media::OCI_MANIFEST), body.as_bytes()).expect_err("mismatch");
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }));
    }

    #[test]
    fn index_lists_child_manifests_and_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"application/x.test",
            "manifests":[{{"mediaType":"{}","digest":"{D1}","size":7}}],
            "subject":{{"mediaType":"{}","digest":"{D2}","size":9}}}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST,
            media::OCI_MANIFEST
        );
        let m = Manifest::parse(Some(media::OCI_INDEX), body.as_bytes()).expect("parses");
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.manifests.len(), 1);
        assert_eq!(m.subject.map(|d| d.to_string()).as_deref(), Some(D2));
        assert_eq!(m.artifact_type.as_deref(), Some("application/x.test"));
        assert_eq!(
            m.images.len(),
            1,
            "an image child without a platform is runnable"
        );
    }

    #[test]
    fn image_manifest_knows_its_config_and_content_size() {
        let m = Manifest::parse(Some(media::OCI_MANIFEST), image("").as_bytes()).expect("parses");
        assert_eq!(m.config.map(|d| d.to_string()).as_deref(), Some(D1));
        assert_eq!(m.content_size, 5);
    }

    #[test]
    fn attestations_and_unknown_platforms_are_not_runnable_images() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{index}","manifests":[
            {{"mediaType":"{m}","digest":"{D1}","size":7,"platform":{{"os":"unknown","architecture":"unknown"}}}},
            {{"mediaType":"{m}","digest":"{D2}","size":7,"annotations":{{"vnd.docker.reference.type":"attestation-manifest"}}}},
            {{"mediaType":"{m}","digest":"{D2}","size":7,"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            index = media::OCI_INDEX,
            m = media::OCI_MANIFEST,
        );
        let m = Manifest::parse(None, body.as_bytes()).expect("parses");
        assert_eq!(m.manifests.len(), 3);
        assert_eq!(
            m.images.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [D2]
        );
    }

    #[test]
    fn rejects_garbage_old_schemas_and_unknown_types() {
        assert!(matches!(
            Manifest::parse(Some(media::OCI_MANIFEST), b"{nope"),
            Err(ManifestError::Malformed { .. })
        ));
        assert!(matches!(
            Manifest::parse(Some(media::OCI_MANIFEST), br#"{"schemaVersion":1}"#),
            Err(ManifestError::SchemaVersion(1))
        ));
        assert!(matches!(
            Manifest::parse(
                Some(media::DOCKER_MANIFEST_V1_SIGNED),
                br#"{"schemaVersion":1}"#
            ),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Manifest::parse(Some("text/plain"), image("").as_bytes()),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        let missing_config = r#"{"schemaVersion":2,"layers":[]}"#;
        assert!(matches!(
            Manifest::parse(Some(media::OCI_MANIFEST), missing_config.as_bytes()),
            Err(ManifestError::Malformed { .. })
        ));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512), ct in prop::option::of("[a-z./+;= -]{0,80}")) {
            let _ = Manifest::parse(ct.as_deref(), &body);
        }

        #[test]
        fn parsing_json_shaped_input_never_panics(body in r#"\{("(schemaVersion|mediaType|config|layers|manifests|subject|digest|size)":("[a-z0-9:.+/]{0,70}"|[0-9]{1,3}|\[\]|\{\}|null),?){0,8}\}"#) {
            let _ = Manifest::parse(None, body.as_bytes());
            let _ = Manifest::parse(Some(media::OCI_INDEX), body.as_bytes());
        }
    }
}
