//! Content discovery: tags, the catalog, referrers.
//!
//! Tag lists are cached per repository, keyed by the metadata store's tags version, which
//! changes with every tag change on any node; each request pays one point read to validate
//! the cache instead of reading the whole list.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agent_registry_metadata::{Page, Referrer};
use agent_registry_oci::{Digest, RepoName};

use crate::{Error, Registry, Result};

/// The most names one page may hold, whatever `n` asks for.
pub const MAX_PAGE: usize = 10_000;
/// Repositories with more tags than this are paged from the database, not cached.
const CACHE_MAX_TAGS: usize = MAX_PAGE;
/// Repositories whose tag lists are kept; past this the cache starts afresh.
const CACHE_MAX_REPOS: usize = 1024;

/// A repository's tags, sorted, as read at some tags version.
type VersionedTags = (i64, Arc<[String]>);

/// Tag lists of recently listed repositories.
#[derive(Default)]
pub(crate) struct TagsCache(Mutex<HashMap<RepoName, VersionedTags>>);

impl TagsCache {
    fn get(&self, repo: &RepoName, version: i64) -> Option<Arc<[String]>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(repo)
            .filter(|(v, _)| *v == version)
            .map(|(_, tags)| tags.clone())
    }

    fn put(&self, repo: &RepoName, version: i64, tags: Arc<[String]>) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX_REPOS && !map.contains_key(repo) {
            map.clear();
        }
        map.insert(repo.clone(), (version, tags));
    }
}

impl Registry {
    /// Tags of `repo` after `last`, at most `n`, in lexical order.
    pub async fn tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<Page> {
        let n = n.min(MAX_PAGE);
        let meta = &self.inner.meta;
        let version = meta
            .tags_version(repo)
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.clone()))?;
        let cached = self.inner.tags_cache.get(repo, version);
        let counter = match cached {
            Some(_) => &self.inner.counters.tag_cache_hits,
            None => &self.inner.counters.tag_cache_misses,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let all = match cached {
            Some(all) => all,
            None => {
                let page = meta
                    .list_tags(repo, None, CACHE_MAX_TAGS)
                    .await?
                    .ok_or_else(|| Error::NameUnknown(repo.clone()))?;
                if page.more {
                    // Too many to cache: let the database page them.
                    return meta
                        .list_tags(repo, last, n)
                        .await?
                        .ok_or_else(|| Error::NameUnknown(repo.clone()));
                }
                let all: Arc<[String]> = page.items.into();
                self.inner.tags_cache.put(repo, version, all.clone());
                all
            }
        };
        let start = last.map_or(0, |last| all.partition_point(|t| t.as_str() <= last));
        let rest = &all[start..];
        Ok(Page {
            items: rest.iter().take(n).cloned().collect(),
            more: rest.len() > n,
        })
    }

    /// Repository names after `last` that pass `visible`, at most `n`, in lexical order.
    pub async fn catalog(
        &self,
        last: Option<&str>,
        n: usize,
        visible: impl Fn(&str) -> bool,
    ) -> Result<Page> {
        let n = n.min(MAX_PAGE);
        let mut out = Page::default();
        let mut after = last.map(str::to_owned);
        // Hidden names are skipped page by page until `n` visible ones are found.
        loop {
            let page = self
                .inner
                .meta
                .list_repositories(after.as_deref(), n.max(1))
                .await?;
            after = page.items.last().cloned();
            for name in page.items {
                if !visible(&name) {
                    continue;
                }
                if out.items.len() == n {
                    out.more = true;
                    return Ok(out);
                }
                out.items.push(name);
            }
            if !page.more {
                return Ok(out);
            }
        }
    }

    /// The indexes of `repo` that list `digest` as one of their manifests.
    pub async fn parents(&self, repo: &RepoName, digest: &Digest) -> Result<Vec<Digest>> {
        Ok(self.inner.meta.parents(repo, digest).await?)
    }

    /// Manifests in `repo` whose subject is `subject`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        Ok(self
            .inner
            .meta
            .referrers(repo, subject, artifact_type)
            .await?)
    }
}
