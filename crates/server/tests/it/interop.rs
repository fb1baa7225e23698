//! Interop: real clients against our server (on the filesystem, and on S3 with blob GETs
//! redirected to presigned URLs) and, in the same test, against the reference registry
//! (Debian's docker-registry, CNCF distribution 2.8), so a difference is our bug and not the
//! test's. Needs docker (with dockerd running), skopeo, podman, umoci, busybox-static,
//! docker-registry, the s3s-fs S3 server (`$S3S_FS`) and a Python with `oras`
//! (`$ORAS_PYTHON`, default `.venv/bin/python`), all of which `scripts/test` installs; hence
//! `#[ignore]` for a plain `cargo test`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_registry_server::config::{S3StorageConfig, StorageBackend};
use agent_registry_storage::s3_server::S3Server;
use tokio::process::{Child, Command};

use crate::support::TestRegistry;

/// A registry under test: ours (with its blobs on S3 when `s3` is set), or the reference one
/// in a child process.
enum Target {
    Ours {
        registry: TestRegistry,
        s3: Option<S3Server>,
    },
    Reference {
        host: String,
        _child: Child,
        _dir: tempfile::TempDir,
    },
}

impl Target {
    fn host(&self) -> &str {
        match self {
            Target::Ours { registry, .. } => registry.host(),
            Target::Reference { host, .. } => host,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Ours { s3: None, .. } => "agent-registry",
            Target::Ours { s3: Some(_), .. } => "agent-registry on S3",
            Target::Reference { .. } => "docker-registry",
        }
    }

    fn supports_referrers(&self) -> bool {
        matches!(self, Target::Ours { .. })
    }
}

async fn reference_registry() -> Target {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let host = format!("127.0.0.1:{port}");
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n  delete: {{enabled: true}}\nhttp: {{addr: {host}}}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write config");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("docker-registry is installed (scripts/test installs it)");
    for _ in 0..100 {
        if reqwest::get(format!("http://{host}/v2/")).await.is_ok() {
            return Target::Reference {
                host,
                _child: child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("docker-registry did not start on {host}");
}

/// Our registry with its blobs in a real S3 server (s3s-fs), answering blob GETs with
/// redirects to presigned URLs, so clients fetch the bytes from the bucket.
pub async fn registry_on_s3(bucket: &str) -> (TestRegistry, S3Server) {
    let server = S3Server::start();
    let store = server.bucket(bucket);
    let registry = TestRegistry::start_with(|c| {
        c.storage.backend = StorageBackend::S3;
        c.storage.s3 = Some(S3StorageConfig {
            redirect_expiry_secs: 300,
            ..store.into()
        });
    })
    .await;
    (registry, server)
}

/// Our registry on either backend, and the reference one.
async fn targets() -> Vec<Target> {
    let (on_s3, s3) = registry_on_s3("interop").await;
    vec![
        Target::Ours {
            registry: TestRegistry::start().await,
            s3: None,
        },
        Target::Ours {
            registry: on_s3,
            s3: Some(s3),
        },
        reference_registry().await,
    ]
}

/// Runs a command, failing the test with its output if it fails; returns stdout.
pub async fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} could not start ({e}); scripts/test installs it"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {} failed:\n{stdout}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}{}-{nanos}", std::process::id())
}

