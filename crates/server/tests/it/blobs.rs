//! Pulling and deleting blobs.

use agent_registry_oci::{Algorithm, Digest};
use reqwest::StatusCode;

use crate::support::{TestRegistry, assert_error, header};

#[tokio::test(flavor = "multi_thread")]
async fn blob_head_and_get_return_content_with_digest_and_length() {
    let reg = TestRegistry::start().await;
    let data = b"some layer bytes".repeat(1000);
    let digest = reg.push_blob("pull/blob", &data).await;
    let url = reg.v2(&format!("pull/blob/blobs/{digest}"));

    let head = reg.http.head(&url).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        header(&head, "content-length"),
        Some(data.len().to_string().as_str())
    );
    assert_eq!(
        header(&head, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(
        header(&head, "content-type"),
        Some("application/octet-stream")
    );

    let get = reg.http.get(&url).send().await.expect("get");
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(
        header(&get, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(get.bytes().await.expect("body"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn blob_get_honours_single_byte_ranges() {
    let reg = TestRegistry::start().await;
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 256) as u8).collect();
    let digest = reg.push_blob("pull/range", &data).await;
    let url = reg.v2(&format!("pull/range/blobs/{digest}"));
    for (range, want, content_range) in [
        ("bytes=10-19", &data[10..20], "bytes 10-19/5000"),
        ("bytes=4990-", &data[4990..], "bytes 4990-4999/5000"),
        ("bytes=-3", &data[4997..], "bytes 4997-4999/5000"),
    ] {
        let r = reg
            .http
            .get(&url)
            .header("range", range)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&r, "content-range"), Some(content_range));
        assert_eq!(r.bytes().await.expect("body"), want);
    }
    let r = reg
        .http
        .get(&url)
        .header("range", "bytes=6000-")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), Some("bytes */5000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_blobs_are_blob_unknown_and_repositories_do_not_share_them() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("owner/repo", b"private bytes").await;
    let r = reg
        .http
        .get(reg.v2(&format!("other/repo/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    let msg = assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    assert!(msg.contains("other/repo"), "{msg}");
    let head = reg
        .http
        .head(reg.v2(&format!("other/repo/blobs/{digest}")))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_digests_are_digest_invalid() {
    let reg = TestRegistry::start().await;
    for bad in [
        "sha256:abc",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
    ] {
        let r = reg
            .http
            .get(reg.v2(&format!("a/blobs/{bad}")))
            .send()
            .await
            .expect("get");
        assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sha512_blobs_push_and_pull() {
    let reg = TestRegistry::start().await;
    let data = b"sha512 content";
    let digest = Digest::of(Algorithm::Sha512, data);
    let r = reg
        .http
        .post(reg.v2(&format!("a/blobs/uploads/?digest={digest}")))
        .body(data.to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = reg
        .http
        .get(reg.v2(&format!("a/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), &data[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_blob_removes_it_but_not_while_a_manifest_uses_it() {
    let reg = TestRegistry::start().await;
    let (_, manifest) = reg.push_image("del/blob", "v1", b"layer").await;
    let layer = crate::support::sha256(b"layer");
    let url = reg.v2(&format!("del/blob/blobs/{layer}"));

    let r = reg.http.delete(&url).send().await.expect("delete");
    let msg = assert_error(r, StatusCode::CONFLICT, "DENIED").await;
    assert!(
        msg.contains(&manifest.to_string()),
        "names the manifest in the way: {msg}"
    );

    let r = reg
        .http
        .delete(reg.v2(&format!("del/blob/manifests/{manifest}")))
        .send()
        .await
        .expect("delete manifest");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg.http.delete(&url).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        reg.http.head(&url).send().await.expect("head").status(),
        StatusCode::NOT_FOUND
    );
    let r = reg.http.delete(&url).send().await.expect("delete again");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_blob_in_one_repository_keeps_it_in_another() {
    let reg = TestRegistry::start().await;
    let a = reg.push_blob("dedup/a", b"shared").await;
    reg.push_blob("dedup/b", b"shared").await;
    let r = reg
        .http
        .delete(reg.v2(&format!("dedup/a/blobs/{a}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let got = reg
        .http
        .get(reg.v2(&format!("dedup/b/blobs/{a}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), &b"shared"[..]);
}
