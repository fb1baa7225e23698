//! `agent registry ping`, `health`, `config show` and `image info` against our registry:
//! healthy, failing a check, and not there at all.

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, push_image, sha256};

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

#[tokio::test(flavor = "multi_thread")]
async fn image_info_describes_an_image_and_what_refers_to_it_without_pulling() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let url = format!("http://{host}");
    let image = push_image(
        &url,
        "team/info",
        "1.2.0",
        &[vec![1u8; 3000], vec![2u8; 2000]],
    )
    .await;

    // A cosign-style signature refers to the image.
    let http = reqwest::Client::new();
    let empty = b"{}";
    let r = http
        .post(format!(
            "{url}/v2/team/info/blobs/uploads/?digest={}",
            sha256(empty)
        ))
        .body(empty.to_vec())
        .send()
        .await
        .expect("push");
    assert!(r.status().is_success());
    let signature = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": sha256(empty).to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                    "digest": sha256(empty).to_string(), "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": image.to_string(), "size": 1},
    });
    let body = serde_json::to_vec(&signature).expect("json");
    let r = http
        .put(format!("{url}/v2/team/info/manifests/{}", sha256(&body)))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .expect("push signature");
    assert!(r.status().is_success(), "{}", r.status());

    let agent = Agent::new();
    let name = format!("{host}/team/info:1.2.0");
    let info = agent
        .run(&["registry", "image", "info", &name, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(info["Digest"], image.to_string());
    assert_eq!(info["Layers"].as_array().map(Vec::len), Some(2));
    let config_size = info["Size"].as_u64().expect("size") - 5000;
    assert!(config_size > 100, "{info}");
    assert_eq!(info["Created"], "2024-01-01T00:00:00Z");
    assert_eq!(info["Labels"]["org.opencontainers.image.version"], "1.2.0");
    assert_eq!(info["Agent"]["version"], "1.2.0");
    assert!(info["Downloads"].as_u64().is_some(), "{info}");
    assert_eq!(
        info["Signatures"][0]["ArtifactType"],
        "application/vnd.dev.cosign.artifact.sig.v1+json"
    );

    let table = agent.run(&["registry", "image", "info", &name]).await.ok();
    for expected in [
        "Layers:",
        "Signatures:   1 (application/vnd.dev.cosign.artifact.sig.v1+json)",
        "Label:        org.opencontainers.image.version=1.2.0",
    ] {
        assert!(
            table.stdout.contains(expected),
            "{expected}: {}",
            table.stdout
        );
    }
    agent
        .run(&[
            "registry",
            "image",
            "info",
            &format!("{host}/team/info:missing"),
        ])
        .await
        .failed(4, "agent: ");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_shows_the_servers_recent_lines() {
    // Making the first administrator logs a line naming it.
    let server = TestServer::start_with(|c| {
        c.auth.admin.name = "cli-log-probe".into();
        c.auth.admin.password = "admin-password".into();
    })
    .await;
    let host = server.host().to_owned();
    let agent = Agent::new();
    let shown = agent
        .run(&[
            "registry",
            "logs",
            "--since",
            "1h",
            "--limit",
            "10000",
            "--registry",
            &host,
        ])
        .await
        .ok();
    assert!(
        shown.stdout.lines().any(|l| l.contains(" INFO ")
            && l.ends_with("created the first administrator user=cli-log-probe")),
        "{}",
        shown.stdout
    );
    let json = agent
        .run(&[
            "registry",
            "logs",
            "--level",
            "warn",
            "--limit",
            "10000",
            "--registry",
            &host,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let lines = json.as_array().expect("array");
    assert!(
        lines
            .iter()
            .all(|l| l["level"] == "WARN" || l["level"] == "ERROR"),
        "{json}"
    );
    agent
        .run(&["registry", "logs", "--level", "loud", "--registry", &host])
        .await
        .failed(1, "agent: ");
}
