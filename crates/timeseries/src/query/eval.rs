//! Evaluation: the points every selector of a query needs are read once, for the whole
//! window; then each step evaluates the expression tree over them in memory.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use promql_parser::label::METRIC_NAME;
use promql_parser::parser::ast::Offset;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, VectorSelector,
};

use super::functions;
use super::{LOOKBACK_MS, Source, Value};
use crate::{Error, Labels, Result, Sample, Series};

pub(super) const AGGREGATIONS: &[&str] = &[
    "sum", "avg", "min", "max", "count", "group", "topk", "bottomk",
];

/// Each selector's series, keyed by the selector as written (with its offset).
pub(super) struct Data {
    series: HashMap<String, Vec<Series>>,
}

impl Data {
    /// Reads what evaluating `expr` from `start` to `end` needs.
    pub(super) fn load(
        source: &(impl Source + ?Sized),
        expr: &Expr,
        start: i64,
        end: i64,
    ) -> Result<Data> {
        // The widest window each selector is read through.
        let mut wanted: HashMap<String, (&VectorSelector, i64)> = HashMap::new();
        collect(expr, &mut wanted);
        let mut series = HashMap::new();
        for (key, (vs, window)) in wanted {
            let shift = offset(vs);
            let found = source.select(vs, start - window - shift, end - shift)?;
            series.insert(key, found);
        }
        Ok(Data { series })
    }

    fn of(&self, vs: &VectorSelector) -> &[Series] {
        self.series.get(&vs.to_string()).map_or(&[], Vec::as_slice)
    }
}

fn collect<'a>(expr: &'a Expr, wanted: &mut HashMap<String, (&'a VectorSelector, i64)>) {
    let mut want = |vs: &'a VectorSelector, window: i64| {
        let entry = wanted.entry(vs.to_string()).or_insert((vs, window));
        entry.1 = entry.1.max(window);
    };
    match expr {
        Expr::VectorSelector(vs) => want(vs, LOOKBACK_MS),
        Expr::MatrixSelector(ms) => want(&ms.vs, millis(ms.range)),
        Expr::Aggregate(a) => {
            collect(&a.expr, wanted);
            if let Some(p) = &a.param {
                collect(p, wanted);
            }
        }
        Expr::Unary(u) => collect(&u.expr, wanted),
        Expr::Paren(p) => collect(&p.expr, wanted),
        Expr::Binary(b) => {
            collect(&b.lhs, wanted);
            collect(&b.rhs, wanted);
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect(a, wanted)),
        Expr::Subquery(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_)
        | Expr::Extension(_) => {}
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// How far back a selector's `offset` moves it (negative: forward).
fn offset(vs: &VectorSelector) -> i64 {
    match &vs.offset {
        Some(Offset::Pos(d)) => millis(*d),
        Some(Offset::Neg(d)) => -millis(*d),
        None => 0,
    }
}

pub(super) struct Evaluator<'a> {
    data: &'a Data,
}

impl<'a> Evaluator<'a> {
    pub(super) fn new(data: &'a Data) -> Self {
        Evaluator { data }
    }

