//! OCI archives (`agent save`, `agent load`): a tar of an OCI image layout holding some
//! images, to carry them to a node that cannot reach a registry. `skopeo` reads them as
//! `oci-archive:FILE:TAG`.
//!
//! Saving writes entries in a fixed order with fixed times, so the same images give the same
//! archive. Loading hashes every blob as it is read and stores only what matches its name;
//! names are added after all blobs are in, so an archive cut short adds no image.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};

use agent_registry_oci::{Digest, Hasher, media};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Descriptor, LocalStore, NAME_ANNOTATION, REF_NAME_ANNOTATION};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// Writes the images `entries` name, with everything they reference, as an OCI archive.
pub fn save(store: &LocalStore, entries: &[Descriptor], out: impl Write) -> Result<()> {
    let mut blobs = BTreeSet::new();
    for e in entries {
        blobs.extend(store.closure(&e.digest)?);
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media::OCI_INDEX.to_owned()),
        manifests: entries.to_vec(),
    };
    let io = |e| Error::io("writing the archive", e);
    let mut tar = tar::Builder::new(out);
    tar.mode(tar::HeaderMode::Deterministic);
    let mut add = |path: &str, data: &mut dyn Read, size: u64| {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, data).map_err(io)
    };
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    add("oci-layout", &mut &layout[..], layout.len() as u64)?;
    let index = serde_json::to_vec(&index).unwrap_or_default();
    add("index.json", &mut &index[..], index.len() as u64)?;
    if let Some(missing) = blobs.iter().find(|d| !store.has_blob(d)) {
        return Err(Error::Corrupt {
            root: store.root().to_owned(),
            reason: format!("blob {missing} is missing"),
        });
    }
    for digest in &blobs {
        let path = store.blob_path(digest);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        add(
            &format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex()),
            &mut file,
            size,
        )?;
    }
    tar.into_inner().map_err(io)?.flush().map_err(io)
}

/// Loads an OCI archive into `store`; returns the names it added.
pub fn load(store: &LocalStore, input: impl Read) -> Result<Vec<String>> {
    let _writing = store.write_guard()?;
    let io = |e| Error::io("reading the archive", e);
    let mut archive = tar::Archive::new(input);
    let mut index: Option<Index> = None;
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_owned();
        if path == "index.json" {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io)?;
            index = Some(
                serde_json::from_slice(&bytes).map_err(|e| Error::Unsupported {
                    reference: "the archive".into(),
                    reason: format!("its index.json is not an OCI index: {e}"),
                })?,
            );
        } else if let Some(rest) = path.strip_prefix("blobs/") {
            let digest: Digest =
                rest.replacen('/', ":", 1)
                    .parse()
                    .map_err(|e| Error::Unsupported {
                        reference: "the archive".into(),
                        reason: format!("{path} is not a blob path: {e}"),
                    })?;
            store_blob(store, &digest, &mut entry)?;
        }
    }
    let index = index.ok_or_else(|| Error::Unsupported {
        reference: "the archive".into(),
        reason: "it has no index.json: is it an OCI archive?".into(),
    })?;
    let mut names = Vec::new();
    for entry in index.manifests {
        let complete = store.has_blob(&entry.digest)
            && store
                .closure(&entry.digest)?
                .iter()
                .all(|d| store.has_blob(d));
        if !complete {
            return Err(Error::Unsupported {
                reference: entry.digest.to_string(),
                reason: "the archive lacks some of its blobs".into(),
            });
        }
        let name = name_of(&entry.annotations);
        let descriptor = Descriptor {
            annotations: BTreeMap::new(),
            ..entry
        };
        if let Some(name) = name {
            store.tag(&name, descriptor)?;
            names.push(name);
        }
    }
    Ok(names)
}

/// The name an archive gives an image: the full name if it has one, else its ref name when
/// that is a whole reference.
fn name_of(annotations: &BTreeMap<String, String>) -> Option<String> {
    let raw = annotations
        .get(NAME_ANNOTATION)
        .or_else(|| annotations.get(REF_NAME_ANNOTATION))?;
    raw.parse::<agent_registry_client::ImageRef>()
        .ok()
        .map(|r| r.familiar())
}

/// Copies one blob from the archive into the store, verifying it.
fn store_blob(store: &LocalStore, digest: &Digest, data: &mut dyn Read) -> Result<()> {
    if store.has_blob(digest) {
        return std::io::copy(data, &mut std::io::sink())
            .map(drop)
            .map_err(|e| Error::io("reading the archive", e));
    }
    let ingest = store.ingest(digest)?;
    let partial = &ingest.partial;
    let write = |e| Error::io(format!("writing {}", partial.display()), e);
    let mut file = std::fs::File::create(partial).map_err(write)?;
    let mut hasher = Hasher::new(digest.algorithm());
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = data
            .read(&mut buf)
            .map_err(|e| Error::io("reading the archive", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(write)?;
    }
    file.sync_data().map_err(write)?;
    let actual = hasher.finish();
    if &actual != digest {
        let _ = std::fs::remove_file(partial);
        return Err(Error::Registry(agent_registry_client::Error::Integrity {
            digest: digest.clone(),
            expected: digest.to_string(),
            actual: actual.to_string(),
        }));
    }
    store.commit(ingest, digest)
}
