//! Each function and operator against series whose answers were worked out by hand.

use super::*;

const S: i64 = 1_000;
const M: i64 = 60 * S;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn series(name: &str, pairs: &[(&str, &str)], points: &[(i64, f64)]) -> Series {
    let mut l = labels(pairs);
    l.insert("__name__".to_owned(), name.to_owned());
    Series {
        labels: l,
        points: points.to_vec(),
    }
}

/// A counter that gains 10 every 15 s from 0 at t = 0, for 10 minutes.
fn steady() -> Vec<Series> {
    let points: Vec<(i64, f64)> = (0..=40).map(|k| (k * 15 * S, 10.0 * k as f64)).collect();
    vec![series("pushes_total", &[("result", "success")], &points)]
}

fn eval(source: &[Series], q: &str, at: i64) -> Value {
    let expr = parse(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    instant(source, &expr, at).unwrap_or_else(|e| panic!("{q}: {e}"))
}

/// The single value of an instant query.
fn one(source: &[Series], q: &str, at: i64) -> f64 {
    match eval(source, q, at) {
        Value::Scalar(v) => v,
        Value::Vector(v) if v.len() == 1 => v[0].value,
        other => panic!("{q}: not one value: {other:?}"),
    }
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "{actual} is not {expected}"
    );
}

#[test]
fn rate_and_increase_of_a_steady_counter_are_its_slope() {
    let data = steady();
    // (300 s, 600 s] holds 20 points, 315 s to 600 s: 190 gained over 285 s, extrapolated
    // 15 s back to the window's start.
    close(one(&data, "rate(pushes_total[5m])", 10 * M), 10.0 / 15.0);
    close(one(&data, "increase(pushes_total[5m])", 10 * M), 200.0);
    close(one(&data, "irate(pushes_total[5m])", 10 * M), 10.0 / 15.0);
    close(one(&data, "delta(pushes_total[1m])", 10 * M), 40.0);
    close(one(&data, "idelta(pushes_total[1m])", 10 * M), 10.0);
}

#[test]
fn increase_counts_across_a_counter_reset() {
    let data = vec![series(
        "pulls_total",
        &[],
        &[
            (0, 5.0),
            (M, 10.0),
            (2 * M, 2.0),
            (3 * M, 6.0),
            (4 * M, 11.0),
        ],
    )];
    // (0, 4m] holds 10, 2, 6, 11: 1 net plus the 10 lost at the reset = 11 over 180 s,
    // extrapolated 60 s back to the start: 11 * 240 / 180.
    close(
        one(&data, "increase(pulls_total[4m])", 4 * M),
        11.0 * 240.0 / 180.0,
    );
    // irate: 6 -> 11 in a minute.
    close(one(&data, "irate(pulls_total[4m])", 4 * M), 5.0 / 60.0);
    // Across the reset irate takes the new value as the whole change.
    close(one(&data, "irate(pulls_total[2m])", 2 * M), 2.0 / 60.0);
}

#[test]
fn extrapolation_stops_half_a_gap_out_and_at_a_counters_zero() {
    let far = vec![series(
        "x_total",
        &[],
        &[(200 * S, 100.0), (260 * S, 110.0), (320 * S, 120.0)],
    )];
    // Points far from both edges of (0, 600 s]: 20 over 120 s, extended by half the 60 s
    // gap at each end: 20 * 180 / 120.
    close(one(&far, "increase(x_total[10m])", 10 * M), 30.0);
    let near_zero = vec![series(
        "x_total",
        &[],
        &[(200 * S, 1.0), (260 * S, 11.0), (320 * S, 21.0)],
    )];
    // The same, but the counter was at 0 only 6 s before its first point.
    close(
        one(&near_zero, "increase(x_total[10m])", 10 * M),
        20.0 * 156.0 / 120.0,
    );
    // One point is no rate at all.
    let lone = vec![series("x_total", &[], &[(200 * S, 1.0)])];
    assert_eq!(
        eval(&lone, "rate(x_total[10m])", 10 * M),
        Value::Vector(vec![])
    );
}

