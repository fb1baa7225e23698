//! Pull policies against the real server: what each does when the registry is up, down,
//! silent or missing the image, and the events each emits, in order.

use std::sync::Arc;
use std::time::Duration;

use agent_registry_client::{Client, ClientOptions, ImageRef, NoProgress, RetryPolicy};
use agent_registry_images::{
    Backend, Ensure, EventBus, FailureKind, JsonLines, LocalStore, PullPolicy, PullSource, Quiet,
    TransferOptions, ensure,
};
use agent_registry_oci::{Algorithm, Digest};
use agent_registry_server::testing::TestServer;
use bytes::Bytes;

/// Pushes a one-layer OCI image as `repo:tag` with the client itself.
async fn push(client: &Client, dir: &std::path::Path, repo: &str, tag: &str) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = format!("layer of {repo}:{tag}").into_bytes();
    let mut descriptors = Vec::new();
    for (i, blob) in [&config[..], &layer].iter().enumerate() {
        let digest = Digest::of(Algorithm::Sha256, blob);
        let path = dir.join(format!("blob{i}"));
        std::fs::write(&path, blob).expect("write");
        client
            .push_blob(
                repo,
                &digest,
                blob.len() as u64,
                &path,
                None,
                Arc::new(NoProgress),
            )
            .await
            .expect("push blob");
        descriptors.push(serde_json::json!({"digest": digest.to_string(), "size": blob.len()}));
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": descriptors[0]["digest"], "size": descriptors[0]["size"]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": descriptors[1]["digest"], "size": descriptors[1]["size"]}],
    });
    client
        .put_manifest(
            repo,
            tag,
            Bytes::from(serde_json::to_vec(&manifest).expect("json")),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
        .expect("push manifest");
}

fn client_for(host: &str) -> Client {
    Client::new(
        host,
        ClientOptions {
            retry: RetryPolicy::none(),
            ..ClientOptions::default()
        },
    )
    .expect("client")
}

