//! `/metrics`: every figure moves when its operation happens, only administrators read it
//! with access control on, and it is gone when metrics are off.

use std::collections::HashMap;

use reqwest::StatusCode;

use crate::support::{TestRegistry, assert_error, basic, client_with};

/// `name{labels}` to value, from the text page.
async fn scrape(http: &reqwest::Client, url: &str) -> HashMap<String, f64> {
    let r = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .is_ok_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        r.headers()
    );
    let page = r.text().await.expect("page");
    assert!(page.ends_with("# EOF\n"), "{page}");
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_figure_moves_when_its_operation_happens() {
    if crate::support::skip_on_several_nodes("/metrics") {
        return;
    }
    let reg = TestRegistry::start().await;
    let before = scrape(&reg.http, &reg.url).await;

    let layer = vec![9u8; 5000];
    reg.push_image("team/app", "v1", &layer).await;
    let r = reg.get_manifest("team/app", "v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = reg
        .http
        .get(reg.v2("team/app/manifests/missing"))
        .send()
        .await
        .expect("pull");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = reg
        .http
        .get(reg.v2("solo/manifests/v1"))
        .send()
        .await
        .expect("pull");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let layer_digest = crate::support::sha256(&layer);
    let r = reg
        .http
        .get(reg.v2(&format!("team/app/blobs/{layer_digest}")))
        .send()
        .await
        .expect("blob");
    assert_eq!(r.bytes().await.expect("body").len(), layer.len());
    // The first tag list is read from the database, the second from memory.
    for _ in 0..2 {
        let r = reg
            .http
            .get(reg.v2("team/app/tags/list"))
            .send()
            .await
            .expect("tags");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = reg
        .http
        .post(reg.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let after = scrape(&reg.http, &reg.url).await;
    let moved = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(
        moved(r#"push_operations_total{repository_class="team",result="success"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"pull_operations_total{repository_class="team",result="success"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"pull_operations_total{repository_class="team",result="client_error"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"pull_operations_total{repository_class="_",result="client_error"}"#),
        1.0
    );
    // The config blob (37 bytes) and the layer.
    assert_eq!(moved("registry_bytes_received_total"), 37.0 + 5000.0);
    assert_eq!(moved("registry_bytes_sent_total"), 5000.0);
    assert_eq!(moved("registry_repositories"), 1.0);
    assert_eq!(moved("registry_storage_blobs"), 2.0);
    assert_eq!(moved("registry_storage_bytes"), 5037.0);
    assert_eq!(moved("registry_upload_sessions"), 1.0);
    if std::env::var("AGENT_REGISTRY_TEST_STORAGE").as_deref() == Ok("s3") {
        // Object storage has no free-space figure: the series is left out, not made up.
        assert!(!after.contains_key("registry_storage_free_bytes"));
    } else {
        assert!(get(&after, "registry_storage_free_bytes") > 0.0);
    }
    assert_eq!(moved("registry_tag_cache_misses_total"), 1.0);
    assert_eq!(moved("registry_tag_cache_hits_total"), 1.0);
    assert_eq!(
        moved(r#"registry_http_request_duration_seconds_count{family="manifests",method="GET"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"registry_http_request_duration_seconds_count{family="uploads",method="POST"}"#),
        3.0,
        "two blob pushes and one session"
    );
    assert_eq!(
        moved(r#"registry_http_request_duration_seconds_count{family="metrics",method="GET"}"#),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn only_administrators_read_metrics_and_sign_ins_are_counted() {
    if crate::support::skip_on_several_nodes("/metrics") {
        return;
    }
    let reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = "admin-password".into();
    })
    .await;
    let r = reg
        .http
        .get(format!("{}/metrics", reg.url))
        .send()
        .await
        .expect("anonymous");
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let wrong = client_with(Some(&basic("admin", "wrong-password")));
    let r = wrong.get(reg.v2("")).send().await.expect("wrong");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let admin = client_with(Some(&basic("admin", "admin-password")));
    let m = scrape(&admin, &reg.url).await;
    assert_eq!(get(&m, r#"auth_attempts_total{result="failure"}"#), 1.0);
    assert!(get(&m, r#"auth_attempts_total{result="success"}"#) >= 1.0);
    // The wrong password and the administrator's were each checked once; asking again with
    // either is answered from the credential cache.
    assert_eq!(get(&m, "registry_credential_cache_misses_total"), 2.0);
    assert_eq!(get(&m, "registry_credential_cache_entries"), 2.0);
    let r = wrong.get(reg.v2("")).send().await.expect("wrong again");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let again = scrape(&admin, &reg.url).await;
    let moved = |key: &str| get(&again, key) - get(&m, key);
    assert_eq!(moved("registry_credential_cache_hits_total"), 2.0);
    assert_eq!(moved("registry_credential_cache_misses_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_be_turned_off() {
    let reg = TestRegistry::start_with(|c| c.metrics.enabled = false).await;
    let r = reg
        .http
        .get(format!("{}/metrics", reg.url))
        .send()
        .await
        .expect("scrape");
    let message = assert_error(r, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    assert!(message.contains("metrics.enabled"), "{message}");
}