#[test]
fn instant_selectors_look_back_five_minutes_and_honour_offset() {
    let data = vec![series("g", &[], &[(0, 1.0), (10 * M, 2.0)])];
    assert_eq!(one(&data, "g", 10 * M + 4 * M), 2.0);
    assert_eq!(eval(&data, "g", 10 * M + 5 * M), Value::Vector(vec![]));
    assert_eq!(one(&data, "g offset 10m", 14 * M), 1.0);
    assert_eq!(one(&data, "last_over_time(g[1h])", 12 * M), 2.0);
}

#[test]
fn matchers_select_and_aggregations_group() {
    let at = 10 * M;
    let p = |result: &str, class: &str, v: f64| {
        series(
            "push_operations_total",
            &[("result", result), ("repository_class", class)],
            &[(at, v)],
        )
    };
    let data = vec![
        p("success", "team", 5.0),
        p("success", "_", 2.0),
        p("client_error", "team", 1.0),
        p("server_error", "ops", 4.0),
    ];
    let sum = |q: &str| one(&data, q, at);
    assert_eq!(sum(r#"sum(push_operations_total{result="success"})"#), 7.0);
    assert_eq!(sum(r#"sum(push_operations_total{result!="success"})"#), 5.0);
    assert_eq!(sum(r#"sum(push_operations_total{result=~".*error"})"#), 5.0);
    assert_eq!(
        sum(r#"sum(push_operations_total{result!~"success|server_error"})"#),
        1.0
    );
    assert_eq!(sum("count(push_operations_total)"), 4.0);
    assert_eq!(sum("max(push_operations_total)"), 5.0);
    assert_eq!(sum("min(push_operations_total)"), 1.0);
    assert_eq!(sum("avg(push_operations_total)"), 3.0);

    let by = eval(
        &data,
        "sum by (repository_class) (push_operations_total)",
        at,
    );
    assert_eq!(
        by,
        Value::Vector(vec![
            Sample {
                labels: labels(&[("repository_class", "_")]),
                value: 2.0
            },
            Sample {
                labels: labels(&[("repository_class", "ops")]),
                value: 4.0
            },
            Sample {
                labels: labels(&[("repository_class", "team")]),
                value: 6.0
            },
        ])
    );
    // `without` keeps the rest, less the name; the trailing form groups the same.
    let without = eval(
        &data,
        "sum without (repository_class) (push_operations_total)",
        at,
    );
    let trailing = eval(
        &data,
        "sum(push_operations_total) without (repository_class)",
        at,
    );
    assert_eq!(without, trailing);
    let Value::Vector(without) = without else {
        panic!("vector")
    };
    assert_eq!(without.len(), 3);
    assert_eq!(without[2].labels, labels(&[("result", "success")]));
    assert_eq!(without[2].value, 7.0);

    let Value::Vector(top) = eval(&data, "topk(2, push_operations_total)", at) else {
        panic!("vector")
    };
    let values: Vec<f64> = top.iter().map(|s| s.value).collect();
    assert_eq!(values, vec![5.0, 4.0]);
}

#[test]
fn arithmetic_and_comparisons_match_series_on_their_labels() {
    let at = 10 * M;
    let route = |name: &str, family: &str, v: f64| series(name, &[("family", family)], &[(at, v)]);
    let data = vec![
        route("d_seconds_sum", "blobs", 3.0),
        route("d_seconds_count", "blobs", 6.0),
        route("d_seconds_sum", "manifests", 1.0),
        route("d_seconds_count", "manifests", 4.0),
    ];
    assert_eq!(
        eval(&data, "d_seconds_sum / d_seconds_count", at),
        Value::Vector(vec![
            Sample {
                labels: labels(&[("family", "blobs")]),
                value: 0.5
            },
            Sample {
                labels: labels(&[("family", "manifests")]),
                value: 0.25
            },
        ])
    );
    assert_eq!(one(&data, "sum(d_seconds_sum) * 2 + 1", at), 9.0);
    assert_eq!(one(&data, "-sum(d_seconds_count)", at), -10.0);
    assert_eq!(one(&data, "2 ^ 3 % 5", at), 3.0);
    // A comparison filters, keeping the sample as it was; with bool it answers 0 or 1.
    assert_eq!(
        eval(&data, "d_seconds_count > 5", at),
        Value::Vector(vec![data[1].clone().into_sample(at)])
    );
    let Value::Vector(flags) = eval(&data, "d_seconds_count > bool 5", at) else {
        panic!("vector")
    };
    assert_eq!(
        flags.iter().map(|s| s.value).collect::<Vec<_>>(),
        vec![1.0, 0.0]
    );
    // Set operators and on().
    let Value::Vector(and) = eval(
        &data,
        "d_seconds_sum and on(family) d_seconds_count > 5",
        at,
    ) else {
        panic!("vector")
    };
    assert_eq!(and.len(), 1);
    assert_eq!(and[0].labels["family"], "blobs");
    let Value::Vector(unless) = eval(
        &data,
        "d_seconds_sum unless on(family) d_seconds_count > 5",
        at,
    ) else {
        panic!("vector")
    };
    assert_eq!(unless[0].labels["family"], "manifests");
    // Two series on the right with one signature is refused, not guessed.
    let expr = parse("d_seconds_sum / on() d_seconds_count").expect("parse");
    let error = instant(data.as_slice(), &expr, at).expect_err("many to one");
    assert!(
        error.to_string().contains("aggregate them first"),
        "{error}"
    );
}

impl Series {
    fn into_sample(self, at: i64) -> Sample {
        let value = self
            .points
            .iter()
            .find(|p| p.0 == at)
            .map(|p| p.1)
            .expect("a point at that time");
        Sample {
            labels: self.labels,
            value,
        }
    }
}

#[test]
fn a_range_query_evaluates_every_step() {
    let data = steady();
    let expr = parse("increase(pushes_total[1m])").expect("parse");
    let out = range(data.as_slice(), &expr, 5 * M, 10 * M, M).expect("range");
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].labels, labels(&[("result", "success")]));
    assert_eq!(out[0].points.len(), 6);
    for (t, v) in &out[0].points {
        assert_eq!(*t % M, 0);
        close(*v, 40.0);
    }
    let scalar = range(
        data.as_slice(),
        &parse("time()").expect("parse"),
        0,
        2 * M,
        M,
    )
    .expect("range");
    assert_eq!(scalar[0].labels, Labels::new());
    assert_eq!(scalar[0].points, vec![(0, 0.0), (M, 60.0), (2 * M, 120.0)]);
    let too_many = range(data.as_slice(), &expr, 0, 20_000 * S, S).expect_err("steps");
    assert!(too_many.to_string().contains("11000 steps"), "{too_many}");
    assert!(range(data.as_slice(), &expr, 0, M, 0).is_err());
    assert!(range(data.as_slice(), &expr, M, 0, S).is_err());
}

#[test]
fn what_the_store_cannot_answer_is_refused_with_the_reason() {
    let refused = |q: &str| parse(q).expect_err(q).to_string();
    assert!(
        refused("histogram_quantile(0.9, rate(x_bucket[5m]))").contains("buckets are not kept")
    );
    assert!(refused("x[5m]").contains("put it in a function"));
    assert!(refused("rate(x[5m])[1h:1m]").contains("subqueries"));
    assert!(refused("a * on(b) group_left c").contains("group_left"));
    assert!(refused("stddev(x)").contains("stddev"));
    assert!(refused("x @ 100").contains("@"));
    assert!(refused("label_replace(x, \"a\", \"b\", \"c\", \"d\")").contains("label_replace"));
    // The parser's own message for a query that is not PromQL.
    assert!(!refused("sum(").is_empty());
    assert!(!refused("rate(x)").is_empty());
}
