//! PromQL over stored series: [`parse`] checks a query is one the store can answer,
//! [`instant`] evaluates it at one time and [`range`] at every step of a window.
//!
//! Times are milliseconds since the epoch. Semantics follow Prometheus 3: a range selector
//! `x[5m]` at `t` takes the points in `(t - 5m, t]`, an instant selector takes each series'
//! newest point in `(t - 5m, t]`, and `rate`/`increase`/`delta` extrapolate to the window's
//! edges as Prometheus does.

mod eval;
mod functions;

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::{Expr, VectorMatchCardinality, VectorSelector};

use crate::{Error, Labels, Result, Sample, Series};

/// How far back an instant selector looks for a series' newest point.
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;

/// Most steps a range query may ask for (Prometheus's own limit).
pub const MAX_STEPS: i64 = 11_000;

/// Where queries read series from.
pub trait Source {
    /// Every series `selector` takes, with its points in `[from, to]`, oldest first.
    fn select(&self, selector: &VectorSelector, from: i64, to: i64) -> Result<Vec<Series>>;
}

/// Series held in memory.
impl Source for [Series] {
    fn select(&self, selector: &VectorSelector, from: i64, to: i64) -> Result<Vec<Series>> {
        Ok(self
            .iter()
            .filter(|s| selects(selector, &s.labels))
            .map(|s| Series {
                labels: s.labels.clone(),
                points: s
                    .points
                    .iter()
                    .copied()
                    .filter(|(t, _)| (from..=to).contains(t))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect())
    }
}

/// Whether a series with `labels` is one `selector` takes (its name, if it has one, and every
/// matcher; a missing label matches as the empty string, as in Prometheus).
pub fn selects(selector: &VectorSelector, labels: &Labels) -> bool {
    let value = |name: &str| labels.get(name).map_or("", String::as_str);
    if selector
        .name
        .as_deref()
        .is_some_and(|name| value(METRIC_NAME) != name)
    {
        return false;
    }
    let all = |matchers: &[promql_parser::label::Matcher]| {
        matchers.iter().all(|m| m.is_match(value(&m.name)))
    };
    let matchers = &selector.matchers;
    all(&matchers.matchers)
        && (matchers.or_matchers.is_empty() || matchers.or_matchers.iter().any(|m| all(m)))
}

/// A PromQL duration (`15s`, `1h30m`, `7d`) in milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let d = promql_parser::util::parse_duration(s).ok()?;
    i64::try_from(d.as_millis()).ok().filter(|ms| *ms > 0)
}

/// What an instant query evaluates to.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Sample>),
}

/// Parses `query` and checks that the store can answer it.
pub fn parse(query: &str) -> Result<Expr> {
    let expr = promql_parser::parser::parse(query).map_err(Error::BadQuery)?;
    if let Expr::MatrixSelector(_) = expr {
        return Err(unsupported(
            "a range vector (x[5m]) on its own: put it in a function such as rate() or increase()",
        ));
    }
    if let Expr::StringLiteral(_) = expr {
        return Err(unsupported("a string on its own"));
    }
    check(&expr)?;
    Ok(expr)
}

/// Evaluates `expr` at `at`.
pub fn instant(source: &(impl Source + ?Sized), expr: &Expr, at: i64) -> Result<Value> {
    let data = eval::Data::load(source, expr, at, at)?;
    eval::Evaluator::new(&data).eval(expr, at)
}

/// Evaluates `expr` at `start`, every `step`, up to `end`: each series with its value at the
/// steps where it has one, ordered by labels. A scalar answer is one series with no labels.
pub fn range(
    source: &(impl Source + ?Sized),
    expr: &Expr,
    start: i64,
    end: i64,
    step: i64,
) -> Result<Vec<Series>> {
    if step <= 0 {
        return Err(Error::BadQuery(
            "step must be a positive duration (15s, 1m) or number of seconds".to_owned(),
        ));
    }
    if end < start {
        return Err(Error::BadQuery("end is before start".to_owned()));
    }
    if (end - start) / step >= MAX_STEPS {
        return Err(Error::BadQuery(format!(
            "that is more than {MAX_STEPS} steps: widen the step or narrow the window"
        )));
    }
    let data = eval::Data::load(source, expr, start, end)?;
    let evaluator = eval::Evaluator::new(&data);
    let mut series: std::collections::BTreeMap<Labels, Vec<(i64, f64)>> = Default::default();
    let mut t = start;
    while t <= end {
        match evaluator.eval(expr, t)? {
            Value::Scalar(v) => series.entry(Labels::new()).or_default().push((t, v)),
            Value::Vector(samples) => {
                for s in samples {
                    series.entry(s.labels).or_default().push((t, s.value));
                }
            }
        }
        t += step;
    }
    Ok(series
        .into_iter()
        .map(|(labels, points)| Series { labels, points })
        .collect())
}

/// Refuses, before any evaluation, what the store cannot answer.
fn check(expr: &Expr) -> Result<()> {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string();
            if !eval::AGGREGATIONS.contains(&op.as_str()) {
                return Err(unsupported(&format!(
                    "the aggregation {op} (this store has {})",
                    eval::AGGREGATIONS.join(", ")
                )));
            }
            check(&a.expr)?;
            a.param.as_deref().map_or(Ok(()), check)
        }
        Expr::Unary(u) => check(&u.expr),
        Expr::Paren(p) => check(&p.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && matches!(
                    m.card,
                    VectorMatchCardinality::ManyToOne(_) | VectorMatchCardinality::OneToMany(_)
                )
            {
                return Err(unsupported("group_left and group_right"));
            }
            if b.op.to_string() == "atan2" {
                return Err(unsupported("atan2"));
            }
            check(&b.lhs)?;
            check(&b.rhs)
        }
        Expr::Subquery(_) => Err(unsupported("subqueries (x[1h:5m])")),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::VectorSelector(vs) => selector(vs),
        Expr::MatrixSelector(ms) => selector(&ms.vs),
        Expr::Call(call) => {
            let name = call.func.name;
            if !functions::FUNCTIONS.contains(&name) {
                let hint = if name == "histogram_quantile" {
                    " (histogram buckets are not kept here; divide rate(x_sum[5m]) by rate(x_count[5m]) for an average)"
                } else {
                    ""
                };
                return Err(unsupported(&format!(
                    "the function {name}(){hint}; this store has {}",
                    functions::FUNCTIONS.join(", ")
                )));
            }
            call.args.args.iter().try_for_each(|arg| check(arg))
        }
        Expr::Extension(_) => Err(unsupported("extension expressions")),
    }
}

fn selector(vs: &VectorSelector) -> Result<()> {
    if vs.at.is_some() {
        return Err(unsupported("the @ modifier"));
    }
    Ok(())
}

fn unsupported(what: &str) -> Error {
    Error::BadQuery(format!(
        "the built-in metric store does not support {what}; an external Prometheus scraping /metrics does"
    ))
}

#[cfg(test)]
mod tests;
