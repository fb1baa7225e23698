//! The functions a query may call: those over a range of points (`rate`, `increase`,
//! `delta`, `irate`, `idelta`, `*_over_time`) and a few over single values.

use promql_parser::parser::{Call, Expr};

use super::Value;
use super::eval::{Evaluator, without_name};
use crate::{Error, Labels, Result, Sample};

pub(super) const FUNCTIONS: &[&str] = &[
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "abs",
    "ceil",
    "floor",
    "round",
    "sqrt",
    "clamp_min",
    "clamp_max",
    "scalar",
    "vector",
    "time",
];

/// A series' points in a range window `(start, end]`.
pub(super) struct Window<'a> {
    pub labels: &'a Labels,
    pub points: &'a [(i64, f64)],
    pub start: i64,
    pub end: i64,
}

pub(super) fn call(evaluator: &Evaluator<'_>, call: &Call, t: i64) -> Result<Value> {
    let name = call.func.name;
    let args = &call.args.args;
    let arg = |i: usize| {
        args.get(i)
            .map(|a| a.as_ref())
            .ok_or_else(|| Error::BadQuery(format!("{name}() needs an argument {}", i + 1)))
    };
    let over_range: Option<fn(&Window<'_>) -> Option<f64>> = match name {
        "rate" => Some(|w| extrapolated(w, true, true)),
        "increase" => Some(|w| extrapolated(w, true, false)),
        "delta" => Some(|w| extrapolated(w, false, false)),
        "irate" => Some(|w| instant_change(w, true)),
        "idelta" => Some(|w| instant_change(w, false)),
        "avg_over_time" => Some(|w| Some(values(w).sum::<f64>() / w.points.len() as f64)),
        "min_over_time" => Some(|w| values(w).reduce(f64::min)),
        "max_over_time" => Some(|w| values(w).reduce(f64::max)),
        "sum_over_time" => Some(|w| Some(values(w).sum())),
        "count_over_time" => Some(|w| Some(w.points.len() as f64)),
        "last_over_time" => Some(|w| w.points.last().map(|p| p.1)),
        _ => None,
    };
    if let Some(f) = over_range {
        let Expr::MatrixSelector(ms) = arg(0)? else {
            return Err(Error::BadQuery(format!(
                "{name}() takes a range vector such as x[5m]"
            )));
        };
        let keep_name = name == "last_over_time";
        let samples = evaluator
            .range_vector(ms, t)
            .iter()
            .filter_map(|w| {
                let value = f(w)?;
                let labels = if keep_name {
                    w.labels.clone()
                } else {
                    without_name(w.labels.clone())
                };
                Some(Sample { labels, value })
            })
            .collect();
        return Ok(Value::Vector(samples));
    }
    let map = |f: &dyn Fn(f64) -> f64| -> Result<Value> {
        Ok(Value::Vector(
            evaluator
                .vector(arg(0)?, t)?
                .into_iter()
                .map(|s| Sample {
                    labels: without_name(s.labels),
                    value: f(s.value),
                })
                .collect(),
        ))
    };
    match name {
        "abs" => map(&f64::abs),
        "ceil" => map(&f64::ceil),
        "floor" => map(&f64::floor),
        "sqrt" => map(&f64::sqrt),
        "round" => {
            let to = match args.get(1) {
                Some(a) => evaluator.scalar(a, t)?,
                None => 1.0,
            };
            // As Prometheus: to the nearest multiple of `to`, halves rounded up.
            map(&|v| (v / to + 0.5).floor() * to)
        }
        "clamp_min" | "clamp_max" => {
            let bound = evaluator.scalar(arg(1)?, t)?;
            if name == "clamp_min" {
                map(&|v| v.max(bound))
            } else {
                map(&|v| v.min(bound))
            }
        }
        "scalar" => {
            let samples = evaluator.vector(arg(0)?, t)?;
            Ok(Value::Scalar(match samples.as_slice() {
                [one] => one.value,
                _ => f64::NAN,
            }))
        }
        "vector" => Ok(Value::Vector(vec![Sample {
            labels: Labels::new(),
            value: evaluator.scalar(arg(0)?, t)?,
        }])),
        "time" => Ok(Value::Scalar(t as f64 / 1000.0)),
        _ => Err(Error::BadQuery(format!(
            "the function {name}() is not supported here"
        ))),
    }
}

fn values<'a>(w: &'a Window<'_>) -> impl Iterator<Item = f64> + 'a {
    w.points.iter().map(|p| p.1)
}

/// `rate`, `increase` and `delta` as Prometheus computes them: the change between the
/// window's first and last points (counting resets, for counters), extrapolated towards the
/// window's edges when the points reach near them, but never past a counter's zero.
fn extrapolated(w: &Window<'_>, counter: bool, per_second: bool) -> Option<f64> {
    let points = w.points;
    let (&(first_t, first), &(last_t, last)) = (points.first()?, points.last()?);
    if points.len() < 2 {
        return None;
    }
    let mut change = last - first;
    if counter {
        for pair in points.windows(2) {
            if pair[1].1 < pair[0].1 {
                change += pair[0].1;
            }
        }
    }
    let seconds = |ms: i64| ms as f64 / 1000.0;
    let sampled = seconds(last_t - first_t);
    let average_gap = sampled / (points.len() - 1) as f64;
    let threshold = average_gap * 1.1;
    let mut to_start = seconds(first_t - w.start);
    let mut to_end = seconds(w.end - last_t);
    if to_start >= threshold {
        to_start = average_gap / 2.0;
    }
    if counter && change > 0.0 && first >= 0.0 {
        to_start = to_start.min(sampled * (first / change));
    }
    if to_end >= threshold {
        to_end = average_gap / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= seconds(w.end - w.start);
    }
    Some(change * factor)
}

/// `irate` and `idelta`: from the last two points only.
fn instant_change(w: &Window<'_>, per_second: bool) -> Option<f64> {
    let [.., (before_t, before), (last_t, last)] = *w.points else {
        return None;
    };
    if !per_second {
        return Some(last - before);
    }
    // A counter that went down was reset: the last value is all it has counted since.
    let change = if last < before { last } else { last - before };
    Some(change / ((last_t - before_t) as f64 / 1000.0))
}