/// A root filesystem tarball with a static busybox and a marker file.
pub async fn rootfs_tar(dir: &Path, marker: &str) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::fs::write(root.join("marker.txt"), marker).expect("marker");
    let tar = dir.join("rootfs.tar");
    run(
        "tar",
        &[
            "-C",
            &root.to_string_lossy(),
            "-cf",
            &tar.to_string_lossy(),
            ".",
        ],
    )
    .await;
    tar
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker with dockerd running: run scripts/test"]
async fn docker_pushes_pulls_and_runs_an_imported_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = rootfs_tar(dir.path(), "docker").await;
    for target in targets().await {
        let image = format!("{}/interop/docker:{}", target.host(), unique("t"));
        run("docker", &["import", &tar.to_string_lossy(), &image]).await;
        run("docker", &["push", &image]).await;
        run("docker", &["rmi", &image]).await;
        run("docker", &["pull", &image]).await;
        let out = run(
            "docker",
            &["run", "--rm", &image, "/bin/busybox", "cat", "/marker.txt"],
        )
        .await;
        assert_eq!(out, "docker", "{}: the pulled image runs", target.name());
        run("docker", &["rmi", &image]).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs skopeo and umoci: run scripts/test"]
async fn skopeo_copies_umoci_layouts_to_the_registry_and_back() {
    for target in targets().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = dir.path().join("layout");
        let layout = layout.to_string_lossy();
        let files = dir.path().join("files");
        std::fs::create_dir_all(files.join("app")).expect("mkdir");
        std::fs::write(files.join("app/agent.yaml"), "name: umoci-agent\n").expect("write");
        run("umoci", &["init", "--layout", &layout]).await;
        run("umoci", &["new", "--image", &format!("{layout}:v1")]).await;
        run(
            "umoci",
            &[
                "insert",
                "--image",
                &format!("{layout}:v1"),
                &files.to_string_lossy(),
                "/",
            ],
        )
        .await;
        run(
            "umoci",
            &[
                "config",
                "--image",
                &format!("{layout}:v1"),
                "--config.label",
                "org.opencontainers.image.title=umoci-agent",
            ],
        )
        .await;

        let remote = format!("docker://{}/interop/skopeo", target.host());
        run(
            "skopeo",
            &[
                "copy",
                "--dest-tls-verify=false",
                &format!("oci:{layout}:v1"),
                &format!("{remote}:v1"),
            ],
        )
        .await;

        let inspect: serde_json::Value = serde_json::from_str(
            &run(
                "skopeo",
                &["inspect", "--tls-verify=false", &format!("{remote}:v1")],
            )
            .await,
        )
        .expect("json");
        assert_eq!(
            inspect["Labels"]["org.opencontainers.image.title"],
            "umoci-agent",
            "{}",
            target.name()
        );
        let tags: serde_json::Value = serde_json::from_str(
            &run("skopeo", &["list-tags", "--tls-verify=false", &remote]).await,
        )
        .expect("json");
        assert_eq!(tags["Tags"], serde_json::json!(["v1"]), "{}", target.name());

        // The manifest the registry serves is the one umoci wrote, byte for byte.
        let raw = run(
            "skopeo",
            &[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("{remote}:v1"),
            ],
        )
        .await;
        let local = run("skopeo", &["inspect", "--raw", &format!("oci:{layout}:v1")]).await;
        assert_eq!(raw, local, "{}", target.name());

        let back = dir.path().join("back");
        let back = back.to_string_lossy();
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                &format!("{remote}:v1"),
                &format!("oci:{back}:pulled"),
            ],
        )
        .await;
        let bundle = dir.path().join("bundle");
        run(
            "umoci",
            &[
                "unpack",
                "--image",
                &format!("{back}:pulled"),
                &bundle.to_string_lossy(),
            ],
        )
        .await;
        let unpacked =
            std::fs::read_to_string(bundle.join("rootfs/app/agent.yaml")).expect("unpacked file");
        assert_eq!(unpacked, "name: umoci-agent\n", "{}", target.name());
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs podman: run scripts/test"]
async fn podman_pushes_and_pulls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = rootfs_tar(dir.path(), "podman").await;
    let root = dir.path().join("storage");
    let runroot = dir.path().join("run");
    let (root, runroot) = (root.to_string_lossy(), runroot.to_string_lossy());
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            &root,
            "--runroot",
            &runroot,
            "--storage-driver",
            "vfs",
        ];
        all.extend_from_slice(args);
        all.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    for target in targets().await {
        let image = format!("{}/interop/podman:v1", target.host());
        for args in [
            podman(&["import", &tar.to_string_lossy(), &image]),
            podman(&["push", "--tls-verify=false", &image]),
            podman(&["rmi", &image]),
            podman(&["pull", "--tls-verify=false", &image]),
        ] {
            run(
                "podman",
                &args.iter().map(String::as_str).collect::<Vec<_>>(),
            )
            .await;
        }
        let names = run(
            "podman",
            &podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .await;
        assert!(
            names.lines().any(|l| l == image),
            "{}: pulled image listed in {names}",
            target.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the oras Python package: run scripts/test"]
async fn oras_pushes_an_artifact_with_a_subject_found_by_referrers() {
    let python = std::env::var("ORAS_PYTHON")
        .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let script = format!(
        "{}/tests/interop/oras_artifact.py",
        env!("CARGO_MANIFEST_DIR")
    );
    for target in targets().await {
        let mut args = vec![script.as_str(), target.host(), "interop/oras"];
        // distribution 2.8 predates the referrers API; there we check push and pull only.
        if target.supports_referrers() {
            args.push("--referrers");
        }
        let out = run(&python, &args).await;
        assert_eq!(out.trim(), "ok", "{}", target.name());
    }
}
