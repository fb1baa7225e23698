//! The behaviour every [`MetadataStore`] backend must show, run by each backend's tests.

use std::collections::BTreeMap;

use agent_registry_oci::catalogue::{AgentInfo, SortKey};
use agent_registry_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use bytes::Bytes;

use crate::{Listing, MetadataError, MetadataStore, NewManifest, RefKind, Search};

fn d(s: &str) -> Digest {
    Digest::of(Algorithm::Sha256, s.as_bytes())
}

fn repo(s: &str) -> RepoName {
    s.parse().expect("valid repo")
}

fn tag(s: &str) -> Tag {
    s.parse().expect("valid tag")
}

fn manifest(
    r: &RepoName,
    name: &str,
    blobs: Vec<Digest>,
    manifests: Vec<Digest>,
    t: Option<&str>,
) -> NewManifest {
    NewManifest {
        repo: r.clone(),
        digest: d(name),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: Some("application/x.test".into()),
        subject: None,
        content: Bytes::from(name.to_owned()),
        blobs,
        manifests,
        annotations: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
        tag: t.map(tag),
        listing: Listing::default(),
        pushed_by: None,
        tag_immutable: false,
    }
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &dyn MetadataStore) {
    blobs_are_scoped_to_repositories(store).await;
    manifests_need_their_references(store).await;
    tags_and_repositories_page_in_lexical_order(store).await;
    referenced_content_cannot_be_deleted(store).await;
    referrers_filter_by_artifact_type(store).await;
    uploads_are_recorded(store).await;
    concurrent_writes_fail_alone(store).await;
    catalogue_follows_tags(store).await;
    catalogue_searches_filters_and_pages(store).await;
    downloads_and_ratings_add_up(store).await;
    immutable_tags_do_not_move(store).await;
    usage_counts_what_is_held(store).await;
    repeated_reads_follow_every_write(store).await;
}

/// Pulls read the same blob sizes and manifests over and over; each read after a write, even
/// one that read the same key just before, sees that write.
async fn repeated_reads_follow_every_write(store: &dyn MetadataStore) {
    let r = repo("repeat/agent");
    let (blob, v1) = (d("repeat-blob"), Reference::Tag(tag("v1")));
    let size = async || store.blob_size(&r, &blob).await.expect("size");
    let tagged = async || {
        store
            .manifest(&r, &v1)
            .await
            .expect("get")
            .map(|m| m.digest)
    };
    let by_digest = async |name: &str| {
        store
            .manifest(&r, &Reference::Digest(d(name)))
            .await
            .expect("get")
            .is_some()
    };

    assert_eq!((size().await, size().await), (None, None));
    store.link_blob(&r, &blob, 7).await.expect("link");
    assert_eq!((size().await, size().await), (Some(7), Some(7)));

    assert_eq!(tagged().await, None);
    store
        .put_manifest(manifest(
            &r,
            "repeat-1",
            vec![blob.clone()],
            vec![],
            Some("v1"),
        ))
        .await
        .expect("put");
    assert_eq!(tagged().await, Some(d("repeat-1")));
    store
        .put_manifest(manifest(
            &r,
            "repeat-2",
            vec![blob.clone()],
            vec![],
            Some("v1"),
        ))
        .await
        .expect("put");
    assert_eq!(tagged().await, Some(d("repeat-2")), "the tag moved");
    assert!(store.delete_tag(&r, &tag("v1")).await.expect("untag"));
    assert_eq!(tagged().await, None);

    for name in ["repeat-1", "repeat-2"] {
        assert!(by_digest(name).await);
        assert!(store.delete_manifest(&r, &d(name)).await.expect("delete"));
        assert!(!by_digest(name).await, "{name} deleted");
    }
    assert!(store.unlink_blob(&r, &blob).await.expect("unlink"));
    assert_eq!(size().await, None);
}

