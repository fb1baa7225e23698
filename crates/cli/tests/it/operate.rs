//! `agent registry ping`, `health` and `config show` against our registry: healthy, failing
//! a check, and not there at all.

use agent_registry_server::testing::TestServer;

use crate::support::Agent;

#[tokio::test(flavor = "multi_thread")]
async fn ping_and_health_report_a_registry_and_fail_when_it_is_unwell() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let agent = Agent::new();

    let ping = agent
        .run(&["registry", "ping", "--registry", &host])
        .await
        .ok();
    assert!(
        ping.stdout.starts_with(&format!("{host}: ")) && ping.stdout.contains("registry/2.0"),
        "{}",
        ping.stdout
    );
    let ping = agent
        .run(&["registry", "ping", "--registry", &host, "-o", "json"])
        .await
        .ok()
        .json();
    assert!(ping["round_trip_ms"].as_f64().is_some(), "{ping}");
    assert_eq!(ping["needs_auth"], false);

    let health = agent
        .run(&["registry", "health", "--detailed", "--registry", &host])
        .await
        .ok();
    for expected in [
        "ok (version",
        "storage",
        "writable",
        "database",
        "free_space",
    ] {
        assert!(
            health.stdout.contains(expected),
            "{expected}: {}",
            health.stdout
        );
    }
    let health = agent
        .run(&["registry", "health", "--registry", &host, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(health["status"], "ok");
    assert!(health.get("checks").is_none(), "{health}");

    let shown = agent
        .run(&["registry", "config", "show", "--registry", &host])
        .await
        .ok();
    assert!(
        shown.stdout.contains("min_free_bytes: 0"),
        "{}",
        shown.stdout
    );
    let shown = agent
        .run(&[
            "registry",
            "config",
            "show",
            "--registry",
            &host,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(shown["metrics"]["enabled"], true);

    // A floor no disk can meet: the registry is up but not ready.
    let full = TestServer::start_with(|c| c.storage.min_free_bytes = u64::MAX).await;
    let run = agent
        .run(&["registry", "health", "--registry", full.host()])
        .await
        .failed(1, "agent: ");
    assert!(
        run.stdout.contains("FAILING")
            && run.stderr.contains("is not healthy: free_space:")
            && run.stderr.contains("below the floor"),
        "{}\n{}",
        run.stdout,
        run.stderr
    );

    agent
        .run(&[
            "registry",
            "health",
            "--registry",
            "127.0.0.1:1",
            "--timeout",
            "5s",
        ])
        .await
        .failed(5, "agent: failed to connect to registry");
    agent
        .run(&[
            "registry",
            "health",
            "--registry",
            &host,
            "--timeout",
            "soon",
        ])
        .await
        .failed(2, "error: invalid value 'soon' for '--timeout");
}