    pub(super) fn eval(&self, expr: &Expr, t: i64) -> Result<Value> {
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(n.val)),
            Expr::Paren(p) => self.eval(&p.expr, t),
            Expr::Unary(u) => Ok(match self.eval(&u.expr, t)? {
                Value::Scalar(v) => Value::Scalar(-v),
                Value::Vector(samples) => Value::Vector(
                    samples
                        .into_iter()
                        .map(|s| Sample {
                            labels: without_name(s.labels),
                            value: -s.value,
                        })
                        .collect(),
                ),
            }),
            Expr::VectorSelector(vs) => Ok(Value::Vector(self.instant_vector(vs, t))),
            Expr::Call(call) => self.call(call, t),
            Expr::Aggregate(a) => self.aggregate(a, t),
            Expr::Binary(b) => self.binary(b, t),
            Expr::MatrixSelector(_)
            | Expr::Subquery(_)
            | Expr::StringLiteral(_)
            | Expr::Extension(_) => {
                Err(Error::BadQuery(format!("{expr} cannot be evaluated here")))
            }
        }
    }

    /// Each series' newest point in `(t - 5m, t]`.
    fn instant_vector(&self, vs: &VectorSelector, t: i64) -> Vec<Sample> {
        let t = t - offset(vs);
        self.data
            .of(vs)
            .iter()
            .filter_map(|s| {
                let after = s.points.partition_point(|(pt, _)| *pt <= t);
                let (pt, value) = *s.points.get(after.checked_sub(1)?)?;
                (pt > t - LOOKBACK_MS).then(|| Sample {
                    labels: s.labels.clone(),
                    value,
                })
            })
            .collect()
    }

    /// Each series' points in `(t - range, t]`, with the window's edges.
    pub(super) fn range_vector(&self, ms: &MatrixSelector, t: i64) -> Vec<functions::Window<'a>> {
        let end = t - offset(&ms.vs);
        let start = end - millis(ms.range);
        self.data
            .of(&ms.vs)
            .iter()
            .filter_map(|s| {
                let from = s.points.partition_point(|(pt, _)| *pt <= start);
                let to = s.points.partition_point(|(pt, _)| *pt <= end);
                (from < to).then(|| functions::Window {
                    labels: &s.labels,
                    points: &s.points[from..to],
                    start,
                    end,
                })
            })
            .collect()
    }

    fn call(&self, call: &Call, t: i64) -> Result<Value> {
        functions::call(self, call, t)
    }

    pub(super) fn vector(&self, expr: &Expr, t: i64) -> Result<Vec<Sample>> {
        match self.eval(expr, t)? {
            Value::Vector(v) => Ok(v),
            Value::Scalar(_) => Err(Error::BadQuery(format!(
                "{expr} is a scalar where a vector is needed"
            ))),
        }
    }

    pub(super) fn scalar(&self, expr: &Expr, t: i64) -> Result<f64> {
        match self.eval(expr, t)? {
            Value::Scalar(v) => Ok(v),
            Value::Vector(_) => Err(Error::BadQuery(format!(
                "{expr} is a vector where a number is needed"
            ))),
        }
    }

    fn aggregate(&self, a: &AggregateExpr, t: i64) -> Result<Value> {
        let op = a.op.to_string();
        let samples = self.vector(&a.expr, t)?;
        let mut groups: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for s in samples {
            groups
                .entry(group_of(&s.labels, a.modifier.as_ref()))
                .or_default()
                .push(s);
        }
        let out = match op.as_str() {
            "topk" | "bottomk" => {
                let k = a
                    .param
                    .as_deref()
                    .map(|p| self.scalar(p, t))
                    .transpose()?
                    .unwrap_or(1.0);
                let k = if k.is_finite() && k >= 1.0 {
                    k as usize
                } else {
                    0
                };
                let mut kept = Vec::new();
                for (_, mut members) in groups {
                    members.sort_by(|x, y| {
                        let order = y.value.total_cmp(&x.value);
                        if op == "topk" { order } else { order.reverse() }
                    });
                    kept.extend(members.into_iter().take(k));
                }
                kept
            }
            _ => groups
                .into_iter()
                .map(|(labels, members)| Sample {
                    labels,
                    value: fold(&op, &members),
                })
                .collect(),
        };
        Ok(Value::Vector(out))
    }

    fn binary(&self, b: &BinaryExpr, t: i64) -> Result<Value> {
        let op = b.op.to_string();
        let lhs = self.eval(&b.lhs, t)?;
        let rhs = self.eval(&b.rhs, t)?;
        let return_bool = b.return_bool();
        let comparison = b.op.is_comparison_operator();
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(apply(&op, l, r))),
            (Value::Vector(l), Value::Scalar(r)) => Ok(Value::Vector(
                l.into_iter()
                    .filter_map(|s| scalar_side(&op, s, r, false, comparison, return_bool))
                    .collect(),
            )),
            (Value::Scalar(l), Value::Vector(r)) => Ok(Value::Vector(
                r.into_iter()
                    .filter_map(|s| scalar_side(&op, s, l, true, comparison, return_bool))
                    .collect(),
            )),
            (Value::Vector(l), Value::Vector(r)) => {
                vector_pair(b, &op, l, r, comparison, return_bool).map(Value::Vector)
            }
        }
    }
}

/// The labels a sample is grouped under: `by` keeps the named ones, `without` drops them
/// (and the name), no modifier groups everything together.
fn group_of(labels: &Labels, modifier: Option<&LabelModifier>) -> Labels {
    modifier.map_or_else(Labels::new, |m| modified(labels, m))
}