async fn usage_counts_what_is_held(store: &dyn MetadataStore) {
    let before = store.usage().await.expect("usage");
    store
        .link_blob(&repo("usage/new"), &d("usage-blob"), 7)
        .await
        .expect("link");
    store
        .create_upload("usage-upload", &repo("usage/new"))
        .await
        .expect("upload");
    let after = store.usage().await.expect("usage");
    assert_eq!(
        after,
        crate::Held {
            repositories: before.repositories + 1,
            blobs: before.blobs + 1,
            blob_bytes: before.blob_bytes + 7,
            uploads: before.uploads + 1,
        }
    );
    store.delete_upload("usage-upload").await.expect("delete");
    assert_eq!(store.usage().await.expect("usage").uploads, before.uploads);

    // Quotas count each blob once however many repositories under the pattern link it.
    store
        .link_blob(&repo("usage/other"), &d("usage-blob"), 7)
        .await
        .expect("link");
    let under = |p: &str| {
        let pattern: agent_registry_oci::RepoPattern = p.parse().expect("pattern");
        async move { store.bytes_under(&pattern).await.expect("bytes under") }
    };
    assert_eq!(under("usage/*").await, 7);
    assert_eq!(under("usage/new").await, 7);
    assert_eq!(under("usage/none").await, 0);
    assert_eq!(under("usag/*").await, 0, "a prefix is a whole path part");
    let holds = |p: &str| {
        let pattern: agent_registry_oci::RepoPattern = p.parse().expect("pattern");
        async move {
            store
                .holds_under(&pattern, &d("usage-blob"))
                .await
                .expect("holds")
        }
    };
    assert!(holds("usage/*").await);
    assert!(holds("usage/other").await);
    assert!(!holds("elsewhere/*").await);
}

/// Pushes a one-blob manifest named `name` with `listing` under `tags` of `r`.
async fn publish(store: &dyn MetadataStore, r: &str, name: &str, listing: Listing, tags: &[&str]) {
    let r = repo(r);
    store.link_blob(&r, &d("cat-layer"), 1).await.expect("link");
    for t in tags {
        let mut m = manifest(&r, name, vec![d("cat-layer")], vec![], Some(t));
        m.listing = listing.clone();
        m.pushed_by = Some("tester".into());
        store.put_manifest(m).await.expect("put");
    }
}

/// Publishes `name:latest` with an empty listing.
pub(crate) async fn publish_plain(store: &dyn MetadataStore, name: &str) {
    publish(store, name, name, Listing::default(), &["latest"]).await;
}

fn listing(description: &str, author: &str, caps: &[&str], created: i64, size: u64) -> Listing {
    Listing {
        info: AgentInfo {
            description: Some(description.into()),
            author: Some(author.into()),
            capabilities: caps.iter().map(|c| (*c).to_owned()).collect(),
            ..AgentInfo::default()
        },
        created,
        size,
    }
}

fn names(page: &crate::SearchPage) -> Vec<String> {
    page.hits
        .iter()
        .map(|h| format!("{}:{}", h.name, h.tag))
        .collect()
}

