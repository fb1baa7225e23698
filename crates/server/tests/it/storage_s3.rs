//! The registry with its blobs in S3 (a real s3s-fs server): chunked uploads and redirects of
//! blob GETs to presigned URLs.

use reqwest::StatusCode;
use reqwest::redirect::Policy;

use crate::interop::registry_on_s3;
use crate::support::{assert_error, header, sha256};

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
    let start = reg
        .http
        .post(reg.v2("s3/chunked/blobs/uploads/"))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    let mut location = header(&start, "location").expect("location").to_owned();
    for (from, part) in [(0, &data[..1_000_000]), (1_000_000, &data[1_000_000..])] {
        let r = reg
            .http
            .patch(format!("{}{location}", reg.url))
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{from}-{}", from + part.len() - 1))
            .body(part.to_vec())
            .send()
            .await
            .expect("patch");
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        location = header(&r, "location").expect("location").to_owned();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = reg
        .http
        .put(format!("{}{location}{sep}digest={digest}", reg.url))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = reg
        .http
        .get(reg.v2(&format!("s3/chunked/blobs/{digest}")))
        .send()
        .await
        .expect("get");
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(got.bytes().await.expect("body"), data);
}
