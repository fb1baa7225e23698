//! Pushing blobs: monolithic, POST then PUT, chunked with status, cancel, mount, restarts.

use agent_registry_oci::{Algorithm, Digest};
use reqwest::StatusCode;

use crate::support::{
    TestRegistry, assert_error, finish_upload, header, patch_upload, sha256, start_upload,
};

#[tokio::test(flavor = "multi_thread")]
async fn post_then_put_uploads_a_blob() {
    let reg = TestRegistry::start().await;
    let data = b"post then put";
    let url = start_upload(&reg, "push/post-put").await;
    let digest = sha256(data);
    let r = reg
        .http
        .put(format!("{url}?digest={digest}"))
        .body(data.to_vec())
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v2/push/post-put/blobs/{digest}").as_str())
    );
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    let got = reg
        .http
        .get(reg.v2(&format!("push/post-put/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), &data[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_reports_progress_and_finishes() {
    let reg = TestRegistry::start().await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let url = start_upload(&reg, "push/chunked").await;
    let mut offset = 0;
    for chunk in data.chunks(1_000_000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let r = patch_upload(&reg, &url, Some(&range), chunk).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        offset += chunk.len();
        assert_eq!(
            header(&r, "range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
        let status = reg.http.get(&url).send().await.expect("status");
        assert_eq!(status.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header(&status, "range"),
            Some(format!("0-{}", offset - 1).as_str())
        );
    }
    let digest = sha256(&data);
    let r = finish_upload(&reg, &url, &digest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = reg
        .http
        .get(reg.v2(&format!("push/chunked/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn streamed_patch_without_content_range_is_appended() {
    // docker sends one PATCH with a streamed body and no Content-Range.
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/stream").await;
    let r = patch_upload(&reg, &url, None, b"first").await;
    assert_eq!(header(&r, "range"), Some("0-4"));
    let r = patch_upload(&reg, &url, None, b"second").await;
    assert_eq!(header(&r, "range"), Some("0-10"));
    let digest = sha256(b"firstsecond");
    let r = finish_upload(&reg, &url, &digest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_order_and_overlapping_chunks_are_416_with_the_resume_point() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/order").await;
    assert_eq!(
        patch_upload(&reg, &url, Some("0-4"), b"01234")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    for (range, data) in [
        ("10-14", &b"abcde"[..]),
        ("3-7", &b"34567"[..]),
        ("0-4", &b"01234"[..]),
    ] {
        let r = patch_upload(&reg, &url, Some(range), data).await;
        assert_eq!(header(&r, "range"), Some("0-4"), "{range}");
        assert!(header(&r, "location").is_some());
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
    }
    // Nothing of the rejected chunks got in: the upload still finishes with the right digest.
    assert_eq!(
        patch_upload(&reg, &url, Some("5-9"), b"56789")
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let digest = sha256(b"0123456789");
    let r = finish_upload(&reg, &url, &digest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

/// The PUT that finishes a chunked upload may carry its last chunk, with or without a
/// Content-Range, for either digest algorithm; a last chunk out of place is refused and a
/// wrong digest writes none of it.
#[tokio::test(flavor = "multi_thread")]
async fn the_finishing_put_may_carry_the_last_chunk() {
    let reg = TestRegistry::start().await;
    for (algorithm, range) in [(Algorithm::Sha256, Some("5-9")), (Algorithm::Sha512, None)] {
        let url = start_upload(&reg, "push/tail").await;
        let r = patch_upload(&reg, &url, Some("0-4"), b"first").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let digest = Digest::of(algorithm, b"first-last");
        let put = |range: Option<&str>, body: &[u8]| {
            let mut req = reg
                .http
                .put(format!("{url}?digest={digest}"))
                .body(body.to_vec());
            if let Some(range) = range {
                req = req.header("content-range", range);
            }
            req.send()
        };
        let r = put(Some("3-7"), b"-last").await.expect("put");
        assert_eq!(header(&r, "range"), Some("0-4"), "{algorithm:?}");
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
        let r = put(range, b"-last").await.expect("put");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{algorithm:?}: {:?}",
            r.text().await
        );
        let got = reg
            .http
            .get(reg.v2(&format!("push/tail/blobs/{digest}")))
            .send()
            .await
            .expect("get");
        assert_eq!(got.bytes().await.expect("body"), &b"first-last"[..]);
    }

    let url = start_upload(&reg, "push/tail").await;
    patch_upload(&reg, &url, None, b"first").await;
    let wrong = sha256(b"first-lost");
    let r = reg
        .http
        .put(format!("{url}?digest={wrong}"))
        .body(b"-last".to_vec())
        .send()
        .await
        .expect("put");
    let msg = assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(msg.contains("10 bytes"), "counts the last chunk: {msg}");
    let status = reg.http.get(&url).send().await.expect("status");
    assert_error(status, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_range_disagreeing_with_content_length_is_rejected() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/lengths").await;
    let r = patch_upload(&reg, &url, Some("0-9"), b"short").await;
    assert_error(r, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    let status = reg.http.get(&url).send().await.expect("status");
    assert_eq!(header(&status, "range"), Some("0-0"), "nothing appended");
}

#[tokio::test(flavor = "multi_thread")]
async fn digest_mismatch_is_digest_invalid_and_leaves_no_blob() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/mismatch").await;
    let wrong = sha256(b"something else");
    let r = reg
        .http
        .put(format!("{url}?digest={wrong}"))
        .body(b"actual".to_vec())
        .send()
        .await
        .expect("put");
    let msg = assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(
        msg.contains(&sha256(b"actual").to_string()),
        "says what was received: {msg}"
    );
    let head = reg
        .http
        .head(reg.v2(&format!("push/mismatch/blobs/{wrong}")))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let status = reg.http.get(&url).send().await.expect("status");
    assert_error(status, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;

    // Monolithic POST too.
    let r = reg
        .http
        .post(reg.v2(&format!("push/mismatch/blobs/uploads/?digest={wrong}")))
        .body(b"x".to_vec())
        .send()
        .await
        .expect("post");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn finishing_without_a_digest_is_digest_invalid() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/nodigest").await;
    let r = reg.http.put(&url).send().await.expect("put");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_uploads_are_gone() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/cancel").await;
    patch_upload(&reg, &url, Some("0-2"), b"abc").await;
    let r = reg.http.delete(&url).send().await.expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for r in [
        reg.http.get(&url).send().await.expect("get"),
        patch_upload(&reg, &url, Some("3-5"), b"def").await,
        reg.http.delete(&url).send().await.expect("delete"),
    ] {
        assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_ids_belong_to_their_repository() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/mine").await;
    let stolen = url.replace("push/mine", "push/theirs");
    let r = reg.http.get(&stolen).send().await.expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = reg
        .http
        .get(reg.v2("push/mine/blobs/uploads/not-a-real-id"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    let r = reg
        .http
        .get(reg.v2("push/mine/blobs/uploads/..%2F..%2Fregistry.db"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cross_repository_mount_links_without_upload() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("mount/source", b"mount me").await;
    let r = reg
        .http
        .post(reg.v2(&format!(
            "mount/target/blobs/uploads/?mount={digest}&from=mount/source"
        )))
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v2/mount/target/blobs/{digest}").as_str())
    );
    let got = reg
        .http
        .get(reg.v2(&format!("mount/target/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), &b"mount me"[..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_without_from_finds_the_blob_anywhere() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("auto/source", b"auto mount").await;
    let r = reg
        .http
        .post(reg.v2(&format!("auto/target/blobs/uploads/?mount={digest}")))
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_of_something_absent_starts_an_ordinary_upload() {
    let reg = TestRegistry::start().await;
    let digest = reg.push_blob("nomount/source", b"here").await;
    let missing = sha256(b"nowhere");
    let r = reg
        .http
        .post(reg.v2(&format!(
            "nomount/t/blobs/uploads/?mount={missing}&from=nomount/source"
        )))
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(
        header(&r, "location")
            .expect("location")
            .contains("/blobs/uploads/")
    );
    // Naming the wrong source repository does not mount either.
    let r = reg
        .http
        .post(reg.v2(&format!(
            "nomount/t/blobs/uploads/?mount={digest}&from=elsewhere"
        )))
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_upload_resumes_after_restart() {
    let reg = TestRegistry::start().await;
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let url = start_upload(&reg, "push/restart").await;
    let path = url.trim_start_matches(&reg.url).to_owned();
    assert_eq!(
        patch_upload(&reg, &url, Some("0-999999"), &data[..1_000_000])
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    let reg = reg.restart().await;
    let url = format!("{}{path}", reg.url);
    let status = reg.http.get(&url).send().await.expect("status");
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&status, "range"),
        Some("0-999999"),
        "the restarted server knows the upload"
    );
    assert_eq!(
        patch_upload(&reg, &url, Some("1000000-1999999"), &data[1_000_000..])
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let digest = sha256(&data);
    let r = finish_upload(&reg, &url, &digest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "hash state was rebuilt from storage"
    );
    let got = reg
        .http
        .get(reg.v2(&format!("push/restart/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), data);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_of_the_same_blob_all_succeed() {
    let reg = TestRegistry::start().await;
    let data = b"same bytes from many clients".repeat(10_000);
    let pushes = (0..8).map(|i| {
        let (http, url, data) = (
            reg.http.clone(),
            reg.v2(&format!(
                "race/r{i}/blobs/uploads/?digest={}",
                sha256(&data)
            )),
            data.clone(),
        );
        tokio::spawn(async move {
            http.post(url)
                .body(data)
                .send()
                .await
                .expect("post")
                .status()
        })
    });
    for p in pushes {
        assert_eq!(p.await.expect("task"), StatusCode::CREATED);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn absurd_content_ranges_are_rejected_cleanly() {
    let reg = TestRegistry::start().await;
    let url = start_upload(&reg, "push/absurd").await;
    let r = patch_upload(&reg, &url, Some(&format!("0-{}", u64::MAX)), b"tiny").await;
    assert_error(r, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    for bad in ["x-y", "5-1", "-", "99999999999999999999999-1"] {
        let r = patch_upload(&reg, &url, Some(bad), b"tiny").await;
        assert_error(r, StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID").await;
    }
    let status = reg.http.get(&url).send().await.expect("status");
    assert_eq!(header(&status, "range"), Some("0-0"), "nothing appended");
}
