//! The agent catalogue's protocol: the metadata keys `agent build` writes and the registry
//! indexes, and the JSON of `/api/v1` (search, agents, versions, ratings) that the server
//! writes and the CLI reads.
//!
//! Agent metadata travels as OCI annotations on the manifest and the same keys as labels in
//! the image config, so any registry can carry it; lists are comma-separated.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const TITLE: &str = "org.opencontainers.image.title";
pub const DESCRIPTION: &str = "org.opencontainers.image.description";
pub const AUTHORS: &str = "org.opencontainers.image.authors";
pub const VERSION: &str = "org.opencontainers.image.version";
pub const CREATED: &str = "org.opencontainers.image.created";
pub const SOURCE: &str = "org.opencontainers.image.source";
pub const LICENSES: &str = "org.opencontainers.image.licenses";
pub const CAPABILITIES: &str = "dev.agent-registry.capabilities";
pub const TAGS: &str = "dev.agent-registry.tags";
pub const RUNTIME: &str = "dev.agent-registry.runtime";
pub const MODEL_PROVIDER: &str = "dev.agent-registry.model.provider";
pub const MODEL_NAME: &str = "dev.agent-registry.model.name";

/// The artifact type of an `agent.yaml` pushed with `subject` set to its image.
pub const AGENT_YAML_ARTIFACT: &str = "application/vnd.agent-registry.agent.v1+yaml";
/// The media type of the `agent.yaml` layer in that artifact.
pub const AGENT_YAML_LAYER: &str = "application/vnd.agent-registry.agent.manifest.v1+yaml";

/// Agent metadata, as annotations or labels carry it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// RFC 3339, as the annotation holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub licenses: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Search keywords (`metadata.tags` in agent.yaml), not image tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
}

impl AgentInfo {
    /// Reads the metadata keys from `primary` (manifest annotations), falling back per key to
    /// `fallback` (image config labels), so images built with `docker build` and LABELs are
    /// indexed the same way.
    pub fn from_keys(
        primary: &BTreeMap<String, String>,
        fallback: &BTreeMap<String, String>,
    ) -> AgentInfo {
        let get = |key: &str| {
            primary
                .get(key)
                .or_else(|| fallback.get(key))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let list = |key: &str| get(key).map(|v| split_list(&v)).unwrap_or_default();
        AgentInfo {
            title: get(TITLE),
            description: get(DESCRIPTION),
            author: get(AUTHORS),
            version: get(VERSION),
            created: get(CREATED),
            source: get(SOURCE),
            licenses: get(LICENSES),
            capabilities: list(CAPABILITIES),
            keywords: list(TAGS),
            runtime: get(RUNTIME),
            model_provider: get(MODEL_PROVIDER),
            model_name: get(MODEL_NAME),
        }
    }

    /// The annotations (and labels) that carry this metadata.
    pub fn to_keys(&self) -> BTreeMap<String, String> {
        let mut keys = BTreeMap::new();
        let mut put = |key: &str, value: Option<&String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                keys.insert(key.to_owned(), v.clone());
            }
        };
        put(TITLE, self.title.as_ref());
        put(DESCRIPTION, self.description.as_ref());
        put(AUTHORS, self.author.as_ref());
        put(VERSION, self.version.as_ref());
        put(CREATED, self.created.as_ref());
        put(SOURCE, self.source.as_ref());
        put(LICENSES, self.licenses.as_ref());
        put(CAPABILITIES, Some(&self.capabilities.join(",")));
        put(TAGS, Some(&self.keywords.join(",")));
        put(RUNTIME, self.runtime.as_ref());
        put(MODEL_PROVIDER, self.model_provider.as_ref());
        put(MODEL_NAME, self.model_name.as_ref());
        keys
    }

    /// `created` as seconds since the Unix epoch, if it is valid RFC 3339.
    pub fn created_unix(&self) -> Option<i64> {
        parse_rfc3339(self.created.as_deref()?)
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Seconds since the Unix epoch of an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// An RFC 3339 timestamp (UTC, whole seconds) for seconds since the Unix epoch.
pub fn format_rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Sizes as people read them: `150MB`, `1.2GB`, `512B` (powers of 1000, as `docker images`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 100.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{:.1}{}", value, UNITS[unit]).replace(".0", "")
    }
}

