//! The daemonless local image store: an OCI image layout that `skopeo`, `umoci` and `oras`
//! can read, with names in `index.json` annotations. Manifests are kept byte for byte as
//! pulled, so their digests hold; Docker schema 2 manifests therefore keep their Docker media
//! types, which skopeo's `oci:` transport skips.
//!
//! ```text
//! <root>/
//!   oci-layout                  {"imageLayoutVersion": "1.0.0"}
//!   index.json                  one descriptor per name; a descriptor with no name is a
//!                               dangling image (its name moved on); `io.containerd.image.name`
//!                               holds the full name, `org.opencontainers.image.ref.name` the tag
//!   blobs/sha256/<hex>          content, verified before it is renamed into place
//!   ingest/<hex>.partial        a download in progress; an interrupted pull resumes from it
//!   ingest/<hex>.lock           held by the process downloading that blob
//!   index.lock                  held while index.json is read, changed and replaced
//!   gc.lock                     shared by every writer for its whole operation; exclusive for
//!                               deleting blobs, so a prune never takes a blob from a pull
//!                               that has not yet named it
//! ```
//!
//! Every change to `index.json` is a whole new file renamed over the old one, so a reader
//! or a crash sees the old index or the new one, never half of either.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use agent_registry_oci::{Algorithm, Digest, media};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const NAME_ANNOTATION: &str = "io.containerd.image.name";
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// A descriptor as `index.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// The full name this entry gives its image, if any.
    pub fn name(&self) -> Option<&str> {
        self.annotations.get(NAME_ANNOTATION).map(String::as_str)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The local store at a directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// Held by a writer (pull, build) for its whole operation; see the module docs.
#[derive(Debug)]
pub struct WriteGuard {
    _lock: File,
}

/// Held while one blob downloads into its partial file.
#[derive(Debug)]
pub struct Ingest {
    pub partial: PathBuf,
    _lock: File,
}

/// What removing images freed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Removed {
    /// Names untagged.
    pub untagged: Vec<String>,
    /// Image manifests deleted, each with the names it had (none for a dangling image).
    pub deleted: Vec<(Digest, Vec<String>)>,
    /// Bytes of blobs and partial downloads deleted.
    pub reclaimed: u64,
}

/// What the store holds and what a prune would free.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Images (distinct manifests) and how many of them have no name.
    pub images: usize,
    pub dangling: usize,
    /// Bytes of verified blobs.
    pub blobs: u64,
    /// Bytes of downloads in progress or abandoned.
    pub partial: u64,
    /// Bytes `agent image prune` would free: blobs only dangling images or nothing reach,
    /// and partial downloads.
    pub reclaimable: u64,
}

