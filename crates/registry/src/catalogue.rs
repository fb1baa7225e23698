//! The agent catalogue: what a pushed manifest contributes (its listing), search, an agent's
//! versions, downloads and ratings.
//!
//! A listing comes from the manifest's annotations first, then its image config's labels (for
//! an index, those of its first runnable image), so images built by `docker build` with
//! LABELs are indexed like those `agent build` makes.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agent_registry_metadata::access::Readable;
use agent_registry_metadata::{Listing, Search};
use agent_registry_oci::catalogue::{
    self, AgentDetail, AgentInfo, RatingSummary, SearchQuery, SearchResponse, VersionEntry,
    format_rfc3339, parse_rfc3339, parse_size,
};
use agent_registry_oci::{
    Digest, Manifest, ManifestKind, Reference, RepoName, RepoPattern, TagVersion,
};
use futures_util::TryStreamExt;
use serde::Deserialize;

use crate::{Error, Registry, Result};

/// Image configs larger than this are not read for labels (real ones are a few KiB).
const CONFIG_MAX_BYTES: u64 = 1 << 20;
/// Most results one search page may hold.
pub const MAX_PER_PAGE: u32 = 100;
const DEFAULT_PER_PAGE: u32 = 10;

/// Catalogue rules from configuration.
#[derive(Debug, Clone)]
pub struct CatalogueRules {
    /// Repositories whose release tags (`1.2.3`, not `1.2.3-rc.1` or `latest`) never move.
    pub immutable_releases: Vec<RepoPattern>,
    /// Pulls of one repository by one client within this window count as one download.
    pub download_window: Duration,
}

impl Default for CatalogueRules {
    fn default() -> Self {
        CatalogueRules {
            immutable_releases: Vec::new(),
            download_window: Duration::from_secs(60),
        }
    }
}

/// Recent pulls by client and repository, so repeated pulls count once per window.
#[derive(Debug, Default)]
pub(crate) struct RecentPulls(Mutex<HashMap<(String, RepoName), Instant>>);

impl RecentPulls {
    /// Whether this pull is the first by `client` of `repo` within `window`.
    fn first(&self, client: &str, repo: &RepoName, window: Duration) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return false;
        };
        let now = Instant::now();
        if seen.len() > 100_000 {
            seen.retain(|_, at| now.duration_since(*at) < window);
        }
        match seen.entry((client.to_owned(), repo.clone())) {
            Entry::Occupied(e) if now.duration_since(*e.get()) < window => false,
            Entry::Occupied(mut e) => {
                e.insert(now);
                true
            }
            Entry::Vacant(e) => {
                e.insert(now);
                true
            }
        }
    }
}

