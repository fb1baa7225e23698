//! Notifications: the distribution event envelope reaches a webhook that was down for a while,
//! in order, with the configured headers; what cannot be delivered in time lands in the
//! dead-letter log; NATS subscribers get each event.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_registry_server::config::{NatsConfig, WebhookConfig};
use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::{OCI_MANIFEST, TestRegistry};

/// A loopback port nothing listens on (yet).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn hook(port: u16, give_up_after_secs: u64) -> WebhookConfig {
    WebhookConfig {
        name: "hook".into(),
        url: format!("http://127.0.0.1:{port}/events"),
        headers: BTreeMap::from([("authorization".into(), "Bearer hook-secret".into())]),
        timeout_secs: 2,
        backoff_ms: 100,
        give_up_after_secs,
    }
}

type Received = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

/// Serves `POST /events` on `port`, keeping what arrives.
async fn receiver(port: u16) -> Received {
    let received: Received = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let envelope: Value = serde_json::from_slice(&body).expect("envelope");
                kept.lock().expect("lock").push((headers, envelope));
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the receiver");
    tokio::spawn(async move { axum::serve(listener, app).await });
    received
}

/// The first line of the dead-letter log, once there is one (within 10 s).
async fn first_dead_letter(reg: &TestRegistry) -> Value {
    let log = reg.root().join("notifications/dead-letter.jsonl");
    for _ in 0..100 {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().next() {
            return serde_json::from_str(line).expect("a JSON line");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing in {} after 10 s", log.display());
}

async fn push_pull_delete(reg: &TestRegistry) -> agent_registry_oci::Digest {
    let (_, digest) = reg.push_image("team/app", "v1", b"layer").await;
    let r = reg.get_manifest("team/app", "v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = reg
        .http
        .delete(reg.v2(&format!("team/app/manifests/{digest}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    digest
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_delivery_survives_a_receiver_that_is_down_for_a_while() {
    if crate::support::skip_on_several_nodes("the notification queue") {
        return;
    }
    let port = free_port();
    let reg = TestRegistry::start_with(|c| c.notifications.webhooks = vec![hook(port, 60)]).await;
    let digest = push_pull_delete(&reg).await;

    // The receiver comes up after several failed attempts.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let received = receiver(port).await;
    let mut events = Vec::new();
    for _ in 0..100 {
        events = received
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|(_, e)| e["events"].as_array().cloned().unwrap_or_default())
            .collect::<Vec<Value>>();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["push", "pull", "delete"], "{events:?}");
    let push = &events[0];
    assert_eq!(push["target"]["repository"], "team/app");
    assert_eq!(push["target"]["tag"], "v1");
    assert_eq!(push["target"]["digest"], digest.to_string());
    assert_eq!(push["target"]["mediaType"], OCI_MANIFEST);
    assert!(
        push["target"]["size"].as_u64().is_some_and(|n| n > 100),
        "{push}"
    );
    assert_eq!(
        push["target"]["url"],
        format!("{}/v2/team/app/manifests/{digest}", reg.url)
    );
    assert_eq!(push["request"]["method"], "PUT");
    assert!(
        push["source"]["instanceID"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(events[2]["target"]["digest"], digest.to_string());
    let (headers, _) = &received.lock().expect("lock")[0];
    assert_eq!(headers["authorization"], "Bearer hook-secret");
    assert_eq!(
        headers["content-type"],
        "application/vnd.docker.distribution.events.v1+json"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn undeliverable_events_land_in_the_dead_letter_log() {
    if crate::support::skip_on_several_nodes("the dead-letter log") {
        return;
    }
    let port = free_port();
    let reg = TestRegistry::start_with(|c| c.notifications.webhooks = vec![hook(port, 1)]).await;
    reg.push_image("team/lost", "v1", b"layer").await;
    let line = first_dead_letter(&reg).await;
    assert_eq!(line["destination"], "hook");
    assert!(
        line["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{line}"
    );
    assert_eq!(line["events"][0]["action"], "push");
    assert_eq!(line["events"][0]["target"]["repository"], "team/lost");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs NATS on 127.0.0.1:4222 (a service of these machines)"]
async fn events_are_published_to_nats() {
    let subject = format!("agent-registry.test.{}", uuid_like());
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("connect to NATS");
    let mut subscription = client.subscribe(subject.clone()).await.expect("subscribe");
    client.flush().await.expect("flush");
    let reg = TestRegistry::start_with(|c| {
        c.notifications.nats = Some(NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            subject: subject.clone(),
            backoff_ms: 100,
            give_up_after_secs: 60,
        })
    })
    .await;
    push_pull_delete(&reg).await;
    let mut actions = Vec::new();
    while actions.len() < 3 {
        let message = tokio::time::timeout(
            Duration::from_secs(10),
            futures_util::StreamExt::next(&mut subscription),
        )
        .await
        .expect("an event within 10 s")
        .expect("subscription open");
        let event: Value = serde_json::from_slice(&message.payload).expect("json");
        actions.push(event["action"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(actions, ["push", "pull", "delete"]);
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_server_that_is_down_delays_nothing_and_its_events_are_dead_lettered() {
    if crate::support::skip_on_several_nodes("the dead-letter log") {
        return;
    }
    let port = free_port();
    let reg = TestRegistry::start_with(|c| {
        c.notifications.nats = Some(NatsConfig {
            url: format!("nats://127.0.0.1:{port}"),
            subject: "agent-registry.nowhere".into(),
            backoff_ms: 100,
            give_up_after_secs: 1,
        })
    })
    .await;
    reg.push_image("team/unheard", "v1", b"layer").await;
    let line = first_dead_letter(&reg).await;
    assert_eq!(line["destination"], "nats");
    assert_eq!(line["events"][0]["target"]["repository"], "team/unheard");
}
