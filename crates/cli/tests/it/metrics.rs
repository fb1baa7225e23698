//! `agent registry metrics`: the overview, one metric, a query, and their errors, read from
//! the registry's history; and the same command reading a real Prometheus that scrapes the
//! registry.

use std::time::Duration;

use agent_registry_server::testing::TestServer;
use agent_registry_timeseries::{Labels, Sample, SeriesStore};

use crate::support::{Agent, push_image};

fn now_millis() -> i64 {
    agent_registry_server::history::now_millis()
}

fn series(name: &str, pairs: &[(&str, &str)], value: f64) -> Sample {
    let mut labels: Labels = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.insert("__name__".to_owned(), name.to_owned());
    Sample { labels, value }
}

/// Twenty minutes of 15-second scrapes up to now: three pushes to `team` ten minutes ago
/// (and none since), 5 kB stored throughout.
fn seed(root: &std::path::Path) {
    let store = SeriesStore::open(&root.join("metrics.db")).expect("open store");
    let now = now_millis();
    for k in 0..80 {
        let at = now - 20 * 60_000 + k * 15_000;
        let pushed = if at < now - 10 * 60_000 { 0.0 } else { 3.0 };
        let pushes = series(
            "push_operations_total",
            &[("repository_class", "team"), ("result", "success")],
            pushed,
        );
        let stored = series("registry_storage_bytes", &[], 5000.0);
        store.append(at, &[pushes, stored]).expect("append");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_shows_counts_levels_and_queries_from_the_history() {
    let root = tempfile::tempdir().expect("tempdir");
    seed(root.path());
    // The server's own first sample (an empty registry) would come an hour from now.
    let server = TestServer::start_with(|c| {
        c.root = root.path().to_owned();
        c.metrics.history.interval_secs = 3600;
    })
    .await;
    let host = server.host().to_owned();
    let agent = Agent::new();

    let overview = agent
        .run(&[
            "registry",
            "metrics",
            "--period",
            "30m",
            "--registry",
            &host,
        ])
        .await
        .ok();
    let row = |name: &str| -> Vec<String> {
        let line = overview
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row:\n{}", overview.stdout));
        line[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert!(
        overview.stdout.starts_with("last 30m, a point every 30s"),
        "{}",
        overview.stdout
    );
    // VALUE, MIN, MAX, and a trend with one spike where the pushes were.
    let pushes = row("pushes");
    assert_eq!(pushes[0], "3", "{}", overview.stdout);
    assert!(pushes[3].contains('█'), "{}", overview.stdout);
    assert_eq!(
        row("stored")[..3],
        ["5kB", "5kB", "5kB"],
        "{}",
        overview.stdout
    );
    assert_eq!(row("failed sign-ins")[0], "-", "{}", overview.stdout);

    let json = agent
        .run(&[
            "registry",
            "metrics",
            "--metric",
            "push_operations_total",
            "--period",
            "30m",
            "--registry",
            &host,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let rows = json.as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["labels"]["repository_class"], "team");
    let total = rows[0]["value"].as_f64().expect("value");
    assert!((3.0..3.5).contains(&total), "{json}");

    let json = agent
        .run(&[
            "registry",
            "metrics",
            "--query",
            "sum by (result) (push_operations_total) * 2",
            "--period",
            "5m",
            "--registry",
            &host,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(json[0]["labels"]["result"], "success", "{json}");
    assert_eq!(json[0]["value"], 6.0, "{json}");

    agent
        .run(&[
            "registry",
            "metrics",
            "--query",
            "sum(",
            "--registry",
            &host,
        ])
        .await
        .failed(1, "agent: registry 127.0.0.1");
    let refused = agent
        .run(&[
            "registry",
            "metrics",
            "--query",
            "histogram_quantile(0.9, x)",
            "--registry",
            &host,
        ])
        .await;
    assert!(
        refused
            .stderr
            .contains("bad_data: the built-in metric store does not support"),
        "{}",
        refused.stderr
    );
    agent
        .run(&[
            "registry",
            "metrics",
            "--metric",
            "a_total",
            "--query",
            "b",
            "--registry",
            &host,
        ])
        .await
        .failed(
            2,
            "error: the argument '--metric <NAME>' cannot be used with '--query <PROMQL>'",
        );
    agent
        .run(&[
            "registry",
            "metrics",
            "--period",
            "forever",
            "--registry",
            &host,
        ])
        .await
        .failed(2, "error: invalid value 'forever' for '--period");
}

/// The last value of the one series `agent registry metrics --query Q -o json` prints, once
/// it is `expected` (asked every half second for up to a minute).
async fn wait_for(agent: &Agent, source: &[&str], query: &str, expected: f64) {
    let mut args = vec![
        "registry", "metrics", "--query", query, "--period", "2m", "--step", "1s",
    ];
    args.extend_from_slice(source);
    args.extend_from_slice(&["-o", "json"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let run = agent.run(&args).await;
        if run.code == 0 && run.json()[0]["value"] == expected {
            return;
        }
        last = format!("{}{}", run.stdout, run.stderr);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{source:?} never answered {expected} to {query}: {last}");
}

/// Prometheus (Debian's `prometheus`) scrapes the registry's `/metrics` every second;
/// `--prometheus` reads it and sees the pushes the built-in history sees.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs prometheus (scripts/test installs it)"]
async fn a_prometheus_scraping_the_registry_sees_what_its_history_sees() {
    let server = TestServer::start_with(|c| c.metrics.history.interval_secs = 1).await;
    let host = server.host().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s }}\nscrape_configs:\n  - job_name: registry\n    static_configs: [{{ targets: [\"{host}\"] }}]\n"
        ),
    )
    .expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start prometheus (scripts/test installs it)");

    let url = format!("http://{host}");
    for i in 0..3u8 {
        push_image(&url, "team/watched", &format!("v{i}"), &[vec![i; 100]]).await;
    }
    let agent = Agent::new();
    let prometheus = format!("http://127.0.0.1:{port}");
    let query = "sum(push_operations_total)";
    wait_for(&agent, &["--prometheus", &prometheus], query, 3.0).await;
    wait_for(&agent, &["--registry", &host], query, 3.0).await;
    // Prometheus adds its own labels to what it scrapes.
    let json = agent
        .run(&[
            "registry",
            "metrics",
            "--prometheus",
            &prometheus,
            "--query",
            "push_operations_total",
            "--period",
            "1m",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(json[0]["labels"]["job"], "registry", "{json}");
    assert_eq!(json[0]["labels"]["repository_class"], "team", "{json}");
}
