//! Image references as people write them: `[registry/]path[:tag][@digest]`.
//!
//! ```text
//! busybox                          -> docker.io, library/busybox, tag latest
//! ghcr.io/team/agent:1.0           -> ghcr.io, team/agent, tag 1.0
//! localhost:5000/agent@sha256:...  -> localhost:5000, agent, by digest
//! ```
//!
//! The first component names a registry when it has a `.` or a `:`, or is `localhost`, as
//! docker decides. Docker Hub's conventions (`docker.io` served from `registry-1.docker.io`,
//! one-component names under `library/`) apply only when talking to it: the reference keeps
//! the path as written, so `agent push my-agent --registry localhost:5000` pushes
//! `localhost:5000/my-agent`, not `library/my-agent`.

use std::fmt;
use std::str::FromStr;

use agent_registry_oci::{Digest, NameError, RepoName, Tag};

/// The registry a reference names when it names none.
pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image reference {0:?} is empty")]
    Empty(String),
    #[error("image reference {reference:?} is invalid: {source}")]
    Invalid {
        reference: String,
        #[source]
        source: NameError,
    },
    #[error("image reference {0:?} names a registry but no repository")]
    NoRepository(String),
}

/// A parsed image reference. `registry` is `None` when the reference named none.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    pub registry: Option<String>,
    pub path: RepoName,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// The registry host this reference lives on (`docker.io` when it names none).
    pub fn registry(&self) -> &str {
        self.registry.as_deref().unwrap_or(DOCKER_HUB)
    }

    /// The tag to use: the one written, or `latest` when neither tag nor digest was.
    pub fn tag_or_latest(&self) -> Option<Tag> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(_)) => None,
            (None, None) => "latest".parse().ok(),
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, self.tag_or_latest()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The repository name on the registry's API: Docker Hub keeps official images under
    /// `library/`.
    pub fn api_repository(&self) -> String {
        if self.is_docker_hub() && !self.path.as_str().contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.to_string()
        }
    }

    /// The host that serves the registry's API.
    pub fn api_host(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_API
        } else {
            self.registry()
        }
    }

    pub fn is_docker_hub(&self) -> bool {
        matches!(
            self.registry(),
            DOCKER_HUB | "index.docker.io" | DOCKER_HUB_API
        )
    }

    /// The same path, tag and digest on another registry.
    pub fn on_registry(&self, registry: Option<&str>) -> ImageRef {
        ImageRef {
            registry: registry.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: Tag) -> ImageRef {
        ImageRef {
            tag: Some(tag),
            digest: None,
            ..self.clone()
        }
    }

    /// `[registry/]path`, as docker prints a repository: Docker Hub's `library/` and host are
    /// left out.
    pub fn familiar_repository(&self) -> String {
        if self.is_docker_hub() {
            let path = self.path.as_str();
            path.strip_prefix("library/").unwrap_or(path).to_owned()
        } else {
            format!("{}/{}", self.registry(), self.path)
        }
    }

    /// The canonical local name, `familiar_repository:tag`, used as the key in the local
    /// store, so `busybox`, `docker.io/busybox` and `docker.io/library/busybox` are one image.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        if let Some(t) = self.tag_or_latest() {
            s.push(':');
            s.push_str(t.as_str());
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |source| ReferenceError::Invalid {
            reference: s.to_owned(),
            source,
        };
        if s.trim().is_empty() {
            return Err(ReferenceError::Empty(s.to_owned()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| invalid(e.into()))?),
            ),
            None => (s, None),
        };
        let (registry, rest) = match rest.split_once('/') {
            Some((first, tail))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_owned()), tail)
            }
            _ => (None, rest),
        };
        if rest.is_empty() {
            return Err(ReferenceError::NoRepository(s.to_owned()));
        }
        // A colon after the last slash starts the tag; one before it belongs to a port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last_slash..].find(':') {
            Some(i) => {
                let at = last_slash + i;
                (
                    &rest[..at],
                    Some(rest[at + 1..].parse::<Tag>().map_err(invalid)?),
                )
            }
            None => (rest, None),
        };
        let path = path.parse::<RepoName>().map_err(invalid)?;
        Ok(ImageRef {
            registry,
            path,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        write!(f, "{}", self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn a_bare_name_is_docker_hub_library_latest() {
        let i = r("busybox");
        assert_eq!(i.registry(), "docker.io");
        assert_eq!(i.api_host(), "registry-1.docker.io");
        assert_eq!(i.api_repository(), "library/busybox");
        assert_eq!(i.manifest_reference(), "latest");
        assert_eq!(i.familiar(), "busybox:latest");
    }

    #[test]
    fn docker_hub_spellings_are_one_image() {
        for s in [
            "busybox",
            "docker.io/busybox",
            "docker.io/library/busybox:latest",
        ] {
            assert_eq!(r(s).familiar(), "busybox:latest", "{s}");
        }
        assert_eq!(r("docker.io/team/x:1").api_repository(), "team/x");
    }

    #[test]
    fn the_first_component_is_a_registry_only_when_it_looks_like_a_host() {
        let i = r("localhost:5000/team/agent:1.0");
        assert_eq!(i.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(i.path.as_str(), "team/agent");
        assert_eq!(i.tag.as_ref().map(Tag::as_str), Some("1.0"));
        assert_eq!(i.familiar(), "localhost:5000/team/agent:1.0");
        assert_eq!(r("localhost/a").registry.as_deref(), Some("localhost"));
        assert_eq!(r("ghcr.io/a/b").registry.as_deref(), Some("ghcr.io"));
        assert_eq!(r("team/agent").registry, None);
    }

    #[test]
    fn digests_and_tags_combine() {
        let i = r(&format!("example.com:443/a/b:v1@{D}"));
        assert_eq!(i.manifest_reference(), D);
        assert_eq!(i.tag.as_ref().map(Tag::as_str), Some("v1"));
        let by_digest = r(&format!("a@{D}"));
        assert_eq!(by_digest.tag_or_latest(), None);
        assert_eq!(by_digest.to_string(), format!("a@{D}"));
    }

    #[test]
    fn moving_to_another_registry_keeps_the_path_as_written() {
        let i = r("my-agent:1.0").on_registry(Some("127.0.0.1:5000"));
        assert_eq!(i.api_repository(), "my-agent");
        assert_eq!(i.to_string(), "127.0.0.1:5000/my-agent:1.0");
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        for bad in [
            "",
            "UPPER",
            "a:b:c",
            "localhost:5000/",
            "a@sha256:zz",
            "a:-x",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,200}") {
            let _ = s.parse::<ImageRef>();
        }

        #[test]
        fn display_round_trips(
            host in proptest::option::of("(localhost|[a-z]{1,8}\\.[a-z]{2,3})(:[0-9]{2,5})?"),
            path in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}",
            tag in proptest::option::of("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"),
        ) {
            let mut s = String::new();
            if let Some(h) = &host { s.push_str(h); s.push('/'); }
            s.push_str(&path);
            if let Some(t) = &tag { s.push(':'); s.push_str(t); }
            let parsed: ImageRef = s.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(parsed.to_string(), s);
            prop_assert_eq!(parsed.registry, host);
        }
    }
}
