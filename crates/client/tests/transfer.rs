//! Blob transfer against the real server: chunked uploads, verified downloads, mounts.

use std::sync::Arc;

use agent_registry_client::{BlobPushed, Client, ClientOptions, Error, NoProgress};
use agent_registry_oci::{Algorithm, Digest};
use agent_registry_server::testing::TestServer;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn client(server: &TestServer, chunk: u64) -> Client {
    Client::new(
        &server.url,
        ClientOptions {
            monolithic_max: chunk,
            chunk_size: chunk,
            ..ClientOptions::default()
        },
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn large_blobs_go_in_chunks_and_come_back_verified() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = data(5 << 20 | 123);
    let digest = Digest::of(Algorithm::Sha256, &blob);
    let path = dir.path().join("blob");
    std::fs::write(&path, &blob).expect("write");
    let c = client(&server, 1 << 20);

    let how = c
        .push_blob(
            "a",
            &digest,
            blob.len() as u64,
            &path,
            None,
            Arc::new(NoProgress),
        )
        .await
        .expect("push");
    assert_eq!(how, BlobPushed::Uploaded);
    let again = c
        .push_blob(
            "a",
            &digest,
            blob.len() as u64,
            &path,
            None,
            Arc::new(NoProgress),
        )
        .await
        .expect("push again");
    assert_eq!(
        again,
        BlobPushed::Existed,
        "a blob the repository has is not sent"
    );
    let mounted = c
        .push_blob(
            "b",
            &digest,
            blob.len() as u64,
            &path,
            Some("a"),
            Arc::new(NoProgress),
        )
        .await
        .expect("mount");
    assert_eq!(mounted, BlobPushed::Mounted);

    let out = dir.path().join("pulled");
    c.pull_blob(
        "b",
        &digest,
        Some(blob.len() as u64),
        &out,
        Arc::new(NoProgress),
    )
    .await
    .expect("pull");
    assert_eq!(std::fs::read(&out).expect("read"), blob);

    // A partial file resumes: keep the first half, pull again.
    std::fs::write(&out, &blob[..blob.len() / 2]).expect("truncate");
    c.pull_blob(
        "b",
        &digest,
        Some(blob.len() as u64),
        &out,
        Arc::new(NoProgress),
    )
    .await
    .expect("resume");
    assert_eq!(std::fs::read(&out).expect("read"), blob);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_that_does_not_match_is_rejected_and_removed() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let blob = data(10_000);
    let digest = Digest::of(Algorithm::Sha256, &blob);
    let path = dir.path().join("blob");
    std::fs::write(&path, &blob).expect("write");
    let c = client(&server, 64 << 20);
    c.push_blob(
        "a",
        &digest,
        blob.len() as u64,
        &path,
        None,
        Arc::new(NoProgress),
    )
    .await
    .expect("push");

    // A corrupt partial file (right length, wrong bytes) fails verification.
    let out = dir.path().join("pulled");
    std::fs::write(&out, vec![0u8; 5_000]).expect("corrupt prefix");
    let e = c
        .pull_blob(
            "a",
            &digest,
            Some(blob.len() as u64),
            &out,
            Arc::new(NoProgress),
        )
        .await
        .expect_err("corrupt");
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(!out.exists(), "a bad download is removed");

    // A wrong size from the manifest is caught while streaming.
    let e = c
        .pull_blob("a", &digest, Some(100), &out, Arc::new(NoProgress))
        .await
        .expect_err("too long");
    assert!(matches!(e, Error::Integrity { .. }), "{e}");
    assert!(!out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_manifests_and_blobs_are_not_found() {
    let server = TestServer::start().await;
    let c = client(&server, 1 << 20);
    let e = c.manifest("nope", "1").await.expect_err("missing");
    assert!(
        e.to_string().starts_with("image not found in registry"),
        "{e}"
    );
    assert_eq!(
        c.blob_size("nope", &Digest::of(Algorithm::Sha256, b"x"))
            .await
            .expect("head"),
        None
    );
    c.ping().await.expect("ping");
}