impl LocalStore {
    /// Opens the store at `root`, creating the layout if it is not there.
    pub fn open(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        let io = |e| Error::io(format!("creating the local store at {}", root.display()), e);
        fs::create_dir_all(root.join("blobs/sha256")).map_err(io)?;
        fs::create_dir_all(root.join("ingest")).map_err(io)?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;
        }
        let store = LocalStore { root };
        if !store.root.join("index.json").exists() {
            let _lock = store.lock("index.lock", true)?;
            if !store.root.join("index.json").exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Corrupt {
                root: self.root.clone(),
                reason: format!("blob {digest} is missing"),
            },
            _ => Error::io(format!("reading {}", path.display()), e),
        })
    }

    /// Stores small content (a manifest, a config) and returns its sha256 digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(Algorithm::Sha256, bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            let dir = path.parent().unwrap_or(&self.root);
            fs::create_dir_all(dir)
                .and_then(|()| write_atomic(&path, bytes))
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
        Ok(digest)
    }

    /// Takes the shared writer lock; see the module docs.
    pub fn write_guard(&self) -> Result<WriteGuard> {
        Ok(WriteGuard {
            _lock: self.lock("gc.lock", false)?,
        })
    }

    /// Claims the partial file for `digest`, waiting while another process downloads it.
    pub fn ingest(&self, digest: &Digest) -> Result<Ingest> {
        let name = format!("{}-{}", digest.algorithm().as_str(), digest.hex());
        let lock = self.lock(&format!("ingest/{name}.lock"), true)?;
        Ok(Ingest {
            partial: self.root.join(format!("ingest/{name}.partial")),
            _lock: lock,
        })
    }

    /// Moves a verified download into place.
    pub fn commit(&self, ingest: Ingest, digest: &Digest) -> Result<()> {
        let path = self.blob_path(digest);
        let io = |e| Error::io(format!("storing blob {digest}"), e);
        fs::create_dir_all(path.parent().unwrap_or(&self.root)).map_err(io)?;
        fs::rename(&ingest.partial, &path).map_err(io)?;
        sync_dir(path.parent().unwrap_or(&self.root)).map_err(io)?;
        let _ = fs::remove_file(ingest.partial.with_extension("lock"));
        Ok(())
    }

    /// Every entry of the index, in order.
    pub fn entries(&self) -> Result<Vec<Descriptor>> {
        self.read_index()
    }

    /// Names `manifest` as `name` (a familiar reference). The image that held the name before
    /// stays, nameless, if nothing else names it. Returns that image's digest.
    pub fn tag(&self, name: &str, manifest: Descriptor) -> Result<Option<Digest>> {
        self.edit_index(|entries| {
            let previous = entries
                .iter()
                .position(|d| d.name() == Some(name))
                .map(|i| entries.remove(i));
            let mut entry = manifest.clone();
            entry
                .annotations
                .insert(NAME_ANNOTATION.into(), name.into());
            let tag = name
                .rsplit_once(':')
                .map(|(_, t)| t)
                .filter(|t| !t.contains('/') && !name.contains('@'));
            match tag {
                Some(tag) => entry
                    .annotations
                    .insert(REF_NAME_ANNOTATION.into(), tag.into()),
                None => entry.annotations.remove(REF_NAME_ANNOTATION),
            };
            // This image is named now: drop its dangling entry.
            entries.retain(|d| !(d.digest == entry.digest && d.name().is_none()));
            entries.push(entry);
            let previous = previous.filter(|p| p.digest != manifest.digest);
            if let Some(p) = &previous
                && !entries.iter().any(|d| d.digest == p.digest)
            {
                let mut dangling = p.clone();
                dangling.annotations.remove(NAME_ANNOTATION);
                dangling.annotations.remove(REF_NAME_ANNOTATION);
                entries.push(dangling);
            }
            Ok(previous.map(|p| p.digest))
        })
    }

    /// Removes names and images; `select` picks the entries to drop. Blobs nothing names any
    /// more are deleted.
    pub fn remove(&self, select: impl Fn(&Descriptor) -> bool) -> Result<Removed> {
        let _gc = self.lock("gc.lock", true)?;
        // Abandoned downloads go first: on a full disk they are what makes room for the
        // new index.
        let mut removed = Removed {
            reclaimed: self.sweep_partials()?,
            ..Removed::default()
        };
        self.edit_index(|entries| {
            let mut names: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
            entries.retain(|d| {
                if !select(d) {
                    return true;
                }
                let names = names.entry(d.digest.clone()).or_default();
                if let Some(n) = d.name() {
                    removed.untagged.push(n.to_owned());
                    names.push(n.to_owned());
                }
                false
            });
            let after: BTreeSet<&Digest> = entries.iter().map(|d| &d.digest).collect();
            removed.deleted = names
                .into_iter()
                .filter(|(digest, _)| !after.contains(digest))
                .collect();
            Ok(())
        })?;
        removed.reclaimed += self.sweep_blobs()?;
        Ok(removed)
    }

    /// What the store holds, and what a prune of dangling images would free.
    pub fn usage(&self) -> Result<Usage> {
        let entries = self.read_index()?;
        let mut named_live = BTreeSet::new();
        for e in entries.iter().filter(|e| e.name().is_some()) {
            self.reachable(&e.digest, &mut named_live)?;
        }
        let images: BTreeSet<&Digest> = entries.iter().map(|e| &e.digest).collect();
        let named: BTreeSet<&Digest> = entries
            .iter()
            .filter(|e| e.name().is_some())
            .map(|e| &e.digest)
            .collect();
        let mut usage = Usage {
            images: images.len(),
            dangling: images.difference(&named).count(),
            ..Usage::default()
        };
        for (digest, size, _) in self.blob_files()? {
            usage.blobs += size;
            if !digest.is_some_and(|d| named_live.contains(&d)) {
                usage.reclaimable += size;
            }
        }
        for file in self.partial_files()? {
            usage.partial += fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        }
        usage.reclaimable += usage.partial;
        Ok(usage)
    }

    /// Every file under `blobs/` with its digest (if its path is one), size and path.
    fn blob_files(&self) -> Result<Vec<(Option<Digest>, u64, PathBuf)>> {
        let mut out = Vec::new();
        for algorithm in read_dir(&self.root.join("blobs"))? {
            for blob in read_dir(&algorithm)? {
                let name = format!(
                    "{}:{}",
                    algorithm.file_name().unwrap_or_default().to_string_lossy(),
                    blob.file_name().unwrap_or_default().to_string_lossy()
                );
                let size = fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
                out.push((name.parse().ok(), size, blob));
            }
        }
        Ok(out)
    }

    /// Deletes blobs that no index entry reaches. The caller holds the exclusive gc lock.
    fn sweep_blobs(&self) -> Result<u64> {
        let mut live = BTreeSet::new();
        for entry in self.read_index()? {
            self.reachable(&entry.digest, &mut live)?;
        }
        let mut reclaimed = 0;
        for (digest, _, path) in self.blob_files()? {
            if !digest.is_some_and(|d| live.contains(&d)) {
                reclaimed += remove_file(&path)?;
            }
        }
        Ok(reclaimed)
    }

    /// Deletes partial downloads that no process is working on.
    fn sweep_partials(&self) -> Result<u64> {
        let mut reclaimed = 0;
        for file in self.partial_files()? {
            // A download in progress holds its lock; leave it be.
            let lock = file.with_extension("lock");
            let busy = File::options()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .and_then(|f| f.try_lock().map_err(io::Error::other))
                .is_err();
            if !busy {
                reclaimed += remove_file(&file)?;
                let _ = fs::remove_file(&lock);
            }
        }
        Ok(reclaimed)
    }

    /// The partial downloads under `ingest/`, in progress or abandoned.
    fn partial_files(&self) -> Result<Vec<PathBuf>> {
        let mut files = read_dir(&self.root.join("ingest"))?;
        files.retain(|f| f.extension().is_some_and(|e| e == "partial"));
        Ok(files)
    }

    /// `digest` and every blob it references, recursively (whether the store holds them or
    /// not: callers check).
    pub fn closure(&self, digest: &Digest) -> Result<BTreeSet<Digest>> {
        let mut all = BTreeSet::new();
        self.reachable(digest, &mut all)?;
        Ok(all)
    }

    /// Adds `digest` and everything it references to `live`.
    fn reachable(&self, digest: &Digest, live: &mut BTreeSet<Digest>) -> Result<()> {
        if !live.insert(digest.clone()) || !self.has_blob(digest) {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Refs {
            config: Option<Ref>,
            #[serde(default)]
            layers: Vec<Ref>,
            #[serde(default)]
            manifests: Vec<Ref>,
        }
        #[derive(Deserialize)]
        struct Ref {
            digest: Digest,
        }
        let bytes = self.read_blob(digest)?;
        let Ok(refs) = serde_json::from_slice::<Refs>(&bytes) else {
            return Ok(());
        };
        for r in refs.config.into_iter().chain(refs.layers) {
            live.insert(r.digest);
        }
        for m in refs.manifests {
            self.reachable(&m.digest, live)?;
        }
        Ok(())
    }

    fn edit_index<T>(&self, edit: impl FnOnce(&mut Vec<Descriptor>) -> Result<T>) -> Result<T> {
        let _lock = self.lock("index.lock", true)?;
        let mut entries = self.read_index()?;
        let before = entries.clone();
        let out = edit(&mut entries)?;
        if entries != before {
            self.write_index(&entries)?;
        }
        Ok(out)
    }

    fn read_index(&self) -> Result<Vec<Descriptor>> {
        let path = self.root.join("index.json");
        let bytes =
            fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            root: self.root.clone(),
            reason: format!("index.json is not a valid OCI index: {e}"),
        })?;
        Ok(index.manifests)
    }

    fn write_index(&self, entries: &[Descriptor]) -> Result<()> {
        let index = Index {
            schema_version: 2,
            media_type: Some(media::OCI_INDEX.to_owned()),
            manifests: entries.to_vec(),
        };
        let bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
        let path = self.root.join("index.json");
        write_atomic(&path, &bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Locks `<root>/<name>`, exclusively or shared, waiting for other processes.
    fn lock(&self, name: &str, exclusive: bool) -> Result<File> {
        let path = self.root.join(name);
        let io = |e| Error::io(format!("locking {}", path.display()), e);
        let file = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if exclusive {
            file.lock().map_err(io)?;
        } else {
            file.lock_shared().map_err(io)?;
        }
        Ok(file)
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it and renames it into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut file = File::create(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("listing {}", dir.display()), e)),
    }
}

