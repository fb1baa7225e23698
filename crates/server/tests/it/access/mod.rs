//! Access control end to end: every action on a private and a public repository, tried by
//! every kind of caller, with the exact outcome of each; listings and search that never show
//! what a caller may not pull ([`matrix`]); the token endpoint ([`tokens`]); failed logins,
//! rate limits and the access log ([`limits`]); administration over the API and the admin
//! commands ([`admin`]).

mod admin;
mod limits;
mod matrix;
mod tokens;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestRegistry, basic, client_with};

pub const ADMIN_PASSWORD: &str = "admin-password";

pub async fn start_with_auth(
    tweak: impl FnOnce(&mut agent_registry_server::Config),
) -> TestRegistry {
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
pub async fn api(
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

pub async fn admin_api(
    reg: &TestRegistry,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
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

pub async fn add_user(reg: &TestRegistry, name: &str) {
    admin_api(
        reg,
        reqwest::Method::POST,
        "users",
        json!({"name": name, "password": format!("{name}-password")}),
    )
    .await;
}

pub async fn grant(reg: &TestRegistry, subject: &str, repository: &str, permission: &str) {
    admin_api(
        reg,
        reqwest::Method::POST,
        "permissions",
        json!({"subject": subject, "repository": repository, "permission": permission}),
    )
    .await;
}

pub async fn token(reg: &TestRegistry, body: Value) -> (String, String) {
    let t = admin_api(reg, reqwest::Method::POST, "tokens", body).await;
    (
        t["id"].as_str().expect("id").to_owned(),
        format!("Bearer {}", t["token"].as_str().expect("secret shown once")),
    )
}
