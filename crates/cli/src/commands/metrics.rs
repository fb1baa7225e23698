//! `agent registry metrics`: what a registry has been doing over a period, as a table with a
//! sparkline per row. It asks the registry's built-in metric history, or a Prometheus that
//! scrapes it (`--prometheus`), with PromQL range queries.
//!
//! Without `--metric` or `--query` it shows the overview operators look at first: pushes,
//! pulls, requests, failed sign-ins, bytes in and out, and what the registry holds.

use std::time::Duration;

use agent_registry_client::Prometheus;
use agent_registry_oci::metrics::{InstantQuery, Metric, QueryData, RangeQuery};
use serde::Serialize;

use crate::Context;
use crate::output::{self, Format};

/// Points a sparkline has at most (the step is the period over this).
const WIDTH: u64 = 60;
/// The shortest step: the registry samples every 15 s by default.
const MIN_STEP: Duration = Duration::from_secs(15);

/// The overview's rows: a label, what to read, and how its values read. A count's trend is
/// its events per step, summed over its series; a level's is its value.
const OVERVIEW: &[(&str, &str, Unit)] = &[
    ("pushes", "push_operations_total", Unit::Count),
    ("pulls", "pull_operations_total", Unit::Count),
    (
        "requests",
        "registry_http_request_duration_seconds_count",
        Unit::Count,
    ),
    (
        "failed sign-ins",
        r#"auth_attempts_total{result="failure"}"#,
        Unit::Count,
    ),
    (
        "bytes received",
        "registry_bytes_received_total",
        Unit::BytesMoved,
    ),
    ("bytes sent", "registry_bytes_sent_total", Unit::BytesMoved),
    ("stored", "registry_storage_bytes", Unit::Bytes),
    ("blobs", "registry_storage_blobs", Unit::Level),
    ("repositories", "registry_repositories", Unit::Level),
    ("upload sessions", "registry_upload_sessions", Unit::Level),
    ("free space", "registry_storage_free_bytes", Unit::Bytes),
];

/// How a row's values read, and what its VALUE column is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Unit {
    /// Events per step: VALUE is their total over the period.
    Count,
    /// Bytes per step: VALUE is their total.
    BytesMoved,
    /// A level (gauge) in bytes: VALUE is the latest.
    Bytes,
    /// Any other level, or a query's own values: VALUE is the latest.
    Level,
}

/// Where the queries go.
pub enum Source {
    Registry(agent_registry_client::Client),
    Prometheus(Prometheus),
}

impl Source {
    async fn range(&self, query: &RangeQuery) -> anyhow::Result<QueryData> {
        Ok(match self {
            Source::Registry(client) => client.metric_range(query).await?,
            Source::Prometheus(prometheus) => prometheus.range(query).await?,
        })
    }

    async fn instant(&self, query: &InstantQuery) -> anyhow::Result<QueryData> {
        Ok(match self {
            Source::Registry(client) => client.metric_instant(query).await?,
            Source::Prometheus(prometheus) => prometheus.instant(query).await?,
        })
    }

    /// A count's total over `period` up to `end`: one `increase` over the whole period, so
    /// what happened across step boundaries is not estimated once per step.
    async fn total(&self, query: &str, period: &str, end: i64) -> anyhow::Result<Option<f64>> {
        let query = InstantQuery {
            query: format!("sum(increase({query}[{period}]))"),
            time: Some(end.to_string()),
        };
        Ok(match self.instant(&query).await? {
            QueryData::Vector(samples) => samples.first().map(|s| s.value.value()),
            QueryData::Scalar(point) => Some(point.value()),
            QueryData::Matrix(_) => None,
        })
    }
}

/// What to show.
pub struct Ask {
    pub metric: Option<String>,
    pub query: Option<String>,
    pub period: Duration,
    pub step: Option<Duration>,
}

/// One row: a series over the period.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    labels: Metric,
    query: String,
    unit: Unit,
    /// The total over the period (counts) or the latest value (levels).
    value: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    /// `[unix seconds, value]` at each step that has one.
    points: Vec<(f64, f64)>,
}

