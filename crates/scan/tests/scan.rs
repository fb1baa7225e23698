//! Scanning images the test builds (package metadata only, no binaries) against the shipped
//! OSV fixture: the known-vulnerable Debian, Python and npm packages are found with the right
//! advisories and fixes, whited-out files are not, and an image without packages is clean.

use std::path::Path;

use agent_registry_scan::inventory::Inventory;
use agent_registry_scan::osv::Database;
use agent_registry_scan::report::{Report, cyclonedx};
use agent_registry_scan::{Ecosystem, Severity};

/// An uncompressed tar holding `files` (path, contents).
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, path, contents.as_bytes())
            .expect("append");
    }
    builder.into_inner().expect("tar")
}

/// A gzip-compressed tar layer holding `files` (path, contents).
fn layer(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write as _;
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&tar_of(files)).expect("gzip");
    gzip.finish().expect("gzip")
}

fn database() -> Database {
    Database::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv"))
        .expect("the fixture loads")
}

const DPKG_STATUS: &str = "Package: bash
Status: install ok installed
Version: 5.2.15-2+b2

Package: libssl3
Status: install ok installed
Source: openssl
Version: 3.0.11-1~deb12u1
Description: Secure Sockets Layer toolkit
 continuation line: Version: 9.9

Package: removed-pkg
Status: deinstall ok config-files
Version: 1.0
";

#[test]
fn a_vulnerable_image_is_found_with_the_right_advisories() {
    let base = layer(&[
        (
            "etc/os-release",
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
        ),
        ("var/lib/dpkg/status", DPKG_STATUS),
        (
            "usr/lib/python3/dist-packages/urllib3-2.0.4.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: urllib3\nVersion: 2.0.4\n",
        ),
    ]);
    let app = layer(&[
        (
            "usr/local/lib/python3.11/site-packages/requests-2.30.0.dist-info/METADATA",
            "Metadata-Version: 2.1\nName: Requests\nVersion: 2.30.0\n\nName: not-a-header\n",
        ),
        // The app layer removes urllib3 again.
        (
            "usr/lib/python3/dist-packages/.wh.urllib3-2.0.4.dist-info",
            "",
        ),
        (
            "app/node_modules/minimist/package.json",
            r#"{"name": "minimist", "version": "1.2.5"}"#,
        ),
        (
            "app/package-lock.json",
            r#"{"lockfileVersion": 3, "packages": {"": {"name": "app"},
            "node_modules/minimist": {"version": "1.2.5"}, "node_modules/left-pad": {"version": "1.3.0"}}}"#,
        ),
    ]);
    let inventory = Inventory::read_layers([base.as_slice(), app.as_slice()]).expect("layers");
    assert_eq!(inventory.releases.debian.as_deref(), Some("12"));
    let names: Vec<(Ecosystem, &str, &str)> = inventory
        .packages
        .iter()
        .map(|p| (p.ecosystem, p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            (Ecosystem::Debian, "bash", "5.2.15-2+b2"),
            (Ecosystem::Debian, "libssl3", "3.0.11-1~deb12u1"),
            (Ecosystem::PyPI, "Requests", "2.30.0"),
            (Ecosystem::Npm, "left-pad", "1.3.0"),
            (Ecosystem::Npm, "minimist", "1.2.5"),
        ],
        "urllib3 was whited out and removed-pkg is not installed"
    );

    let db = database();
    assert_eq!(db.len(), 4, "the withdrawn advisory is left out");
    let findings = db.scan(&inventory.packages, &inventory.releases);
    let found: Vec<(&str, &str, Severity, Option<&str>)> = findings
        .iter()
        .map(|f| {
            (
                f.advisory.as_str(),
                f.package.as_str(),
                f.severity,
                f.fixed.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "GHSA-xvch-5gv4-984h",
                "minimist",
                Severity::Critical,
                Some("1.2.6")
            ),
            (
                "DSA-5532-1",
                "libssl3",
                Severity::High,
                Some("3.0.11-1~deb12u2")
            ),
            (
                "GHSA-j8r2-6x86-q33q",
                "Requests",
                Severity::Medium,
                Some("2.31.0")
            ),
        ]
    );

    let report = Report::new(
        "sha256:x",
        "2026-01-01T00:00:00Z",
        "test",
        db.len(),
        &inventory.packages,
        findings,
    );
    assert_eq!(report.counts.get(&Severity::Critical), Some(&1));
    assert_eq!(report.counts.get(&Severity::Medium), Some(&1));
    let worst = |threshold, allowed: &[String]| {
        report
            .worst_at_least(threshold, allowed)
            .map(|f| f.advisory.clone())
    };
    assert_eq!(
        worst(Severity::High, &[]).as_deref(),
        Some("GHSA-xvch-5gv4-984h")
    );
    // Accepting the critical one, by an alias, leaves the high one.
    assert_eq!(
        worst(Severity::High, &["CVE-2021-44906".into()]).as_deref(),
        Some("DSA-5532-1")
    );
    assert_eq!(
        worst(Severity::Critical, &["GHSA-xvch-5gv4-984h".into()]),
        None
    );

    let sbom = cyclonedx(
        "team/app",
        "sha256:x",
        "2026-01-01T00:00:00Z",
        &inventory.packages,
    );
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let purls: Vec<&str> = sbom["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(
        purls.contains(&"pkg:deb/debian/libssl3@3.0.11-1~deb12u1"),
        "{purls:?}"
    );
    assert!(purls.contains(&"pkg:pypi/requests@2.30.0"), "{purls:?}");
    assert!(purls.contains(&"pkg:npm/minimist@1.2.5"), "{purls:?}");
}