struct Node {
    dir: tempfile::TempDir,
    store: LocalStore,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path().join("store")).expect("store");
        Node { dir, store }
    }

    /// Ensures `image` under `policy`; returns the outcome and the events it emitted.
    async fn ensure(
        &self,
        client: &Client,
        image: &ImageRef,
        policy: PullPolicy,
        timeout: Option<Duration>,
    ) -> (Result<PullSource, FailureKind>, Vec<serde_json::Value>) {
        let log = self.dir.path().join(format!("events-{}.jsonl", unique()));
        let events = EventBus::new().with(JsonLines::append_to(&log).expect("log"));
        let request = Ensure {
            image,
            policy,
            execution_id: Some("exec-1"),
            timeout,
        };
        let backend = Backend::Store {
            client,
            store: &self.store,
            options: &TransferOptions::default(),
            progress: &Quiet,
        };
        let outcome = ensure(&backend, &request, &events)
            .await
            .map(|p| p.source)
            .map_err(|f| f.kind);
        let lines = std::fs::read_to_string(&log).expect("events");
        let events = lines
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        (outcome, events)
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn types(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap_or("?").to_owned();
            match (e.get("source"), e.get("reason")) {
                (Some(s), _) => format!("{t}:{}", s.as_str().unwrap_or("?")),
                (_, Some(r)) => format!("{t}:{}", r.as_str().unwrap_or("?")),
                _ => t,
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn if_not_present_downloads_once_then_serves_the_local_copy_with_the_registry_down() {
    let server = TestServer::start().await;
    let client = client_for(server.host());
    let node = Node::new();
    push(&client, node.dir.path(), "agents/a", "1").await;
    let image: ImageRef = format!("{}/agents/a:1", server.host())
        .parse()
        .expect("ref");

    let (first, events) = node
        .ensure(&client, &image, PullPolicy::IfNotPresent, None)
        .await;
    assert_eq!(first, Ok(PullSource::Downloaded));
    assert_eq!(
        types(&events),
        [
            "ImagePullStarted",
            "ImagePullCompleted:Downloaded",
            "ImageCached"
        ]
    );
    assert_eq!(events[1]["execution_id"], "exec-1");
    assert!(
        events[1]["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert!(events[1]["size"].as_u64().is_some_and(|s| s > 0));

    let host = server.host().to_owned();
    drop(server);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&host).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (second, events) = node
        .ensure(&client, &image, PullPolicy::IfNotPresent, None)
        .await;
    assert_eq!(second, Ok(PullSource::Cached));
    assert_eq!(
        types(&events),
        ["ImagePullStarted", "ImagePullCompleted:Cached"]
    );

    // Always asks the registry, which is down now.
    let (always, events) = node.ensure(&client, &image, PullPolicy::Always, None).await;
    assert_eq!(always, Err(FailureKind::NetworkTimeout));
    assert_eq!(
        types(&events),
        ["ImagePullStarted", "ImagePullFailed:NetworkTimeout"]
    );
    let message = events[1]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("failed to connect to registry"),
        "{message}"
    );
    assert!(message.contains("hint:"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn always_asks_the_registry_and_moves_only_what_is_missing() {
    let server = TestServer::start().await;
    let client = client_for(server.host());
    let node = Node::new();
    push(&client, node.dir.path(), "agents/b", "1").await;
    let image: ImageRef = format!("{}/agents/b:1", server.host())
        .parse()
        .expect("ref");
    let (first, _) = node.ensure(&client, &image, PullPolicy::Always, None).await;
    assert_eq!(first, Ok(PullSource::Downloaded));
    let (second, _) = node.ensure(&client, &image, PullPolicy::Always, None).await;
    assert_eq!(
        second,
        Ok(PullSource::Cached),
        "asked again, downloaded nothing"
    );

    // The tag moves on the registry: Always follows it.
    push(&client, node.dir.path(), "agents/b", "2").await;
    let manifest = client.manifest("agents/b", "2").await.expect("manifest");
    client
        .put_manifest(
            "agents/b",
            "1",
            manifest.bytes.clone(),
            &manifest.media_type,
        )
        .await
        .expect("retag");
    let (moved, events) = node.ensure(&client, &image, PullPolicy::Always, None).await;
    assert_eq!(moved, Ok(PullSource::Downloaded));
    assert_eq!(events[1]["digest"], manifest.digest.to_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn never_fails_at_once_without_touching_the_network() {
    // A listener that counts connection attempts: there must be none.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let host = listener.local_addr().expect("addr").to_string();
    let client = client_for(&host);
    let node = Node::new();
    let image: ImageRef = format!("{host}/agents/c:1").parse().expect("ref");
    let (outcome, events) = node.ensure(&client, &image, PullPolicy::Never, None).await;
    assert_eq!(outcome, Err(FailureKind::ImageNotFound));
    assert_eq!(
        types(&events),
        ["ImagePullStarted", "ImagePullFailed:ImageNotFound"]
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "Never connected to the registry"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_images_and_silent_registries_are_classified() {
    let server = TestServer::start().await;
    let client = client_for(server.host());
    let node = Node::new();
    let missing: ImageRef = format!("{}/agents/none:1", server.host())
        .parse()
        .expect("ref");
    let (outcome, _) = node
        .ensure(&client, &missing, PullPolicy::IfNotPresent, None)
        .await;
    assert_eq!(outcome, Err(FailureKind::ImageNotFound));

    // Accepts connections and never answers: the pull timeout ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let host = silent.local_addr().expect("addr").to_string();
    let _held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let image: ImageRef = format!("{host}/agents/slow:1").parse().expect("ref");
    let started = std::time::Instant::now();
    let (outcome, events) = node
        .ensure(
            &client_for(&host),
            &image,
            PullPolicy::IfNotPresent,
            Some(Duration::from_millis(500)),
        )
        .await;
    assert_eq!(outcome, Err(FailureKind::NetworkTimeout));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let message = events[1]["message"].as_str().unwrap_or_default();
    assert!(message.contains("did not finish within"), "{message}");
}

#[test]
fn pull_policies_parse_from_both_spellings() {
    for (s, p) in [
        ("Always", PullPolicy::Always),
        ("missing", PullPolicy::IfNotPresent),
        ("IfNotPresent", PullPolicy::IfNotPresent),
        ("never", PullPolicy::Never),
    ] {
        assert_eq!(s.parse::<PullPolicy>(), Ok(p));
    }
    assert!("sometimes".parse::<PullPolicy>().is_err());
    assert_eq!(PullPolicy::default(), PullPolicy::IfNotPresent);
}
