//! The referrers API.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{OCI_INDEX, OCI_MANIFEST, TestRegistry, assert_error, header, sha256};

#[tokio::test(flavor = "multi_thread")]
async fn referrers_lists_manifests_with_a_subject_and_filters_by_artifact_type() {
    let reg = TestRegistry::start().await;
    let (image, subject) = reg.push_image("ref/app", "v1", b"app").await;
    let empty = reg.push_blob("ref/app", b"{}").await;
    let mut pushed = Vec::new();
    for (artifact_type, note) in [
        ("application/vnd.dev.sig", "signature"),
        ("application/spdx+json", "sbom"),
    ] {
        let body = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": image.len()},
            "annotations": {"note": note}
        }))
        .expect("json");
        let r = reg
            .put_manifest("ref/app", &sha256(&body).to_string(), OCI_MANIFEST, &body)
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        pushed.push((sha256(&body), body.len(), artifact_type, note));
    }

    let r = reg
        .http
        .get(reg.v2(&format!("ref/app/referrers/{subject}")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), Some(OCI_INDEX));
    assert!(header(&r, "oci-filters-applied").is_none());
    let index: Value = r.json().await.expect("json");
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let mut listed = index["manifests"].as_array().expect("manifests").clone();
    listed.sort_by_key(|m| m["digest"].as_str().unwrap_or_default().to_owned());
    pushed.sort_by_key(|p| p.0.to_string());
    assert_eq!(listed.len(), 2);
    for (m, (digest, size, artifact_type, note)) in listed.iter().zip(&pushed) {
        assert_eq!(m["digest"], digest.to_string());
        assert_eq!(m["size"], *size);
        assert_eq!(m["artifactType"], *artifact_type);
        assert_eq!(m["mediaType"], OCI_MANIFEST);
        assert_eq!(m["annotations"]["note"], *note);
    }

    let r = reg
        .http
        .get(reg.v2(&format!(
            "ref/app/referrers/{subject}?artifactType=application/spdx%2Bjson"
        )))
        .send()
        .await
        .expect("get");
    assert_eq!(header(&r, "oci-filters-applied"), Some("artifactType"));
    let filtered: Value = r.json().await.expect("json");
    assert_eq!(filtered["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(filtered["manifests"][0]["annotations"]["note"], "sbom");
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_of_an_unknown_digest_is_an_empty_index() {
    let reg = TestRegistry::start().await;
    let r = reg
        .http
        .get(reg.v2(&format!("ref/none/referrers/{}", sha256(b"nothing"))))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let index: Value = r.json().await.expect("json");
    assert_eq!(index["manifests"], json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn referrers_with_a_bad_digest_is_digest_invalid() {
    let reg = TestRegistry::start().await;
    let r = reg
        .http
        .get(reg.v2("ref/none/referrers/sha256:nope"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}
