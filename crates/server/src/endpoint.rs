//! Parses a `/v2/...` path into a typed [`Endpoint`].
//!
//! Repository names contain slashes, so the path is read from the right: the last segments
//! say which endpoint it is, and everything before them is the name. Names are validated
//! here, so handlers only ever see valid ones.

use agent_registry_oci::{Digest, NameError, Reference, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Catalog,
    TagsList { name: RepoName },
    Manifest { name: RepoName, reference: String },
    Blob { name: RepoName, digest: String },
    UploadStart { name: RepoName },
    Upload { name: RepoName, id: String },
    Referrers { name: RepoName, digest: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("no such endpoint: /v2/{0}")]
    NotFound(String),
    #[error(transparent)]
    Name(NameError),
}

impl Endpoint {
    /// The repository the endpoint is about; `None` for the catalog.
    pub fn name(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Catalog => None,
            Endpoint::TagsList { name }
            | Endpoint::Manifest { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::UploadStart { name }
            | Endpoint::Upload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }

    /// The kind of route, as metrics label it.
    pub fn family(&self) -> &'static str {
        match self {
            Endpoint::Catalog => "catalog",
            Endpoint::TagsList { .. } => "tags",
            Endpoint::Manifest { .. } => "manifests",
            Endpoint::Blob { .. } => "blobs",
            Endpoint::UploadStart { .. } | Endpoint::Upload { .. } => "uploads",
            Endpoint::Referrers { .. } => "referrers",
        }
    }

    /// `path` is what follows `/v2/`.
    pub fn parse(path: &str) -> Result<Endpoint, EndpointError> {
        if path == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let segs: Vec<&str> = path.split('/').collect();
        let n = segs.len();
        let name = |upto: usize| -> Result<RepoName, EndpointError> {
            segs[..upto].join("/").parse().map_err(EndpointError::Name)
        };
        let not_found = || EndpointError::NotFound(path.to_owned());
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Ok(Endpoint::TagsList { name: name(n - 2)? });
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Ok(Endpoint::UploadStart { name: name(n - 2)? });
        }
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let id = segs[n - 1];
            return Ok(if id.is_empty() {
                Endpoint::UploadStart { name: name(n - 3)? }
            } else {
                Endpoint::Upload {
                    name: name(n - 3)?,
                    id: id.to_owned(),
                }
            });
        }
        if n >= 3 {
            let last = segs[n - 1].to_owned();
            if last.is_empty() {
                return Err(not_found());
            }
            return match segs[n - 2] {
                "manifests" => Ok(Endpoint::Manifest {
                    name: name(n - 2)?,
                    reference: last,
                }),
                "blobs" => Ok(Endpoint::Blob {
                    name: name(n - 2)?,
                    digest: last,
                }),
                "referrers" => Ok(Endpoint::Referrers {
                    name: name(n - 2)?,
                    digest: last,
                }),
                _ => Err(not_found()),
            };
        }
        Err(not_found())
    }
}

/// Parses a digest from a URL or query, as a `DIGEST_INVALID` error when it is not one.
pub fn digest(s: &str) -> Result<Digest, agent_registry_registry::Error> {
    s.parse().map_err(|e: agent_registry_oci::DigestError| {
        agent_registry_registry::Error::DigestInvalid(e.to_string())
    })
}

/// Parses a manifest reference: a bad digest is `DIGEST_INVALID`, a bad tag `TAG_INVALID`.
pub fn reference(s: &str) -> Result<Reference, agent_registry_registry::Error> {
    s.parse().map_err(|e| match e {
        NameError::Digest(d) => agent_registry_registry::Error::DigestInvalid(d.to_string()),
        other => agent_registry_registry::Error::TagInvalid(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> RepoName {
        s.parse().expect("valid")
    }

    #[test]
    fn parses_from_the_right_so_names_may_hold_endpoint_words() {
        assert_eq!(Endpoint::parse("_catalog"), Ok(Endpoint::Catalog));
        assert_eq!(
            Endpoint::parse("a/b/tags/list"),
            Ok(Endpoint::TagsList { name: name("a/b") })
        );
        assert_eq!(
            Endpoint::parse("blobs/manifests/manifests/latest"),
            Ok(Endpoint::Manifest {
                name: name("blobs/manifests"),
                reference: "latest".into()
            })
        );
        assert_eq!(
            Endpoint::parse("x/blobs/uploads/"),
            Ok(Endpoint::UploadStart { name: name("x") })
        );
        assert_eq!(
            Endpoint::parse("x/blobs/uploads"),
            Ok(Endpoint::UploadStart { name: name("x") })
        );
        assert_eq!(
            Endpoint::parse("x/y/blobs/uploads/abc"),
            Ok(Endpoint::Upload {
                name: name("x/y"),
                id: "abc".into()
            })
        );
        assert_eq!(
            Endpoint::parse("x/blobs/sha256:0"),
            Ok(Endpoint::Blob {
                name: name("x"),
                digest: "sha256:0".into()
            })
        );
        assert_eq!(
            Endpoint::parse("x/referrers/d"),
            Ok(Endpoint::Referrers {
                name: name("x"),
                digest: "d".into()
            })
        );
        let deep = (0..12)
            .map(|i| format!("p{i}"))
            .collect::<Vec<_>>()
            .join("/");
        assert!(matches!(
            Endpoint::parse(&format!("{deep}/tags/list")),
            Ok(Endpoint::TagsList { .. })
        ));
    }

    #[test]
    fn rejects_unknown_paths_and_bad_names() {
        assert!(matches!(
            Endpoint::parse("x"),
            Err(EndpointError::NotFound(_))
        ));
        assert!(matches!(
            Endpoint::parse("x/other/y"),
            Err(EndpointError::NotFound(_))
        ));
        assert!(matches!(
            Endpoint::parse("x/manifests/"),
            Err(EndpointError::NotFound(_))
        ));
        assert!(matches!(
            Endpoint::parse("Bad/manifests/latest"),
            Err(EndpointError::Name(_))
        ));
        assert!(matches!(
            Endpoint::parse("/manifests/latest"),
            Err(EndpointError::Name(_))
        ));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_any_path_never_panics(path in "[a-z0-9/._:-]{0,120}|.{0,120}") {
            let _ = Endpoint::parse(&path);
        }

        #[test]
        fn manifest_paths_keep_their_name_whatever_words_it_holds(
            parts in proptest::collection::vec("(blobs|uploads|manifests|tags|list|referrers|[a-z0-9]{1,6})", 1..6),
            reference in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}",
        ) {
            let name = parts.join("/");
            let parsed = Endpoint::parse(&format!("{name}/manifests/{reference}"));
            prop_assert_eq!(parsed, Ok(Endpoint::Manifest { name: name.parse().expect("valid"), reference }));
        }
    }
}