/// The parts of an image config the catalogue reads.
#[derive(Deserialize, Default)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: Option<ConfigBody>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigBody {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl Registry {
    /// Whether pushing `tag` of `repo` may only ever name one manifest.
    pub(crate) fn tag_is_immutable(&self, repo: &RepoName, reference: &Reference) -> bool {
        let Reference::Tag(tag) = reference else {
            return false;
        };
        TagVersion::parse(tag.as_str()).is_some_and(|v| !v.is_prerelease())
            && self
                .inner
                .rules
                .immutable_releases
                .iter()
                .any(|p| p.matches(repo))
    }

    /// What the catalogue shows for a manifest being pushed to `repo`.
    pub(crate) async fn listing(&self, repo: &RepoName, manifest: &Manifest) -> Listing {
        let (config, size) = match manifest.kind {
            ManifestKind::Image => (manifest.config.clone(), manifest.content_size),
            ManifestKind::Index => match self.first_image(repo, manifest).await {
                Some(child) => (child.config, child.content_size),
                None => (None, 0),
            },
        };
        let config = match config {
            Some(digest) => self.read_config(&digest).await,
            None => ImageConfig::default(),
        };
        let labels = config.config.and_then(|c| c.labels).unwrap_or_default();
        let info = AgentInfo::from_keys(&manifest.annotations, &labels);
        let created = info
            .created_unix()
            .or_else(|| config.created.as_deref().and_then(parse_rfc3339))
            .unwrap_or_else(now);
        Listing {
            info,
            created,
            size,
        }
    }

    /// The first runnable image of an index (its children are already stored).
    async fn first_image(&self, repo: &RepoName, index: &Manifest) -> Option<Manifest> {
        let digest = index.images.first()?;
        let child = self
            .inner
            .meta
            .manifest(repo, &Reference::Digest(digest.clone()))
            .await
            .ok()??;
        Manifest::parse(Some(&child.media_type), &child.content).ok()
    }

    /// An image config, or nothing when it is missing, huge or not JSON: the listing then
    /// has only what the annotations say.
    async fn read_config(&self, digest: &Digest) -> ImageConfig {
        let read = async {
            let size = self.inner.blobs.stat(digest).await.ok()??;
            if size > CONFIG_MAX_BYTES {
                return None;
            }
            let chunks: Vec<bytes::Bytes> = self
                .inner
                .blobs
                .read(digest, 0..size)
                .await
                .ok()?
                .try_collect()
                .await
                .ok()?;
            serde_json::from_slice::<ImageConfig>(&chunks.concat()).ok()
        };
        read.await.unwrap_or_default()
    }

    /// Searches the repositories of the catalogue that are `readable`.
    pub async fn search(&self, query: &SearchQuery, readable: Readable) -> Result<SearchResponse> {
        let per_page = query.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(Error::ParameterInvalid(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}"
            )));
        }
        let page = query.page.unwrap_or(1);
        if page == 0 {
            return Err(Error::ParameterInvalid("page starts at 1".into()));
        }
        let search = Search {
            text: query.q.clone(),
            name: query.name.clone(),
            tag: query.tag.clone(),
            capability: query.capability.clone(),
            author: query.author.clone(),
            created_after: query
                .created_after
                .as_deref()
                .map(|d| date("created_after", d))
                .transpose()?,
            created_before: query
                .created_before
                .as_deref()
                .map(|d| date("created_before", d))
                .transpose()?,
            size_min: query
                .size_min
                .as_deref()
                .map(|s| size("size_min", s))
                .transpose()?,
            size_max: query
                .size_max
                .as_deref()
                .map(|s| size("size_max", s))
                .transpose()?,
            sort: query.sort.unwrap_or_default(),
            readable,
            offset: u64::from(page - 1) * u64::from(per_page),
            limit: per_page,
        };
        let found = self.inner.meta.search(&search).await?;
        Ok(SearchResponse {
            images: found.hits,
            total: found.total,
            page,
            per_page,
        })
    }

    /// An agent with its versions.
    pub async fn agent(&self, repo: &RepoName) -> Result<AgentDetail> {
        let record = self
            .inner
            .meta
            .agent(repo)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.clone()))?;
        let latest_release =
            agent_registry_oci::version::latest_release(record.tags.iter().map(|t| t.tag.as_str()))
                .map(str::to_owned);
        let versions = record
            .tags
            .into_iter()
            .map(|t| {
                let version = TagVersion::parse(&t.tag);
                VersionEntry {
                    semver: version.is_some(),
                    prerelease: version.is_some_and(|v| v.is_prerelease()),
                    tag: t.tag,
                    digest: t.digest.to_string(),
                    size_bytes: t.size,
                    pushed_at: format_rfc3339(t.pushed_at),
                    pushed_by: t.pushed_by,
                }
            })
            .collect();
        Ok(AgentDetail {
            name: record.name.to_string(),
            tag: record.tag,
            info: record.listing.info,
            latest_release,
            versions,
            downloads: record.downloads,
            rating: catalogue::average(record.rating_sum, record.rating_count),
            rating_count: record.rating_count,
        })
    }

    /// Records `rater`'s 1-5 star rating of `repo`.
    pub async fn rate(&self, repo: &RepoName, rater: &str, stars: u8) -> Result<RatingSummary> {
        if !(1..=5).contains(&stars) {
            return Err(Error::ParameterInvalid(format!(
                "stars must be 1 to 5, not {stars}"
            )));
        }
        let (sum, count) = self
            .inner
            .meta
            .rate(repo, rater, stars)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.clone()))?;
        Ok(RatingSummary {
            rating: catalogue::average(sum, count),
            rating_count: count,
        })
    }

    /// Counts a manifest pull by `client` as a download, once per client and repository
    /// within the download window. The count is written in the background: a pull never
    /// waits for it.
    pub fn count_download(&self, repo: &RepoName, client: &str) {
        if !self
            .inner
            .recent_pulls
            .first(client, repo, self.inner.rules.download_window)
        {
            return;
        }
        let meta = self.inner.meta.clone();
        let repo = repo.clone();
        tokio::spawn(async move {
            if let Err(e) = meta.add_downloads(vec![(repo, 1)]).await {
                tracing::warn!(error = %e, "counting a download failed");
            }
        });
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A date bound: RFC 3339, or a day (`2024-01-31`, midnight UTC).
fn date(field: &str, value: &str) -> Result<i64> {
    parse_rfc3339(value)
        .or_else(|| parse_rfc3339(&format!("{value}T00:00:00Z")))
        .ok_or_else(|| {
            Error::ParameterInvalid(format!(
                "{field} must be a date (2024-01-31) or an RFC 3339 time, not {value:?}"
            ))
        })
}

fn size(field: &str, value: &str) -> Result<u64> {
    parse_size(value).ok_or_else(|| {
        Error::ParameterInvalid(format!(
            "{field} must be a size such as 150MB, 1.5GiB or 4096, not {value:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_pulls_count_once_per_window() {
        let pulls = RecentPulls::default();
        let repo: RepoName = "a/b".parse().expect("name");
        let window = Duration::from_secs(60);
        assert!(pulls.first("10.0.0.1", &repo, window));
        assert!(!pulls.first("10.0.0.1", &repo, window));
        assert!(pulls.first("10.0.0.2", &repo, window));
        assert!(
            pulls.first("10.0.0.1", &repo, Duration::ZERO),
            "a new window counts again"
        );
    }

    #[test]
    fn dates_and_sizes_are_checked() {
        assert_eq!(date("d", "2024-01-01").ok(), Some(1_704_067_200));
        assert!(
            matches!(date("created_after", "last week"), Err(Error::ParameterInvalid(m)) if m.contains("created_after"))
        );
        assert_eq!(size("s", "2MB").ok(), Some(2_000_000));
        assert!(size("size_min", "big").is_err());
    }
}
