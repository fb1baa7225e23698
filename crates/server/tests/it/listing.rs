//! Content discovery: tags list and catalog, with `n`/`last` paging and `Link`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{OCI_MANIFEST, TestRegistry, assert_error, header, image_manifest};

async fn tag_all(reg: &TestRegistry, repo: &str, tags: &[&str]) {
    let config = reg.push_blob(repo, b"{}").await;
    let body = image_manifest(&config, 2, &[], None);
    for tag in tags {
        assert_eq!(
            reg.put_manifest(repo, tag, OCI_MANIFEST, &body)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_is_lexical_and_pages_with_link() {
    let reg = TestRegistry::start().await;
    tag_all(&reg, "list/tags", &["v2", "v10", "latest", "V1", "v1"]).await;
    let all: Value = reg.get_json("list/tags/tags/list").await;
    assert_eq!(
        all,
        json!({"name": "list/tags", "tags": ["V1", "latest", "v1", "v10", "v2"]})
    );

    let r = reg
        .http
        .get(reg.v2("list/tags/tags/list?n=2"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        header(&r, "link"),
        Some("</v2/list/tags/tags/list?last=latest&n=2>; rel=\"next\"")
    );
    let page: Value = r.json().await.expect("json");
    assert_eq!(page["tags"], json!(["V1", "latest"]));

    let r = reg
        .http
        .get(reg.v2("list/tags/tags/list?n=2&last=latest"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        header(&r, "link"),
        Some("</v2/list/tags/tags/list?last=v10&n=2>; rel=\"next\"")
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["tags"],
        json!(["v1", "v10"])
    );
    let r = reg
        .http
        .get(reg.v2("list/tags/tags/list?n=2&last=v1"))
        .send()
        .await
        .expect("get");
    assert!(
        header(&r, "link").is_none(),
        "exactly the last two: no next page"
    );
    assert_eq!(
        r.json::<Value>().await.expect("json")["tags"],
        json!(["v10", "v2"])
    );
    let r = reg
        .http
        .get(reg.v2("list/tags/tags/list?n=5&last=v10"))
        .send()
        .await
        .expect("get");
    assert!(header(&r, "link").is_none(), "no next page");
    assert_eq!(
        r.json::<Value>().await.expect("json")["tags"],
        json!(["v2"])
    );
    assert_eq!(
        reg.get_json("list/tags/tags/list?n=0").await["tags"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_of_an_unknown_repository_are_name_unknown() {
    let reg = TestRegistry::start().await;
    let r = reg
        .http
        .get(reg.v2("never/pushed/tags/list"))
        .send()
        .await
        .expect("get");
    assert_error(r, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_page_sizes_are_rejected() {
    let reg = TestRegistry::start().await;
    tag_all(&reg, "list/bad", &["a"]).await;
    for q in ["n=-1", "n=abc"] {
        let r = reg
            .http
            .get(reg.v2(&format!("list/bad/tags/list?{q}")))
            .send()
            .await
            .expect("get");
        assert_error(r, StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn catalog_lists_repositories_in_order_with_paging() {
    let reg = TestRegistry::start().await;
    for repo in ["zeta", "alpha/one", "alpha/two", "mid"] {
        tag_all(&reg, repo, &["v1"]).await;
    }
    let all: Value = reg.get_json("_catalog").await;
    assert_eq!(
        all,
        json!({"repositories": ["alpha/one", "alpha/two", "mid", "zeta"]})
    );
    let r = reg
        .http
        .get(reg.v2("_catalog?n=3"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        header(&r, "link"),
        Some("</v2/_catalog?last=mid&n=3>; rel=\"next\"")
    );
    let r = reg
        .http
        .get(reg.v2("_catalog?n=3&last=mid"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        r.json::<Value>().await.expect("json")["repositories"],
        json!(["zeta"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_list_reflects_every_change_at_once() {
    let reg = TestRegistry::start().await;
    let list = || async { reg.get_json("list/fresh/tags/list").await["tags"].clone() };
    tag_all(&reg, "list/fresh", &["a"]).await;
    assert_eq!(list().await, json!(["a"]));
    let (_, digest) = reg.push_image("list/fresh", "b", b"layer").await;
    assert_eq!(list().await, json!(["a", "b"]), "a new tag shows");
    let r = reg
        .http
        .delete(reg.v2("list/fresh/manifests/a"))
        .send()
        .await
        .expect("delete tag");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(list().await, json!(["b"]), "a deleted tag goes");
    let r = reg
        .http
        .delete(reg.v2(&format!("list/fresh/manifests/{digest}")))
        .send()
        .await
        .expect("delete manifest");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        list().await,
        json!([]),
        "tags deleted with their manifest go"
    );
}
