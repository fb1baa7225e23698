//! `GET /api/v1/metrics/query` and `/api/v1/metrics/query_range`: metric queries, answered in
//! the shape of Prometheus's own HTTP API, so the same client reads an Agent Registry's
//! built-in store and an external Prometheus.
//!
//! Values travel as strings (`"0.5"`, `"+Inf"`, `"NaN"`) and times as Unix seconds, as
//! Prometheus sends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A series' labels, its metric name under `__name__`.
pub type Metric = BTreeMap<String, String>;

/// The envelope of every answer: `data` on success, `errorType` and `error` when not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryResponse {
    /// `success` or `error`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<QueryData>,
    /// `bad_data` (the query or a parameter is wrong), `execution`, `unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a query evaluated to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum QueryData {
    /// A range query's answer: each series with its value at every step.
    Matrix(Vec<RangeSeries>),
    /// An instant query's answer: each series with one value.
    Vector(Vec<InstantSample>),
    Scalar(Point),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeSeries {
    pub metric: Metric,
    pub values: Vec<Point>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstantSample {
    pub metric: Metric,
    pub value: Point,
}

/// `[unix seconds, "value"]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point(pub f64, pub String);

impl Point {
    /// A point at `millis` after the epoch, its value written as Prometheus writes one.
    pub fn new(millis: i64, value: f64) -> Point {
        Point(millis as f64 / 1000.0, format_value(value))
    }

    /// The value as a number (`NaN` when it is not one).
    pub fn value(&self) -> f64 {
        parse_value(&self.1)
    }
}

/// A sample value as Prometheus writes it: shortest round-trip decimal, `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

/// Reads what [`format_value`] writes (and Prometheus's own spellings); `NaN` for anything else.
pub fn parse_value(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// The parameters of an instant query (`time` absent: now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstantQuery {
    pub query: String,
    /// Unix seconds or RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

/// The parameters of a range query: evaluated at `start`, every `step`, up to `end`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    pub query: String,
    /// Unix seconds or RFC 3339.
    pub start: String,
    pub end: String,
    /// Seconds (`15`, `0.5`) or a duration (`15s`, `5m`).
    pub step: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        assert_eq!(format_value(0.5), "0.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(parse_value("+Inf"), f64::INFINITY);
        assert_eq!(parse_value("0.25"), 0.25);
        assert!(parse_value("NaN").is_nan());
    }

    #[test]
    fn answers_have_prometheus_shape() {
        let answer = QueryResponse {
            status: "success".to_owned(),
            data: Some(QueryData::Vector(vec![InstantSample {
                metric: Metric::from([("__name__".to_owned(), "up".to_owned())]),
                value: Point::new(1_500, 1.0),
            }])),
            error_type: None,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&answer).expect("json"),
            serde_json::json!({
                "status": "success",
                "data": {"resultType": "vector", "result": [
                    {"metric": {"__name__": "up"}, "value": [1.5, "1"]}
                ]}
            })
        );
        let back: QueryResponse =
            serde_json::from_value(serde_json::to_value(&answer).expect("json")).expect("parse");
        assert_eq!(back, answer);
    }
}
