//! The built-in metric history: `/api/v1/metrics/query` and `query_range` answer PromQL in
//! Prometheus's shape, with Prometheus's numbers, over samples that outlive a restart.

use std::time::Duration;

use agent_registry_timeseries::{Labels, Sample, SeriesStore};
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{TestRegistry, assert_error, basic, client_with};

/// Where the controlled series starts: a whole minute an hour ago (inside the retention
/// period, or the server's first prune would drop it).
fn t0() -> i64 {
    (agent_registry_server::history::now_millis() / 60_000 - 60) * 60_000
}

/// A counter that gains 10 every 15 s from 0 at `t0` for ten minutes, written where the
/// server will find it.
fn seed(root: &std::path::Path, t0: i64) {
    let store = SeriesStore::open(&root.join("metrics.db")).expect("open store");
    for k in 0..=40 {
        let labels = Labels::from([
            ("__name__".to_owned(), "controlled_total".to_owned()),
            ("job".to_owned(), "seeded".to_owned()),
        ]);
        store
            .append(
                t0 + k * 15_000,
                &[Sample {
                    labels,
                    value: 10.0 * k as f64,
                }],
            )
            .expect("append");
    }
}

async fn query(reg: &TestRegistry, path: &str, params: &[(&str, String)]) -> (StatusCode, Value) {
    let r = reg
        .http
        .get(format!("{}/api/v1/metrics/{path}", reg.url))
        .query(params)
        .send()
        .await
        .expect("query");
    (r.status(), r.json().await.expect("json body"))
}

/// The one value of a successful instant query.
async fn value_at(reg: &TestRegistry, q: &str, at: i64) -> f64 {
    let (status, body) = query(
        reg,
        "query",
        &[
            ("query", q.to_owned()),
            ("time", format!("{}", at as f64 / 1000.0)),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{q}: {body}");
    assert_eq!(body["status"], "success");
    let result = &body["data"]["result"];
    assert_eq!(result.as_array().map(Vec::len), Some(1), "{q}: {body}");
    assert_eq!(result[0]["value"][0].as_f64(), Some(at as f64 / 1000.0));
    result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("a value")
}

fn close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-9,
        "{actual} is not {expected}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_and_increase_over_http_agree_with_hand_computed_values() {
    if crate::support::skip_on_several_nodes("the metric history") {
        return;
    }
    let root = tempfile::tempdir().expect("tempdir");
    let origin = t0();
    seed(root.path(), origin);
    let reg = TestRegistry::start_with(|c| c.root = root.path().to_owned()).await;
    let end = origin + 600_000;
    // (origin + 300 s, origin + 600 s] holds 20 points: 190 gained over 285 s, extrapolated 15 s back.
    close(
        value_at(&reg, "rate(controlled_total[5m])", end).await,
        10.0 / 15.0,
    );
    close(
        value_at(&reg, "increase(controlled_total[5m])", end).await,
        200.0,
    );
    close(
        value_at(
            &reg,
            r#"sum by (job) (controlled_total{job="seeded"})"#,
            end,
        )
        .await,
        400.0,
    );

    let (status, body) = query(
        &reg,
        "query_range",
        &[
            ("query", "increase(controlled_total[1m])".to_owned()),
            ("start", format!("{}", (origin + 300_000) / 1000)),
            (
                "end",
                agent_registry_oci::catalogue::format_rfc3339((origin + 600_000) / 1000),
            ),
            ("step", "1m".to_owned()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["resultType"], "matrix");
    let series = &body["data"]["result"][0];
    assert_eq!(series["metric"], serde_json::json!({"job": "seeded"}));
    let values = series["values"].as_array().expect("values");
    assert_eq!(values.len(), 6);
    for (i, point) in values.iter().enumerate() {
        assert_eq!(
            point[0].as_f64(),
            Some((origin + 300_000 + i as i64 * 60_000) as f64 / 1000.0)
        );
        close(
            point[1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("value"),
            40.0,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_queries_get_prometheus_errors_that_say_what_is_wrong() {
    let reg = TestRegistry::start().await;
    let bad = |body: &Value| -> String {
        assert_eq!(body["status"], "error", "{body}");
        assert_eq!(body["errorType"], "bad_data", "{body}");
        body["error"].as_str().expect("message").to_owned()
    };
    // The endpoint, its parameters, and what the message must say.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("query", &[("query", "sum(")], "parenthesis"),
        (
            "query",
            &[("query", "histogram_quantile(0.9, rate(x_bucket[5m]))")],
            "buckets are not kept",
        ),
        (
            "query",
            &[("query", "up"), ("time", "yesterday")],
            "time=\"yesterday\"",
        ),
        ("query", &[("time", "0")], "query"),
        (
            "query_range",
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "60"),
                ("step", "0"),
            ],
            "step",
        ),
        (
            "query_range",
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "600000"),
                ("step", "1"),
            ],
            "11000 steps",
        ),
        (
            "query_range",
            &[
                ("query", "up"),
                ("start", "later"),
                ("end", "60"),
                ("step", "15"),
            ],
            "start=",
        ),
    ];
    for (path, params, expected) in cases {
        let params: Vec<(&str, String)> =
            params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let (status, body) = query(&reg, path, &params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params:?}: {body}");
        let message = bad(&body);
        assert!(message.contains(expected), "{params:?}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_history_samples_the_registry_and_survives_a_restart() {
    if crate::support::skip_on_several_nodes("the metric history") {
        return;
    }
    let reg = TestRegistry::start_with(|c| c.metrics.history.interval_secs = 1).await;
    reg.push_image("team/app", "v1", b"layer").await;
    let pushed = r#"push_operations_total{repository_class="team",result="success"}"#;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = query(&reg, "query", &[("query", pushed.to_owned())]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["data"]["result"][0]["value"][1] == "1" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the push never reached the history: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The push came before the first sample; the counter was written as 0 at the start, so
    // increase() counts it.
    let now = agent_registry_server::history::now_millis();
    close(
        value_at(&reg, &format!("min_over_time({pushed}[1h])"), now).await,
        0.0,
    );
    let reg = reg.restart().await;
    // The new process has pushed nothing, but what the old one counted is still there.
    let now = agent_registry_server::history::now_millis();
    close(
        value_at(&reg, &format!("max_over_time({pushed}[1h])"), now).await,
        1.0,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_administrators_query_and_history_can_be_off() {
    let reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = "admin-password".into();
        c.auth.public_by_default = true;
    })
    .await;
    let url = format!("{}/api/v1/metrics/query?query=up", reg.url);
    let r = reg.http.get(&url).send().await.expect("anonymous");
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let admin = client_with(Some(&basic("admin", "admin-password")));
    let r = admin.get(&url).send().await.expect("admin");
    assert_eq!(r.status(), StatusCode::OK);

    for tweak in [
        (|c: &mut agent_registry_server::Config| c.metrics.history.retain_days = 0)
            as fn(&mut agent_registry_server::Config),
        |c| c.metrics.enabled = false,
    ] {
        let reg = TestRegistry::start_with(tweak).await;
        let r = reg
            .http
            .get(format!(
                "{}/api/v1/metrics/query_range?query=up&start=0&end=1&step=1",
                reg.url
            ))
            .send()
            .await
            .expect("query");
        let message = assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
        assert!(message.contains("no metric history"), "{message}");
    }
}
