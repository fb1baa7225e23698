//! The server's life: killed outright, and stopped gracefully.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::process::{Child, Command};

use crate::support::{TinyFs, header, sha256};

/// The real binary, with the default (durable) configuration, over `root`.
async fn spawn_binary(root: &std::path::Path) -> (Child, String) {
    crate::support::spawn_binary(root, &[], std::process::Stdio::inherit()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_server_keeps_what_it_acknowledged_and_resumes_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let http = reqwest::Client::new();
    let (mut child, url) = spawn_binary(dir.path()).await;

    let blob = b"acknowledged before the crash";
    let digest = sha256(blob);
    let r = http
        .post(format!("{url}/v2/crash/app/blobs/uploads/?digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http
        .post(format!("{url}/v2/crash/app/blobs/uploads/"))
        .send()
        .await
        .expect("start");
    let location = header(&r, "location").expect("location").to_owned();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 239) as u8).collect();
    let r = http
        .patch(format!("{url}{location}"))
        .header("content-range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    child.start_kill().expect("SIGKILL");
    child.wait().await.expect("reaped");
    let (_child, url) = spawn_binary(dir.path()).await;

    let got = http
        .get(format!("{url}/v2/crash/app/blobs/{digest}"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        got.bytes().await.expect("body"),
        &blob[..],
        "acknowledged blob survived"
    );
    let status = http
        .get(format!("{url}{location}"))
        .send()
        .await
        .expect("status");
    assert_eq!(
        header(&status, "range"),
        Some("0-999999"),
        "acknowledged chunk survived"
    );
    let r = http
        .patch(format!("{url}{location}"))
        .header("content-range", "1000000-1499999")
        .body(data[1_000_000..].to_vec())
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = http
        .put(format!("{url}{location}?digest={}", sha256(&data)))
        .send()
        .await
        .expect("finish");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_an_in_flight_upload_finish_then_exits_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = spawn_binary(dir.path()).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/v2/stop/app/blobs/uploads/"))
        .send()
        .await
        .expect("start");
    let upload = format!("{url}{}", header(&r, "location").expect("location"));
    let slow = futures_util::stream::unfold(0, |i| async move {
        if i == 3 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        Some((Ok::<_, std::io::Error>(vec![b'x'; 1000]), i + 1))
    });
    let client = http.clone();
    let request = tokio::spawn(async move {
        client
            .patch(upload)
            .body(reqwest::Body::wrap_stream(slow))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        http.get(format!("{url}/v2/")).send().await.is_err(),
        "no new connections once stopping"
    );

    let r = request
        .await
        .expect("request task")
        .expect("in-flight request completed");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&r, "range"), Some("0-2999"));
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(exit.success(), "clean exit after draining: {exit}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root to mount a small tmpfs: run scripts/test"]
async fn a_full_disk_is_507_insufficient_storage_and_harms_nothing() {
    let fs = TinyFs::mount(4 << 20).await;
    let (_child, url) = spawn_binary(fs.0.path()).await;
    let http = reqwest::Client::new();
    let small = b"stored before the disk filled";
    let small_digest = sha256(small);
    let r = http
        .post(format!(
            "{url}/v2/full/app/blobs/uploads/?digest={small_digest}"
        ))
        .body(small.to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::CREATED);

    let big = vec![7u8; 8 << 20];
    let big_digest = sha256(&big);
    let r = http
        .post(format!(
            "{url}/v2/full/app/blobs/uploads/?digest={big_digest}"
        ))
        .body(big)
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let body: serde_json::Value = r.json().await.expect("error body");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("insufficient storage space"), "{body}");

    let r = http
        .head(format!("{url}/v2/full/app/blobs/{big_digest}"))
        .send()
        .await
        .expect("head");
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "no partial blob is visible"
    );
    let r = http
        .get(format!("{url}/v2/full/app/blobs/{small_digest}"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.bytes().await.expect("body"),
        &small[..],
        "what was stored is intact"
    );
    // The failed upload's bytes were released: small pushes work again.
    let again = b"after the failure";
    let r = http
        .post(format!(
            "{url}/v2/full/app/blobs/uploads/?digest={}",
            sha256(again)
        ))
        .body(again.to_vec())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_server_on_the_same_root_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_first, _url) = spawn_binary(dir.path()).await;
    let out = Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(["serve", "--listen", "127.0.0.1:0", "--root"])
        .arg(dir.path())
        .output()
        .await
        .expect("run agent-registry");
    assert!(!out.status.success(), "the second server must not start");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another process"),
        "says why: {stderr}"
    );
}
