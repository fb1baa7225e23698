//! Vulnerability scanning end to end: the shipped OSV fixture imported into a real server,
//! images the test builds from package metadata only, `agent push --security-scan`,
//! `agent registry image scan-results`, and a policy that blocks docker, podman and agent
//! pulls of exactly the images with findings at or above its severity.

use std::path::Path;

use agent_registry_server::testing::TestServer;

use crate::support::{Agent, podman, pull_with_every_client, push_image};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scan/tests/fixtures/osv");

/// An uncompressed tar layer holding `files` (path, contents).
fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, contents.as_bytes())
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

fn debian(openssl: &str) -> Vec<u8> {
    debian_with(openssl, &[])
}

/// [`debian`]'s layer with `more` files.
fn debian_with(openssl: &str, more: &[(&str, &str)]) -> Vec<u8> {
    let status = format!(
        "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: {openssl}\n"
    );
    let files = [
        ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", &status),
        (
            "usr/local/lib/python3.11/site-packages/requests-2.30.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: requests\nVersion: 2.30.0\n",
        ),
    ];
    layer(&[&files[..], more].concat())
}

fn import(server: &TestServer, source: &Path) {
    agent_registry_server::scanning::import(&server.root().join("vulndb"), source).expect("import");
}

#[tokio::test(flavor = "multi_thread")]
async fn scans_report_findings_and_a_registry_without_a_database_says_so() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    push_image(&server.url, "team/app", "1", &[debian("3.0.11-1~deb12u1")]).await;
    push_image(
        &server.url,
        "team/empty",
        "1",
        &[layer(&[("hello.txt", "hi")])],
    )
    .await;
    let agent = Agent::new();
    let image = format!("{host}/team/app:1");
    agent.run(&["pull", &image]).await.ok();

    // No database yet: a scan and a blocking policy are refused, saying what to do.
    let run = agent.run(&["push", &image, "--security-scan"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("agent-registry vulndb import"),
        "{}",
        run.stderr
    );
    let run = agent
        .run(&[
            "registry",
            "policy",
            "set",
            "--repository",
            &format!("{host}/team/*"),
            "--block-vulnerabilities",
            "high",
        ])
        .await;
    assert!(
        run.stderr.contains("needs a vulnerability database"),
        "{}",
        run.stderr
    );
    let run = agent
        .run(&["registry", "image", "scan-results", &image])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("has not been scanned"),
        "{}",
        run.stderr
    );

    import(&server, Path::new(FIXTURE));
    let pushed = agent
        .run(&["push", &image, "--security-scan", "-o", "json"])
        .await
        .ok()
        .json();
    let report = &pushed["scan"];
    assert_eq!(report["counts"]["high"], 1, "{report}");
    assert_eq!(report["counts"]["medium"], 1, "{report}");
    assert_eq!(report["packages"], 2);
    let table = agent
        .run(&["registry", "image", "scan-results", &image])
        .await
        .ok()
        .stdout;
    assert!(
        table.contains("1 high, 1 medium (2 findings in 2 packages)"),
        "{table}"
    );
    for expected in [
        "DSA-5532-1",
        "libssl3",
        "3.0.11-1~deb12u2",
        "GHSA-j8r2-6x86-q33q",
        "2.31.0",
        "CVE-2023-32681",
    ] {
        assert!(table.contains(expected), "{expected} in\n{table}");
    }
    // The SBOM and the report hang off the image as referrers.
    let referrers: serde_json::Value = reqwest::get(format!(
        "{}/v2/team/app/referrers/{}",
        server.url,
        pushed["digest"].as_str().expect("digest")
    ))
    .await
    .expect("referrers")
    .json()
    .await
    .expect("json");
    let types: Vec<&str> = referrers["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["artifactType"].as_str())
        .collect();
    assert!(
        types.contains(&"application/vnd.cyclonedx+json"),
        "{types:?}"
    );
    assert!(
        types.contains(&"application/vnd.agent-registry.scan-report.v1+json"),
        "{types:?}"
    );

    // An image with no packages scans clean.
    let empty = format!("{host}/team/empty:1");
    agent.run(&["pull", &empty]).await.ok();
    let run = agent.run(&["push", &empty, "--security-scan"]).await.ok();
    assert!(run.stdout.contains("none in 0 packages"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running, and podman: run scripts/test"]
async fn a_vulnerability_policy_blocks_exactly_the_vulnerable_images_and_follows_the_database() {
    let server = TestServer::start_with(|c| c.scanning.on_push = true).await;
    let host = server.host().to_owned();
    import(&server, Path::new(FIXTURE));
    let unique = crate::support::unique();
    let vulnerable = format!("{host}/prod/vulnerable:{unique}");
    let patched = format!("{host}/prod/patched:{unique}");
    let elsewhere = format!("{host}/dev/vulnerable:{unique}");
    push_image(
        &server.url,
        "prod/vulnerable",
        &unique.to_string(),
        &[debian("3.0.11-1~deb12u1")],
    )
    .await;
    push_image(
        &server.url,
        "prod/patched",
        &unique.to_string(),
        &[debian("3.0.11-1~deb12u2")],
    )
    .await;
    push_image(
        &server.url,
        "dev/vulnerable",
        &unique.to_string(),
        &[debian("3.0.11-1~deb12u1")],
    )
    .await;
    let agent = Agent::new();
    agent
        .run(&[
            "registry",
            "policy",
            "set",
            "--repository",
            &format!("{host}/prod/*"),
            "--block-vulnerabilities",
            "high",
        ])
        .await
        .ok();

    let dir = tempfile::tempdir().expect("tempdir");
    for (client, (ok, out)) in pull_with_every_client(&vulnerable, dir.path()).await {
        assert!(!ok, "{client} refused the vulnerable image");
        assert!(out.to_lowercase().contains("denied"), "{client}: {out}");
        assert!(
            out.contains("high vulnerability, DSA-5532-1 in libssl3"),
            "{client} names the worst finding: {out}"
        );
    }
    for image in [&patched, &elsewhere] {
        for (client, (ok, out)) in pull_with_every_client(image, dir.path()).await {
            assert!(ok, "{client} pulls {image}: {out}");
        }
    }

    // Accepting the advisory (by its CVE alias) leaves only a medium finding: allowed.
    agent
        .run(&[
            "registry",
            "policy",
            "set",
            "--repository",
            &format!("{host}/prod/*"),
            "--block-vulnerabilities",
            "high",
            "--allow",
            "CVE-2023-5363",
        ])
        .await
        .ok();
    for (client, (ok, out)) in pull_with_every_client(&vulnerable, dir.path()).await {
        assert!(ok, "{client} pulls once the advisory is accepted: {out}");
    }

    // A new advisory in the database blocks the patched image too, without a push: the
    // registry loads the import and scans again.
    let update = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        update.path().join("DSA-9999-1.json"),
        r#"{"id": "DSA-9999-1", "aliases": ["CVE-2099-0001"],
            "database_specific": {"severity": "CRITICAL"},
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
              "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u3"}]}]}]}"#,
    )
    .expect("write");
    import(&server, update.path());
    tokio::time::sleep(agent_registry_server::scanning::RELOAD_CHECK).await;
    for (client, (ok, out)) in pull_with_every_client(&patched, dir.path()).await {
        assert!(!ok, "{client} refused the newly vulnerable image: {out}");
        assert!(
            out.contains("critical vulnerability, DSA-9999-1"),
            "{client}: {out}"
        );
    }
    // The results shown follow the new database too, for an image no policy covers
    // (scanned on push with the old one).
    let shown = agent
        .run(&[
            "registry",
            "image",
            "scan-results",
            &elsewhere,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(shown["counts"]["critical"], 1, "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs podman: run scripts/test"]
async fn an_image_podman_pushes_with_zstd_layers_is_scanned_like_any_other() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    import(&server, Path::new(FIXTURE));
    let tag = crate::support::unique().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    // A layer the registry has never seen, so podman compresses it rather than reusing a blob.
    let layer = debian_with("3.0.11-1~deb12u1", &[("unique.txt", &tag)]);
    let tarball = dir.path().join("layer.tar");
    std::fs::write(&tarball, layer).expect("write");
    let image = format!("{host}/team/zstd:{tag}");
    let tarball = tarball.to_string_lossy();
    for args in [
        &["import", "-q", &tarball, &image][..],
        &[
            "push",
            "-q",
            "--tls-verify=false",
            "--compression-format",
            "zstd",
            &image,
        ],
    ] {
        let (ok, out) = podman(dir.path(), args).await;
        assert!(ok, "podman {}: {out}", args.join(" "));
    }

    let http = reqwest::Client::new();
    let manifest: serde_json::Value = http
        .get(format!("{}/v2/team/zstd/manifests/{tag}", server.url))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .expect("manifest")
        .json()
        .await
        .expect("json");
    assert_eq!(
        manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd",
        "podman pushed a zstd layer: {manifest}"
    );
    let report: serde_json::Value = http
        .post(format!("{}/api/v1/scans", server.url))
        .json(&serde_json::json!({"repository": "team/zstd", "reference": tag}))
        .send()
        .await
        .expect("scan")
        .json()
        .await
        .expect("json");
    assert_eq!(report["counts"]["high"], 1, "{report}");
    assert_eq!(report["counts"]["medium"], 1, "{report}");
    assert_eq!(report["packages"], 2, "{report}");
}