/// Removes a file and returns its size.
fn remove_file(path: &Path) -> Result<u64> {
    let size = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match fs::remove_file(path) {
        Ok(()) => Ok(size),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(store: &LocalStore, layer: &[u8]) -> Descriptor {
        let layer = store.write_blob(layer).expect("layer");
        let config = store.write_blob(b"{}").expect("config");
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":1}}]}}"#,
            media::OCI_MANIFEST
        );
        let digest = store.write_blob(body.as_bytes()).expect("manifest");
        Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest,
            size: body.len() as u64,
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn retagging_leaves_the_old_image_dangling_and_prune_deletes_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path()).expect("open");
        let one = manifest(&store, b"1");
        let two = manifest(&store, b"2");
        assert_eq!(store.tag("a:1", one.clone()).expect("tag"), None);
        assert_eq!(
            store.tag("a:1", two.clone()).expect("retag"),
            Some(one.digest.clone())
        );
        let entries = store.entries().expect("entries");
        assert_eq!(entries.len(), 2);
        assert!(
            entries
                .iter()
                .any(|d| d.digest == one.digest && d.name().is_none())
        );

        let usage = store.usage().expect("usage");
        assert_eq!((usage.images, usage.dangling), (2, 1));
        assert!(
            usage.reclaimable > 0 && usage.reclaimable < usage.blobs,
            "{usage:?}"
        );
        let removed = store.remove(|d| d.name().is_none()).expect("prune");
        assert_eq!(removed.deleted, vec![(one.digest.clone(), Vec::new())]);
        assert!(!store.has_blob(&one.digest));
        assert!(store.has_blob(&two.digest));
        assert_eq!(
            removed.reclaimed, usage.reclaimable,
            "usage predicted the prune"
        );
        // The shared config blob stays: the remaining image uses it.
        assert!(store.has_blob(&Digest::of(Algorithm::Sha256, b"{}")));
    }

    #[test]
    fn a_second_name_keeps_the_image_when_the_first_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path()).expect("open");
        let one = manifest(&store, b"1");
        store.tag("a:1", one.clone()).expect("tag");
        store.tag("b:1", one.clone()).expect("tag");
        let removed = store.remove(|d| d.name() == Some("a:1")).expect("rmi");
        assert_eq!(removed.untagged, vec!["a:1".to_owned()]);
        assert!(removed.deleted.is_empty());
        assert!(store.has_blob(&one.digest));
    }

    #[test]
    fn the_layout_is_an_oci_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalStore::open(dir.path()).expect("open");
        let one = manifest(&store, b"1");
        store.tag("localhost:5000/a:v1", one).expect("tag");
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).expect("read"))
                .expect("json");
        assert_eq!(index["schemaVersion"], 2);
        let a = &index["manifests"][0]["annotations"];
        assert_eq!(a[REF_NAME_ANNOTATION], "v1");
        assert_eq!(a[NAME_ANNOTATION], "localhost:5000/a:v1");
        assert!(dir.path().join("oci-layout").is_file());
    }
}
