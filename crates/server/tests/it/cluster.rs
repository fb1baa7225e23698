//! Several registry nodes sharing one PostgreSQL database and one S3 bucket (s3s-fs): what
//! one node accepts, every other serves; an upload's requests may each land on another node,
//! and survive the node they started on being killed; concurrent pushes of one tag and of
//! shared layers through different nodes all land. Needs PostgreSQL on 127.0.0.1:5432 and
//! s3s-fs (`$S3S_FS`), which `scripts/test` provides; hence `#[ignore]`.

use std::time::Duration;

use agent_registry_metadata::test_database::TestDatabase;
use agent_registry_server::config::S3StorageConfig;
use agent_registry_server::testing::Proxy;
use agent_registry_storage::s3_server::S3Server;
use bytes::Bytes;
use reqwest::StatusCode;

use crate::support::{
    OCI_MANIFEST, TestRegistry, finish_upload, header, image_manifest, migrate, on_node,
    patch_upload, scale_out_config, sha256, start_upload,
};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL and the s3s-fs S3 server: run scripts/test"]
async fn a_push_to_one_node_is_served_by_every_other() {
    let reg = TestRegistry::start_cluster(3).await;
    let (manifest, digest) = reg
        .node(0)
        .push_image("team/scaled", "v1", b"layer on node 0")
        .await;
    for i in 1..3 {
        let node = reg.node(i);
        let by_tag = node.get_manifest("team/scaled", "v1").await;
        assert_eq!(by_tag.status(), StatusCode::OK);
        assert_eq!(by_tag.bytes().await.expect("body"), manifest);
        let by_digest = node.get_manifest("team/scaled", &digest.to_string()).await;
        assert_eq!(by_digest.status(), StatusCode::OK);
        assert_eq!(
            node.get_blob("team/scaled", &sha256(b"layer on node 0"))
                .await,
            &b"layer on node 0"[..]
        );
        let tags = node.get_json("team/scaled/tags/list").await;
        assert_eq!(tags["tags"], serde_json::json!(["v1"]));
        let found = node.get_json_at("/api/v1/search?q=scaled").await;
        assert_eq!(found["images"][0]["name"], "team/scaled", "{found}");
    }
    // A tag moved on one node is seen moved on the others at once.
    let (_, moved) = reg
        .node(2)
        .push_image("team/scaled", "v1", b"layer on node 2")
        .await;
    let r = reg.node(1).get_manifest("team/scaled", "v1").await;
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(moved.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL and the s3s-fs S3 server: run scripts/test"]
async fn one_upload_moves_from_node_to_node_chunk_by_chunk() {
    let reg = TestRegistry::start_cluster(3).await;
    // The last chunk is larger than one S3 part, so it streams as a multipart upload.
    let data: Vec<u8> = (0..12_000_000u32).map(|i| (i % 241) as u8).collect();
    let digest = sha256(&data);
    let url = start_upload(&reg.node(0), "team/chunks").await;
    let cuts = [0, 700_000, 1_500_000, data.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        let node = reg.node((i + 1) % 3);
        let range = format!("{}-{}", w[0], w[1] - 1);
        let r = patch_upload(
            &node,
            &on_node(&node, &url),
            Some(&range),
            &data[w[0]..w[1]],
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", node.url);
    }
    let node = reg.node(1);
    let r = finish_upload(&node, &on_node(&node, &url), &digest).await;
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap_or_default()
    );
    for i in 0..3 {
        assert_eq!(reg.node(i).get_blob("team/chunks", &digest).await, data);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL and the s3s-fs S3 server: run scripts/test"]
async fn concurrent_pushes_of_one_tag_and_shared_layers_across_nodes_all_land() {
    let reg = TestRegistry::start_cluster(3).await;
    let shared: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let shared_digest = sha256(&shared);
    let pushes = (0..12).map(|i| {
        let node = reg.node(i % 3);
        let shared = shared.clone();
        async move {
            // Every client uploads the same layer, then its own config, then tags `latest`.
            let layer = node.push_blob("team/race", &shared).await;
            let config = node
                .push_blob("team/race", format!("{{\"client\":{i}}}").as_bytes())
                .await;
            let len = format!("{{\"client\":{i}}}").len();
            let manifest = image_manifest(&config, len, &[(&layer, shared.len())], None);
            let r = node
                .put_manifest("team/race", "latest", OCI_MANIFEST, &manifest)
                .await;
            assert_eq!(r.status(), StatusCode::CREATED, "client {i}");
            sha256(&manifest)
        }
    });
    let pushed = futures_util::future::join_all(pushes).await;
    let mut seen = Vec::new();
    for i in 0..3 {
        let node = reg.node(i);
        let r = node.get_manifest("team/race", "latest").await;
        assert_eq!(r.status(), StatusCode::OK);
        seen.push(
            header(&r, "docker-content-digest")
                .expect("digest")
                .to_owned(),
        );
        for digest in &pushed {
            let r = node.get_manifest("team/race", &digest.to_string()).await;
            assert_eq!(r.status(), StatusCode::OK, "every manifest stays by digest");
        }
        assert_eq!(node.get_blob("team/race", &shared_digest).await, shared);
    }
    assert!(
        seen.iter().all(|d| *d == seen[0]),
        "one tag, one answer: {seen:?}"
    );
    assert!(pushed.iter().any(|d| d.to_string() == seen[0]));
}

/// A registry process of the cluster `config` describes.
async fn node_process(
    config: &std::path::Path,
    root: &std::path::Path,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--root"])
        .arg(root)
        .env("AGENT_REGISTRY_LOG_LEVEL", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start agent-registry");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, format!("http://127.0.0.1:{port}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("agent-registry did not start");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL and the s3s-fs S3 server: run scripts/test"]
async fn an_upload_outlives_the_node_killed_in_the_middle_of_it() {
    let s3 = S3Server::start();
    let section = S3StorageConfig::from(s3.bucket("cluster"));
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = scale_out_config(dir.path(), "cluster.yaml", &section, Some(&db.url), "");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let root = dir.path().join(format!("node{i}"));
        nodes.push(node_process(&config, &root).await);
    }
    let http = reqwest::Client::new();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 229) as u8).collect();
    let digest = sha256(&data);
    let start = http
        .post(format!("{}/v2/team/killed/blobs/uploads/", nodes[0].1))
        .send()
        .await
        .expect("start");
    let location = header(&start, "location").expect("location").to_owned();
    let first = http
        .patch(format!("{}{location}", nodes[1].1))
        .header("content-range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .expect("first chunk");
    assert_eq!(first.status(), StatusCode::ACCEPTED);

    // The next chunk streams to node 1, which dies half way through it.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let doomed = tokio::spawn({
        let request = http
            .patch(format!("{}{location}", nodes[1].1))
            .header("content-range", format!("1000000-{}", data.len() - 1))
            .body(reqwest::Body::wrap_stream(chunks));
        async move { request.send().await }
    });
    tx.send(Ok(Bytes::copy_from_slice(&data[1_000_000..1_500_000])))
        .await
        .expect("send half");
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[1].0.kill().await.expect("kill node 1");
    let lost = doomed.await.expect("task");
    assert!(lost.is_err(), "the killed node answered: {lost:?}");
    drop(tx);

    // Node 2 says where the upload stands: every byte of the first chunk, none of the lost.
    let status = http
        .get(format!("{}{location}", nodes[2].1))
        .send()
        .await
        .expect("status");
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&status, "range"), Some("0-999999"));
    let rest = http
        .patch(format!("{}{location}", nodes[2].1))
        .header("content-range", format!("1000000-{}", data.len() - 1))
        .body(data[1_000_000..].to_vec())
        .send()
        .await
        .expect("rest");
    assert_eq!(rest.status(), StatusCode::ACCEPTED);
    let location = header(&rest, "location").expect("location").to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    let done = http
        .put(format!("{}{location}{sep}digest={digest}", nodes[0].1))
        .send()
        .await
        .expect("finish");
    assert_eq!(done.status(), StatusCode::CREATED);
    let got = http
        .get(format!("{}/v2/team/killed/blobs/{digest}", nodes[2].1))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), data);
}

