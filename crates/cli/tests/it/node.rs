//! Node-side commands: pre-caching runtimes, OCI archives for air-gapped nodes, and image
//! events delivered to a webhook and to NATS JetStream.

use std::sync::{Arc, Mutex};

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, noise, push_image};

/// A runtime table whose images live on `host`.
fn runtime_table(agent: &Agent, host: &str) -> String {
    let path = agent.home.path().join("runtimes.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: aegis.ai/v1\nkind: RuntimeRegistry\nspec:\n  registry_url: {host}\n  runtimes:\n    python:\n      \"3.9\": {{image: \"base/python:3.9\", deprecated: true}}\n      \"3.12\": {{image: \"base/python:3.12\"}}\n    go:\n      \"1.21\": {{image: \"base/go:1.21\"}}\n"
        ),
    )
    .expect("table");
    path.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn precache_pulls_supported_runtimes_and_a_saved_archive_loads_on_another_node() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    push_image(&server.url, "base/python", "3.9", &[noise(100, 40)]).await;
    push_image(&server.url, "base/python", "3.12", &[noise(100, 41)]).await;
    push_image(&server.url, "base/go", "1.21", &[noise(100, 42)]).await;
    let online = Agent::new();
    let table = runtime_table(&online, &host);

    let python = online
        .run(&[
            "image",
            "precache",
            "--runtime-registry",
            &table,
            "--language",
            "python",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let names: Vec<&str> = python
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|r| r["image"].as_str())
        .collect();
    assert_eq!(
        names,
        [format!("{host}/base/python:3.12")],
        "deprecated versions wait for --all"
    );
    let all = online
        .run(&[
            "image",
            "precache",
            "--runtime-registry",
            &table,
            "--all",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(all.as_array().map(Vec::len), Some(3), "{all}");

    // Carry everything to a node with no registry, as an OCI archive.
    let archive = online.home.path().join("node-images.tar");
    let ids = online.run(&["images", "-q"]).await.ok().stdout;
    let ids: Vec<&str> = ids.lines().collect();
    let mut save = vec!["save", "-O", archive.to_str().expect("utf-8")];
    save.extend(ids.iter().copied());
    online.run(&save).await.ok();
    drop(server);

    let offline = Agent::new();
    let loaded = offline
        .run(&["load", "-i", archive.to_str().expect("utf-8"), "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(loaded.as_array().map(Vec::len), Some(3), "{loaded}");
    let offline_table = runtime_table(&offline, &host);
    let ensured = offline
        .run(&[
            "image",
            "ensure",
            "--runtime",
            "go:1.21",
            "--runtime-registry",
            &offline_table,
            "--pull",
            "never",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(ensured["source"], "Cached");

    let missing = offline
        .run(&["load", "-i", "/nonexistent/images.tar"])
        .await;
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("/nonexistent/images.tar"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_go_to_a_webhook_in_order() {
    let server = TestServer::start().await;
    push_image(&server.url, "hooked", "1", &[noise(100, 43)]).await;
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |axum::Json(event): axum::Json<serde_json::Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().expect("lock").push(event);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/events", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let agent = Agent::new();
    let image = format!("{}/hooked:1", server.host());
    agent
        .run(&[
            "image",
            "ensure",
            &image,
            "--webhook",
            &hook,
            "--execution-id",
            "e-7",
            "-q",
        ])
        .await
        .ok();
    let missing = agent
        .run(&[
            "image",
            "ensure",
            &format!("{}/nope:1", server.host()),
            "--webhook",
            &hook,
        ])
        .await;
    assert_eq!(missing.code, 4, "{}", missing.stderr);

    let events = received.lock().expect("lock").clone();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "ImagePullStarted",
            "ImagePullCompleted",
            "ImageCached",
            "ImagePullStarted",
            "ImagePullFailed"
        ]
    );
    assert_eq!(events[1]["execution_id"], "e-7");
    assert_eq!(events[4]["reason"], "ImageNotFound");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs NATS with JetStream on 127.0.0.1:4222 (a service of these machines)"]
async fn events_are_published_to_nats_jetstream() {
    let server = TestServer::start().await;
    push_image(&server.url, "natty", "1", &[noise(100, 44)]).await;
    let nanos = crate::support::unique();
    let subject = format!("agent.test.{nanos}");
    let nats = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("NATS is running");
    let js = async_nats::jetstream::new(nats);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: format!("AGENT_TEST_{nanos}"),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .expect("create stream");

    let agent = Agent::new();
    agent
        .run(&[
            "image",
            "ensure",
            &format!("{}/natty:1", server.host()),
            "--nats",
            "nats://127.0.0.1:4222",
            "--nats-subject",
            &subject,
            "-q",
        ])
        .await
        .ok();

    let mut types = Vec::new();
    for seq in 1..=3 {
        let message = stream.get_raw_message(seq).await.expect("stored event");
        let event: serde_json::Value = serde_json::from_slice(&message.payload).expect("JSON");
        types.push(event["type"].as_str().unwrap_or("?").to_owned());
    }
    assert_eq!(
        types,
        ["ImagePullStarted", "ImagePullCompleted", "ImageCached"]
    );
    let _ = js.delete_stream(&stream.cached_info().config.name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removing_images_reports_image_removed_and_df_predicts_the_prune() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    push_image(&server.url, "gone", "1", &[noise(50_000, 45)]).await;
    push_image(&server.url, "gone", "2", &[noise(60_000, 46)]).await;
    let agent = Agent::new();
    agent
        .run(&["pull", "-q", &format!("{host}/gone:1")])
        .await
        .ok();
    agent
        .run(&["pull", "-q", &format!("{host}/gone:2")])
        .await
        .ok();
    // gone:1 now names gone:2's image; the first image is dangling.
    agent
        .run(&["tag", &format!("{host}/gone:2"), &format!("{host}/gone:1")])
        .await
        .ok();
    let df = agent.run(&["image", "df", "-o", "json"]).await.ok().json();
    assert_eq!(
        (df["images"].as_u64(), df["dangling"].as_u64()),
        (Some(2), Some(1)),
        "{df}"
    );

    let events = agent.home.path().join("removed.jsonl");
    let events_arg = events.to_string_lossy().into_owned();
    let pruned = agent
        .run(&["image", "prune", "--events", &events_arg, "-o", "json"])
        .await
        .ok()
        .json();
    assert_eq!(
        pruned["reclaimed"], df["reclaimable"],
        "df said what prune would free"
    );
    agent
        .run(&[
            "rmi",
            &format!("{host}/gone:1"),
            &format!("{host}/gone:2"),
            "--events",
            &events_arg,
        ])
        .await
        .ok();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&events)
        .expect("events")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let removed: Vec<(&str, &str)> = lines
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("?"),
                e["image"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(removed.len(), 2, "{lines:?}");
    assert!(removed.iter().all(|(t, _)| *t == "ImageRemoved"));
    assert!(
        removed[0].1.starts_with("sha256:"),
        "a dangling image is named by digest"
    );
    assert!(
        [format!("{host}/gone:1"), format!("{host}/gone:2")].contains(&removed[1].1.to_owned()),
        "a named image is named by one of its names: {}",
        removed[1].1
    );
    let after = agent.run(&["image", "df", "-o", "json"]).await.ok().json();
    assert_eq!(
        (after["images"].as_u64(), after["blobs"].as_u64()),
        (Some(0), Some(0))
    );
}
