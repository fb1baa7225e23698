//! Failed logins, rate limits and the access log.

use reqwest::StatusCode;
use serde_json::Value;

use super::{ADMIN_PASSWORD, add_user, api, grant, start_with_auth};
use crate::support::{OCI_MANIFEST, TestRegistry, assert_error, basic, client_with, header};

#[tokio::test]
async fn guessed_passwords_slow_down_and_rate_limits_answer_429() {
    if crate::support::skip_on_several_nodes("the failed-login brake") {
        return;
    }
    let reg = start_with_auth(|_| {}).await;
    add_user(&reg, "bob").await;
    for i in 0..5 {
        let r = client_with(Some(&basic("bob", &format!("guess-{i}"))))
            .get(reg.v2(""))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = client_with(Some(&basic("bob", "bob-password")))
        .get(reg.v2(""))
        .send()
        .await
        .expect("get");
    assert!(
        header(&r, "retry-after").is_some(),
        "says when to come back"
    );
    let message = assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(message.starts_with("too many failed logins"), "{message}");
    // The same stale credentials retried are not guesses: they do not lock anyone out.
    add_user(&reg, "carol").await;
    for _ in 0..10 {
        let r = client_with(Some(&basic("carol", "stale-password")))
            .get(reg.v2(""))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = client_with(Some(&basic("carol", "carol-password")))
        .get(reg.v2(""))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK);

    let limited = start_with_auth(|c| {
        c.auth.rate_limit.per_principal.per_second = 0.5;
        c.auth.rate_limit.per_principal.burst = 3.0;
    })
    .await;
    let admin = client_with(Some(&basic("admin", ADMIN_PASSWORD)));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            admin
                .get(limited.v2(""))
                .send()
                .await
                .expect("get")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 429],
        "the burst passes, then the rate holds"
    );
    let r = admin.get(limited.v2("")).send().await.expect("get");
    assert!(header(&r, "retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    let message = assert_error(r, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    assert!(message.starts_with("rate limit exceeded"), "{message}");
    let r = client_with(None)
        .get(limited.v2("_catalog"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "other callers are not limited by admin's use"
    );
}

#[tokio::test]
async fn the_access_log_records_who_did_what() {
    let reg = start_with_auth(|_| {}).await;
    let (manifest, _) = reg.push_image("team/a", "v1", b"layer").await;
    add_user(&reg, "reader").await;
    grant(&reg, "reader", "team/*", "read").await;
    let reader = client_with(Some(&basic("reader", "reader-password")));
    let agent: Value = reader
        .get(format!("{}/api/v1/agents/team/a", reg.url))
        .send()
        .await
        .expect("agent")
        .json()
        .await
        .expect("json");
    assert_eq!(
        agent["versions"][0]["pushed_by"], "admin",
        "the pusher is the principal"
    );
    reader
        .get(reg.v2("team/a/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("pull");
    reader
        .put(reg.v2("team/a/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest)
        .send()
        .await
        .expect("push");
    client_with(Some(&basic("reader", "bad-password")))
        .get(reg.v2(""))
        .send()
        .await
        .expect("login");

    let admin = basic("admin", ADMIN_PASSWORD);
    let mut lines = Value::Null;
    for _ in 0..40 {
        let (status, v) = api(
            &reg,
            reqwest::Method::GET,
            "access-logs?user=reader&since=1h",
            &admin,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        // Every line, logged by whichever node served it, once each node has written it.
        let has = |action: &str, target: &str, allowed: bool| {
            v.as_array().is_some_and(|a| {
                a.iter().any(|l| {
                    l["action"] == action
                        && l["target"].as_str().unwrap_or("") == target
                        && l["allowed"] == allowed
                })
            })
        };
        if has("pull", "v1", true)
            && has("push", "v2", false)
            && has("login", "", false)
            && has("login", "", true)
        {
            lines = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let summary: Vec<(String, bool)> = lines
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| {
            (
                format!(
                    "{} {}",
                    l["action"].as_str().unwrap_or(""),
                    l["target"].as_str().unwrap_or("")
                ),
                l["allowed"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    for expected in [
        ("pull v1".to_owned(), true),
        ("push v2".to_owned(), false),
        ("login ".to_owned(), false),
        ("login ".to_owned(), true),
    ] {
        assert!(summary.contains(&expected), "{expected:?} in {summary:?}");
    }
    let line = lines
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["action"] == "pull")
        .expect("pull line");
    assert_eq!(
        (line["repository"].as_str(), line["client"].as_str()),
        (Some("team/a"), Some("127.0.0.1"))
    );
    let (_, denied) = api(
        &reg,
        reqwest::Method::GET,
        "access-logs?denied=true&action=push",
        &admin,
        None,
    )
    .await;
    assert!(
        denied
            .as_array()
            .expect("lines")
            .iter()
            .all(|l| l["allowed"] == false && l["action"] == "push")
    );
    let (status, _) = api(
        &reg,
        reqwest::Method::GET,
        "access-logs",
        &basic("reader", "reader-password"),
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only administrators read the log"
    );
    let (status, v) = api(
        &reg,
        reqwest::Method::GET,
        "access-logs?since=yesterday",
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn per_address_rate_limits_apply_with_access_control_off() {
    if crate::support::skip_on_several_nodes("rate limiting") {
        return;
    }
    let reg = TestRegistry::start_with(|c| {
        c.auth.rate_limit.per_ip.per_second = 0.5;
        c.auth.rate_limit.per_ip.burst = 2.0;
    })
    .await;
    let http = client_with(None);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            http.get(reg.v2("_catalog"))
                .send()
                .await
                .expect("get")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
}
