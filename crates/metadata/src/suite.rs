//! The behaviour every [`MetadataStore`] backend must show, run by each backend's tests.

use std::collections::BTreeMap;

use agent_registry_oci::{Algorithm, Digest, Reference, RepoName, Tag};
use bytes::Bytes;

use crate::{MetadataError, MetadataStore, NewManifest, RefKind};

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
