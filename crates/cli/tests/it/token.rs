//! A Docker token service for the Bearer path: it checks `user`/`secret` (Basic on GET, an
//! OAuth2 password or refresh-token grant on POST) and signs ES256 JWTs that the reference
//! docker-registry verifies against a certificate made with openssl for the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::json;

pub const ISSUER: &str = "agent-test-issuer";
pub const SERVICE: &str = "agent-test-registry";
pub const REFRESH_TOKEN: &str = "refresh-7f3a";

/// A running token service and the certificate registries must trust.
pub struct TokenService {
    pub realm: String,
    pub cert: PathBuf,
    /// Token requests answered, by GET (Basic) and by POST (OAuth2).
    pub gets: Arc<AtomicUsize>,
    pub posts: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Signer {
    key: Arc<jsonwebtoken::EncodingKey>,
    x5c: String,
    gets: Arc<AtomicUsize>,
    posts: Arc<AtomicUsize>,
}

impl TokenService {
    pub async fn start(dir: &Path) -> TokenService {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=agent-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl is installed");
        assert!(
            made.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let pem = std::fs::read_to_string(&cert).expect("cert");
        // x5c holds the DER certificate in standard base64: the PEM body without its armour.
        let x5c: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let key = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&key).expect("key"))
            .expect("EC key");
        let gets = Arc::new(AtomicUsize::new(0));
        let posts = Arc::new(AtomicUsize::new(0));
        let signer = Signer {
            key: Arc::new(key),
            x5c,
            gets: gets.clone(),
            posts: posts.clone(),
        };
        let app = axum::Router::new()
            .route("/token", get(token_get).post(token_post))
            .with_state(signer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let realm = format!("http://{}/token", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenService {
            realm,
            cert,
            gets,
            posts,
            task,
        }
    }

    /// docker-registry's `auth:` section trusting this service.
    pub fn registry_auth_yaml(&self) -> String {
        format!(
            "auth:\n  token: {{realm: \"{}\", service: {SERVICE}, issuer: {ISSUER}, rootcertbundle: {}}}\n",
            self.realm,
            self.cert.display()
        )
    }
}

impl Signer {
    fn issue(&self, subject: &str, scopes: &[String], refresh: bool) -> Response {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let access: Vec<_> = scopes
            .iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
            })
            .collect();
        let claims = json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE,
            "exp": now + 300, "nbf": now - 10, "iat": now,
            "jti": format!("{now}-{}", self.gets.load(Ordering::SeqCst) + self.posts.load(Ordering::SeqCst)),
            "access": access,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.x5c.clone()]);
        let token = jsonwebtoken::encode(&header, &claims, &self.key).expect("sign");
        let mut body = json!({"token": token, "access_token": token, "expires_in": 300});
        if refresh {
            body["refresh_token"] = json!(REFRESH_TOKEN);
        }
        axum::Json(body).into_response()
    }
}

fn scopes_of(query: &[(String, String)]) -> Vec<String> {
    query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect()
}

async fn token_get(
    State(signer): State<Signer>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    signer.gets.fetch_add(1, Ordering::SeqCst);
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    if basic.as_deref() != Some(b"user:secret".as_slice()) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    signer.issue("user", &scopes_of(&query), false)
}

async fn token_post(
    State(signer): State<Signer>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signer.posts.fetch_add(1, Ordering::SeqCst);
    let ok = match form.get("grant_type").map(String::as_str) {
        Some("password") => {
            form.get("username").map(String::as_str) == Some("user")
                && form.get("password").map(String::as_str) == Some("secret")
        }
        Some("refresh_token") => {
            form.get("refresh_token").map(String::as_str) == Some(REFRESH_TOKEN)
        }
        _ => false,
    };
    if !ok {
        return (StatusCode::UNAUTHORIZED, "bad grant").into_response();
    }
    let scopes: Vec<String> = form
        .get("scope")
        .map(|s| s.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    signer.issue("user", &scopes, true)
}