pub async fn show(ctx: &Context, source: &Source, ask: Ask) -> anyhow::Result<()> {
    let step = ask
        .step
        .unwrap_or_else(|| Duration::from_secs(ask.period.as_secs().div_ceil(WIDTH)).max(MIN_STEP));
    let end = output::now();
    let start = end - i64::try_from(ask.period.as_secs()).unwrap_or(i64::MAX / 2);
    let range = |query: String| RangeQuery {
        query,
        start: start.to_string(),
        end: end.to_string(),
        step: step.as_secs().max(1).to_string(),
    };
    let per_step = |selector: &str| per_step(selector, step);
    let mut rows = Vec::new();
    match (&ask.metric, &ask.query) {
        (Some(metric), _) => {
            let counter = ["_total", "_count", "_sum"]
                .iter()
                .any(|s| metric.ends_with(s));
            let (query, unit) = if counter {
                (per_step(metric), Unit::Count)
            } else {
                (metric.clone(), Unit::Level)
            };
            let data = source.range(&range(query.clone())).await?;
            rows.extend(series_rows(metric, &query, unit, data)?);
            if counter {
                let period = period_text(ask.period);
                for row in &mut rows {
                    row.value = source
                        .total(&selector_of(metric, &row.labels), &period, end)
                        .await?;
                }
            }
        }
        (None, Some(query)) => {
            let data = source.range(&range(query.clone())).await?;
            rows.extend(series_rows(query, query, Unit::Level, data)?);
        }
        (None, None) => {
            for (name, selector, unit) in OVERVIEW {
                let query = match unit {
                    Unit::Count | Unit::BytesMoved => {
                        format!("sum({})", per_step(selector))
                    }
                    Unit::Bytes | Unit::Level => format!("sum({selector})"),
                };
                let data = source.range(&range(query.clone())).await?;
                let mut row = series_rows(name, &query, *unit, data)?
                    .pop()
                    .unwrap_or_else(|| summarize(name, &query, *unit, Metric::new(), Vec::new()));
                if matches!(unit, Unit::Count | Unit::BytesMoved) {
                    row.value = source
                        .total(selector, &period_text(ask.period), end)
                        .await?;
                }
                rows.push(row);
            }
        }
    }
    if ctx.output == Format::Json {
        return output::json(&rows);
    }
    if rows.is_empty() {
        println!("no series matched in the last {}", period_text(ask.period));
        return Ok(());
    }
    let step_secs = step.as_secs().max(1);
    let steps = usize::try_from((end - start) / step_secs as i64).unwrap_or(0) + 1;
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row_label(row),
                shown(row.value, row.unit),
                shown(row.min, row.unit),
                shown(row.max, row.unit),
                sparkline(&row.points, start, step_secs, steps),
            ]
        })
        .collect();
    println!(
        "last {}, a point every {}; VALUE is the total for counts, the latest for levels",
        period_text(ask.period),
        period_text(Duration::from_secs(step_secs))
    );
    output::table(&["METRIC", "VALUE", "MIN", "MAX", "TREND"], &table)
}

/// A counter's events per step: its rate over a window wider than the step, times the
/// step. A window of exactly one step would lose what happened between the last sample of
/// one step and the first of the next; this one spans at least one sample interval more
/// (taken as 15 s, the registry's default, and never under four of them), as Grafana's
/// `$__rate_interval` does.
fn per_step(selector: &str, step: Duration) -> String {
    let window = (step + MIN_STEP).max(MIN_STEP * 4);
    format!(
        "rate({selector}[{}]) * {}",
        period_text(window),
        step.as_secs().max(1)
    )
}

/// A row per series of a range answer.
fn series_rows(name: &str, query: &str, unit: Unit, data: QueryData) -> anyhow::Result<Vec<Row>> {
    let QueryData::Matrix(series) = data else {
        anyhow::bail!("the query answered with something other than series over time");
    };
    Ok(series
        .into_iter()
        .map(|s| {
            let points = s
                .values
                .iter()
                .map(|p| (p.0, p.value()))
                .filter(|(_, v)| !v.is_nan())
                .collect();
            let mut labels = s.metric;
            labels.remove("__name__");
            summarize(name, query, unit, labels, points)
        })
        .collect())
}

