//! Content discovery: tags, the catalog, referrers.

use agent_registry_metadata::{Page, Referrer};
use agent_registry_oci::{Digest, RepoName};

use crate::{Error, Registry, Result};

/// The most names one page may hold, whatever `n` asks for.
pub const MAX_PAGE: usize = 10_000;

impl Registry {
    /// Tags of `repo` after `last`, at most `n`, in lexical order.
    pub async fn tags(&self, repo: &RepoName, last: Option<&str>, n: usize) -> Result<Page> {
        self.inner
            .meta
            .list_tags(repo, last, n.min(MAX_PAGE))
            .await?
            .ok_or_else(|| Error::NameUnknown(repo.clone()))
    }

    /// Repository names after `last`, at most `n`, in lexical order.
    pub async fn catalog(&self, last: Option<&str>, n: usize) -> Result<Page> {
        Ok(self
            .inner
            .meta
            .list_repositories(last, n.min(MAX_PAGE))
            .await?)
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
