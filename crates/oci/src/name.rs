//! Repository names, tags and manifest references, validated by the distribution spec's grammar.
//!
//! ```text
//! name      = component ("/" component)*          at most 255 characters
//! component = [a-z0-9]+ (separator [a-z0-9]+)*    separator = "." | "_" | "__" | "-"+
//! tag       = [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
//! reference = tag | digest
//! ```

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The longest repository name we accept, as the spec advises clients to assume.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "repository name {0:?} is invalid: components are lower-case letters and digits, joined by '.', '_', '__' or '-', separated by '/', at most 255 characters"
    )]
    Repository(String),
    #[error("tag {0:?} is invalid: up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    Tag(String),
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name such as `team/agents/summarizer`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A set of repositories named in configuration: `team/agent` (that one), `team/*` (every
/// repository under `team/`, at any depth) or `*` (all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPattern(String);

impl RepoPattern {
    /// `*`: every repository.
    pub fn all() -> RepoPattern {
        RepoPattern("*".to_owned())
    }

    pub fn matches(&self, repo: &RepoName) -> bool {
        match self.prefix() {
            Some(prefix) => repo.as_str().starts_with(prefix),
            None => repo.as_str() == self.0,
        }
    }

    /// What every matching name starts with (`team/` for `team/*`, empty for `*`); `None` for
    /// a single repository.
    pub fn prefix(&self) -> Option<&str> {
        self.0.strip_suffix('*')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RepoPattern {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(RepoPattern::all());
        }
        let name = s.strip_suffix("/*").unwrap_or(s);
        name.parse::<RepoName>()?;
        Ok(RepoPattern(if name.len() < s.len() {
            format!("{name}/*")
        } else {
            s.to_owned()
        }))
    }
}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RepoName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(is_component) {
            return Err(NameError::Repository(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

fn is_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    // Between alphanumeric runs: exactly ".", "_", "__", or one or more "-".
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A validated tag such as `v1.2.0`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let valid_char = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-');
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b.iter().all(valid_char);
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(NameError::Tag(s.to_owned()))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What follows `/manifests/` in a URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = NameError;

    /// A reference with a colon is a digest (tags cannot hold one); anything else is a tag.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_name_a_namespace_or_all() {
        let repo = |s: &str| s.parse::<RepoName>().expect("name");
        let pattern = |s: &str| s.parse::<RepoPattern>().expect("pattern");
        assert!(pattern("team/a").matches(&repo("team/a")));
        assert!(!pattern("team/a").matches(&repo("team/ab")));
        assert!(pattern("team/*").matches(&repo("team/a/b")));
        assert!(!pattern("team/*").matches(&repo("teamx/a")));
        assert!(pattern("*").matches(&repo("x")));
        assert!("Team/*".parse::<RepoPattern>().is_err());
        assert!("team*".parse::<RepoPattern>().is_err());
    }

    #[test]
    fn accepts_names_in_the_grammar() {
        for ok in [
            "a",
            "library/busybox",
            "team/agents/summarizer",
            "a.b_c__d---e/f0",
            "deep/a/b/c/d/e/f/g/h/i/j",
        ] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_names_outside_the_grammar() {
        let too_long = "a".repeat(256);
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a_.b", "a b", "a:b",
            &too_long,
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            assert!(ok.parse::<Tag>().is_ok(), "{ok}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "a+b", &"a".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reference_is_a_digest_when_it_has_a_colon() {
        assert!(matches!("v1".parse::<Reference>(), Ok(Reference::Tag(_))));
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>(), Ok(Reference::Digest(_))));
        assert!(matches!(
            "sha256:zz".parse::<Reference>(),
            Err(NameError::Digest(_))
        ));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,300}") {
            let _ = s.parse::<RepoName>();
            let _ = s.parse::<Tag>();
            let _ = s.parse::<Reference>();
        }

        #[test]
        fn names_from_the_grammar_are_accepted(s in "[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}(/[a-z0-9]{1,8}((\\.|_|__|-{1,3})[a-z0-9]{1,8}){0,2}){0,4}") {
            prop_assert_eq!(s.parse::<RepoName>().map(|n| n.to_string()), Ok(s));
        }

        #[test]
        fn tags_from_the_grammar_are_accepted(s in "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}") {
            prop_assert_eq!(s.parse::<Tag>().map(|t| t.to_string()), Ok(s));
        }
    }
}
