//! One test per failure class users script against, each with its phrase and exit code, and
//! interrupted transfers.

use std::time::Duration;

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, Fault, FaultProxy, Tmpfs, files_under, noise, push_image, sha256};

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_image_is_exit_4_image_not_found() {
    let server = TestServer::start().await;
    let agent = Agent::new();
    let r = agent
        .run(&["pull", &format!("{}/nope:1", server.host())])
        .await;
    let r = r.failed(
        4,
        &format!("agent: image not found in registry {}", server.host()),
    );
    assert!(
        r.stderr.contains("nope:1"),
        "the message names the image: {}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_listening_is_exit_5_failed_to_connect() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let agent = Agent::new();
    let r = agent.run(&["pull", &format!("127.0.0.1:{port}/a:1")]).await;
    let r = r.failed(
        5,
        &format!("agent: failed to connect to registry 127.0.0.1:{port}"),
    );
    assert!(
        r.stderr.contains("Connection refused"),
        "says why: {}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limiting_is_retried_after_the_servers_wait_then_succeeds() {
    let server = TestServer::start().await;
    push_image(&server.url, "r", "1", &[noise(1000, 8)]).await;
    let proxy = FaultProxy::start(&server.url, Fault::RateLimitFirst(2)).await;
    let agent = Agent::new();
    let started = std::time::Instant::now();
    agent
        .run(&["pull", "-q", &format!("{}/r:1", proxy.host())])
        .await
        .ok();
    // Two 429s with Retry-After: 1 mean about two seconds of honoured waiting.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_rate_limiting_is_exit_7() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(&server.url, Fault::AlwaysRateLimit).await;
    let agent = Agent::new();
    let r = agent.run(&["pull", &format!("{}/r:1", proxy.host())]).await;
    let r = r.failed(
        7,
        &format!("agent: rate limit exceeded at {}", proxy.host()),
    );
    assert!(
        r.stderr.contains("slow down"),
        "carries the server's words: {}",
        r.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_pull_resumes_without_corrupting_the_store() {
    let server = TestServer::start().await;
    let layer = noise(4 << 20, 9);
    let layer_digest = sha256(&layer);
    push_image(&server.url, "big", "1", std::slice::from_ref(&layer)).await;
    let slow = FaultProxy::start(&server.url, Fault::Throttle(1 << 20)).await;
    let agent = Agent::new();
    let mut child = agent
        .command(&["pull", "-q", &format!("{}/big:1", slow.host())])
        .spawn()
        .expect("spawn");
    let partial = agent
        .store()
        .join(format!("ingest/sha256-{}.partial", layer_digest.hex()));
    let mut have = 0;
    for _ in 0..200 {
        have = std::fs::metadata(&partial).map_or(0, |m| m.len());
        if have >= 1 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(have >= 1 << 20, "the download got going ({have} bytes)");
    child.kill().await.expect("kill");

    // Nothing unverified is visible: no layer blob, no name.
    let blob = agent
        .store()
        .join(format!("blobs/sha256/{}", layer_digest.hex()));
    assert!(!blob.exists(), "a partial download is never a blob");
    let listed = agent.run(&["images", "-a", "-o", "json"]).await.ok().json();
    assert_eq!(listed, serde_json::json!([]));

    // The next pull asks only for the rest, and the result is exactly the layer.
    let counting = FaultProxy::start(&server.url, Fault::Throttle(1 << 30)).await;
    agent
        .run(&["pull", "-q", &format!("{}/big:1", counting.host())])
        .await
        .ok();
    let sent = counting.forwarded.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < layer.len() as u64,
        "resumed: {sent} bytes sent for a {} byte layer",
        layer.len()
    );
    assert_eq!(std::fs::read(&blob).expect("layer stored"), layer);
    assert!(!partial.exists(), "the partial file became the blob");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_cut_off_mid_chunk_resumes_and_the_blob_is_intact() {
    let source = TestServer::start().await;
    // Above the 64 MiB a single PUT carries, so the layer goes up in PATCHed chunks.
    let layer = noise(80 << 20, 15);
    let layer_digest = sha256(&layer);
    push_image(&source.url, "big", "1", std::slice::from_ref(&layer)).await;
    let agent = Agent::new();
    let name = format!("{}/big:1", source.host());
    agent.run(&["pull", "-q", &name]).await.ok();

    let dest = TestServer::start().await;
    let proxy = FaultProxy::start(&dest.url, Fault::CutUploadOnceAfter(20 << 20)).await;
    agent
        .run(&["push", "-q", &name, "--registry", &proxy.url])
        .await
        .ok();
    let pulled = reqwest::get(format!("{}/v2/big/blobs/{layer_digest}", dest.url))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert!(
        pulled.len() == layer.len() && pulled[..] == layer[..],
        "the layer arrived whole"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "mounts a tmpfs: needs root; run scripts/test"]
async fn a_full_disk_is_exit_6_and_leaves_the_store_usable() {
    let server = TestServer::start().await;
    push_image(&server.url, "big", "1", &[noise(6 << 20, 10)]).await;
    push_image(&server.url, "small", "1", &[noise(1000, 11)]).await;
    let agent = Agent::new();
    let _full = Tmpfs::mount(&agent.aac_home(), "4m");

    let r = agent
        .run(&["pull", &format!("{}/big:1", server.host())])
        .await;
    r.failed(6, "agent: insufficient storage space");
    let blobs = files_under(&agent.store().join("blobs"));
    assert!(
        blobs.len() <= 1,
        "only the small config may have landed: {blobs:?}"
    );

    // Pruning frees the partial download, and a pull that fits succeeds.
    agent.run(&["image", "prune"]).await.ok();
    agent
        .run(&["pull", "-q", &format!("{}/small:1", server.host())])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "mounts a tmpfs: needs root; run scripts/test"]
async fn a_full_registry_is_exit_6() {
    let source = TestServer::start().await;
    push_image(&source.url, "big", "1", &[noise(6 << 20, 14)]).await;
    let agent = Agent::new();
    agent
        .run(&["pull", "-q", &format!("{}/big:1", source.host())])
        .await
        .ok();

    let root = tempfile::tempdir().expect("tempdir");
    let _full = Tmpfs::mount(root.path(), "4m");
    let full = TestServer::start_with(|c| c.root = root.path().join("data")).await;

    let r = agent
        .run(&[
            "push",
            &format!("{}/big:1", source.host()),
            "--registry",
            &full.url,
        ])
        .await;
    r.failed(
        6,
        &format!(
            "agent: insufficient storage space: registry {} has no room",
            full.host()
        ),
    );
}