#[test]
fn the_fixed_versions_and_other_releases_scan_clean() {
    let fixed = layer(&[
        ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        (
            "var/lib/dpkg/status",
            "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u2\n",
        ),
        (
            "app/node_modules/minimist/package.json",
            r#"{"name": "minimist", "version": "1.2.6"}"#,
        ),
        (
            "Cargo.lock",
            "version = 3\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"smallvec\"\nversion = \"1.13.2\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
        ),
        (
            "src/go.sum",
            "golang.org/x/text v0.14.0 h1:abc=\ngolang.org/x/text v0.14.0/go.mod h1:def=\n",
        ),
    ]);
    let inventory = Inventory::read_layers([fixed.as_slice()]).expect("layers");
    let ecosystems: Vec<(Ecosystem, &str)> = inventory
        .packages
        .iter()
        .map(|p| (p.ecosystem, p.name.as_str()))
        .collect();
    assert_eq!(
        ecosystems,
        vec![
            (Ecosystem::Debian, "libssl3"),
            (Ecosystem::Npm, "minimist"),
            (Ecosystem::CratesIo, "smallvec"),
            (Ecosystem::Go, "golang.org/x/text"),
        ],
        "workspace crates and go.mod-only lines are not packages"
    );
    assert!(
        database()
            .scan(&inventory.packages, &inventory.releases)
            .is_empty()
    );

    // The vulnerable openssl on Debian 11 is not this advisory's (it names Debian 12).
    let bullseye = layer(&[
        ("etc/os-release", "ID=debian\nVERSION_ID=\"11\"\n"),
        ("var/lib/dpkg/status", DPKG_STATUS),
    ]);
    let inventory = Inventory::read_layers([bullseye.as_slice()]).expect("layers");
    assert!(
        database()
            .scan(&inventory.packages, &inventory.releases)
            .is_empty()
    );
}