async fn catalogue_follows_tags(store: &dyn MetadataStore) {
    let one = listing("first cut", "Ann", &["chat"], 100, 10);
    let two = listing("second cut", "Ann", &["chat"], 200, 20);
    publish(store, "follow/agent", "f1", one, &["1.0.0", "dev"]).await;
    let search = |text: &str| Search {
        text: Some(text.into()),
        limit: 10,
        ..Search::default()
    };
    let page = store.search(&search("follow")).await.expect("search");
    assert_eq!(
        names(&page),
        ["follow/agent:1.0.0"],
        "a release beats other tags"
    );
    publish(store, "follow/agent", "f2", two, &["1.1.0-rc.1", "latest"]).await;
    let page = store.search(&search("follow")).await.expect("search");
    assert_eq!(
        names(&page),
        ["follow/agent:latest"],
        "latest is shown when present"
    );
    assert_eq!(page.hits[0].description.as_deref(), Some("second cut"));
    assert!(
        store
            .search(&search("first"))
            .await
            .expect("search")
            .hits
            .is_empty(),
        "old text is gone"
    );

    let agent = store
        .agent(&repo("follow/agent"))
        .await
        .expect("agent")
        .expect("listed");
    let tags: Vec<&str> = agent.tags.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["1.1.0-rc.1", "1.0.0", "dev", "latest"]);
    assert_eq!(agent.tags[0].pushed_by.as_deref(), Some("tester"));
    assert_eq!(agent.listing.size, 20);

    // A new tag on a shown manifest changes no listing, but a search by that tag finds it.
    let by_tag = Search {
        tag: Some("stable".into()),
        limit: 10,
        ..Search::default()
    };
    assert!(store.search(&by_tag).await.expect("search").hits.is_empty());
    publish(store, "follow/agent", "f2", Listing::default(), &["stable"]).await;
    let page = store.search(&by_tag).await.expect("search");
    assert_eq!(names(&page), ["follow/agent:stable"]);

    for t in ["latest", "1.1.0-rc.1", "1.0.0", "dev", "stable"] {
        store
            .delete_tag(&repo("follow/agent"), &tag(t))
            .await
            .expect("untag");
    }
    assert!(
        store
            .search(&search("follow"))
            .await
            .expect("search")
            .hits
            .is_empty()
    );
    assert!(
        store
            .agent(&repo("follow/agent"))
            .await
            .expect("agent")
            .is_none()
    );
}

