//! HTTPS: the real binary serves TLS with a certificate from its files, and picks up a new
//! certificate on SIGHUP without dropping the port. Certificates come from the openssl CLI.

use std::path::Path;

use reqwest::StatusCode;
use tokio::process::Command;

use crate::support::spawn_binary;

/// A self-signed certificate for 127.0.0.1 written to `dir/{name}.crt` and `dir/{name}.key`;
/// returns the certificate's PEM.
async fn certificate(dir: &Path, name: &str) -> Vec<u8> {
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .await
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(crt).expect("certificate")
}

fn trusting(pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem).expect("pem")])
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_the_configured_certificate_and_reloads_it_on_sighup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = certificate(dir.path(), "first").await;
    let second = certificate(dir.path(), "second").await;
    let (crt, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(dir.path().join("first.crt"), &crt).expect("copy");
    std::fs::copy(dir.path().join("first.key"), &key).expect("copy");
    let (child, url) = spawn_binary(
        &dir.path().join("root"),
        &[
            ("AGENT_REGISTRY_TLS_CERT", crt.to_str().expect("utf-8")),
            ("AGENT_REGISTRY_TLS_KEY", key.to_str().expect("utf-8")),
        ],
        std::process::Stdio::null(),
    )
    .await;
    let https = url.replace("http://", "https://");
    let r = trusting(&first)
        .get(format!("{https}/v2/"))
        .send()
        .await
        .expect("https");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        reqwest::get(format!("{url}/v2/")).await.is_err(),
        "no plain HTTP on a TLS port"
    );
    assert!(
        trusting(&second)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_err(),
        "not yet"
    );

    // A renewed certificate in the same files, then SIGHUP.
    std::fs::copy(dir.path().join("second.crt"), &crt).expect("copy");
    std::fs::copy(dir.path().join("second.key"), &key).expect("copy");
    let pid = child.id().expect("pid").to_string();
    let kill = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .expect("kill");
    assert!(kill.success());
    let mut reloaded = false;
    for _ in 0..50 {
        if trusting(&second)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_ok()
        {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(reloaded, "the new certificate is served after SIGHUP");
    assert!(
        trusting(&first)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_err(),
        "the old one is gone"
    );

    // A broken file on the next SIGHUP keeps the certificate in use.
    std::fs::write(&crt, "not a certificate").expect("write");
    Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .await
        .expect("kill");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let r = trusting(&second)
        .get(format!("{https}/v2/"))
        .send()
        .await
        .expect("still serving");
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn tls_needs_both_files_and_says_which_one_is_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = agent_registry_server::Config {
        root: dir.path().join("root"),
        ..agent_registry_server::Config::default()
    };
    config
        .apply_env(|k| (k == "AGENT_REGISTRY_TLS_CERT").then(|| "/x.crt".into()))
        .expect("env");
    let err = agent_registry_server::AppState::open(config.clone())
        .await
        .expect_err("no key");
    assert!(
        format!("{err:#}").contains("both cert_file and key_file"),
        "{err:#}"
    );
    config.tls = Some(agent_registry_server::config::TlsConfig {
        cert_file: dir.path().join("missing.crt"),
        key_file: dir.path().join("missing.key"),
    });
    let state = agent_registry_server::AppState::open(config)
        .await
        .expect("opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let err = agent_registry_server::run(listener, state, std::future::pending())
        .await
        .expect_err("no certificate");
    assert!(format!("{err:#}").contains("missing.crt"), "{err:#}");
}
