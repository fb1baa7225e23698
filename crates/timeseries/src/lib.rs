//! The registry's own metrics over time, for operators without a Prometheus: the server
//! samples its `/metrics` page on an interval into a [`SeriesStore`] (one SQLite file, kept
//! for a configured period and across restarts), and [`query`] evaluates the PromQL that
//! operators write over it: selectors with label matchers, `rate`, `increase`, `irate`,
//! `delta`, the `*_over_time` family, aggregations with `by`/`without`, arithmetic and
//! comparisons.
//!
//! Queries are parsed by the `promql-parser` crate; this crate evaluates them with
//! Prometheus's semantics (left-open range windows, a 5-minute lookback for instant
//! selectors, extrapolated `rate` and `increase`), so a query gives here what it would give
//! against a Prometheus that scraped the same page. What the store cannot answer (histogram
//! quantiles, subqueries, `@`, `group_left`) is refused with a message that says so.
//!
//! This crate knows nothing of HTTP or the registry: the server owns the sampling loop and
//! the routes.

pub mod exposition;
pub mod query;
mod store;

use std::collections::BTreeMap;

pub use store::SeriesStore;

/// A series' labels, its metric name under `__name__`.
pub type Labels = BTreeMap<String, String>;

/// One value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub value: f64,
}

/// A series and its points, `(milliseconds since the epoch, value)`, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The query, or a parameter of it, is wrong or asks for what the store cannot do.
    #[error("{0}")]
    BadQuery(String),
    #[error("reading the metric store: {0}")]
    Store(#[from] rusqlite::Error),
    /// The evaluation was cut short (its task panicked or the process is stopping).
    #[error("the query did not finish: {0}")]
    Interrupted(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