async fn catalogue_searches_filters_and_pages(store: &dyn MetadataStore) {
    publish(
        store,
        "find/chat-bot",
        "c1",
        listing(
            "A friendly chat assistant",
            "Ann Lee <ann@example.com>",
            &["chat", "text-generation"],
            1000,
            5_000_000,
        ),
        &["1.0.0", "latest"],
    )
    .await;
    publish(
        store,
        "find/summarizer",
        "c2",
        listing(
            "Summarizes long documents",
            "Bob",
            &["summarization"],
            2000,
            50_000_000,
        ),
        &["2.0.0"],
    )
    .await;
    publish(
        store,
        "find/chat",
        "c3",
        listing("Minimal echo agent", "Cy", &["chat"], 3000, 1_000),
        &["dev"],
    )
    .await;
    let base = Search {
        text: Some("find".into()),
        limit: 10,
        ..Search::default()
    };
    let run = |s: Search| async move { store.search(&s).await.expect("search") };

    let page = run(Search {
        text: Some("chat".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(
        names(&page),
        ["find/chat:dev", "find/chat-bot:latest"],
        "exact name first"
    );
    let page = run(Search {
        text: Some("documents".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(
        names(&page),
        ["find/summarizer:2.0.0"],
        "description words match"
    );
    let page = run(Search {
        text: Some("summ".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(
        names(&page),
        ["find/summarizer:2.0.0"],
        "partial names match"
    );
    let page = run(Search {
        capability: Some("CHAT".into()),
        sort: SortKey::Name,
        ..base.clone()
    })
    .await;
    assert_eq!(names(&page), ["find/chat:dev", "find/chat-bot:latest"]);
    let page = run(Search {
        author: Some("ann lee".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(names(&page), ["find/chat-bot:latest"]);
    let page = run(Search {
        author: Some("%".into()),
        ..base.clone()
    })
    .await;
    assert!(page.hits.is_empty(), "author wildcards are literal");
    let page = run(Search {
        size_min: Some(10_000_000),
        ..base.clone()
    })
    .await;
    assert_eq!(names(&page), ["find/summarizer:2.0.0"]);
    assert_eq!(page.hits[0].size, "50MB");
    let page = run(Search {
        created_after: Some(1500),
        created_before: Some(2500),
        ..base.clone()
    })
    .await;
    assert_eq!(names(&page), ["find/summarizer:2.0.0"]);
    let page = run(Search {
        sort: SortKey::Created,
        ..base.clone()
    })
    .await;
    assert_eq!(
        names(&page),
        [
            "find/chat:dev",
            "find/summarizer:2.0.0",
            "find/chat-bot:latest"
        ]
    );
    let page = run(Search {
        sort: SortKey::Name,
        offset: 1,
        limit: 1,
        ..base.clone()
    })
    .await;
    assert_eq!(
        (names(&page), page.total),
        (vec!["find/chat-bot:latest".to_owned()], 3)
    );
    let page = run(Search {
        tag: Some("1.0.0".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(
        names(&page),
        ["find/chat-bot:1.0.0"],
        "a tag filter shows that tag"
    );
    let page = run(Search {
        name: Some("find/chat".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(names(&page), ["find/chat:dev"]);
    let page = run(Search {
        text: Some("\"*)(".into()),
        ..base.clone()
    })
    .await;
    assert_eq!(
        page.total, 0,
        "punctuation alone matches nothing and is no error"
    );
}

async fn downloads_and_ratings_add_up(store: &dyn MetadataStore) {
    publish(store, "rank/a", "r1", Listing::default(), &["latest"]).await;
    publish(store, "rank/b", "r2", Listing::default(), &["latest"]).await;
    store
        .add_downloads(vec![(repo("rank/b"), 3), (repo("rank/a"), 1)])
        .await
        .expect("count");
    store
        .add_downloads(vec![(repo("rank/b"), 1)])
        .await
        .expect("count");
    let search = |sort| Search {
        text: Some("rank".into()),
        sort,
        limit: 10,
        ..Search::default()
    };
    let page = store
        .search(&search(SortKey::Downloads))
        .await
        .expect("search");
    assert_eq!(names(&page), ["rank/b:latest", "rank/a:latest"]);
    assert_eq!(page.hits[0].downloads, 4);

    assert_eq!(
        store.rate(&repo("rank/a"), "ann", 5).await.expect("rate"),
        Some((5, 1))
    );
    assert_eq!(
        store.rate(&repo("rank/a"), "bob", 3).await.expect("rate"),
        Some((8, 2))
    );
    assert_eq!(
        store.rate(&repo("rank/a"), "ann", 4).await.expect("rate"),
        Some((7, 2)),
        "a second rating replaces the first"
    );
    assert_eq!(
        store.rate(&repo("rank/b"), "ann", 2).await.expect("rate"),
        Some((2, 1))
    );
    assert_eq!(
        store
            .rate(&repo("rank/none"), "ann", 2)
            .await
            .expect("rate"),
        None
    );
    let page = store
        .search(&search(SortKey::Rating))
        .await
        .expect("search");
    assert_eq!(names(&page), ["rank/a:latest", "rank/b:latest"]);
    assert_eq!(
        (page.hits[0].rating, page.hits[0].rating_count),
        (Some(3.5), 2)
    );
}

async fn immutable_tags_do_not_move(store: &dyn MetadataStore) {
    let r = repo("frozen/agent");
    store.link_blob(&r, &d("l"), 1).await.expect("link");
    let put = |name: &str| {
        let mut m = manifest(&r, name, vec![d("l")], vec![], Some("1.0.0"));
        m.tag_immutable = true;
        m
    };
    store.put_manifest(put("i1")).await.expect("first push");
    store
        .put_manifest(put("i1"))
        .await
        .expect("the same manifest again is fine");
    let err = store
        .put_manifest(put("i2"))
        .await
        .expect_err("moving is refused");
    assert!(matches!(err, MetadataError::TagImmutable { .. }), "{err}");
    let got = store
        .manifest(&r, &Reference::Tag(tag("1.0.0")))
        .await
        .expect("get")
        .expect("still there");
    assert_eq!(got.digest, d("i1"));
}

async fn blobs_are_scoped_to_repositories(store: &dyn MetadataStore) {
    let (a, b) = (repo("scope/a"), repo("scope/b"));
    store.link_blob(&a, &d("blob"), 4).await.expect("link");
    assert_eq!(
        store.blob_size(&a, &d("blob")).await.expect("size"),
        Some(4)
    );
    assert_eq!(store.blob_size(&b, &d("blob")).await.expect("size"), None);
    assert_eq!(
        store.blob_size_anywhere(&d("blob")).await.expect("size"),
        Some(4)
    );
    assert!(store.unlink_blob(&a, &d("blob")).await.expect("unlink"));
    assert!(
        !store
            .unlink_blob(&a, &d("blob"))
            .await
            .expect("unlink again")
    );
    assert!(
        !store
            .blob_linked_anywhere(&d("blob"))
            .await
            .expect("linked")
    );
}

async fn manifests_need_their_references(store: &dyn MetadataStore) {
    let r = repo("refs");
    let err = store
        .put_manifest(manifest(&r, "m1", vec![d("layer")], vec![], Some("v1")))
        .await;
    assert!(
        matches!(
            err,
            Err(MetadataError::MissingReference {
                kind: RefKind::Blob,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        store
            .manifest(&r, &Reference::Tag(tag("v1")))
            .await
            .expect("get")
            .is_none(),
        "nothing half-stored"
    );

    store.link_blob(&r, &d("layer"), 1).await.expect("link");
    store
        .put_manifest(manifest(&r, "m1", vec![d("layer")], vec![], Some("v1")))
        .await
        .expect("put");
    let got = store
        .manifest(&r, &Reference::Tag(tag("v1")))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (got.digest.clone(), &got.content[..]),
        (d("m1"), &b"m1"[..])
    );
    assert_eq!(
        store
            .manifest(&r, &Reference::Digest(d("m1")))
            .await
            .expect("get"),
        Some(got)
    );

    let err = store
        .put_manifest(manifest(&r, "idx", vec![], vec![d("absent")], None))
        .await;
    assert!(matches!(
        err,
        Err(MetadataError::MissingReference {
            kind: RefKind::Manifest,
            ..
        })
    ));
    store
        .put_manifest(manifest(&r, "idx", vec![], vec![d("m1")], Some("v1")))
        .await
        .expect("index");
    let moved = store
        .manifest(&r, &Reference::Tag(tag("v1")))
        .await
        .expect("get")
        .expect("found");
    assert_eq!(moved.digest, d("idx"), "tag moved to the index");
    assert_eq!(
        store.parents(&r, &d("m1")).await.expect("parents"),
        vec![d("idx")]
    );
    assert!(
        store
            .parents(&r, &d("idx"))
            .await
            .expect("parents")
            .is_empty()
    );
}

async fn tags_and_repositories_page_in_lexical_order(store: &dyn MetadataStore) {
    let r = repo("paging");
    store.link_blob(&r, &d("l"), 1).await.expect("link");
    for t in ["b", "a", "C", "c", "a1"] {
        store
            .put_manifest(manifest(&r, t, vec![d("l")], vec![], Some(t)))
            .await
            .expect("put");
    }
    let first = store
        .list_tags(&r, None, 2)
        .await
        .expect("list")
        .expect("repo exists");
    assert_eq!(
        (first.items.as_slice(), first.more),
        (&["C".to_owned(), "a".to_owned()][..], true)
    );
    let rest = store
        .list_tags(&r, Some("a"), 10)
        .await
        .expect("list")
        .expect("repo exists");
    assert_eq!(
        (rest.items, rest.more),
        (vec!["a1".to_owned(), "b".into(), "c".into()], false)
    );
    assert!(
        store
            .list_tags(&repo("never/pushed"), None, 10)
            .await
            .expect("list")
            .is_none()
    );
    let repos = store
        .list_repositories(Some("paging"), 1)
        .await
        .expect("repos");
    assert_eq!(repos.items, vec!["refs".to_owned()]);
    assert!(repos.more);
}

async fn referenced_content_cannot_be_deleted(store: &dyn MetadataStore) {
    let r = repo("refs");
    let err = store.unlink_blob(&r, &d("layer")).await;
    assert!(
        matches!(err, Err(MetadataError::StillReferenced { .. })),
        "{err:?}"
    );
    let err = store.delete_manifest(&r, &d("m1")).await;
    assert!(
        matches!(err, Err(MetadataError::StillReferenced { .. })),
        "child of an index"
    );
    assert!(
        store
            .delete_manifest(&r, &d("idx"))
            .await
            .expect("delete index")
    );
    assert!(
        store
            .manifest(&r, &Reference::Tag(tag("v1")))
            .await
            .expect("get")
            .is_none(),
        "its tags went with it"
    );
    assert!(
        store
            .delete_manifest(&r, &d("m1"))
            .await
            .expect("delete child")
    );
    assert!(store.unlink_blob(&r, &d("layer")).await.expect("now free"));
    assert!(!store.delete_manifest(&r, &d("m1")).await.expect("gone"));
}

async fn referrers_filter_by_artifact_type(store: &dyn MetadataStore) {
    let r = repo("referrers");
    store.link_blob(&r, &d("cfg"), 1).await.expect("link");
    for (name, at) in [("sig", "application/x.sig"), ("sbom", "application/x.sbom")] {
        let mut m = manifest(&r, name, vec![d("cfg")], vec![], None);
        m.subject = Some(d("subject"));
        m.artifact_type = Some(at.to_owned());
        store.put_manifest(m).await.expect("put");
    }
    assert_eq!(
        store
            .referrers(&r, &d("subject"), None)
            .await
            .expect("all")
            .len(),
        2
    );
    let sboms = store
        .referrers(&r, &d("subject"), Some("application/x.sbom"))
        .await
        .expect("filtered");
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].digest, d("sbom"));
    assert_eq!(sboms[0].annotations.get("k").map(String::as_str), Some("v"));
    assert!(
        store
            .referrers(&repo("elsewhere"), &d("subject"), None)
            .await
            .expect("none")
            .is_empty()
    );
}

async fn uploads_are_recorded(store: &dyn MetadataStore) {
    let r = repo("up");
    store.create_upload("id-1", &r).await.expect("create");
    assert_eq!(
        store.upload("id-1").await.expect("get").map(|u| u.repo),
        Some(r)
    );
    assert_eq!(store.list_uploads().await.expect("list").len(), 1);
    store.delete_upload("id-1").await.expect("delete");
    assert!(store.upload("id-1").await.expect("get").is_none());

    let r2 = repo("up/finished");
    store.create_upload("id-2", &r2).await.expect("create");
    store
        .finish_upload("id-2", &r2, &d("finished"), 8)
        .await
        .expect("finish");
    assert!(
        store.upload("id-2").await.expect("get").is_none(),
        "record gone"
    );
    assert_eq!(
        store.blob_size(&r2, &d("finished")).await.expect("size"),
        Some(8),
        "blob linked"
    );
}

/// Many writes at once (which a backend may commit together): those that fail leave nothing
/// behind, and do not take the others down with them.
async fn concurrent_writes_fail_alone(store: &dyn MetadataStore) {
    let r = repo("concurrent");
    store.link_blob(&r, &d("present"), 1).await.expect("link");
    let writes = (0..64).map(|i| {
        let blob = if i % 3 == 0 {
            d("absent")
        } else {
            d("present")
        };
        let name = format!("m{i}");
        let tag = format!("t{i}");
        let m = manifest(&r, &name, vec![blob], vec![], Some(&tag));
        async move { (i, store.put_manifest(m).await) }
    });
    for (i, result) in futures_util::future::join_all(writes).await {
        let stored = store
            .manifest(&r, &Reference::Tag(tag(&format!("t{i}"))))
            .await
            .expect("get");
        if i % 3 == 0 {
            assert!(
                matches!(result, Err(MetadataError::MissingReference { .. })),
                "write {i}: {result:?}"
            );
            assert!(stored.is_none(), "failed write {i} left nothing");
        } else {
            result.expect("valid write commits");
            assert_eq!(
                stored.map(|m| m.digest),
                Some(d(&format!("m{i}"))),
                "write {i} committed"
            );
        }
    }
}
