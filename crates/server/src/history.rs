//! The built-in time series: every `metrics.history.interval_secs` the server reads its own
//! `/metrics` page into `<root>/metrics.db` (see `agent_registry_timeseries`), keeps
//! `retain_days` of it across restarts, and answers PromQL over it at
//! `/api/v1/metrics/query` and `/api/v1/metrics/query_range`.
//!
//! The store is this node's own: with several nodes, each keeps what it counted. A
//! deployment that big scrapes `/metrics` with Prometheus instead.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_registry_access::Access;
use agent_registry_registry::Registry;
use agent_registry_timeseries::query::{self, Value};
use agent_registry_timeseries::{Error, Labels, Sample, Series, SeriesStore};
use anyhow::Context;

use crate::config::HistoryConfig;
use crate::metrics::Metrics;

/// How often samples older than the retention period are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct History {
    store: Arc<SeriesStore>,
    interval: Duration,
    retain: Duration,
}

impl History {
    /// Opens `<root>/metrics.db`; `None` when history is off (`retain_days: 0`).
    pub fn open(root: &Path, config: &HistoryConfig) -> anyhow::Result<Option<History>> {
        if config.retain_days == 0 {
            return Ok(None);
        }
        let path = root.join("metrics.db");
        let store = SeriesStore::open(&path)
            .with_context(|| format!("opening the metric history {}", path.display()))?;
        Ok(Some(History {
            store: Arc::new(store),
            interval: Duration::from_secs(config.interval_secs),
            retain: Duration::from_secs(config.retain_days.saturating_mul(86_400)),
        }))
    }

    /// Samples `/metrics` every interval from one interval after start, and drops what has
    /// aged out every hour, until the task is aborted. A failed sample is logged and the next
    /// one tried.
    pub async fn sample(
        self: Arc<Self>,
        metrics: Arc<Metrics>,
        registry: Registry,
        access: Access,
    ) {
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned: Option<tokio::time::Instant> = None;
        // Every counter was 0 when the process started.
        let mut previous = Scrape {
            at: now_millis(),
            counters: HashSet::new(),
        };
        loop {
            ticks.tick().await;
            match self
                .sample_once(&metrics, &registry, &access, &previous)
                .await
            {
                Ok(scrape) => previous = scrape,
                Err(e) => tracing::warn!(error = %e, "sampling metrics into the history failed"),
            }
            if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                pruned = Some(tokio::time::Instant::now());
                let before = now_millis() - i64::try_from(self.retain.as_millis()).unwrap_or(0);
                let store = self.store.clone();
                match tokio::task::spawn_blocking(move || store.prune(before)).await {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(samples = n, "metric history pruned"),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "pruning the metric history failed"),
                    Err(e) => tracing::warn!(error = %e, "pruning the metric history failed"),
                }
            }
        }
    }

    /// Stores one scrape. A counter this process creates on its first event (a repository
    /// class's first push) was 0 until then: it is written as 0 into the previous scrape
    /// too (or at the process's start, for the first scrape), so `increase()` counts that
    /// first event, as Prometheus's created-timestamp zeros do.
    async fn sample_once(
        &self,
        metrics: &Metrics,
        registry: &Registry,
        access: &Access,
        previous: &Scrape,
    ) -> anyhow::Result<Scrape> {
        let page = metrics
            .render(registry, access)
            .await
            .map_err(anyhow::Error::msg)?;
        let samples =
            agent_registry_timeseries::exposition::parse(&page).map_err(anyhow::Error::msg)?;
        let at = now_millis();
        let scrape = Scrape {
            at,
            counters: samples
                .iter()
                .filter(|s| is_counter(&s.labels))
                .map(|s| s.labels.clone())
                .collect(),
        };
        let born: Vec<Sample> = scrape
            .counters
            .difference(&previous.counters)
            .map(|labels| Sample {
                labels: labels.clone(),
                value: 0.0,
            })
            .collect();
        let before = previous.at;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if !born.is_empty() {
                store.amend(before, &born)?;
            }
            store.append(at, &samples)
        })
        .await??;
        Ok(scrape)
    }

    /// Evaluates `q` at `at` (milliseconds since the epoch).
    pub async fn instant(&self, q: String, at: i64) -> Result<Value, Error> {
        let store = self.store.clone();
        blocking(move || {
            let expr = query::parse(&q)?;
            query::instant(store.as_ref(), &expr, at)
        })
        .await
    }

    /// Evaluates `q` at every `step` from `start` to `end` (milliseconds).
    pub async fn range(
        &self,
        q: String,
        start: i64,
        end: i64,
        step: i64,
    ) -> Result<Vec<Series>, Error> {
        let store = self.store.clone();
        blocking(move || {
            let expr = query::parse(&q)?;
            query::range(store.as_ref(), &expr, start, end, step)
        })
        .await
    }
}

/// What one scrape held, for the next to compare with.
#[derive(Debug)]
struct Scrape {
    at: i64,
    counters: HashSet<Labels>,
}

/// Counters by the OpenMetrics naming rules: `_total`, and a histogram's `_count` and `_sum`.
fn is_counter(labels: &Labels) -> bool {
    labels.get("__name__").is_some_and(|name| {
        name.ends_with("_total") || name.ends_with("_count") || name.ends_with("_sum")
    })
}

/// Runs a query on the blocking pool: it reads SQLite and may take a while over a long window.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Interrupted(e.to_string())))
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
