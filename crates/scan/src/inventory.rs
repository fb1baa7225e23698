//! The packages an image installs, read from its layers in order (later layers replace and
//! white out earlier files, as a container's filesystem does):
//!
//! | ecosystem | files |
//! |---|---|
//! | Debian | `var/lib/dpkg/status`, `var/lib/dpkg/status.d/*` (distroless) |
//! | Alpine | `lib/apk/db/installed` |
//! | PyPI | `*.dist-info/METADATA`, `*.egg-info/PKG-INFO`, `*.egg-info` files |
//! | npm | `package-lock.json` (lockfile v1 to v3), `node_modules/**/package.json` |
//! | crates.io | `Cargo.lock` |
//! | Go | `go.sum` (modules whose code was hashed, not only their go.mod); Go executables'
//! embedded build information (Go 1.18 and later): their modules and the standard library
//! (`stdlib`) they were built with |
//!
//! The distribution release comes from `etc/os-release` (or `usr/lib/os-release`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

use crate::osv::Releases;
use crate::{Ecosystem, Package};

/// Package databases larger than this are skipped (none comes near it).
const FILE_MAX: u64 = 64 << 20;
/// Executables larger than this are not searched for Go build information.
const EXECUTABLE_MAX: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("layer {layer}: {source}")]
    Layer {
        layer: usize,
        #[source]
        source: std::io::Error,
    },
}

/// What an image's layers install.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inventory {
    pub packages: Vec<Package>,
    pub releases: Releases,
}

fn interesting(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path == "var/lib/dpkg/status"
        || path.starts_with("var/lib/dpkg/status.d/")
        || path == "lib/apk/db/installed"
        || path == "etc/os-release"
        || path == "usr/lib/os-release"
        || (name == "METADATA" && path.contains(".dist-info/"))
        || (name == "PKG-INFO" && path.contains(".egg-info/"))
        || name.ends_with(".egg-info")
        || name == "package-lock.json"
        || (name == "package.json" && path.contains("node_modules/"))
        || name == "Cargo.lock"
        || name == "go.sum"
}

impl Inventory {
    /// Reads the layers, bottom first; each is a tar stream, gzip- or zstd-compressed or not
    /// (told apart by their magic numbers, as the media type may not say).
    pub fn read_layers<R: Read>(
        layers: impl IntoIterator<Item = R>,
    ) -> Result<Inventory, InventoryError> {
        let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (i, layer) in layers.into_iter().enumerate() {
            let err = |source| InventoryError::Layer { layer: i, source };
            let mut peek = std::io::BufReader::new(layer);
            let head = std::io::BufRead::fill_buf(&mut peek).map_err(err)?;
            let reader: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
                Box::new(flate2::read::GzDecoder::new(peek))
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                // Every frame in turn, skippable ones too (zstd:chunked writes both).
                Box::new(zstd::stream::read::Decoder::with_buffer(peek).map_err(err)?)
            } else {
                Box::new(peek)
            };
            let mut archive = tar::Archive::new(reader);
            for entry in archive.entries().map_err(err)? {
                let mut entry = entry.map_err(err)?;
                let path = entry.path().map_err(err)?.to_string_lossy().into_owned();
                let path = path
                    .trim_start_matches("./")
                    .trim_start_matches('/')
                    .to_owned();
                let (dir, name) = match path.rsplit_once('/') {
                    Some((d, n)) => (format!("{d}/"), n.to_owned()),
                    None => (String::new(), path.clone()),
                };
                if name == ".wh..wh..opq" {
                    files.retain(|p, _| !p.starts_with(&dir));
                    continue;
                }
                if let Some(gone) = name.strip_prefix(".wh.") {
                    let gone = format!("{dir}{gone}");
                    files.retain(|p, _| *p != gone && !p.starts_with(&format!("{gone}/")));
                    continue;
                }
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
                let size = entry.size();
                let wanted = if interesting(&path) {
                    size <= FILE_MAX
                } else {
                    executable && (1024..=EXECUTABLE_MAX).contains(&size)
                };
                if !wanted {
                    files.remove(&path);
                    continue;
                }
                let mut bytes = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut bytes).map_err(err)?;
                if interesting(&path) {
                    files.insert(path, bytes);
                } else {
                    // An executable: only a Go binary's build information is kept.
                    match go_build_info(&bytes) {
                        Some(info) => files.insert(path, info),
                        None => files.remove(&path),
                    };
                }
            }
        }
        Ok(Inventory::of_files(&files))
    }

    /// The packages the given files (path -> contents) describe.
    pub fn of_files(files: &BTreeMap<String, Vec<u8>>) -> Inventory {
        let mut packages = Vec::new();
        let mut releases = Releases::default();
        for (path, bytes) in files {
            let text = String::from_utf8_lossy(bytes);
            let name = path.rsplit('/').next().unwrap_or(path);
            if let Some(info) = bytes.strip_prefix(GO_BUILD_INFO) {
                go_binary(&String::from_utf8_lossy(info), path, &mut packages);
            } else if path.ends_with("os-release") {
                os_release(&text, &mut releases);
            } else if path.starts_with("var/lib/dpkg/status") {
                dpkg(&text, path, &mut packages);
            } else if path == "lib/apk/db/installed" {
                apk(&text, path, &mut packages);
            } else if name == "METADATA" || name == "PKG-INFO" || name.ends_with(".egg-info") {
                python(&text, path, &mut packages);
            } else if name == "package-lock.json" {
                npm_lock(bytes, path, &mut packages);
            } else if name == "package.json" {
                npm_manifest(bytes, path, &mut packages);
            } else if name == "Cargo.lock" {
                cargo_lock(&text, path, &mut packages);
            } else if name == "go.sum" {
                go_sum(&text, path, &mut packages);
            }
        }
        // One entry per package and version, wherever else it was also seen.
        packages.sort();
        let mut seen = BTreeSet::new();
        packages.retain(|p| seen.insert((p.ecosystem, p.name.clone(), p.version.clone())));
        Inventory { packages, releases }
    }
}

