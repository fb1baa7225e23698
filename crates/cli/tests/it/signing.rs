//! Signing: `agent key generate`, `agent push --sign`, `agent pull --verify-signature` and
//! `agent registry image signatures`, with the format pinned against OpenSSL (an independent
//! ECDSA implementation) in both directions, since cosign itself cannot be installed here.

use std::path::Path;

use agent_registry_oci::Digest;
use agent_registry_server::testing::TestServer;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::{
    Agent, docker_image, files_under, noise, pull_with_every_client, push_image, run_ok, sha256,
};

/// An agent that pulled `image` (so it can push it back with `--sign`).
async fn agent_holding(image: &str) -> Agent {
    let agent = Agent::new();
    agent.run(&["pull", image]).await.ok();
    agent
}

async fn generate(agent: &Agent, prefix: &Path) -> String {
    let made = agent
        .run(&[
            "key",
            "generate",
            "--output-key-prefix",
            prefix.to_str().expect("test setup"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    made["key_id"].as_str().expect("test setup").to_owned()
}

fn path(p: &Path, ext: &str) -> String {
    p.with_extension(ext)
        .to_str()
        .expect("test setup")
        .to_owned()
}

async fn get(url: &str) -> reqwest::Response {
    let r = reqwest::Client::new()
        .get(url)
        .header(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json",
        )
        .send()
        .await
        .expect("get");
    assert!(r.status().is_success(), "GET {url}: {}", r.status());
    r
}

async fn put_manifest(base: &str, repo: &str, reference: &str, manifest: &[u8]) {
    let r = reqwest::Client::new()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_vec())
        .send()
        .await
        .expect("put manifest");
    assert!(r.status().is_success(), "put manifest: {}", r.status());
}

async fn put_blob(base: &str, repo: &str, blob: &[u8]) -> Digest {
    let digest = sha256(blob);
    let r = reqwest::Client::new()
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .body(blob.to_vec())
        .send()
        .await
        .expect("put blob");
    assert!(r.status().is_success(), "put blob: {}", r.status());
    digest
}

fn sig_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_push_verifies_and_every_tampering_is_refused_before_a_layer_is_stored() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let digest = push_image(&server.url, "team/app", "1", &[noise(200_000, 7)]).await;
    let image = format!("{host}/team/app:1");
    let signer = agent_holding(&image).await;
    let keys = tempfile::tempdir().expect("test setup");
    let (alice, bob) = (keys.path().join("alice"), keys.path().join("bob"));
    let alice_id = generate(&signer, &alice).await;
    generate(&signer, &bob).await;
    // The private key is its owner's alone, and a second generate does not overwrite it.
    let mode = std::fs::metadata(alice.with_extension("key")).expect("test setup");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    signer
        .run(&[
            "key",
            "generate",
            "--output-key-prefix",
            alice.to_str().expect("test setup"),
        ])
        .await
        .failed(1, "agent: ")
        .stderr
        .contains("refusing to overwrite")
        .then_some(())
        .expect("overwrite refused");

    let pushed = signer
        .run(&[
            "push",
            &image,
            "--sign",
            "--key",
            &path(&alice, "key"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(pushed["digest"], digest.to_string());
    let signature_manifest: Digest = pushed["signature"]
        .as_str()
        .expect("test setup")
        .parse()
        .expect("test setup");

    // Anyone with the public key pulls it, and is told which key signed it.
    let puller = Agent::new();
    let pulled = puller
        .run(&[
            "pull",
            &image,
            "--verify-signature",
            "--key",
            &path(&alice, "pub"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(pulled["digest"], digest.to_string());
    assert_eq!(pulled["verified_by"], alice_id);

    // Each refusal leaves nothing in the store.
    let refused = |agent: Agent, args: Vec<String>, expected: &'static str| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = agent.run(&args).await;
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(run.stderr.contains(expected), "{}", run.stderr);
        let stored = files_under(&agent.store().join("blobs"));
        assert!(stored.is_empty(), "refused, yet stored {stored:?}");
    };
    let verify = |image: &str, key: &Path| -> Vec<String> {
        [
            "pull",
            image,
            "--verify-signature",
            "--key",
            &path(key, "pub"),
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // Another key.
    refused(Agent::new(), verify(&image, &bob), "no signature of").await;
    // An unsigned image.
    push_image(&server.url, "team/app", "2", &[noise(1000, 8)]).await;
    refused(
        Agent::new(),
        verify(&format!("{host}/team/app:2"), &alice),
        "is not signed",
    )
    .await;
    // A key file that is not a public key.
    let run = Agent::new()
        .run(&[
            "pull",
            &image,
            "--verify-signature",
            "--key",
            &path(&alice, "key"),
        ])
        .await;
    assert!(run.stderr.contains("give the .pub file"), "{}", run.stderr);

    // The tag moved to other content, with the old signature copied to the new digest's
    // .sig tag: the signature is valid, but for another manifest.
    let original = get(&format!(
        "{}/v2/team/app/manifests/{}",
        server.url,
        sig_tag(&digest)
    ))
    .await
    .bytes()
    .await
    .expect("test setup");
    let swapped = push_image(&server.url, "team/app", "1", &[noise(1000, 9)]).await;
    put_manifest(&server.url, "team/app", &sig_tag(&swapped), &original).await;
    refused(
        Agent::new(),
        verify(&image, &alice),
        "signs another manifest",
    )
    .await;

    // A signature altered by one bit, for the image signed by digest.
    let mut manifest: Value = serde_json::from_slice(&original).expect("test setup");
    let annotation =
        &mut manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"];
    let mut der = STANDARD
        .decode(annotation.as_str().expect("test setup"))
        .expect("test setup");
    let last = der.len() - 1;
    der[last] ^= 1;
    *annotation = Value::String(STANDARD.encode(der));
    manifest
        .as_object_mut()
        .expect("test setup")
        .remove("subject");
    put_manifest(
        &server.url,
        "team/app",
        &sig_tag(&digest),
        &serde_json::to_vec(&manifest).expect("test setup"),
    )
    .await;
    // The referrer made by the push still holds the good signature; take it away.
    let r = reqwest::Client::new()
        .delete(format!(
            "{}/v2/team/app/manifests/{signature_manifest}",
            server.url
        ))
        .send()
        .await
        .expect("test setup");
    assert!(r.status().is_success(), "{}", r.status());
    let by_digest = format!("{host}/team/app@{digest}");
    refused(
        Agent::new(),
        verify(&by_digest, &alice),
        "no trusted key verifies it",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_are_cosign_format_and_openssl_agrees_both_ways() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let digest = push_image(&server.url, "team/tool", "1.0", &[noise(5000, 3)]).await;
    let image = format!("{host}/team/tool:1.0");
    let agent = agent_holding(&image).await;
    let dir = tempfile::tempdir().expect("test setup");
    let ours = dir.path().join("ours");
    let ours_id = generate(&agent, &ours).await;
    agent
        .run(&["push", &image, "--sign", "--key", &path(&ours, "key")])
        .await
        .ok();

    // What we wrote is what cosign reads: the .sig tag's manifest, its simple-signing layer,
    // the payload naming the digest, and a signature OpenSSL verifies with our .pub.
    let manifest: Value = get(&format!(
        "{}/v2/team/tool/manifests/{}",
        server.url,
        sig_tag(&digest)
    ))
    .await
    .json()
    .await
    .expect("test setup");
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(manifest["subject"]["digest"], digest.to_string());
    let layer = &manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = get(&format!(
        "{}/v2/team/tool/blobs/{}",
        server.url,
        layer["digest"].as_str().expect("test setup")
    ))
    .await
    .bytes()
    .await
    .expect("test setup");
    let claims: Value = serde_json::from_slice(&payload).expect("test setup");
    assert_eq!(
        claims["critical"],
        json!({"identity": {"docker-reference": format!("{host}/team/tool")},
               "image": {"docker-manifest-digest": digest.to_string()},
               "type": "cosign container image signature"})
    );
    assert_eq!(claims["optional"]["dev.agent-registry.key-id"], ours_id);
    let signature = STANDARD
        .decode(
            layer["annotations"]["dev.cosignproject.cosign/signature"]
                .as_str()
                .expect("test setup"),
        )
        .expect("test setup");
    std::fs::write(dir.path().join("payload"), &payload).expect("test setup");
    std::fs::write(dir.path().join("payload.sig"), &signature).expect("test setup");
    let verified = run_ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-verify",
            &path(&ours, "pub"),
            "-signature",
            dir.path().join("payload.sig").to_str().expect("test setup"),
            dir.path().join("payload").to_str().expect("test setup"),
        ],
    )
    .await;
    assert_eq!(verified.trim(), "Verified OK");
    // The referrers API lists the same manifest as a cosign signature.
    let referrers: Value = get(&format!("{}/v2/team/tool/referrers/{digest}", server.url))
        .await
        .json()
        .await
        .expect("test setup");
    assert_eq!(
        referrers["manifests"][0]["artifactType"],
        "application/vnd.dev.cosign.artifact.sig.v1+json"
    );

    // The other way: a key OpenSSL made, a payload and signature made as cosign makes them,
    // stored as cosign stores them (under the tag only, no subject, cosign's config).
    let theirs = dir.path().join("theirs.pem");
    let theirs_pub = dir.path().join("theirs.pub");
    let s = |p: &Path| p.to_str().expect("test setup").to_owned();
    run_ok(
        "openssl",
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &s(&theirs),
        ],
    )
    .await;
    run_ok(
        "openssl",
        &[
            "pkey",
            "-in",
            &s(&theirs),
            "-pubout",
            "-out",
            &s(&theirs_pub),
        ],
    )
    .await;
    let other = push_image(&server.url, "team/tool", "2.0", &[noise(5000, 4)]).await;
    let cosign_payload = format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{host}/team/tool"}},"image":{{"docker-manifest-digest":"{other}"}},"type":"cosign container image signature"}},"optional":null}}"#
    );
    let payload_file = dir.path().join("cosign-payload");
    std::fs::write(&payload_file, &cosign_payload).expect("test setup");
    let sig_file = dir.path().join("cosign.sig");
    run_ok(
        "openssl",
        &[
            "dgst",
            "-sha256",
            "-sign",
            &s(&theirs),
            "-out",
            &s(&sig_file),
            &s(&payload_file),
        ],
    )
    .await;
    let payload_digest = put_blob(&server.url, "team/tool", cosign_payload.as_bytes()).await;
    let config = format!(
        r#"{{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{{"created":"0001-01-01T00:00:00Z"}}],"os":"","rootfs":{{"type":"layers","diff_ids":["{payload_digest}"]}},"config":{{}}}}"#
    );
    let config_digest = put_blob(&server.url, "team/tool", config.as_bytes()).await;
    let cosign_manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest.to_string()},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": cosign_payload.len(),
                    "digest": payload_digest.to_string(),
                    "annotations": {"dev.cosignproject.cosign/signature": STANDARD.encode(std::fs::read(&sig_file).expect("test setup"))}}],
    });
    put_manifest(
        &server.url,
        "team/tool",
        &sig_tag(&other),
        &serde_json::to_vec(&cosign_manifest).expect("test setup"),
    )
    .await;
    let other_image = format!("{host}/team/tool:2.0");
    let pulled = Agent::new()
        .run(&[
            "pull",
            &other_image,
            "--verify-signature",
            "--key",
            &s(&theirs_pub),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(pulled["digest"], other.to_string());

    // An OpenSSL PKCS#8 key signs with `agent push --sign` too, beside the cosign signature;
    // the listing shows both, each checked against the keys given.
    let agent = agent_holding(&other_image).await;
    agent
        .run(&["push", &other_image, "--sign", "--key", &s(&theirs)])
        .await
        .ok();
    let listed = agent
        .run(&[
            "registry",
            "image",
            "signatures",
            &other_image,
            "--key",
            &s(&theirs_pub),
            "--key",
            &path(&ours, "pub"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    let signatures = listed["signatures"].as_array().expect("test setup");
    assert_eq!(signatures.len(), 2, "{listed}");
    assert!(signatures.iter().all(|s| s["valid"] == true), "{listed}");
    assert!(
        signatures
            .iter()
            .all(|s| s["algorithm"] == "ecdsa-p256-sha256")
    );
    // Cosign's carries no signer; ours names the local user.
    assert!(signatures.iter().any(|s| s["signer"].is_null()), "{listed}");
    assert!(
        signatures.iter().any(|s| s["signed_at"].is_string()),
        "{listed}"
    );
    let with_ours_only = agent
        .run(&[
            "registry",
            "image",
            "signatures",
            &other_image,
            "--key",
            &path(&ours, "pub"),
        ])
        .await
        .ok()
        .stdout;
    assert!(with_ours_only.contains("KEY ID"), "{with_ours_only}");
    assert_eq!(
        with_ours_only
            .matches("invalid: no trusted key verifies it")
            .count(),
        2,
        "{with_ours_only}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running, and podman: run scripts/test"]
async fn a_signed_only_policy_refuses_exactly_the_unsigned_images_to_docker_podman_and_agent() {
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = Agent::new();
    let (team, other) = (dir.path().join("team"), dir.path().join("other"));
    generate(&agent, &team).await;
    generate(&agent, &other).await;
    let signed = docker_image(&host, "prod/agent", dir.path(), "signed").await;
    let unsigned = docker_image(&host, "prod/agent", dir.path(), "unsigned").await;
    let wrong_key = docker_image(&host, "prod/tool", dir.path(), "other key").await;
    let elsewhere = docker_image(&host, "dev/agent", dir.path(), "elsewhere").await;
    for (image, key) in [(&signed, &team), (&wrong_key, &other)] {
        agent.run(&["pull", image]).await.ok();
        agent
            .run(&["push", image, "--sign", "--key", &path(key, "key")])
            .await
            .ok();
    }

    // A policy needs keys: none given and none configured is refused.
    let run = agent
        .run(&[
            "registry",
            "policy",
            "set",
            "--repository",
            &format!("{host}/prod/*"),
            "--signed-only",
        ])
        .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("signed_only needs trusted keys"),
        "{}",
        run.stderr
    );
    agent
        .run(&[
            "registry",
            "policy",
            "set",
            "--repository",
            &format!("{host}/prod/*"),
            "--signed-only",
            "--key",
            &path(&team, "pub"),
        ])
        .await
        .ok();
    let listed = agent
        .run(&[
            "registry",
            "policy",
            "list",
            "--registry",
            &host,
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(listed[0]["repository"], "prod/*", "{listed}");
    assert_eq!(listed[0]["signed_only"], true);

    for (client, (ok, out)) in pull_with_every_client(&signed, dir.path()).await {
        assert!(ok, "{client} pulls the signed image: {out}");
    }
    for (client, (ok, out)) in pull_with_every_client(&elsewhere, dir.path()).await {
        assert!(
            ok,
            "{client} pulls an unsigned image outside the policy: {out}"
        );
    }
    for (image, why) in [
        (&unsigned, "is not signed"),
        (&wrong_key, "no signature of"),
    ] {
        for (client, (ok, out)) in pull_with_every_client(image, dir.path()).await {
            assert!(!ok, "{client} refused {image}");
            assert!(out.to_lowercase().contains("denied"), "{client}: {out}");
            // docker and podman print the registry's message as it came.
            assert!(out.contains(why), "{client} says why: {out}");
        }
    }
    // The signatures stay readable under the policy, for verifiers.
    let pulled = Agent::new()
        .run(&[
            "pull",
            &signed,
            "--verify-signature",
            "--key",
            &path(&team, "pub"),
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert!(pulled["verified_by"].is_string());

    // Without the policy, the unsigned image pulls again.
    agent
        .run(&[
            "registry",
            "policy",
            "remove",
            "--repository",
            &format!("{host}/prod/*"),
        ])
        .await
        .ok();
    let run = agent
        .run(&[
            "registry",
            "policy",
            "remove",
            "--repository",
            &format!("{host}/prod/*"),
        ])
        .await;
    assert!(
        run.stderr.contains("there is no pull policy for prod/*"),
        "{}",
        run.stderr
    );
    for (client, (ok, out)) in pull_with_every_client(&unsigned, dir.path()).await {
        assert!(ok, "{client} pulls once the policy is gone: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_signed_index_lets_its_platform_manifests_through_a_signed_only_policy() {
    use agent_registry_oci::signature::{Layer, Payload, SignatureManifest, SigningKey};
    let server = TestServer::start().await;
    let host = server.host().to_owned();
    let agent = Agent::new();
    let keys = tempfile::tempdir().expect("tempdir");
    let team = keys.path().join("team");
    generate(&agent, &team).await;
    let key =
        SigningKey::from_pem(&std::fs::read_to_string(team.with_extension("key")).expect("key"))
            .expect("a signing key");

    // Two multi-platform images, one platform each; only the first index is signed, the
    // way `cosign sign` signs what a tag names.
    let mut indexes = Vec::new();
    for (tag, seed) in [("signed", 1), ("unsigned", 2)] {
        let child = push_image(
            &server.url,
            "multi/app",
            &format!("{tag}-amd64"),
            &[noise(500, seed)],
        )
        .await;
        let child_size = get(&format!("{}/v2/multi/app/manifests/{child}", server.url))
            .await
            .bytes()
            .await
            .expect("child")
            .len();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": child.to_string(), "size": child_size,
                "platform": {"architecture": "amd64", "os": "linux"}}],
        }))
        .expect("index");
        let r = reqwest::Client::new()
            .put(format!("{}/v2/multi/app/manifests/{tag}", server.url))
            .header("content-type", "application/vnd.oci.image.index.v1+json")
            .body(index.clone())
            .send()
            .await
            .expect("put index");
        assert!(r.status().is_success(), "index: {}", r.status());
        indexes.push((sha256(&index), index.len(), child));
    }
    let (index, index_size, child) = &indexes[0];
    let payload = Payload {
        reference: format!("{host}/multi/app"),
        digest: index.clone(),
        annotations: Default::default(),
    }
    .to_json();
    let layer = Layer {
        payload: put_blob(&server.url, "multi/app", &payload).await,
        size: payload.len() as u64,
        signature: key.sign(&payload),
    };
    let m = SignatureManifest::new(
        "application/vnd.oci.image.index.v1+json",
        index,
        *index_size as u64,
        &[layer],
    );
    put_blob(&server.url, "multi/app", &m.config).await;
    put_manifest(&server.url, "multi/app", &sig_tag(index), &m.manifest).await;
    agent
        .run(&[
            "registry",
            "policy",
            "set",
            "--repository",
            &format!("{host}/multi/*"),
            "--signed-only",
            "--key",
            &path(&team, "pub"),
        ])
        .await
        .ok();

    let pulled = Agent::new()
        .run(&[
            "pull",
            &format!("{host}/multi/app:signed"),
            "--platform",
            "linux/amd64",
            "-o",
            "json",
        ])
        .await
        .ok()
        .json();
    assert_eq!(
        pulled["digest"],
        child.to_string(),
        "the platform's manifest came through"
    );
    Agent::new()
        .run(&["pull", &format!("{host}/multi/app@{child}")])
        .await
        .ok();
    let run = Agent::new()
        .run(&[
            "pull",
            &format!("{host}/multi/app:unsigned"),
            "--platform",
            "linux/amd64",
        ])
        .await;
    // A 403 from the registry: exit 3, as for any refusal of access.
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("is not signed"), "{}", run.stderr);
    let (_, _, unsigned_child) = &indexes[1];
    let run = Agent::new()
        .run(&["pull", &format!("{host}/multi/app@{unsigned_child}")])
        .await;
    assert!(run.stderr.contains("is not signed"), "{}", run.stderr);
}
