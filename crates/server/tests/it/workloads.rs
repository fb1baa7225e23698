//! Kubernetes service accounts: a projected token signed by a trusted issuer's key (a JWKS
//! made here, as a cluster would publish it) is accepted as a Bearer credential, as a Basic
//! password, and in a token exchange; one signed by another key, for another audience, or
//! expired, is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::support::{TestRegistry, basic, client_with};

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "agent-registry";
const SUBJECT: &str = "system:serviceaccount:agents:runner";

/// A P-256 key pair: its signing key and its public JWK under `kid`.
fn key_pair(kid: &str) -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("parse");
    // An uncompressed point: 0x04, then X and Y.
    let point = pair.public_key().as_ref();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn token(key: &EncodingKey, kid: &str, audience: &str, expires_in: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let claims = json!({
        "iss": ISSUER, "aud": [audience], "sub": SUBJECT,
        "iat": now, "nbf": now, "exp": now + expires_in,
        "kubernetes.io": {"namespace": "agents", "serviceaccount": {"name": "runner"}},
    });
    jsonwebtoken::encode(&header, &claims, key).expect("sign")
}

#[tokio::test]
async fn service_accounts_of_a_trusted_issuer_are_accepted_and_others_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cluster_key, jwk) = key_pair("cluster-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).expect("jwks");
    let mut reg = TestRegistry::start_with(|c| {
        c.auth.enabled = true;
        c.auth.admin.password = "admin-password".into();
        c.auth.trusted_issuers = vec![agent_registry_server::config::IssuerConfig {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            jwks_file: Some(jwks.clone()),
            jwks_url: None,
        }];
    })
    .await;
    reg.sign_in(&basic("admin", "admin-password"));
    reg.push_image("prod/agent", "v1", b"layer").await;
    let r = client_with(Some(&basic("admin", "admin-password")))
        .post(format!("{}/api/v1/permissions", reg.url))
        .json(&json!({"subject": SUBJECT, "repository": "prod/*", "permission": "read"}))
        .send()
        .await
        .expect("grant");
    assert_eq!(r.status(), StatusCode::CREATED);

    let good = token(&cluster_key, "cluster-1", AUDIENCE, 600);
    let tags = |auth: String| {
        let url = reg.v2("prod/agent/tags/list");
        async move {
            client_with(Some(&auth))
                .get(url)
                .send()
                .await
                .expect("tags")
                .status()
        }
    };
    assert_eq!(
        tags(format!("Bearer {good}")).await,
        StatusCode::OK,
        "as a Bearer token"
    );
    assert_eq!(
        tags(basic("anything", &good)).await,
        StatusCode::OK,
        "as a Basic password"
    );
    let r = client_with(Some(&format!("Bearer {good}")))
        .put(reg.v2("prod/agent/manifests/v2"))
        .header("content-type", crate::support::OCI_MANIFEST)
        .body("{}")
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "read only");
    let me: Value = client_with(Some(&format!("Bearer {good}")))
        .get(format!("{}/api/v1/auth/whoami", reg.url))
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (me["name"].as_str(), me["kind"].as_str()),
        (Some(SUBJECT), Some("workload"))
    );

    // The token exchange gives a registry token holding what the grant allows.
    let r = reqwest::Client::new()
        .post(format!("{}/token", reg.url))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", good.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("scope", "repository:prod/agent:pull,push"),
            ("access_type", "offline"),
        ])
        .send()
        .await
        .expect("exchange");
    assert_eq!(r.status(), StatusCode::OK);
    let issued: Value = r.json().await.expect("json");
    assert!(
        issued["refresh_token"].is_null(),
        "workloads get no refresh tokens"
    );
    let registry_token = issued["token"].as_str().expect("token").to_owned();
    assert_eq!(
        tags(format!("Bearer {registry_token}")).await,
        StatusCode::OK
    );

    // Refused: another key under the same kid, another audience, an expired token.
    let (stranger, _) = key_pair("cluster-1");
    for (why, bad) in [
        (
            "signed by another key",
            token(&stranger, "cluster-1", AUDIENCE, 600),
        ),
        (
            "for another audience",
            token(&cluster_key, "cluster-1", "someone-else", 600),
        ),
        ("expired", token(&cluster_key, "cluster-1", AUDIENCE, -600)),
        (
            "an unknown key id",
            token(&cluster_key, "cluster-2", AUDIENCE, 600),
        ),
    ] {
        assert_eq!(
            tags(format!("Bearer {bad}")).await,
            StatusCode::UNAUTHORIZED,
            "{why}"
        );
        let r = reqwest::Client::new()
            .post(format!("{}/token", reg.url))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", bad.as_str()),
            ])
            .send()
            .await
            .expect("exchange");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{why}");
    }
}

#[tokio::test]
async fn an_unreadable_jwks_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = agent_registry_server::Config {
        root: dir.path().join("root"),
        ..agent_registry_server::Config::default()
    };
    config.auth.trusted_issuers = vec![agent_registry_server::config::IssuerConfig {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        jwks_file: Some(dir.path().join("missing.json")),
        jwks_url: None,
    }];
    let err = agent_registry_server::AppState::open(config.clone())
        .await
        .expect_err("no JWKS");
    assert!(format!("{err:#}").contains("missing.json"), "{err:#}");
    config.auth.trusted_issuers[0].jwks_url = Some("http://127.0.0.1:9/jwks".into());
    let err = agent_registry_server::AppState::open(config)
        .await
        .expect_err("both sources");
    assert!(
        format!("{err:#}").contains("exactly one of jwks_file and jwks_url"),
        "{err:#}"
    );
}