fn os_release(text: &str, releases: &mut Releases) {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_owned())
    };
    match field("ID").as_deref() {
        Some("debian") => releases.debian = field("VERSION_ID"),
        Some("alpine") => releases.alpine = field("VERSION_ID"),
        _ => {}
    }
}

/// RFC 822-style paragraphs: `Key: value` lines, continuation lines start with a space.
fn paragraphs(text: &str) -> impl Iterator<Item = BTreeMap<&str, &str>> {
    text.split("\n\n").map(|p| {
        p.lines()
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect()
    })
}

fn dpkg(text: &str, path: &str, out: &mut Vec<Package>) {
    for p in paragraphs(text) {
        let (Some(name), Some(version)) = (p.get("Package"), p.get("Version")) else {
            continue;
        };
        if p.get("Status").is_some_and(|s| !s.ends_with(" installed")) {
            continue;
        }
        // `Source: openssl` or `Source: openssl (3.0.11-1~deb12u1)`.
        let source = p.get("Source").map(|s| match s.split_once(" (") {
            Some((n, v)) => (n.to_owned(), v.trim_end_matches(')').to_owned()),
            None => (s.to_string(), version.to_string()),
        });
        out.push(Package {
            ecosystem: Ecosystem::Debian,
            name: name.to_string(),
            version: version.to_string(),
            source: source.filter(|(n, v)| n != name || v != version),
            path: path.to_owned(),
        });
    }
}

fn apk(text: &str, path: &str, out: &mut Vec<Package>) {
    for block in text.split("\n\n") {
        let field = |key: &str| {
            block
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(str::to_owned)
        };
        let (Some(name), Some(version)) = (field("P"), field("V")) else {
            continue;
        };
        let source = field("o")
            .filter(|o| *o != name)
            .map(|o| (o, version.clone()));
        out.push(Package {
            ecosystem: Ecosystem::Alpine,
            name,
            version,
            source,
            path: path.to_owned(),
        });
    }
}

