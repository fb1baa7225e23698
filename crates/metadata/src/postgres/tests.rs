use std::sync::Arc;

use agent_registry_oci::catalogue::SortKey;
use agent_registry_oci::{Algorithm, Digest, Reference, RepoName, Tag};

use super::*;
use crate::access::{AccessLogQuery, AccessStore};
use crate::test_database::TestDatabase;
use crate::{Listing, SqliteStore};

#[test]
fn passwords_are_masked_in_both_url_forms() {
    assert_eq!(
        redacted("postgres://reg:s3cr:et@db:5432/registry?sslmode=disable"),
        "postgres://reg:***@db:5432/registry?sslmode=disable"
    );
    assert_eq!(
        redacted("postgres://reg@db/registry"),
        "postgres://reg@db/registry"
    );
    assert_eq!(
        redacted("host=db password=hunter2 dbname=registry"),
        "host=db password=*** dbname=registry"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn postgres_backend_passes_the_shared_suite() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect(&db.url, 4).await.expect("connect");
    crate::suite::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn postgres_backend_passes_the_access_suite() {
    let db = TestDatabase::create().await;
    let store = PostgresStore::connect(&db.url, 4).await.expect("connect");
    crate::access_suite::run_all(&store).await;
}

fn repo(s: &str) -> RepoName {
    s.parse().expect("repo")
}

fn d(s: &str) -> Digest {
    Digest::of(Algorithm::Sha256, s.as_bytes())
}

fn manifest(r: &RepoName, name: &str, tag: &str, immutable: bool) -> NewManifest {
    NewManifest {
        repo: r.clone(),
        digest: d(name),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: None,
        subject: None,
        content: Bytes::from(name.to_owned()),
        blobs: vec![d("layer")],
        manifests: vec![],
        annotations: BTreeMap::new(),
        tag: Some(tag.parse().expect("tag")),
        listing: Listing::default(),
        pushed_by: None,
        tag_immutable: immutable,
    }
}

/// Two stores on one database: two registry nodes.
async fn two_nodes(db: &TestDatabase) -> (Arc<PostgresStore>, Arc<PostgresStore>) {
    let a = PostgresStore::connect(&db.url, 8).await.expect("node a");
    let b = PostgresStore::connect(&db.url, 8).await.expect("node b");
    (Arc::new(a), Arc::new(b))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn nodes_migrating_at_once_apply_the_schema_once() {
    let db = TestDatabase::create().await;
    let starts = (0..4).map(|_| PostgresStore::connect(&db.url, 2));
    for store in futures_util::future::join_all(starts).await {
        store.expect("every node starts");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn concurrent_tag_moves_on_two_nodes_all_land_and_agree() {
    let db = TestDatabase::create().await;
    let (a, b) = two_nodes(&db).await;
    let r = repo("race/tag");
    a.link_blob(&r, &d("layer"), 5).await.expect("link");
    let before = a.tags_version(&r).await.expect("version").expect("repo");
    let mut pushes = Vec::new();
    for i in 0..40 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = r.clone();
        pushes.push(tokio::spawn(async move {
            node.put_manifest(manifest(&r, &format!("m{i}"), "latest", false))
                .await
        }));
    }
    for p in pushes {
        p.await.expect("task").expect("every push lands");
    }
    let after = b.tags_version(&r).await.expect("version").expect("repo");
    assert_eq!(after - before, 40, "every move counted once");
    let latest = Reference::Tag("latest".parse::<Tag>().expect("tag"));
    let on_a = a.manifest(&r, &latest).await.expect("a").expect("tagged");
    let on_b = b.manifest(&r, &latest).await.expect("b").expect("tagged");
    assert_eq!(on_a, on_b);
    // Both nodes' catalogues show the tag where it ended.
    for node in [&a, &b] {
        let agent = node.agent(&r).await.expect("agent").expect("listed");
        assert_eq!(agent.tags.len(), 1);
        assert_eq!(agent.tags[0].digest, on_a.digest);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn an_immutable_tag_pushed_from_two_nodes_at_once_has_one_winner() {
    let db = TestDatabase::create().await;
    let (a, b) = two_nodes(&db).await;
    for round in 0..10 {
        let r = repo(&format!("race/immutable{round}"));
        a.link_blob(&r, &d("layer"), 5).await.expect("link");
        let (first, second) = tokio::join!(
            a.put_manifest(manifest(&r, &format!("a{round}"), "1.0.0", true)),
            b.put_manifest(manifest(&r, &format!("b{round}"), "1.0.0", true)),
        );
        let refused = [&first, &second]
            .iter()
            .filter(|r| matches!(r, Err(MetadataError::TagImmutable { .. })))
            .count();
        assert_eq!(refused, 1, "round {round}: {first:?} {second:?}");
        let winner = if first.is_ok() {
            d(&format!("a{round}"))
        } else {
            d(&format!("b{round}"))
        };
        let tagged = b
            .manifest(&r, &Reference::Tag("1.0.0".parse().expect("tag")))
            .await
            .expect("read")
            .expect("tagged");
        assert_eq!(tagged.digest, winner);
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn a_blob_unlinked_while_another_node_references_it_never_leaves_a_dangling_manifest() {
    let db = TestDatabase::create().await;
    let (a, b) = two_nodes(&db).await;
    for round in 0..20 {
        let r = repo(&format!("race/unlink{round}"));
        let layer = d("layer");
        a.link_blob(&r, &layer, 5).await.expect("link");
        let (put, unlink) = tokio::join!(
            a.put_manifest(manifest(&r, &format!("m{round}"), "latest", false)),
            b.unlink_blob(&r, &layer),
        );
        // Exactly one order happened: the put first (the unlink is refused) or the unlink
        // first (the put misses its blob).
        match (put, unlink) {
            (Ok(()), Err(MetadataError::StillReferenced { .. })) => {
                assert_eq!(a.blob_size(&r, &d("layer")).await.expect("size"), Some(5));
            }
            (Err(MetadataError::MissingReference { .. }), Ok(true)) => {
                let m = a
                    .manifest(&r, &Reference::Digest(d(&format!("m{round}"))))
                    .await
                    .expect("read");
                assert_eq!(m, None);
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn downloads_and_ratings_from_both_nodes_add_up_in_both_searches() {
    let db = TestDatabase::create().await;
    let (a, b) = two_nodes(&db).await;
    let r = repo("shared/agent");
    a.link_blob(&r, &d("layer"), 5).await.expect("link");
    a.put_manifest(manifest(&r, "m", "latest", false))
        .await
        .expect("put");
    let counts = (0..20).map(|i| {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = r.clone();
        async move { node.add_downloads(vec![(r, 1)]).await }
    });
    for added in futures_util::future::join_all(counts).await {
        added.expect("counted");
    }
    a.rate(&r, "ann", 5).await.expect("rate").expect("listed");
    b.rate(&r, "bob", 2).await.expect("rate").expect("listed");
    let all = Search {
        limit: 10,
        ..Search::default()
    };
    for node in [&a, &b] {
        let page = node.search(&all).await.expect("search");
        assert_eq!(page.total, 1);
        assert_eq!(page.hits[0].downloads, 20);
        assert_eq!(page.hits[0].rating_count, 2);
        assert_eq!(page.hits[0].rating, Some(3.5));
    }
}

/// Everything a reader can see of a store, to compare two stores holding the same registry.
async fn everything<S: MetadataStore + AccessStore>(store: &S) -> Vec<String> {
    let mut seen = Vec::new();
    let repos = store.list_repositories(None, 10_000).await.expect("repos");
    for name in &repos.items {
        let r = repo(name);
        let tags = store.list_tags(&r, None, 10_000).await.expect("tags");
        seen.push(format!("{name} tags {tags:?}"));
        for t in tags.map(|p| p.items).unwrap_or_default() {
            let m = store
                .manifest(&r, &Reference::Tag(t.parse().expect("tag")))
                .await
                .expect("manifest");
            seen.push(format!("{name}:{t} {m:?}"));
        }
        seen.push(format!(
            "{name} agent {:?}",
            store.agent(&r).await.expect("agent")
        ));
        seen.push(format!(
            "{name} quota {:?}",
            store
                .bytes_under(&name.parse().expect("pattern"))
                .await
                .expect("bytes")
        ));
    }
    let mut searches = vec![None];
    for word in ["chat", "sum", "team", "bot", "alice", "agent", "cat"] {
        searches.push(Some(word));
    }
    for text in searches {
        for sort in [
            SortKey::Relevance,
            SortKey::Downloads,
            SortKey::Rating,
            SortKey::Created,
            SortKey::Name,
        ] {
            let page = store
                .search(&Search {
                    text: text.map(str::to_owned),
                    sort,
                    limit: 1000,
                    ..Search::default()
                })
                .await
                .expect("search");
            seen.push(format!("search {text:?} {sort:?} {page:?}"));
        }
    }
    let mut uploads = store.list_uploads().await.expect("uploads");
    uploads.sort_by(|x, y| x.id.cmp(&y.id));
    seen.push(format!("uploads {uploads:?}"));
    seen.push(format!("usage {:?}", store.usage().await.expect("usage")));
    seen.push(format!(
        "principals {:?}",
        store.principals().await.expect("principals")
    ));
    let principals = store.principals().await.expect("principals");
    for p in &principals {
        seen.push(format!("hash {:?}", p.password_hash));
    }
    for t in store.tokens(None).await.expect("tokens") {
        seen.push(format!(
            "token {t:?} {:?} {:?} {:?}",
            t.secret_hash, t.expires_at, t.revoked_at
        ));
    }
    let policy = store.policy().await.expect("policy");
    seen.push(format!("grants {:?} visibility {:?}", policy.grants, {
        let mut v = policy.visibility.clone();
        v.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
        v
    }));
    let log = store
        .access_log(&AccessLogQuery {
            limit: 10_000,
            ..AccessLogQuery::default()
        })
        .await
        .expect("log");
    seen.push(format!("log {log:?}"));
    seen.push(format!(
        "secret {:?}",
        store
            .shared_secret("registry-id", b"other".to_vec())
            .await
            .expect("secret")
    ));
    seen
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn importing_a_sqlite_registry_keeps_everything_and_searches_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("registry.db");
    let sqlite = SqliteStore::open(&path, false).expect("sqlite");
    // The shared suites leave a registry of every kind of record behind.
    crate::suite::run_all(&sqlite).await;
    crate::access_suite::run_all(&sqlite).await;
    sqlite
        .shared_secret("registry-id", b"the-registry".to_vec())
        .await
        .expect("id");
    let expected = everything(&sqlite).await;
    drop(sqlite);

    let db = TestDatabase::create().await;
    let pg = PostgresStore::connect(&db.url, 4).await.expect("connect");
    // A node that started on the empty database already made its own id: the import's wins.
    pg.shared_secret("registry-id", b"a-new-node".to_vec())
        .await
        .expect("id");
    let imported = pg.import_sqlite(&path).await.expect("import");
    assert!(
        imported.rows("manifests") > 0 && imported.rows("principals") > 0,
        "{imported:?}"
    );
    let got = everything(&pg).await;
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(e, g);
    }
    assert_eq!(expected.len(), got.len());

    let again = pg.import_sqlite(&path).await;
    assert!(
        matches!(&again, Err(MetadataError::Backend { cause, .. }) if cause.contains("empty database")),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL on 127.0.0.1:5432: run scripts/test"]
async fn a_blob_being_deleted_on_one_node_holds_commits_of_it_on_another() {
    let db = TestDatabase::create().await;
    let (a, b) = two_nodes(&db).await;
    let deleting = a.guard_blob(&d("x"), true).await.expect("exclusive");
    let wait = std::time::Duration::from_millis(300);
    assert!(
        tokio::time::timeout(wait, b.guard_blob(&d("x"), false))
            .await
            .is_err(),
        "a commit of the same blob waits"
    );
    let other = tokio::time::timeout(wait, b.guard_blob(&d("y"), false)).await;
    assert!(matches!(other, Ok(Ok(_))), "other blobs do not wait");
    let committing = tokio::spawn({
        let b = b.clone();
        async move { b.guard_blob(&d("x"), false).await.map(drop) }
    });
    drop(deleting);
    tokio::time::timeout(std::time::Duration::from_secs(5), committing)
        .await
        .expect("released when dropped")
        .expect("task")
        .expect("shared");
    // Shared guards do not exclude each other.
    let _one = a.guard_blob(&d("x"), false).await.expect("shared");
    let _two = tokio::time::timeout(wait, b.guard_blob(&d("x"), false))
        .await
        .expect("shared with shared")
        .expect("guard");
}

/// With `sslmode=require` the connection is TLS and the server's certificate is verified. The
/// machine's PostgreSQL serves Debian's self-signed certificate for `localhost`, which the
/// system trusts (it sits in /etc/ssl/certs): reached as `localhost` it is accepted; reached
/// as 127.0.0.1, a name it does not carry, it is refused.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs PostgreSQL with TLS on 127.0.0.1:5432: run scripts/test"]
async fn sslmode_require_uses_tls_and_verifies_the_server() {
    let db = TestDatabase::create().await;
    let port = db.address().rsplit(':').next().unwrap_or("5432").to_owned();
    let url = |host: &str| {
        format!(
            "{} host={host} port={port} sslmode=require",
            db.url_via_host()
        )
    };

    let store = PostgresStore::connect_tls(&url("localhost"), 2, None)
        .await
        .expect("TLS to a server whose certificate the system trusts");
    let c = store.client().await.expect("client");
    let on_tls: bool = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(on_tls);
    crate::suite::publish_plain(&store, "tls/agent").await;

    let refused = PostgresStore::connect_tls(&url("127.0.0.1"), 2, None).await;
    let said = format!("{:?}", refused.as_ref().err());
    assert!(
        refused.is_err() && said.contains("certificate"),
        "a certificate for another name is refused: {said}"
    );

    let missing = std::path::Path::new("/nonexistent/ca.pem");
    let said = format!(
        "{:?}",
        PostgresStore::connect_tls(&url("localhost"), 2, Some(missing))
            .await
            .err()
    );
    assert!(said.contains("/nonexistent/ca.pem"), "{said}");
}
