//! Pushing, pulling and deleting manifests, OCI and Docker schema 2, images and indexes.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, TestRegistry, assert_error, header,
    image_manifest, sha256,
};

#[tokio::test(flavor = "multi_thread")]
async fn manifest_by_tag_and_digest_with_headers() {
    let reg = TestRegistry::start().await;
    let (body, digest) = reg.push_image("man/basic", "v1", b"layer").await;
    for reference in ["v1".to_owned(), digest.to_string()] {
        let url = reg.v2(&format!("man/basic/manifests/{reference}"));
        let head = reg.http.head(&url).send().await.expect("head");
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "content-type"), Some(OCI_MANIFEST));
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert_eq!(
            header(&head, "docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        let get = reg
            .http
            .get(&url)
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("get");
        assert_eq!(
            header(&get, "docker-content-digest"),
            Some(digest.to_string().as_str())
        );
        assert_eq!(
            get.bytes().await.expect("body"),
            body,
            "served byte for byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn put_answers_201_with_location_and_digest() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("man/put", b"{}").await;
    let body = image_manifest(&config, 2, &[], None);
    let r = reg
        .put_manifest("man/put", "latest", OCI_MANIFEST, &body)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let digest = sha256(&body);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    assert_eq!(
        header(&r, "location"),
        Some(format!("/v2/man/put/manifests/{digest}").as_str())
    );
    assert!(header(&r, "oci-subject").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn put_by_digest_must_match_the_body() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("man/bydigest", b"{}").await;
    let body = image_manifest(&config, 2, &[], None);
    let r = reg
        .put_manifest(
            "man/bydigest",
            &sha256(&body).to_string(),
            OCI_MANIFEST,
            &body,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = reg
        .put_manifest(
            "man/bydigest",
            &sha256(b"other").to_string(),
            OCI_MANIFEST,
            &body,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn manifests_must_reference_blobs_in_the_repository() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("man/refs", b"{}").await;
    let elsewhere = reg.push_blob("man/other", b"layer elsewhere").await;
    let body = image_manifest(&config, 2, &[(&elsewhere, 15)], None);
    let r = reg
        .put_manifest("man/refs", "v1", OCI_MANIFEST, &body)
        .await;
    let msg = assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN").await;
    assert!(
        msg.contains(&elsewhere.to_string()),
        "names the missing blob: {msg}"
    );
    let r = reg
        .http
        .get(reg.v2("man/refs/manifests/v1"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_are_manifest_invalid() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("man/invalid", b"{}").await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (OCI_MANIFEST, b"not json".to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion":2,"layers":[]}"#.to_vec()),
        (OCI_MANIFEST, br#"{"schemaVersion":1,"name":"x"}"#.to_vec()),
        (DOCKER_MANIFEST, image_manifest(&config, 2, &[], None)),
        (
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
            br#"{"schemaVersion":1}"#.to_vec(),
        ),
        ("text/plain", image_manifest(&config, 2, &[], None)),
    ];
    for (media_type, body) in cases {
        let r = reg
            .put_manifest("man/invalid", "bad", media_type, &body)
            .await;
        assert_error(r, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_manifests_are_refused_before_buffering() {
    let reg = TestRegistry::start_with(|c| c.limits.manifest_max_bytes = 1024).await;
    let big = vec![b' '; 2048];
    let r = reg.put_manifest("man/big", "v1", OCI_MANIFEST, &big).await;
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    // Without Content-Length (chunked transfer) the limit still holds while reading.
    let stream =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512])));
    let r = reg
        .http
        .put(reg.v2("man/big/manifests/v1"))
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("put");
    assert_error(r, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tags_are_tag_invalid() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("man/tags", b"{}").await;
    let body = image_manifest(&config, 2, &[], None);
    for tag in [".hidden", "-dash", &"x".repeat(129)] {
        let r = reg.put_manifest("man/tags", tag, OCI_MANIFEST, &body).await;
        assert_error(r, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn docker_schema2_manifest_and_manifest_list() {
    let reg = TestRegistry::start().await;
    let config = reg.push_blob("man/docker", b"{}").await;
    let layer = reg.push_blob("man/docker", b"layer").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer.to_string(), "size": 5}]
    }))
    .expect("json");
    let r = reg
        .put_manifest("man/docker", "amd64", DOCKER_MANIFEST, &manifest)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": DOCKER_MANIFEST, "digest": sha256(&manifest).to_string(), "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .expect("json");
    let r = reg
        .put_manifest("man/docker", "latest", DOCKER_LIST, &list)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let get = reg
        .http
        .get(reg.v2("man/docker/manifests/latest"))
        .send()
        .await
        .expect("get");
    assert_eq!(header(&get, "content-type"), Some(DOCKER_LIST));
    assert_eq!(get.bytes().await.expect("body"), list);
}

#[tokio::test(flavor = "multi_thread")]
async fn index_must_reference_manifests_in_the_repository() {
    let reg = TestRegistry::start().await;
    let (child, child_digest) = reg.push_image("man/index", "child", b"l").await;
    let index = |d: &agent_registry_oci::Digest| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": child.len()}]}))
        .expect("json")
    };
    let r = reg
        .put_manifest("man/index", "bad", OCI_INDEX, &index(&sha256(b"absent")))
        .await;
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_BLOB_UNKNOWN").await;
    let r = reg
        .put_manifest("man/index", "multi", OCI_INDEX, &index(&child_digest))
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // The child cannot be deleted while the index needs it.
    let r = reg
        .http
        .delete(reg.v2(&format!("man/index/manifests/{child_digest}")))
        .send()
        .await
        .expect("delete");
    assert_error(r, StatusCode::CONFLICT, "DENIED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_move_and_deleting_a_tag_keeps_the_manifest() {
    let reg = TestRegistry::start().await;
    let (_, first) = reg.push_image("man/move", "latest", b"one").await;
    let (_, second) = reg.push_image("man/move", "latest", b"two").await;
    let r = reg
        .http
        .head(reg.v2("man/move/manifests/latest"))
        .send()
        .await
        .expect("head");
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(second.to_string().as_str())
    );

    let r = reg
        .http
        .delete(reg.v2("man/move/manifests/latest"))
        .send()
        .await
        .expect("delete tag");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = reg
        .http
        .get(reg.v2("man/move/manifests/latest"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    for d in [&first, &second] {
        let r = reg
            .http
            .head(reg.v2(&format!("man/move/manifests/{d}")))
            .send()
            .await
            .expect("head");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "untagged manifests stay until deleted by digest"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_by_digest_removes_the_manifest_and_its_tags() {
    let reg = TestRegistry::start().await;
    let (_, digest) = reg.push_image("man/del", "v1", b"x").await;
    let r = reg
        .http
        .delete(reg.v2(&format!("man/del/manifests/{digest}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    for reference in ["v1".to_owned(), digest.to_string()] {
        let r = reg
            .http
            .get(reg.v2(&format!("man/del/manifests/{reference}")))
            .send()
            .await
            .expect("get");
        assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
    let r = reg
        .http
        .delete(reg.v2(&format!("man/del/manifests/{digest}")))
        .send()
        .await
        .expect("delete again");
    assert_error(r, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let tags: serde_json::Value = reg.get_json("man/del/tags/list").await;
    assert_eq!(tags["tags"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_with_subject_answers_oci_subject() {
    let reg = TestRegistry::start().await;
    let (image, subject) = reg.push_image("man/subject", "v1", b"img").await;
    let config = reg.push_blob("man/subject", b"{}").await;
    // The subject need not exist, as the spec allows; here it does.
    let body = image_manifest(&config, 2, &[], Some((&subject, image.len())));
    let r = reg
        .put_manifest(
            "man/subject",
            &sha256(&body).to_string(),
            OCI_MANIFEST,
            &body,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        header(&r, "oci-subject"),
        Some(subject.to_string().as_str())
    );
    let dangling = image_manifest(&config, 2, &[], Some((&sha256(b"not pushed yet"), 10)));
    let r = reg
        .put_manifest("man/subject", "sig", OCI_MANIFEST, &dangling)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}