fn python(text: &str, path: &str, out: &mut Vec<Package>) {
    // The headers end at the first blank line; the description follows.
    let headers = text.split("\n\n").next().unwrap_or_default();
    let field = |key: &str| {
        headers
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    if let (Some(name), Some(version)) = (field("Name"), field("Version")) {
        out.push(Package {
            ecosystem: Ecosystem::PyPI,
            name,
            version,
            source: None,
            path: path.to_owned(),
        });
    }
}

fn npm_package(name: &str, version: &str, path: &str) -> Package {
    Package {
        ecosystem: Ecosystem::Npm,
        name: name.to_owned(),
        version: version.to_owned(),
        source: None,
        path: path.to_owned(),
    }
}

fn npm_lock(bytes: &[u8], path: &str, out: &mut Vec<Package>) {
    let Ok(lock) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    // Lockfile v2 and v3: "packages" keyed by install path; "" is the project itself.
    if let Some(packages) = lock["packages"].as_object() {
        for (key, p) in packages {
            let Some(name) = key.rsplit("node_modules/").next().filter(|n| !n.is_empty()) else {
                continue;
            };
            if let Some(version) = p["version"].as_str()
                && key.contains("node_modules/")
            {
                out.push(npm_package(
                    p["name"].as_str().unwrap_or(name),
                    version,
                    path,
                ));
            }
        }
        return;
    }
    // Lockfile v1: nested "dependencies".
    fn walk(deps: &serde_json::Value, path: &str, out: &mut Vec<Package>) {
        for (name, d) in deps.as_object().into_iter().flatten() {
            if let Some(version) = d["version"].as_str() {
                out.push(npm_package(name, version, path));
            }
            walk(&d["dependencies"], path, out);
        }
    }
    walk(&lock["dependencies"], path, out);
}

fn npm_manifest(bytes: &[u8], path: &str, out: &mut Vec<Package>) {
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return;
    };
    if let (Some(name), Some(version)) = (manifest["name"].as_str(), manifest["version"].as_str()) {
        out.push(npm_package(name, version, path));
    }
}

fn cargo_lock(text: &str, path: &str, out: &mut Vec<Package>) {
    for block in text.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        // Workspace members have no source: they are the project, not a dependency.
        if let (Some(name), Some(version), Some(_)) =
            (field("name"), field("version"), field("source"))
        {
            out.push(Package {
                ecosystem: Ecosystem::CratesIo,
                name,
                version,
                source: None,
                path: path.to_owned(),
            });
        }
    }
}

/// What a Go binary's build information is kept as among the files, before its text.
const GO_BUILD_INFO: &[u8] = b"\0go-build-info\n";

/// The build information Go 1.18+ embeds in executables (`debug/buildinfo`): after the
/// 16-byte-aligned magic `\xff Go buildinf:`, a 32-byte header whose flags byte has bit 2
/// set, then the Go version and the module information as varint-prefixed strings, the latter
/// framed by 16-byte sentinels. Kept as `GO_BUILD_INFO`, the version, a newline, the modules.
fn go_build_info(bytes: &[u8]) -> Option<Vec<u8>> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !bytes.starts_with(b"\x7fELF") {
        return None;
    }
    let at = (0..bytes.len().saturating_sub(32))
        .step_by(16)
        .find(|&i| bytes[i..].starts_with(MAGIC))?;
    let header = &bytes[at..];
    if header[15] & 2 == 0 {
        return None; // Before Go 1.18: pointers into the data segment; not read.
    }
    let (version, rest) = varint_string(&header[32..])?;
    let (modules, _) = varint_string(rest)?;
    let modules = if modules.len() >= 33 && modules[modules.len() - 17] == b'\n' {
        &modules[16..modules.len() - 16]
    } else {
        &[][..]
    };
    Some([GO_BUILD_INFO, version, b"\n", modules].concat())
}

fn varint_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut len, mut shift, mut used) = (0usize, 0u32, 0usize);
    for b in data.iter().take(10) {
        used += 1;
        len |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            let rest = &data[used..];
            return (len <= rest.len()).then(|| rest.split_at(len));
        }
        shift += 7;
    }
    None
}

/// The modules a Go binary was built from (`dep` lines, with `=>` replacements) and the
/// standard library of its Go version.
fn go_binary(info: &str, path: &str, out: &mut Vec<Package>) {
    let mut lines = info.lines();
    let go = |name: &str, version: &str| Package {
        ecosystem: Ecosystem::Go,
        name: name.to_owned(),
        version: version.to_owned(),
        source: None,
        path: path.to_owned(),
    };
    if let Some(version) = lines.next().and_then(|v| v.strip_prefix("go")) {
        // go1.21.3 is stdlib 1.21.3 in OSV's Go database.
        out.push(go("stdlib", version));
    }
    let mut modules: Vec<Package> = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["dep", module, version, ..] => modules.push(go(module, version)),
            ["=>", module, version, ..] => {
                if let Some(last) = modules.last_mut() {
                    *last = go(module, version);
                }
            }
            _ => {}
        }
    }
    out.extend(modules);
}

fn go_sum(text: &str, path: &str, out: &mut Vec<Package>) {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(module), Some(version)) = (parts.next(), parts.next()) else {
            continue;
        };
        if version.ends_with("/go.mod") {
            continue;
        }
        out.push(Package {
            ecosystem: Ecosystem::Go,
            name: module.to_owned(),
            version: version.to_owned(),
            source: None,
            path: path.to_owned(),
        });
    }
}
