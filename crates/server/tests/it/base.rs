//! `/v2/` and the behaviour every endpoint shares.

use reqwest::StatusCode;

use crate::support::{TestRegistry, assert_error, header};

#[tokio::test(flavor = "multi_thread")]
async fn api_base_answers_200_with_the_version_header() {
    let reg = TestRegistry::start().await;
    for path in ["/v2/", "/v2"] {
        let r = reg
            .http
            .get(format!("{}{path}", reg.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            header(&r, "docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_also_carry_the_version_header() {
    let reg = TestRegistry::start().await;
    let r = reg
        .http
        .get(reg.v2("a/manifests/nope"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        Some("registry/2.0")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_are_404_with_an_error_body() {
    let reg = TestRegistry::start().await;
    let r = reg
        .http
        .get(reg.v2("a/nothing/here"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "UNSUPPORTED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_repository_names_are_name_invalid() {
    let reg = TestRegistry::start().await;
    let long = "a".repeat(256);
    for name in ["Upper/case", "a//b", "-a", long.as_str()] {
        let r = reg
            .http
            .get(reg.v2(&format!("{name}/tags/list")))
            .send()
            .await
            .expect("get");
        let msg = assert_error(r, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
        assert!(msg.contains("repository name"), "{msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_methods_are_405_unsupported() {
    let reg = TestRegistry::start().await;
    let r = reg
        .http
        .post(reg.v2("a/tags/list"))
        .send()
        .await
        .expect("post");
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
}
