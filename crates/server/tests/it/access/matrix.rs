//! Every action by every kind of caller, and what listings, search and mounts show.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN_PASSWORD, add_user, admin_api, grant, start_with_auth, token};
use crate::support::{
    OCI_MANIFEST, TestRegistry, assert_error, basic, client_with, header, sha256,
};

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