#[test]
fn an_image_without_packages_scans_clean_and_a_bad_layer_is_an_error() {
    let plain = layer(&[("hello.txt", "hi"), ("bin/agent", "#!/bin/sh\n")]);
    let inventory = Inventory::read_layers([plain.as_slice()]).expect("layers");
    assert!(inventory.packages.is_empty());
    assert!(
        database()
            .scan(&inventory.packages, &inventory.releases)
            .is_empty()
    );
    let broken = [0x1f_u8, 0x8b, 0, 1, 2, 3];
    let e = Inventory::read_layers([&broken[..]]).expect_err("not a layer");
    assert!(e.to_string().starts_with("layer 0:"), "{e}");
}

#[test]
fn zstd_layers_are_read_in_one_frame_or_several() {
    let files = [
        ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        ("var/lib/dpkg/status", DPKG_STATUS),
    ];
    let tar = tar_of(&files);
    let one_frame = zstd::encode_all(tar.as_slice(), 3).expect("zstd");
    // As zstd:chunked writes them: frames one after another, with a skippable frame between.
    let (front, back) = tar.split_at(tar.len() / 2);
    let mut frames = zstd::encode_all(front, 3).expect("zstd");
    frames.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]);
    frames.extend(zstd::encode_all(back, 3).expect("zstd"));

    let gzip = Inventory::read_layers([layer(&files).as_slice()]).expect("gzip layer");
    for zstd_layer in [one_frame, frames] {
        let inventory = Inventory::read_layers([zstd_layer.as_slice()]).expect("zstd layer");
        assert_eq!(inventory.packages, gzip.packages);
        assert_eq!(inventory.releases.debian.as_deref(), Some("12"));
        assert!(
            inventory.packages.iter().any(|p| p.name == "libssl3"),
            "{:?}",
            inventory.packages
        );
    }
    let cut = zstd::encode_all(tar.as_slice(), 3).expect("zstd");
    let e = Inventory::read_layers([&cut[..cut.len() / 2]]).expect_err("a cut zstd layer");
    assert!(e.to_string().starts_with("layer 0:"), "{e}");
}

/// What `go build` embeds (Go 1.18+): an ELF file holding the build information blob.
fn go_binary(version: &str, modules: &str) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut bytes = b"\x7fELF".to_vec();
    bytes.resize(4096, 0);
    bytes.extend_from_slice(b"\xff Go buildinf:");
    bytes.extend_from_slice(&[8, 2]);
    bytes.resize(4096 + 32, 0);
    varint(version.len(), &mut bytes);
    bytes.extend_from_slice(version.as_bytes());
    let framed = format!("0123456789abcdef{modules}\nfedcba9876543210");
    varint(framed.len(), &mut bytes);
    bytes.extend_from_slice(framed.as_bytes());
    bytes.resize(bytes.len() + 2048, 0);
    bytes
}

#[test]
fn go_binaries_list_their_modules_and_standard_library() {
    let binary = go_binary(
        "go1.21.3",
        "path\texample.com/agent\nmod\texample.com/agent\t(devel)\t\n\
         dep\tgolang.org/x/net\tv0.17.0\th1:abc=\n\
         dep\tgolang.org/x/text\tv0.13.0\th1:def=\n=>\tgolang.org/x/text\tv0.14.0\th1:ghi=\n\
         build\t-compiler=gc",
    );
    let binary = binary.as_slice();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(binary.len() as u64);
    header.set_mode(0o755);
    header.set_cksum();
    builder
        .append_data(&mut header, "usr/local/bin/agent", binary)
        .expect("append");
    // The same bytes without the executable bit are not looked into.
    let mut header = tar::Header::new_gnu();
    header.set_size(binary.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "data/blob", binary)
        .expect("append");
    let layer = builder.into_inner().expect("tar");
    let inventory = Inventory::read_layers([layer.as_slice()]).expect("layers");
    let found: Vec<(&str, &str, &str)> = inventory
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str(), p.path.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            ("golang.org/x/net", "v0.17.0", "usr/local/bin/agent"),
            ("golang.org/x/text", "v0.14.0", "usr/local/bin/agent"),
            ("stdlib", "1.21.3", "usr/local/bin/agent"),
        ],
        "dependencies with their replacements, and the standard library"
    );
}