/// `agent-registry migrate` moves a single-node registry (filesystem + SQLite, with accounts,
/// downloads and ratings) onto S3 and PostgreSQL; two nodes then serve it, with the local
/// files gone, byte for byte and with the same catalogue. Metadata goes only into an empty
/// database: a second run is refused and changes nothing.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL and the s3s-fs S3 server: run scripts/test"]
async fn migrate_moves_a_single_node_registry_onto_s3_and_postgres() {
    if crate::support::skip_on_several_nodes("migrating a single node's files") {
        return;
    }
    let single = |c: &mut agent_registry_server::Config| {
        c.storage.backend = agent_registry_server::config::StorageBackend::Filesystem;
        c.storage.s3 = None;
        c.database = agent_registry_server::config::DatabaseConfig::default();
        c.auth.enabled = true;
        c.auth.admin.password = "first-admin-pw".into();
    };
    let mut reg = TestRegistry::start_with(single).await;
    reg.sign_in(&crate::support::basic("admin", "first-admin-pw"));
    let (manifest, _) = reg.push_image("moving/app", "v1", b"layer").await;
    reg.push_image("moving/app", "latest", b"layer").await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 233) as u8).collect();
    let big_digest = reg.push_blob("moving/data", &big).await;
    assert_eq!(
        reg.get_manifest("moving/app", "v1").await.status(),
        StatusCode::OK
    );
    let rated = reg
        .http
        .post(format!("{}/api/v1/agents/moving/app/ratings", reg.url))
        .json(&serde_json::json!({"stars": 4}))
        .send()
        .await
        .expect("rate");
    assert_eq!(rated.status(), StatusCode::OK);
    let search = reg.get_json_at("/api/v1/search?q=moving").await;
    let agent = reg.get_json_at("/api/v1/agents/moving/app").await;
    let dir = reg.stop().await;

    let s3 = S3Server::start();
    let section = S3StorageConfig::from(s3.bucket("migrated"));
    let db = TestDatabase::create().await;
    let config = scale_out_config(
        dir.path(),
        "scale-out.yaml",
        &section,
        Some(&db.url),
        "auth: { enabled: true }\n",
    );
    let migrate = || migrate(&config, dir.path());
    let first = migrate();
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(said.contains("copied 3 blobs"), "{said}");
    assert!(
        said.contains("copied the metadata into PostgreSQL")
            && said.contains("manifests 1,")
            && said.contains("tags 2,")
            && said.contains("principals 1,"),
        "{said}"
    );

    let again = migrate();
    assert!(!again.status.success());
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(said.contains("empty database"), "{said}");

    // Nothing local is read any more.
    std::fs::rename(dir.path().join("blobs"), dir.path().join("blobs.old")).expect("move away");
    std::fs::rename(
        dir.path().join("registry.db"),
        dir.path().join("registry.db.old"),
    )
    .expect("move away");
    let admin =
        crate::support::client_with(Some(&crate::support::basic("admin", "first-admin-pw")));
    let mut nodes = Vec::new();
    for i in 0..2 {
        nodes.push(node_process(&config, &dir.path().join(format!("node{i}"))).await);
    }
    // The catalogue first: pulls below count as downloads.
    for (_, url) in &nodes {
        let json = |path: &'static str| {
            let admin = admin.clone();
            let url = url.clone();
            async move {
                admin
                    .get(format!("{url}{path}"))
                    .send()
                    .await
                    .expect("get")
                    .json::<serde_json::Value>()
                    .await
                    .expect("json")
            }
        };
        assert_eq!(json("/api/v1/search?q=moving").await, search);
        assert_eq!(json("/api/v1/agents/moving/app").await, agent);
    }
    for (_, url) in &nodes {
        let got = admin
            .get(format!("{url}/v2/moving/app/manifests/v1"))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("manifest");
        assert_eq!(
            got.status(),
            StatusCode::OK,
            "the admin's password moved too"
        );
        assert_eq!(got.bytes().await.expect("body"), manifest);
        let got = admin
            .get(format!("{url}/v2/moving/data/blobs/{big_digest}"))
            .send()
            .await
            .expect("blob");
        assert_eq!(got.bytes().await.expect("body"), big);
    }
}

/// With its database gone, a node answers 503 with `Retry-After` (not a 500, not a hang) and
/// says so in `/readyz`; when the database is back, the same requests succeed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL: run scripts/test"]
async fn a_node_whose_database_is_gone_answers_503_until_it_is_back() {
    let db = TestDatabase::create().await;
    // A cable to the database, which the test cuts and mends.
    let mut cable = Proxy::start(vec![db.address()]).await;
    let url = db.url_via(cable.addr);
    let reg = TestRegistry::start_with(|c| {
        c.database.backend = agent_registry_server::config::DatabaseBackend::Postgres;
        c.database.url = url.clone();
    })
    .await;
    let (manifest, _) = reg.push_image("team/steady", "v1", b"layer").await;

    cable.cut().await;
    let r = reg.get_manifest("team/steady", "v1").await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&r, "retry-after"), Some("1"));
    let body = r.text().await.expect("body");
    assert!(body.contains("database is unavailable"), "{body}");
    let ready = reg
        .http
        .get(format!("{}/readyz", reg.url))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    cable.mend().await;
    let r = reg.get_manifest("team/steady", "v1").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.expect("body"), manifest);
}
