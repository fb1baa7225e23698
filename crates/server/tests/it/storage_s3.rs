//! The registry with its blobs in S3 (a real s3s-fs server): chunked uploads, redirects of
//! blob GETs to presigned URLs, and migrating a filesystem registry's blobs into a bucket.

use agent_registry_server::Config;
use agent_registry_server::config::{DatabaseConfig, S3StorageConfig, StorageBackend};
use agent_registry_storage::BlobStore;
use agent_registry_storage::s3_server::S3Server;
use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::interop::registry_on_s3;
use crate::support::{
    TestRegistry, assert_error, finish_upload, header, migrate, patch_upload, scale_out_config,
    sha256, start_upload,
};

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the s3s-fs S3 server: run scripts/test"]
async fn blob_gets_redirect_to_the_bucket_and_heads_answer_directly() {
    let (reg, _s3) = registry_on_s3("redirects").await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 247) as u8).collect();
    let digest = reg.push_blob("s3/app", &data).await;
    let url = reg.v2(&format!("s3/app/blobs/{digest}"));
    let direct = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("client");

    let r = direct.get(&url).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        header(&r, "docker-content-digest"),
        Some(digest.to_string().as_str())
    );
    let location = header(&r, "location").expect("a location").to_owned();
    let fetched = reqwest::get(&location).await.expect("fetch signed url");
    assert_eq!(fetched.status(), StatusCode::OK, "{location}");
    assert_eq!(fetched.bytes().await.expect("body"), data);

    // Clients send their Range again to the bucket, which answers it.
    let part = reg
        .http
        .get(&url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("ranged get");
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.bytes().await.expect("body"), &data[10..20]);

    let head = direct.head(&url).send().await.expect("head");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), Some("100000"));

    // The repository is checked before any URL is signed.
    let elsewhere = direct
        .get(reg.v2(&format!("s3/other/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_error(elsewhere, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

/// A chunked upload of two PATCHes (the second large enough to stream to S3 as a multipart
/// upload) commits into a blob that reads back whole.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the s3s-fs S3 server: run scripts/test"]
async fn chunked_uploads_commit_into_the_bucket() {
    let (reg, _s3) = registry_on_s3("chunked").await;
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 239) as u8).collect();
    let digest = sha256(&data);
    let url = start_upload(&reg, "s3/chunked").await;
    for (from, part) in [(0, &data[..1_000_000]), (1_000_000, &data[1_000_000..])] {
        let range = format!("{from}-{}", from + part.len() - 1);
        let r = patch_upload(&reg, &url, Some(&range), part).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let r = finish_upload(&reg, &url, &digest).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(reg.get_blob("s3/chunked", &digest).await, data);
}

/// `agent-registry migrate` copies a filesystem registry's blobs into a bucket; served from
/// the bucket (with the local blobs gone), every manifest and blob reads back byte for byte.
/// A second run finds everything there; a damaged blob on disk stops it without a trace in
/// the bucket.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the s3s-fs S3 server: run scripts/test"]
async fn migrate_moves_a_filesystem_registry_into_s3_byte_for_byte() {
    if crate::support::skip_on_several_nodes("migrating a single node's files") {
        return;
    }
    let on_disk = |c: &mut Config| {
        c.storage.backend = StorageBackend::Filesystem;
        c.storage.s3 = None;
        c.database = DatabaseConfig::default();
    };
    let reg = TestRegistry::start_with(on_disk).await;
    let (manifest, _) = reg.push_image("moving/app", "v1", b"layer").await;
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 233) as u8).collect();
    let big_digest = reg.push_blob("moving/data", &big).await;
    let dir = reg.stop().await;

    let s3 = S3Server::start();
    let bucket = s3.bucket("migrated");
    let section = S3StorageConfig::from(bucket.clone());
    let config = scale_out_config(dir.path(), "s3.yaml", &section, None, "");
    let migrate = |root: &std::path::Path| migrate(&config, root);
    let first = migrate(dir.path());
    let said = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The config blob, the layer, the big blob; manifests live in the metadata.
    assert!(said.contains("copied 3 blobs"), "{said}");
    let again = migrate(dir.path());
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(
        said.contains("copied 0 blobs") && said.contains("3 were already"),
        "{said}"
    );

    std::fs::rename(dir.path().join("blobs"), dir.path().join("blobs.old")).expect("move away");
    let reg = TestRegistry::start_on(dir, |c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(section.clone());
        c.database = DatabaseConfig::default();
    })
    .await;
    let got = reg.get_manifest("moving/app", "v1").await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body"), manifest);
    let got = reg
        .http
        .get(reg.v2(&format!("moving/data/blobs/{big_digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.bytes().await.expect("body"), big);
    let dir = reg.stop().await;

    // A blob whose bytes no longer match its name is refused, and nothing of it lands.
    std::fs::rename(dir.path().join("blobs.old"), dir.path().join("blobs")).expect("move back");
    let damaged = sha256(b"damaged on disk");
    let path = dir.path().join(format!(
        "blobs/sha256/{}/{}",
        &damaged.hex()[..2],
        damaged.hex()
    ));
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, b"not what the name says").expect("write");
    let failed = migrate(dir.path());
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        said.contains(&damaged.to_string()) && said.contains("damaged"),
        "{said}"
    );
    let store = agent_registry_storage::S3BlobStore::open(&bucket).expect("open");
    assert_eq!(store.stat(&damaged).await.expect("stat"), None);
    assert!(store.list_uploads().await.expect("uploads").is_empty());
}

/// A bucket is one registry's: a second registry with metadata of its own is refused at
/// start, saying why, before it can delete what only the first one knows.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the s3s-fs S3 server: run scripts/test"]
async fn a_second_registry_on_the_same_bucket_is_refused() {
    let s3 = S3Server::start();
    let section = S3StorageConfig::from(s3.bucket("shared"));
    let on_s3 = |c: &mut Config| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(section.clone());
    };
    let first = TestRegistry::start_with(on_s3).await;
    first.push_blob("shared/app", b"mine").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        root: dir.path().to_owned(),
        ..Config::default()
    };
    on_s3(&mut config);
    let refused = agent_registry_server::AppState::open(config)
        .await
        .expect_err("a second registry on the bucket");
    let said = format!("{refused:#}");
    assert!(
        said.contains("belongs to another registry") && said.contains("share their metadata"),
        "{said}"
    );
    let r = first
        .http
        .head(first.v2(&format!("shared/app/blobs/{}", sha256(b"mine"))))
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), StatusCode::OK, "the first registry is unharmed");
}
