//! Accounts, tokens and permissions over the API; the admin commands of the binary.

use reqwest::StatusCode;
use serde_json::json;

use super::{ADMIN_PASSWORD, add_user, api, grant, start_with_auth};
use crate::support::{basic, client_with};

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
    crate::support::revocations_reach_every_node().await;
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
    // `art_<id>_<secret>`: the secret is URL-safe base64, so it may hold `_` itself.
    let secret_part = token.splitn(3, '_').nth(2).expect("secret");
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
