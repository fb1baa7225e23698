//! Tags read as semantic versions: `1.2.3`, `v1.2.3`, `1.2.3-rc.1`, `1.2.3+build.5`.
//!
//! A tag that is not a full `MAJOR.MINOR.PATCH` version (`latest`, `1.2`, `sha-abc`) is simply
//! not a version; the catalogue lists it after the versions.

use std::cmp::Ordering;

/// A tag that names a semantic version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagVersion(semver::Version);

impl TagVersion {
    /// Reads `tag` as a version, allowing one leading `v`.
    pub fn parse(tag: &str) -> Option<TagVersion> {
        let bare = tag.strip_prefix('v').unwrap_or(tag);
        semver::Version::parse(bare).ok().map(TagVersion)
    }

    /// Whether this is a pre-release (`1.0.0-rc.1`), which never counts as the latest release.
    pub fn is_prerelease(&self) -> bool {
        !self.0.pre.is_empty()
    }

    pub fn version(&self) -> &semver::Version {
        &self.0
    }
}

impl PartialOrd for TagVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TagVersion {
    /// Semantic-version precedence; build metadata only breaks ties, so the order is total.
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .cmp_precedence(&other.0)
            .then_with(|| self.0.cmp(&other.0))
    }
}

/// Orders tags newest version first: releases and pre-releases by precedence, then every tag
/// that is not a version, by name.
pub fn newest_first(a: &str, b: &str) -> Ordering {
    match (TagVersion::parse(a), TagVersion::parse(b)) {
        (Some(x), Some(y)) => y.cmp(&x).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// The highest release (not pre-release) among `tags`.
pub fn latest_release<'a>(tags: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    tags.into_iter()
        .filter_map(|t| {
            TagVersion::parse(t)
                .filter(|v| !v.is_prerelease())
                .map(|v| (v, t))
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_with_and_without_v_are_versions() {
        assert!(TagVersion::parse("1.2.3").is_some());
        assert!(TagVersion::parse("v1.2.3").is_some());
        assert!(TagVersion::parse("1.2.3-rc.1").is_some_and(|v| v.is_prerelease()));
        for not in ["latest", "1.2", "v", "sha-1234", "1.2.3.4", "01.2.3"] {
            assert!(TagVersion::parse(not).is_none(), "{not}");
        }
    }

    #[test]
    fn newest_first_puts_versions_by_precedence_then_other_tags() {
        let mut tags = vec![
            "latest",
            "1.10.0",
            "v1.2.0",
            "1.2.0-rc.1",
            "2.0.0-alpha",
            "1.9.9",
            "edge",
        ];
        tags.sort_by(|a, b| newest_first(a, b));
        assert_eq!(
            tags,
            [
                "2.0.0-alpha",
                "1.10.0",
                "1.9.9",
                "v1.2.0",
                "1.2.0-rc.1",
                "edge",
                "latest"
            ]
        );
    }

    #[test]
    fn latest_release_skips_prereleases_and_non_versions() {
        assert_eq!(
            latest_release(["1.0.0", "2.0.0-rc.1", "latest", "v1.1.0"]),
            Some("v1.1.0")
        );
        assert_eq!(latest_release(["latest", "2.0.0-rc.1"]), None);
    }
}
