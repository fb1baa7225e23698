//! What every backend derives the same way for the catalogue: which tag an agent shows, the
//! words its text index holds, how search text splits into terms, and a hit's fields. Backends
//! only store and query; these rules live once, so SQLite and PostgreSQL answer alike.

use agent_registry_oci::catalogue::{AgentInfo, SearchHit, format_rfc3339, human_size};
use agent_registry_oci::{RepoName, version};

use crate::{Listing, MetadataError, Result, TagRecord};

/// A tag as the catalogue weighs it: name, digest, when it last moved.
pub(crate) type TagRow = (String, String, i64);

pub(crate) fn encode(info: &AgentInfo) -> Result<String> {
    serde_json::to_string(info).map_err(|e| MetadataError::backend("encoding a listing", e))
}

pub(crate) fn decode(info: Option<&str>) -> AgentInfo {
    info.and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// Which tag the catalogue shows: `latest`, else the highest release, else the newest tag.
pub(crate) fn display_tag(tags: &[TagRow]) -> Option<&TagRow> {
    tags.iter()
        .find(|(name, ..)| name == "latest")
        .or_else(|| {
            let best = version::latest_release(tags.iter().map(|(n, ..)| n.as_str()))?;
            tags.iter().find(|(n, ..)| n == best)
        })
        .or_else(|| {
            tags.iter()
                .max_by(|a, b| a.2.cmp(&b.2).then_with(|| b.0.cmp(&a.0)))
        })
}

/// A repository's tag names as the `agents.tags` column keeps them: sorted, one per line (a
/// tag cannot hold a line break).
pub(crate) fn tag_names(tags: &[TagRow]) -> String {
    let mut names: Vec<&str> = tags.iter().map(|(n, ..)| n.as_str()).collect();
    names.sort_unstable();
    names.join("\n")
}

/// The text search matches: the name's parts and every descriptive field.
pub(crate) fn words(repo: &RepoName, info: &AgentInfo) -> String {
    let mut words: Vec<&str> = repo.as_str().split(['/', '-', '_', '.']).collect();
    words.push(repo.as_str());
    words.extend(info.title.as_deref());
    words.extend(info.description.as_deref());
    words.extend(info.keywords.iter().map(String::as_str));
    words.extend(info.capabilities.iter().map(String::as_str));
    words.extend(info.author.as_deref());
    words.extend(info.model_name.as_deref());
    words.join(" ")
}

/// One word of search text, lower-cased; `prefix` when it is long enough to match as a
/// prefix (`summ` finds `summarizer`). Shorter words match only whole: a one-letter prefix
/// would match most of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Term {
    pub word: String,
    pub prefix: bool,
}

/// The words of search text: its runs of letters and digits, every one of which must match.
pub(crate) fn terms(text: &str) -> Vec<Term> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| Term {
            word: w.to_lowercase(),
            prefix: w.chars().count() >= 3,
        })
        .collect()
}

/// An agent's tags as its page lists them, newest version first, and the digest of the one it
/// shows (`tag`).
pub(crate) fn versions(mut tags: Vec<TagRecord>, tag: &str) -> (Vec<TagRecord>, String) {
    tags.sort_by(|a, b| version::newest_first(&a.tag, &b.tag));
    let digest = tags
        .iter()
        .find(|t| t.tag == tag)
        .map(|t| t.digest.to_string())
        .unwrap_or_default();
    (tags, digest)
}

/// Whether `text` could be part of a repository name (so a name match is worth trying).
pub(crate) fn name_like(text: &str) -> Option<String> {
    let t = text.trim().to_lowercase();
    let ok = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c));
    ok.then_some(t)
}

/// A hit showing `tag` of `name` with its listing; downloads and rating are the agent's and
/// left for the caller.
pub(crate) fn hit_of(name: String, tag: String, digest: String, listing: Listing) -> SearchHit {
    SearchHit {
        name,
        tag,
        digest,
        description: listing.info.description,
        author: listing.info.author,
        capabilities: listing.info.capabilities,
        size: human_size(listing.size),
        size_bytes: listing.size,
        created: format_rfc3339(listing.created),
        downloads: 0,
        rating: None,
        rating_count: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_splits_into_lowercase_terms() {
        let t = |w: &str, prefix| Term {
            word: w.to_owned(),
            prefix,
        };
        assert_eq!(
            terms("Chat bot, v2!"),
            [t("chat", true), t("bot", true), t("v2", false)]
        );
        assert_eq!(terms("\"*)("), []);
    }

    #[test]
    fn only_name_shaped_terms_match_names() {
        assert_eq!(name_like("Team/Agent-1").as_deref(), Some("team/agent-1"));
        assert_eq!(name_like("two words"), None);
        assert_eq!(name_like("glob*"), None);
    }

    #[test]
    fn display_tag_prefers_latest_then_releases_then_newest() {
        let t = |n: &str, at: i64| (n.to_owned(), format!("d-{n}"), at);
        assert_eq!(
            display_tag(&[t("1.0.0", 1), t("latest", 0), t("2.0.0", 2)]).map(|x| x.0.as_str()),
            Some("latest")
        );
        assert_eq!(
            display_tag(&[t("1.0.0", 5), t("2.0.0-rc.1", 9), t("1.1.0", 1)]).map(|x| x.0.as_str()),
            Some("1.1.0")
        );
        assert_eq!(
            display_tag(&[t("dev", 5), t("edge", 9)]).map(|x| x.0.as_str()),
            Some("edge")
        );
        assert_eq!(display_tag(&[]), None);
    }
}