/// The labels `by`/`on` keep (only those named), or `without`/`ignoring` leave (all but
/// those named, and the metric name).
fn modified(labels: &Labels, modifier: &LabelModifier) -> Labels {
    let keep = |k: &String| match modifier {
        LabelModifier::Include(named) => named.labels.contains(k),
        LabelModifier::Exclude(named) => k != METRIC_NAME && !named.labels.contains(k),
    };
    labels
        .iter()
        .filter(|(k, _)| keep(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn fold(op: &str, members: &[Sample]) -> f64 {
    let values = members.iter().map(|s| s.value);
    match op {
        "sum" => values.sum(),
        "avg" => values.sum::<f64>() / members.len() as f64,
        "min" => values.fold(f64::NAN, |m, v| if m.is_nan() || v < m { v } else { m }),
        "max" => values.fold(f64::NAN, |m, v| if m.is_nan() || v > m { v } else { m }),
        "count" => members.len() as f64,
        // "group"
        _ => 1.0,
    }
}

/// A vector sample against a scalar: arithmetic changes the value (and drops the name); a
/// comparison keeps or drops the sample, or with `bool` makes it 0 or 1.
fn scalar_side(
    op: &str,
    s: Sample,
    scalar: f64,
    scalar_first: bool,
    comparison: bool,
    return_bool: bool,
) -> Option<Sample> {
    let (l, r) = if scalar_first {
        (scalar, s.value)
    } else {
        (s.value, scalar)
    };
    let result = apply(op, l, r);
    if comparison && !return_bool {
        return (result == 1.0).then_some(s);
    }
    Some(Sample {
        labels: without_name(s.labels),
        value: result,
    })
}

/// Two vectors, matched one to one on their labels (less the name, or as `on`/`ignoring`
/// says), or combined as sets by `and`, `or`, `unless`.
fn vector_pair(
    b: &BinaryExpr,
    op: &str,
    lhs: Vec<Sample>,
    rhs: Vec<Sample>,
    comparison: bool,
    return_bool: bool,
) -> Result<Vec<Sample>> {
    let matching = b.modifier.as_ref().and_then(|m| m.matching.as_ref());
    let signature = |labels: &Labels| -> Labels {
        matching.map_or_else(|| without_name(labels.clone()), |m| modified(labels, m))
    };
    match op {
        "and" | "unless" => {
            let right: std::collections::HashSet<Labels> =
                rhs.iter().map(|s| signature(&s.labels)).collect();
            let keep = op == "and";
            return Ok(lhs
                .into_iter()
                .filter(|s| right.contains(&signature(&s.labels)) == keep)
                .collect());
        }
        "or" => {
            let left: std::collections::HashSet<Labels> =
                lhs.iter().map(|s| signature(&s.labels)).collect();
            let mut out = lhs;
            out.extend(
                rhs.into_iter()
                    .filter(|s| !left.contains(&signature(&s.labels))),
            );
            return Ok(out);
        }
        _ => {}
    }
    let mut right: HashMap<Labels, Sample> = HashMap::new();
    for s in rhs {
        let key = signature(&s.labels);
        if right.insert(key.clone(), s).is_some() {
            return Err(Error::BadQuery(format!(
                "several series on the right of {op} match {key:?}: aggregate them first (sum by (...))"
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for s in lhs {
        let key = signature(&s.labels);
        let Some(r) = right.get(&key) else { continue };
        if !seen.insert(key.clone()) {
            return Err(Error::BadQuery(format!(
                "several series on the left of {op} match {key:?}: aggregate them first (sum by (...))"
            )));
        }
        let result = apply(op, s.value, r.value);
        if comparison && !return_bool {
            if result == 1.0 {
                out.push(s);
            }
            continue;
        }
        let labels = match matching {
            Some(LabelModifier::Include(_)) => key,
            _ => {
                let mut labels = without_name(s.labels);
                if let Some(LabelModifier::Exclude(ignoring)) = matching {
                    labels.retain(|k, _| !ignoring.labels.contains(k));
                }
                labels
            }
        };
        out.push(Sample {
            labels,
            value: result,
        });
    }
    Ok(out)
}

/// One binary operator on two numbers; comparisons give 1 or 0.
fn apply(op: &str, l: f64, r: f64) -> f64 {
    let truth = |b: bool| if b { 1.0 } else { 0.0 };
    match op {
        "+" => l + r,
        "-" => l - r,
        "*" => l * r,
        "/" => l / r,
        "%" => l % r,
        "^" => l.powf(r),
        "==" => truth(l == r),
        "!=" => truth(l != r),
        ">" => truth(l > r),
        "<" => truth(l < r),
        ">=" => truth(l >= r),
        "<=" => truth(l <= r),
        _ => f64::NAN,
    }
}

pub(super) fn without_name(mut labels: Labels) -> Labels {
    labels.remove(METRIC_NAME);
    labels
}
