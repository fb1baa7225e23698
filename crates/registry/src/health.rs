//! Readiness, and the room a push may take: whether blob storage takes writes, whether the
//! metadata database answers, whether free space is above
//! [`Limits::min_free_bytes`](crate::Limits), and whether a push fits its repository's
//! [`Limits::quotas`](crate::Limits).

use std::future::Future;
use std::time::{Duration, Instant};

use agent_registry_oci::catalogue::human_size;
use agent_registry_oci::health::Check;
use agent_registry_oci::{Digest, RepoName};

use crate::{Error, Registry, Result};

/// How long one check may take before it counts as failed (a hung disk fails readiness
/// instead of hanging the probe).
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Registry {
    /// Runs every readiness check, all at once.
    pub async fn health_checks(&self) -> Vec<Check> {
        let storage = timed("storage", async {
            self.inner.blobs.probe().await.map_err(|e| e.to_string())?;
            Ok("writable".to_owned())
        });
        let database = timed("database", async {
            self.inner.meta.ping().await.map_err(|e| e.to_string())?;
            Ok("reachable".to_owned())
        });
        let free_space = timed("free_space", self.free_space());
        let (storage, database, free_space) = tokio::join!(storage, database, free_space);
        vec![storage, database, free_space]
    }

    async fn free_space(&self) -> Result<String, String> {
        let floor = self.inner.limits.min_free_bytes;
        let free = self
            .inner
            .blobs
            .available()
            .await
            .map_err(|e| e.to_string())?;
        match free {
            None => Ok("not known for this storage".to_owned()),
            Some(free) if free < floor => Err(format!(
                "{} free, below the floor of {}",
                human_size(free),
                human_size(floor)
            )),
            Some(free) if floor > 0 => Ok(format!(
                "{} free, floor {}",
                human_size(free),
                human_size(floor)
            )),
            Some(free) => Ok(format!("{} free", human_size(free))),
        }
    }

    /// Refuses to let `repo` hold `adding` more bytes when that would take a quota matching it
    /// over its limit. A blob (`digest`, when known) already held under a quota's pattern
    /// costs it nothing. Quotas count committed blobs, so uploads running side by side may
    /// together overshoot one by what they carry.
    pub(crate) async fn check_quota(
        &self,
        repo: &RepoName,
        adding: u64,
        digest: Option<&Digest>,
    ) -> Result<()> {
        for (pattern, max) in &self.inner.limits.quotas {
            if !pattern.matches(repo) {
                continue;
            }
            if let Some(d) = digest
                && self.inner.meta.holds_under(pattern, d).await?
            {
                continue;
            }
            let used = self.inner.meta.bytes_under(pattern).await?;
            if used.saturating_add(adding) > *max {
                return Err(Error::StorageFull(format!(
                    "the quota of {pattern} is {}, {} of it is used, and {} more in {repo} would exceed it",
                    human_size(*max),
                    human_size(used),
                    human_size(adding)
                )));
            }
        }
        Ok(())
    }

    /// Refuses to write `incoming` more bytes when that would leave less free space than the
    /// floor.
    pub(crate) async fn check_space(&self, incoming: u64) -> Result<()> {
        let floor = self.inner.limits.min_free_bytes;
        if floor == 0 {
            return Ok(());
        }
        let Some(free) = self.inner.blobs.available().await? else {
            return Ok(());
        };
        if free.saturating_sub(incoming) < floor {
            return Err(Error::StorageFull(format!(
                "storing {} more would leave {} free on the registry's storage, below its floor of {}",
                human_size(incoming),
                human_size(free.saturating_sub(incoming)),
                human_size(floor)
            )));
        }
        Ok(())
    }
}

async fn timed(name: &str, check: impl Future<Output = Result<String, String>>) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())));
    Check {
        name: name.to_owned(),
        ok: outcome.is_ok(),
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
        message: outcome.unwrap_or_else(|e| e),
    }
}