fn summarize(name: &str, query: &str, unit: Unit, labels: Metric, points: Vec<(f64, f64)>) -> Row {
    let values = || points.iter().map(|p| p.1);
    let value = match unit {
        Unit::Count | Unit::BytesMoved => (!points.is_empty()).then(|| values().sum()),
        Unit::Bytes | Unit::Level => points.last().map(|p| p.1),
    };
    Row {
        name: name.to_owned(),
        labels,
        query: query.to_owned(),
        unit,
        value,
        min: values().reduce(f64::min),
        max: values().reduce(f64::max),
        points,
    }
}

/// `metric{k="v",...}`: the one series with exactly these labels among `metric`'s.
fn selector_of(metric: &str, labels: &Metric) -> String {
    if labels.is_empty() {
        return metric.to_owned();
    }
    let matchers: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::from(v.as_str())))
        .collect();
    format!("{metric}{{{}}}", matchers.join(","))
}

fn row_label(row: &Row) -> String {
    if row.labels.is_empty() {
        return row.name.clone();
    }
    let labels: Vec<String> = row
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    format!("{{{}}}", labels.join(","))
}

fn shown(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "-".to_owned();
    };
    match unit {
        Unit::Bytes | Unit::BytesMoved if v.is_finite() && v >= 0.0 => {
            output::size(v.round() as u64)
        }
        // Events are whole: `increase` estimates a little past the points it saw.
        Unit::Count if v.is_finite() => format!("{}", v.round() as i64),
        _ => number(v),
    }
}

/// Whole numbers as such; others to three significant decimals.
fn number(v: f64) -> String {
    if v.is_finite() && (v - v.round()).abs() < 0.005 {
        format!("{}", v.round() as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// One character per step from `start`: its value's height between the series' min and
/// max; a blank where the series has no value.
fn sparkline(points: &[(f64, f64)], start: i64, step: u64, steps: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let mut cells = vec![' '; steps];
    let (lo, hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    for &(t, v) in points {
        let at = ((t - start as f64) / step as f64).round();
        if !(at >= 0.0 && (at as usize) < steps && v.is_finite()) {
            continue;
        }
        let height = if hi > lo {
            ((v - lo) / (hi - lo) * 7.0).round() as usize
        } else {
            0
        };
        cells[at as usize] = BARS[height.min(7)];
    }
    cells.into_iter().collect::<String>().trim_end().to_owned()
}

fn period_text(period: Duration) -> String {
    match period.as_secs().max(1) {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_scales_between_the_series_min_and_max() {
        let points = [(0.0, 0.0), (10.0, 7.0), (20.0, 3.5), (40.0, 7.0)];
        assert_eq!(sparkline(&points, 0, 10, 5), "▁█▅ █");
        assert_eq!(sparkline(&[(0.0, 2.0), (10.0, 2.0)], 0, 10, 3), "▁▁");
        assert_eq!(sparkline(&[], 0, 10, 3), "");
    }

    #[test]
    fn counts_sum_over_the_period_and_levels_show_the_latest() {
        let points = vec![(0.0, 1.0), (60.0, 2.0), (120.0, 0.0)];
        let count = summarize("pushes", "q", Unit::Count, Metric::new(), points.clone());
        assert_eq!(
            (count.value, count.min, count.max),
            (Some(3.0), Some(0.0), Some(2.0))
        );
        let level = summarize("blobs", "q", Unit::Level, Metric::new(), points);
        assert_eq!(level.value, Some(0.0));
        assert_eq!(shown(Some(1_500_000.0), Unit::Bytes), "1.5MB");
        assert_eq!(shown(Some(3.04), Unit::Count), "3");
        assert_eq!(shown(Some(2.9999), Unit::Level), "3");
        assert_eq!(shown(Some(0.66666), Unit::Level), "0.667");
        assert_eq!(shown(None, Unit::Level), "-");
        assert_eq!(period_text(Duration::from_secs(86_400)), "1d");
        assert_eq!(period_text(Duration::from_secs(5400)), "90m");
    }
}
