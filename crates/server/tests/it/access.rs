//! Access control end to end: every action on a private and a public repository, tried by
//! every kind of caller, with the exact outcome of each; listings and search that never show
//! what a caller may not pull; the token endpoint; rate limits; the access log.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{
    OCI_MANIFEST, TestRegistry, assert_error, basic, client_with, header, sha256,
};

const ADMIN_PASSWORD: &str = "admin-password";

async fn start_with_auth(tweak: impl FnOnce(&mut agent_registry_server::Config)) -> TestRegistry {
    let mut reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = ADMIN_PASSWORD.into();
        tweak(c);
    })
    .await;
    reg.sign_in(&basic("admin", ADMIN_PASSWORD));
    reg
}

/// `POST`s JSON to `/api/v1/<path>` as `authorization` and returns the status and body.
async fn api(
    reg: &TestRegistry,
    method: reqwest::Method,
    path: &str,
    authorization: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req =
        client_with(Some(authorization)).request(method, format!("{}/api/v1/{path}", reg.url));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("api call");
    let status = r.status();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn admin_api(reg: &TestRegistry, method: reqwest::Method, path: &str, body: Value) -> Value {
    let (status, value) = api(
        reg,
        method,
        path,
        &basic("admin", ADMIN_PASSWORD),
        Some(body),
    )
    .await;
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

async fn add_user(reg: &TestRegistry, name: &str) {
    admin_api(
        reg,
        reqwest::Method::POST,
        "users",
        json!({"name": name, "password": format!("{name}-password")}),
    )
    .await;
}

async fn grant(reg: &TestRegistry, subject: &str, repository: &str, permission: &str) {
    admin_api(
        reg,
        reqwest::Method::POST,
        "permissions",
        json!({"subject": subject, "repository": repository, "permission": permission}),
    )
    .await;
}

async fn token(reg: &TestRegistry, body: Value) -> (String, String) {
    let t = admin_api(reg, reqwest::Method::POST, "tokens", body).await;
    (
        t["id"].as_str().expect("id").to_owned(),
        format!("Bearer {}", t["token"].as_str().expect("secret shown once")),
    )
}

/// What one caller gets for each action on one repository, as statuses.
#[derive(Debug, PartialEq)]
struct Outcome {
    pull_manifest: u16,
    pull_blob: u16,
    tags: u16,
    referrers: u16,
    start_upload: u16,
    push_manifest: u16,
    delete: u16,
    set_visibility: u16,
}

/// Tries every action on `repo` (which holds `manifest`/`layer`, tagged `v1`) as `auth`.
async fn try_all(
    reg: &TestRegistry,
    auth: Option<&str>,
    repo: &str,
    manifest: &[u8],
    layer: &str,
    visibility: &str,
) -> Outcome {
    let http = client_with(auth);
    let v2 = |p: &str| reg.v2(&format!("{repo}/{p}"));
    let status = |r: reqwest::Response| r.status().as_u16();
    let unknown = sha256(b"no such manifest");
    Outcome {
        pull_manifest: status(
            http.get(v2("manifests/v1"))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .expect("get"),
        ),
        pull_blob: status(
            http.head(v2(&format!("blobs/{layer}")))
                .send()
                .await
                .expect("head"),
        ),
        tags: status(http.get(v2("tags/list")).send().await.expect("tags")),
        referrers: status(
            http.get(v2(&format!("referrers/{}", sha256(manifest))))
                .send()
                .await
                .expect("referrers"),
        ),
        start_upload: status(http.post(v2("blobs/uploads/")).send().await.expect("post")),
        push_manifest: status(
            http.put(v2("manifests/again"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.to_vec())
                .send()
                .await
                .expect("put"),
        ),
        // Deleting a manifest that does not exist: 404 when allowed, so nothing is lost.
        delete: status(
            http.delete(v2(&format!("manifests/{unknown}")))
                .send()
                .await
                .expect("delete"),
        ),
        set_visibility: status(
            http.put(format!("{}/api/v1/repositories/{repo}", reg.url))
                .json(&json!({ "visibility": visibility }))
                .send()
                .await
                .expect("visibility"),
        ),
    }
}

fn outcome(pulls: u16, push: (u16, u16), delete: u16, set_visibility: u16) -> Outcome {
    Outcome {
        pull_manifest: pulls,
        pull_blob: pulls,
        tags: pulls,
        referrers: pulls,
        start_upload: push.0,
        push_manifest: push.1,
        delete,
        set_visibility,
    }
}

#[tokio::test]
async fn every_caller_gets_exactly_what_it_was_granted() {
    let reg = start_with_auth(|_| {}).await;
    let (manifest, _) = reg.push_image("team/private", "v1", b"private layer").await;
    let (public_manifest, _) = reg.push_image("team/public", "v1", b"public layer").await;
    reg.push_image("other/x", "v1", b"other layer").await;
    admin_api(
        &reg,
        reqwest::Method::PUT,
        "repositories/team/public",
        json!({"visibility": "public"}),
    )
    .await;

    for user in ["reader", "writer", "owner", "outsider"] {
        add_user(&reg, user).await;
    }
    grant(&reg, "reader", "team/*", "read").await;
    grant(&reg, "writer", "team/*", "write").await;
    grant(&reg, "owner", "team/private", "admin").await;
    grant(&reg, "outsider", "other/*", "write").await;
    admin_api(
        &reg,
        reqwest::Method::POST,
        "users",
        json!({"name": "ci", "robot": true}),
    )
    .await;
    grant(&reg, "ci", "team/*", "write").await;
    let (_, expired) = token(
        &reg,
        json!({"name": "old", "owner": "ci", "expires_in_days": 0}),
    )
    .await;
    let (revoked_id, revoked) = token(&reg, json!({"name": "gone", "owner": "ci"})).await;
    let (_, robot) = token(
        &reg,
        json!({"name": "live", "owner": "ci", "expires_in_days": 30}),
    )
    .await;
    let (_, other_repo) = token(
        &reg,
        json!({"name": "elsewhere", "owner": "writer", "scopes": ["other/*:write"]}),
    )
    .await;
    admin_api(
        &reg,
        reqwest::Method::DELETE,
        &format!("tokens/{revoked_id}"),
        Value::Null,
    )
    .await;

    let layer = |m: &[u8]| -> String {
        let v: Value = serde_json::from_slice(m).expect("manifest");
        v["layers"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_owned()
    };
    let (private_layer, public_layer) = (layer(&manifest), layer(&public_manifest));
    let reader = basic("reader", "reader-password");
    let writer = basic("writer", "writer-password");
    let owner = basic("owner", "owner-password");
    let admin = basic("admin", ADMIN_PASSWORD);
    let wrong = basic("reader", "not-the-password");

    // (caller, on the private repository, on the public one)
    let cases: Vec<(&str, Option<&str>, Outcome, Outcome)> = vec![
        (
            "anonymous",
            None,
            outcome(401, (401, 401), 401, 401),
            outcome(200, (401, 401), 401, 401),
        ),
        (
            "wrong password",
            Some(&wrong),
            outcome(401, (401, 401), 401, 401),
            outcome(401, (401, 401), 401, 401),
        ),
        (
            "expired robot token",
            Some(&expired),
            outcome(401, (401, 401), 401, 401),
            outcome(401, (401, 401), 401, 401),
        ),
        (
            "revoked token",
            Some(&revoked),
            outcome(401, (401, 401), 401, 401),
            outcome(401, (401, 401), 401, 401),
        ),
        (
            "reader",
            Some(&reader),
            outcome(200, (403, 403), 403, 403),
            outcome(200, (403, 403), 403, 403),
        ),
        (
            "writer",
            Some(&writer),
            outcome(200, (202, 201), 403, 403),
            outcome(200, (202, 201), 403, 403),
        ),
        (
            "robot",
            Some(&robot),
            outcome(200, (202, 201), 403, 403),
            outcome(200, (202, 201), 403, 403),
        ),
        (
            "repository admin",
            Some(&owner),
            outcome(200, (202, 201), 404, 200),
            outcome(200, (403, 403), 403, 403),
        ),
        (
            "token for another repository",
            Some(&other_repo),
            outcome(403, (403, 403), 403, 403),
            outcome(200, (403, 403), 403, 403),
        ),
        (
            "administrator",
            Some(&admin),
            outcome(200, (202, 201), 404, 200),
            outcome(200, (202, 201), 404, 200),
        ),
    ];
    for (who, auth, private, public) in cases {
        let got = try_all(
            &reg,
            auth,
            "team/private",
            &manifest,
            &private_layer,
            "private",
        )
        .await;
        assert_eq!(got, private, "{who} on the private repository");
        let got = try_all(
            &reg,
            auth,
            "team/public",
            &public_manifest,
            &public_layer,
            "public",
        )
        .await;
        assert_eq!(got, public, "{who} on the public repository");
    }

    // Refusals say what to do: anonymous callers get a challenge naming the scope.
    let r = reqwest::get(reg.v2("team/private/manifests/v1"))
        .await
        .expect("get");
    let challenge = header(&r, "www-authenticate")
        .expect("challenge")
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"http://"),
        "{challenge}"
    );
    assert!(
        challenge
            .contains("/token\",service=\"agent-registry\",scope=\"repository:team/private:pull\""),
        "{challenge}"
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let r = client_with(Some(&reader))
        .put(reg.v2("team/private/manifests/x"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("put");
    let message = assert_error(r, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        message.contains("reader may not push team/private"),
        "{message}"
    );
    // Nothing reveals whether a private repository exists.
    for repo in ["team/private", "team/nothing-here"] {
        let r = reqwest::get(reg.v2(&format!("{repo}/tags/list")))
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{repo}");
        let r = client_with(Some(&basic("outsider", "outsider-password")))
            .get(reg.v2(&format!("{repo}/tags/list")))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{repo}");
    }
}

#[tokio::test]
async fn listings_search_and_mounts_never_reveal_what_a_caller_cannot_pull() {
    let reg = start_with_auth(|_| {}).await;
    reg.push_image("team/private", "v1", b"private layer").await;
    reg.push_image("team/public", "v1", b"public layer").await;
    let secret_layer = b"other layer, secret";
    reg.push_image("other/secret", "v1", secret_layer).await;
    admin_api(
        &reg,
        reqwest::Method::PUT,
        "repositories/team/public",
        json!({"visibility": "public"}),
    )
    .await;
    add_user(&reg, "reader").await;
    grant(&reg, "reader", "team/*", "write").await;
    let reader = basic("reader", "reader-password");

    let catalog = |auth: Option<String>| {
        let reg = &reg;
        async move {
            let v: Value = client_with(auth.as_deref())
                .get(reg.v2("_catalog"))
                .send()
                .await
                .expect("catalog")
                .json()
                .await
                .expect("json");
            v["repositories"].clone()
        }
    };
    assert_eq!(catalog(None).await, json!(["team/public"]));
    assert_eq!(
        catalog(Some(reader.clone())).await,
        json!(["team/private", "team/public"])
    );
    assert_eq!(
        catalog(Some(basic("admin", ADMIN_PASSWORD))).await,
        json!(["other/secret", "team/private", "team/public"])
    );
    // Paging skips hidden names without leaking them through Link.
    let r = client_with(Some(&reader))
        .get(reg.v2("_catalog?n=1"))
        .send()
        .await
        .expect("page");
    let link = header(&r, "link").expect("a next page").to_owned();
    assert!(link.contains("last=team%2Fprivate"), "{link}");
    let v: Value = client_with(Some(&reader))
        .get(reg.v2("_catalog?n=1&last=team/private"))
        .send()
        .await
        .expect("page")
        .json()
        .await
        .expect("json");
    assert_eq!(v["repositories"], json!(["team/public"]));

    let everything = |q: &str| format!("{}/api/v1/search?sort=name{q}", reg.url);
    let all: Value = client_with(None)
        .get(everything(""))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(
        all["total"], 1,
        "anonymous search sees the public agent only: {all}"
    );
    assert_eq!(all["images"][0]["name"], "team/public");
    let mine: Value = client_with(Some(&reader))
        .get(everything(""))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("json");
    assert_eq!(mine["total"], 2, "{mine}");
    // An agent's page is a pull: private ones need access.
    let r = reqwest::get(format!("{}/api/v1/agents/other/secret", reg.url))
        .await
        .expect("agent");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client_with(Some(&reader))
        .get(format!("{}/api/v1/agents/other/secret", reg.url))
        .send()
        .await
        .expect("agent");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Mounting a blob from a repository the caller cannot read starts an ordinary upload
    // instead, with or without `from`; the blob does not appear in the caller's repository.
    let digest = sha256(secret_layer);
    for query in [
        format!("mount={digest}&from=other/secret"),
        format!("mount={digest}"),
    ] {
        let r = client_with(Some(&reader))
            .post(reg.v2(&format!("team/new/blobs/uploads/?{query}")))
            .send()
            .await
            .expect("mount");
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{query}: no mount");
        let r = client_with(Some(&reader))
            .head(reg.v2(&format!("team/new/blobs/{digest}")))
            .send()
            .await
            .expect("head");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{query}");
    }
    // From a repository it may read, the mount happens.
    let private_layer = sha256(b"private layer");
    let r = client_with(Some(&reader))
        .post(reg.v2(&format!(
            "team/new/blobs/uploads/?mount={private_layer}&from=team/private"
        )))
        .send()
        .await
        .expect("mount");
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_token_endpoint_grants_the_permitted_subset() {
    let reg = start_with_auth(|_| {}).await;
    let (manifest, _) = reg.push_image("team/a", "v1", b"layer").await;
    add_user(&reg, "reader").await;
    add_user(&reg, "writer").await;
    grant(&reg, "reader", "team/*", "read").await;
    grant(&reg, "writer", "team/*", "write").await;
    let token_url = |scope: &str| format!("{}/token?service=agent-registry&scope={scope}", reg.url);

    let get_token = |auth: String, scope: &'static str| {
        let url = token_url(scope);
        async move {
            let r = client_with(Some(&auth))
                .get(url)
                .send()
                .await
                .expect("token");
            assert_eq!(r.status(), StatusCode::OK);
            let v: Value = r.json().await.expect("json");
            format!("Bearer {}", v["token"].as_str().expect("token"))
        }
    };
    let reader = get_token(
        basic("reader", "reader-password"),
        "repository:team/a:pull,push",
    )
    .await;
    let r = client_with(Some(&reader))
        .get(reg.v2("team/a/manifests/v1"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("pull");
    assert_eq!(r.status(), StatusCode::OK, "the pull part was granted");
    let r = client_with(Some(&reader))
        .put(reg.v2("team/a/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("push");
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "the push part was not, and no token would hold it"
    );

    // A writer's pull-only token is told to come back for the wider scope.
    let writer = get_token(basic("writer", "writer-password"), "repository:team/a:pull").await;
    let r = client_with(Some(&writer))
        .put(reg.v2("team/a/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("push");
    let challenge = header(&r, "www-authenticate")
        .expect("challenge")
        .to_owned();
    assert!(
        challenge.contains("scope=\"repository:team/a:pull,push\",error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let writer = get_token(
        basic("writer", "writer-password"),
        "repository:team/a:pull,push",
    )
    .await;
    let r = client_with(Some(&writer))
        .put(reg.v2("team/a/manifests/v2"))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::CREATED);

    // Wrong passwords get no token; anonymous callers get an empty one for private scopes.
    let r = client_with(Some(&basic("writer", "nope-nope")))
        .get(token_url("repository:team/a:pull"))
        .send()
        .await
        .expect("token");
    assert_error(r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let anonymous = get_token(String::new(), "repository:team/a:pull").await;
    let r = client_with(Some(&anonymous))
        .get(reg.v2("team/a/tags/list"))
        .send()
        .await
        .expect("tags");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = client_with(None)
        .get(format!("{}/token?service=someone-else", reg.url))
        .send()
        .await
        .expect("token");
    assert_error(r, StatusCode::BAD_REQUEST, "PARAMETER_INVALID").await;

    // OAuth2: password, refresh_token and client_credentials grants.
    let form = |pairs: &[(&str, &str)]| {
        let url = format!("{}/token", reg.url);
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&pairs)
                .send()
                .await
                .expect("post");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, v) = form(&[
        ("grant_type", "password"),
        ("username", "writer"),
        ("password", "writer-password"),
        ("service", "agent-registry"),
        ("scope", "repository:team/a:pull"),
        ("access_type", "offline"),
        ("client_id", "test"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    let refresh = v["refresh_token"]
        .as_str()
        .expect("offline access gives a refresh token")
        .to_owned();
    let (status, v) = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("scope", "repository:team/a:pull"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        v["refresh_token"].is_null(),
        "no new refresh token unless asked"
    );
    admin_api(
        &reg,
        reqwest::Method::POST,
        "users",
        json!({"name": "ci", "robot": true}),
    )
    .await;
    grant(&reg, "ci", "team/*", "read").await;
    let (_, robot) = token(&reg, json!({"name": "ci", "owner": "ci"})).await;
    let secret = robot.trim_start_matches("Bearer ").to_owned();
    let (status, v) = form(&[
        ("grant_type", "client_credentials"),
        ("client_id", "ci"),
        ("client_secret", &secret),
        ("scope", "repository:team/a:pull"),
    ])
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = form(&[
        ("grant_type", "password"),
        ("username", "writer"),
        ("password", "wrong-password"),
    ])
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_grant"))
    );
    let (status, v) = form(&[("grant_type", "authorization_code")]).await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, v) = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", "art_0000000000000000_forged"),
    ])
    .await;
    assert_eq!(
        (status, v["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_grant"))
    );

    // `/v2/` sends anonymous callers to the token endpoint, as `docker login` expects.
    let r = reqwest::get(reg.v2("")).await.expect("base");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&r, "www-authenticate").is_some_and(|c| c.starts_with("Bearer realm=")));
    let r = client_with(Some(&writer))
        .get(reg.v2(""))
        .send()
        .await
        .expect("base");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn guessed_passwords_slow_down_and_rate_limits_answer_429() {
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
        if v.as_array().is_some_and(|a| a.len() >= 4) {
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
async fn accounts_tokens_and_permissions_are_managed_over_the_api() {
    let reg = start_with_auth(|_| {}).await;
    let admin = basic("admin", ADMIN_PASSWORD);
    add_user(&reg, "alice").await;
    let alice = basic("alice", "alice-password");
    let (status, me) = api(&reg, reqwest::Method::GET, "auth/whoami", &alice, None).await;
    assert_eq!(
        (status, &me["name"], &me["admin"]),
        (StatusCode::OK, &json!("alice"), &json!(false))
    );
    let (_, anon) = api(&reg, reqwest::Method::GET, "auth/whoami", "", None).await;
    assert_eq!(anon["authenticated"], false);

    // Bad input is a clear 400, a duplicate a 409, a missing one a 404.
    let (status, v) = api(
        &reg,
        reqwest::Method::POST,
        "users",
        &admin,
        Some(json!({"name": "Bad Name", "password": "long-enough"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("not a valid user name")
    );
    let (status, _) = api(
        &reg,
        reqwest::Method::POST,
        "users",
        &admin,
        Some(json!({"name": "shorty", "password": "short"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api(
        &reg,
        reqwest::Method::POST,
        "users",
        &admin,
        Some(json!({"name": "alice", "password": "long-enough"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = api(&reg, reqwest::Method::DELETE, "users/nobody", &admin, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, v) = api(
        &reg,
        reqwest::Method::POST,
        "permissions",
        &admin,
        Some(json!({"subject": "alice", "repository": "team/*", "permission": "owner"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, _) = api(
        &reg,
        reqwest::Method::POST,
        "users",
        &alice,
        Some(json!({"name": "mallory", "password": "long-enough"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "only administrators add users"
    );

    // Alice makes her own token, sees it without its secret, and revokes it.
    let (status, t) = api(
        &reg,
        reqwest::Method::POST,
        "tokens",
        &alice,
        Some(json!({"name": "laptop", "scopes": ["alice/*:write"]})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let secret = t["token"].as_str().expect("shown once").to_owned();
    assert!(secret.starts_with("art_"));
    let (status, _) = api(
        &reg,
        reqwest::Method::POST,
        "tokens",
        &format!("Bearer {secret}"),
        Some(json!({"name": "wider"})),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a scoped token cannot make an unscoped one"
    );
    let (_, list) = api(&reg, reqwest::Method::GET, "tokens", &alice, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(
        list[0]["token"].is_null(),
        "the secret is never shown again"
    );
    let (status, _) = api(
        &reg,
        reqwest::Method::GET,
        "tokens?owner=admin",
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api(
        &reg,
        reqwest::Method::DELETE,
        &format!("tokens/{}", t["id"].as_str().expect("id")),
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api(
        &reg,
        reqwest::Method::GET,
        "auth/whoami",
        &format!("Bearer {secret}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once");

    // A repository admin manages that repository's grants and nothing wider.
    grant(&reg, "alice", "alice/agent", "admin").await;
    let (status, _) = api(
        &reg,
        reqwest::Method::POST,
        "permissions",
        &alice,
        Some(
            json!({"subject": "group:friends", "repository": "alice/agent", "permission": "read"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api(
        &reg,
        reqwest::Method::POST,
        "permissions",
        &alice,
        Some(json!({"subject": "alice", "repository": "*", "permission": "admin"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, grants) = api(
        &reg,
        reqwest::Method::GET,
        "permissions?repository=alice/agent",
        &alice,
        None,
    )
    .await;
    assert_eq!(grants.as_array().map(Vec::len), Some(2), "{grants}");
    let (status, _) = api(
        &reg,
        reqwest::Method::DELETE,
        "permissions?subject=group:friends&repository=alice/agent",
        &alice,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Password changes take effect at once.
    let (status, _) = api(
        &reg,
        reqwest::Method::PUT,
        "users/alice/password",
        &alice,
        Some(json!({"password": "new-alice-password"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api(&reg, reqwest::Method::GET, "auth/whoami", &alice, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api(
        &reg,
        reqwest::Method::GET,
        "auth/whoami",
        &basic("alice", "new-alice-password"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// Runs `agent-registry ARGS --root ROOT` with `stdin`, and returns its stdout.
async fn admin_command(root: &std::path::Path, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(args)
        .arg("--root")
        .arg(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run agent-registry");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let out = child.wait_with_output().await.expect("finishes");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_commands_work_beside_a_running_server_and_no_secret_reaches_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let admin_password = "the-first-admin-password";
    let (mut server, url) = crate::support::spawn_binary(
        &dir.path().join("root"),
        &[
            ("AGENT_REGISTRY_AUTH", "true"),
            ("AGENT_REGISTRY_ADMIN_PASSWORD", admin_password),
            ("AGENT_REGISTRY_LOG_LEVEL", "trace"),
            ("AGENT_REGISTRY_LOG_FORMAT", "json"),
        ],
        log.into(),
    )
    .await;
    let root = dir.path().join("root");
    let alice_password = "alice-very-secret";
    admin_command(
        &root,
        &["user", "add", "alice", "--password-stdin", "--group", "ops"],
        &format!("{alice_password}\n"),
    )
    .await;
    admin_command(
        &root,
        &["permission", "add", "alice", "team/*", "write"],
        "",
    )
    .await;
    let token = admin_command(
        &root,
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--scope",
            "team/*:read",
        ],
        "",
    )
    .await;
    let token = token.trim().to_owned();
    assert!(token.starts_with("art_"), "{token}");
    let users = admin_command(&root, &["user", "list"], "").await;
    assert!(users.contains("alice") && users.contains("ops"), "{users}");
    let config = admin_command(&root, &["config"], "").await;
    assert!(
        !config.contains(admin_password),
        "config output shows no password: {config}"
    );

    // The server sees what the commands wrote within a policy check (a second).
    let v2 = format!("{url}/v2/");
    let r = client_with(Some(&basic("alice", alice_password)))
        .get(&v2)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::OK, "alice signs in");
    let mut status = StatusCode::FORBIDDEN;
    for _ in 0..30 {
        let r = client_with(Some(&format!("Bearer {token}")))
            .get(format!("{url}/v2/team/a/tags/list"))
            .send()
            .await
            .expect("get");
        status = r.status();
        if status != StatusCode::FORBIDDEN {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the token may read team/*, which holds nothing yet"
    );
    client_with(Some(&basic("alice", "a-wrong-password")))
        .get(&v2)
        .send()
        .await
        .expect("get");
    client_with(Some(&basic("admin", admin_password)))
        .get(format!("{url}/token?scope=repository:team/a:pull"))
        .send()
        .await
        .expect("token");
    reqwest::Client::new()
        .post(format!("{url}/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", alice_password),
        ])
        .send()
        .await
        .expect("oauth");
    let revoke_id = token.split('_').nth(1).expect("id").to_owned();
    admin_command(&root, &["token", "revoke", &revoke_id], "").await;

    server.start_kill().expect("stop");
    let _ = server.wait().await;
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        text.contains("request"),
        "the log was written at trace level: {}",
        &text[..text.len().min(500)]
    );
    let secret_part = token.rsplit('_').next().expect("secret");
    for secret in [
        alice_password,
        admin_password,
        secret_part,
        "a-wrong-password",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} appears in the server log"
        );
    }
    let encoded = basic("alice", alice_password);
    assert!(!text.contains(encoded.trim_start_matches("Basic ")));
}
