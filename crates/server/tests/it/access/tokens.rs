//! The token endpoint: GET with Basic, the OAuth2 grants, challenges and scopes.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{add_user, admin_api, grant, start_with_auth, token};
use crate::support::{OCI_MANIFEST, assert_error, basic, client_with, header};

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