/// Parses `150MB`, `1.5GiB`, `200k`, `4096` into bytes (`k`/`M`/`G`/`T` are powers of 1000,
/// `Ki`/`Mi`/`Gi`/`Ti` of 1024).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().trim_end_matches(['B', 'b']);
    let scale: f64 = match unit {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" | "m" => 1e6,
        "G" | "g" => 1e9,
        "T" | "t" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// How search results are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    /// Exact name first, then names that start with the term, then names that contain it,
    /// then description matches; downloads break ties.
    #[default]
    Relevance,
    Downloads,
    Rating,
    /// Newest first.
    Created,
    Name,
}

/// `GET /api/v1/search` parameters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// Words matched against names (exact or partial) and descriptions, keywords and
    /// capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Exact repository name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An image tag: results show that tag of each repository that has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// RFC 3339 or a date (`2024-01-31`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before: Option<String>,
    /// Bytes, or a size such as `150MB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SortKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_page: Option<u32>,
}

/// One search hit, in the shape users script against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub name: String,
    pub tag: String,
    pub digest: String,
    pub description: Option<String>,
    pub author: Option<String>,
    pub capabilities: Vec<String>,
    /// Human-readable, as `150MB`.
    pub size: String,
    pub size_bytes: u64,
    /// RFC 3339.
    pub created: String,
    pub downloads: u64,
    /// Average stars, one decimal; `null` when nobody has rated.
    pub rating: Option<f64>,
    pub rating_count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub images: Vec<SearchHit>,
    pub total: u64,
    pub page: u32,
    pub per_page: u32,
}

/// One tag of an agent, as `GET /api/v1/agents/{name}` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionEntry {
    pub tag: String,
    pub digest: String,
    /// Whether the tag reads as a semantic version.
    pub semver: bool,
    pub prerelease: bool,
    pub size_bytes: u64,
    /// When this tag was last pushed (RFC 3339).
    pub pushed_at: String,
    /// Who pushed it, once the registry knows identities; the address it came from otherwise.
    pub pushed_by: Option<String>,
}

/// `GET /api/v1/agents/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDetail {
    pub name: String,
    /// The tag search shows for this agent.
    pub tag: String,
    pub info: AgentInfo,
    /// Highest release version among the tags, if any.
    pub latest_release: Option<String>,
    /// Versions newest first, then tags that are not versions.
    pub versions: Vec<VersionEntry>,
    pub downloads: u64,
    pub rating: Option<f64>,
    pub rating_count: u64,
}

/// `POST /api/v1/agents/{name}/ratings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatingRequest {
    pub stars: u8,
}

/// The answer to a rating: the agent's new average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatingSummary {
    pub rating: Option<f64>,
    pub rating_count: u64,
}

/// An average of `count` ratings summing to `sum`, to one decimal.
pub fn average(sum: u64, count: u64) -> Option<f64> {
    (count > 0).then(|| (sum as f64 / count as f64 * 10.0).round() / 10.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_win_over_labels_key_by_key() {
        let annotations = BTreeMap::from([(DESCRIPTION.to_owned(), "from manifest".to_owned())]);
        let labels = BTreeMap::from([
            (DESCRIPTION.to_owned(), "from labels".to_owned()),
            (
                CAPABILITIES.to_owned(),
                "chat, text-generation,,".to_owned(),
            ),
        ]);
        let info = AgentInfo::from_keys(&annotations, &labels);
        assert_eq!(info.description.as_deref(), Some("from manifest"));
        assert_eq!(info.capabilities, ["chat", "text-generation"]);
        assert_eq!(
            AgentInfo::from_keys(&info.to_keys(), &BTreeMap::new()),
            info
        );
    }

    #[test]
    fn sizes_read_and_print_like_docker() {
        assert_eq!(human_size(150_000_000), "150MB");
        assert_eq!(human_size(1_200_000_000), "1.2GB");
        assert_eq!(human_size(2_000_000), "2MB");
        assert_eq!(human_size(512), "512B");
        assert_eq!(parse_size("150MB"), Some(150_000_000));
        assert_eq!(parse_size("1.5Gi"), Some(1_610_612_736));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("5 parsecs"), None);
    }

    #[test]
    fn timestamps_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00Z"), Some(1_704_067_200));
        assert_eq!(
            parse_rfc3339("2024-01-01T01:00:00.123456789+01:00"),
            Some(1_704_067_200),
            "fractions and offsets, as image configs write them"
        );
        assert_eq!(format_rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn average_has_one_decimal() {
        assert_eq!(average(14, 3), Some(4.7));
        assert_eq!(average(0, 0), None);
    }
}
