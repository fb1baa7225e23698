//! OCI archives: what `agent save` writes, `agent load` reads back whole, and a damaged
//! archive adds nothing.

use std::collections::BTreeMap;

use agent_registry_images::archive::{load, save};
use agent_registry_images::{Descriptor, LocalStore};

/// Stores a one-layer image named `name`; returns its descriptor.
fn image(store: &LocalStore, name: &str, layer: &[u8]) -> Descriptor {
    let layer_digest = store.write_blob(layer).expect("layer");
    let config = store
        .write_blob(br#"{"os":"linux","architecture":"amd64"}"#)
        .expect("config");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":37}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
        layer.len()
    );
    let digest = store.write_blob(manifest.as_bytes()).expect("manifest");
    let d = Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest,
        size: manifest.len() as u64,
        annotations: BTreeMap::new(),
    };
    store.tag(name, d.clone()).expect("tag");
    d
}

fn named(store: &LocalStore) -> Vec<(String, String)> {
    store
        .entries()
        .expect("entries")
        .iter()
        .filter_map(|e| Some((e.name()?.to_owned(), e.digest.to_string())))
        .collect()
}

#[test]
fn save_then_load_moves_images_whole_and_the_same_images_give_the_same_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = LocalStore::open(dir.path().join("from")).expect("store");
    image(&from, "registry.local/a:1", b"layer a");
    image(&from, "b:2", b"layer b");
    let entries = from.entries().expect("entries");
    let mut first = Vec::new();
    save(&from, &entries, &mut first).expect("save");
    let mut second = Vec::new();
    save(&from, &entries, &mut second).expect("save again");
    assert_eq!(first, second, "saving is deterministic");

    let to = LocalStore::open(dir.path().join("to")).expect("store");
    let names = load(&to, &first[..]).expect("load");
    assert_eq!(names, ["registry.local/a:1", "b:2"]);
    assert_eq!(named(&to), named(&from));
    for e in &entries {
        for d in from.closure(&e.digest).expect("closure") {
            assert_eq!(
                std::fs::read(to.blob_path(&d)).expect("blob"),
                std::fs::read(from.blob_path(&d)).expect("blob")
            );
        }
    }
}

#[test]
fn a_damaged_archive_adds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let from = LocalStore::open(dir.path().join("from")).expect("store");
    image(&from, "a:1", b"the original layer bytes");
    let mut archive = Vec::new();
    save(&from, &from.entries().expect("entries"), &mut archive).expect("save");
    // Flip bytes of the layer inside the tar: the archive still parses, the blob does not match.
    let at = archive
        .windows(24)
        .position(|w| w == b"the original layer bytes")
        .expect("layer in the archive");
    archive[at] ^= 0xff;

    let to = LocalStore::open(dir.path().join("to")).expect("store");
    let e = load(&to, &archive[..]).expect_err("damaged");
    assert!(e.to_string().contains("failed verification"), "{e}");
    assert!(named(&to).is_empty(), "no name for a damaged image");

    let e = load(&to, &b"not a tar at all, just some words padded out"[..]).expect_err("garbage");
    assert!(!e.to_string().is_empty());
}
