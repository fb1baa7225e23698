//! The behaviour every [`BlobStore`] backend must show, run by each backend's tests.

use agent_registry_oci::{Algorithm, Digest};
use bytes::Bytes;
use futures_util::TryStreamExt;

use crate::{BlobStore, StorageError};

async fn collect(store: &dyn BlobStore, digest: &Digest, range: std::ops::Range<u64>) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .read(digest, range)
        .await
        .expect("read opens")
        .try_collect()
        .await
        .expect("read streams");
    chunks.concat()
}

/// Runs every check against `store`, which must be empty.
pub async fn run_all(store: &dyn BlobStore) {
    upload_append_commit_read(store).await;
    commit_with_tail_appends_then_commits(store).await;
    abort_discards(store).await;
    unknown_things_are_reported(store).await;
    probes_leave_nothing_behind(store).await;
}

async fn probes_leave_nothing_behind(store: &dyn BlobStore) {
    let uploads = store.list_uploads().await.expect("list");
    store.probe().await.expect("probe a writable store");
    store.probe().await.expect("probe again");
    assert_eq!(store.list_uploads().await.expect("list"), uploads);
    if let Some(free) = store.available().await.expect("free space") {
        assert!(free > 0, "a store that just wrote has room");
    }
}

async fn upload_append_commit_read(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let digest = Digest::of(Algorithm::Sha256, &data);
    store.begin_upload("u1").await.expect("begin");
    assert_eq!(store.upload_size("u1").await.expect("size"), 0);
    for (i, part) in data.chunks(1_000_000).enumerate() {
        let mut w = store
            .append("u1", i as u64 * 1_000_000)
            .await
            .expect("append");
        for piece in part.chunks(4096) {
            w.write(Bytes::copy_from_slice(piece)).await.expect("write");
        }
        w.finish().await.expect("finish");
    }
    assert_eq!(
        store.upload_size("u1").await.expect("size"),
        data.len() as u64
    );
    // Read back from the start, and from inside a segment (a hash catching up).
    for from in [0, 1_500_000, data.len()] {
        let again: Vec<Bytes> = store
            .read_upload("u1", from as u64)
            .await
            .expect("read upload")
            .try_collect()
            .await
            .expect("stream");
        assert_eq!(again.concat(), &data[from..], "from {from}");
    }
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        None,
        "not visible before commit"
    );
    assert!(store.list_blobs().await.expect("list").is_empty());
    store.commit_upload("u1", &digest).await.expect("commit");
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        Some(data.len() as u64)
    );
    assert_eq!(
        store.list_blobs().await.expect("list"),
        std::slice::from_ref(&digest)
    );
    assert!(matches!(
        store.upload_size("u1").await,
        Err(StorageError::UploadUnknown(_))
    ));
    assert_eq!(collect(store, &digest, 0..data.len() as u64).await, data);
    assert_eq!(
        collect(store, &digest, 10..2_000_000).await,
        &data[10..2_000_000]
    );

    // Committing the same content again is harmless.
    store.begin_upload("u2").await.expect("begin");
    let mut w = store.append("u2", 0).await.expect("append");
    w.write(Bytes::from(data.clone())).await.expect("write");
    w.finish().await.expect("finish");
    store
        .commit_upload("u2", &digest)
        .await
        .expect("second commit");
    assert_eq!(collect(store, &digest, 0..5).await, &data[..5]);

    store.delete(&digest).await.expect("delete");
    assert_eq!(store.stat(&digest).await.expect("stat"), None);
    assert!(store.list_blobs().await.expect("list").is_empty());
    store.delete(&digest).await.expect("deleting twice is fine");
}

/// Writes `data` up to `split` into a new upload `id`, then commits it with the rest as its
/// tail. Returns the blob's digest.
async fn commit_in_two(store: &dyn BlobStore, id: &str, data: &[u8], split: usize) -> Digest {
    let digest = Digest::of(Algorithm::Sha256, data);
    let (head, tail) = data.split_at(split);
    store.begin_upload(id).await.expect("begin");
    let mut w = store.append(id, 0).await.expect("append");
    w.write(Bytes::copy_from_slice(head)).await.expect("write");
    w.finish().await.expect("finish");
    store
        .commit_with_tail(id, split as u64, Bytes::copy_from_slice(tail), &digest)
        .await
        .expect("commit with tail");
    assert_eq!(
        store.stat(&digest).await.expect("stat"),
        Some(data.len() as u64)
    );
    assert!(matches!(
        store.upload_size(id).await,
        Err(StorageError::UploadUnknown(_))
    ));
    assert_eq!(collect(store, &digest, 0..data.len() as u64).await, data);
    digest
}

/// A last chunk held in memory goes in with the commit; one aimed past the upload's end is
/// refused and commits nothing.
async fn commit_with_tail_appends_then_commits(store: &dyn BlobStore) {
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = commit_in_two(store, "t1", &data, 60_000).await;
    // A small range inside, and a range crossing the small-read size.
    assert_eq!(
        collect(store, &digest, 59_990..60_010).await,
        &data[59_990..60_010]
    );
    assert_eq!(collect(store, &digest, 1..70_001).await, &data[1..70_001]);
    store.delete(&digest).await.expect("delete");

    // After an upload larger than an S3 part, where the tail cannot join one PUT.
    let big: Vec<u8> = (0..9u32 << 20).map(|i| (i % 241) as u8).collect();
    let digest = commit_in_two(store, "t2", &big, big.len() - 1000).await;
    store.delete(&digest).await.expect("delete");

    let other = Digest::of(Algorithm::Sha256, b"misplaced");
    store.begin_upload("t3").await.expect("begin");
    let r = store
        .commit_with_tail("t3", 7, Bytes::from_static(b"misplaced"), &other)
        .await;
    assert!(matches!(r, Err(StorageError::UploadMoved { .. })), "{r:?}");
    assert_eq!(store.stat(&other).await.expect("stat"), None);
    store.abort_upload("t3").await.expect("abort");
}

async fn abort_discards(store: &dyn BlobStore) {
    store.begin_upload("u3").await.expect("begin");
    let mut w = store.append("u3", 0).await.expect("append");
    w.write(Bytes::from_static(b"abc")).await.expect("write");
    w.finish().await.expect("finish");
    assert!(
        store
            .list_uploads()
            .await
            .expect("list")
            .contains(&"u3".to_owned())
    );
    store.abort_upload("u3").await.expect("abort");
    assert!(
        !store
            .list_uploads()
            .await
            .expect("list")
            .contains(&"u3".to_owned())
    );
    store
        .abort_upload("u3")
        .await
        .expect("aborting twice is fine");
}

async fn unknown_things_are_reported(store: &dyn BlobStore) {
    let missing = Digest::of(Algorithm::Sha256, b"missing");
    assert!(matches!(
        store.read(&missing, 0..1).await,
        Err(StorageError::BlobUnknown(_))
    ));
    assert!(matches!(
        store.append("nope", 0).await,
        Err(StorageError::UploadUnknown(_))
    ));
    assert!(matches!(
        store.commit_upload("nope", &missing).await,
        Err(StorageError::UploadUnknown(_))
    ));
}
