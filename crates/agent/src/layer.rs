//! The agent's files as one reproducible layer: a gzipped tar of the build directory under
//! `/app`, entries sorted by path, owned by root, every mtime the same, `.agentignore`
//! honoured (gitignore syntax). The same files give the same bytes, and so the same digest.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agent_registry_oci::{Algorithm, Digest};
use flate2::{Compression, GzBuilder};

pub const IGNORE_FILE: &str = ".agentignore";
/// Where the agent's files go in the image (and its working directory).
pub const APP_DIR: &str = "app";

/// A layer, compressed in memory (agent sources are small; base images carry the weight).
#[derive(Debug, Clone)]
pub struct Layer {
    pub gzipped: Vec<u8>,
    pub digest: Digest,
    /// The digest of the uncompressed tar: the image config's `diff_id`.
    pub diff_id: Digest,
    pub files: usize,
}

/// The files of `dir` a build includes, sorted: everything but what `.agentignore` excludes,
/// and never `.git`.
pub fn files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let walk = ignore::WalkBuilder::new(dir)
        .standard_filters(false)
        .hidden(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|e| e.file_name() != ".git")
        .sort_by_file_path(Ord::cmp)
        .build();
    for entry in walk {
        let entry = entry.map_err(io::Error::other)?;
        if entry.depth() == 0 {
            continue;
        }
        let path = entry.path();
        let rel = path.strip_prefix(dir).map_err(io::Error::other)?.to_owned();
        files.push(rel);
    }
    files.sort();
    Ok(files)
}

/// Writes the layer of `dir`'s `files` with every timestamp set to `mtime`.
pub fn build_layer(dir: &Path, files: &[PathBuf], mtime: u64) -> io::Result<Layer> {
    let mut tar_bytes = Vec::new();
    {
        let mut tar = tar::Builder::new(&mut tar_bytes);
        tar.mode(tar::HeaderMode::Deterministic);
        append_dir(&mut tar, Path::new(APP_DIR), mtime)?;
        for rel in files {
            let path = dir.join(rel);
            let meta = std::fs::symlink_metadata(&path)?;
            let name = Path::new(APP_DIR).join(rel);
            if meta.is_dir() {
                append_dir(&mut tar, &name, mtime)?;
            } else if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                let mut header = header(tar::EntryType::Symlink, 0o777, 0, mtime);
                tar.append_link(&mut header, &name, &target)?;
            } else if meta.is_file() {
                let mode = if is_executable(&meta) { 0o755 } else { 0o644 };
                let mut header = header(tar::EntryType::Regular, mode, meta.len(), mtime);
                tar.append_data(&mut header, &name, std::fs::File::open(&path)?)?;
            }
        }
        tar.finish()?;
    }
    let diff_id = Digest::of(Algorithm::Sha256, &tar_bytes);
    // No name and a zero time in the gzip header, so the bytes depend on the content only.
    let mut gz = GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), Compression::default());
    gz.write_all(&tar_bytes)?;
    let gzipped = gz.finish()?;
    Ok(Layer {
        digest: Digest::of(Algorithm::Sha256, &gzipped),
        diff_id,
        gzipped,
        files: files.len(),
    })
}

fn header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, name: &Path, mtime: u64) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0, mtime);
    tar.append_data(&mut h, name, io::empty())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::write(p.join("main.py"), "print('hi')\n").expect("write");
        std::fs::create_dir_all(p.join("pkg")).expect("mkdir");
        std::fs::write(p.join("pkg/util.py"), "x = 1\n").expect("write");
        std::fs::create_dir_all(p.join(".git")).expect("mkdir");
        std::fs::write(p.join(".git/HEAD"), "ref\n").expect("write");
        std::fs::write(p.join("secret.env"), "KEY=1\n").expect("write");
        std::fs::write(p.join(IGNORE_FILE), "*.env\n").expect("write");
        dir
    }

    #[test]
    fn ignored_files_and_git_stay_out() {
        let dir = project();
        let files = files(dir.path()).expect("walk");
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        assert_eq!(names, [".agentignore", "main.py", "pkg", "pkg/util.py"]);
    }

    #[test]
    fn the_same_files_give_the_same_digest_whatever_their_times() {
        let dir = project();
        let list = files(dir.path()).expect("walk");
        let a = build_layer(dir.path(), &list, 1_700_000_000).expect("layer");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let f = std::fs::File::options()
            .write(true)
            .open(dir.path().join("main.py"))
            .expect("open");
        f.set_modified(later).expect("touch");
        let b = build_layer(dir.path(), &list, 1_700_000_000).expect("layer");
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.diff_id, b.diff_id);
        std::fs::write(dir.path().join("main.py"), "print('changed')\n").expect("write");
        let c = build_layer(dir.path(), &list, 1_700_000_000).expect("layer");
        assert_ne!(a.digest, c.digest, "content changes the digest");
    }
}
