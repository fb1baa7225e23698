//! The harness: [`Agent`] runs the real `agent` binary in a private home; [`push_image`]
//! puts an image on a registry over plain HTTP; [`FaultProxy`] stands between the two and
//! misbehaves on purpose.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use agent_registry_oci::{Algorithm, Digest};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The `agent` binary with its own `AAC_HOME`, `HOME` and Docker config.
pub struct Agent {
    pub home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test with the output unless the run succeeded.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "agent failed:\n{}\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Fails the test unless the run exited with `code` and its stderr starts with `prefix`
    /// (the class's phrase, for the classes scripts rely on).
    #[track_caller]
    pub fn failed(self, code: i32, prefix: &str) -> Run {
        assert_eq!(self.code, code, "{}", self.stderr);
        assert!(self.stderr.starts_with(prefix), "{}", self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            home: tempfile::tempdir().expect("tempdir"),
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every later run.
    pub fn env(&mut self, key: &str, value: &str) -> &mut Agent {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn aac_home(&self) -> PathBuf {
        self.home.path().join("aac")
    }

    pub fn store(&self) -> PathBuf {
        self.aac_home().join("store")
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("AAC_HOME", self.aac_home())
            .env("DOCKER_CONFIG", self.home.path().join("docker"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        let out = self.command(args).output().await.expect("run agent");
        run_of(out)
    }

    /// Runs with `input` on standard input.
    pub async fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut c = self.command(args);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("spawn agent");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).await.expect("stdin");
        }
        run_of(child.wait_with_output().await.expect("agent output"))
    }
}

fn run_of(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn sha256(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

/// Deterministic bytes that do not compress, so sizes mean what they say.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Pushes an OCI image with `layers` to `base_url` as `repo:tag` over plain HTTP; returns
/// the manifest digest.
pub async fn push_image(base_url: &str, repo: &str, tag: &str, layers: &[Vec<u8>]) -> Digest {
    push_image_as(base_url, None, repo, tag, layers).await
}

/// [`push_image`] with an `Authorization` header on every request.
pub async fn push_image_as(
    base_url: &str,
    authorization: Option<&str>,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
) -> Digest {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = authorization {
        headers.insert(reqwest::header::AUTHORIZATION, a.parse().expect("header"));
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client");
    // The layers go up uncompressed, so each one's digest is its diff_id.
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l).to_string()).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Labels": {"org.opencontainers.image.version": tag}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}
    }))
    .expect("config");
    let mut descriptors = Vec::new();
    for blob in std::iter::once(&config).chain(layers) {
        let digest = sha256(blob);
        let r = http
            .post(format!(
                "{base_url}/v2/{repo}/blobs/uploads/?digest={digest}"
            ))
            .body(blob.clone())
            .send()
            .await
            .expect("push blob");
        assert!(r.status().is_success(), "push blob: {}", r.status());
        descriptors.push((digest, blob.len()));
    }
    let (config_digest, config_size) = descriptors.remove(0);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config_size},
        "layers": descriptors.iter().map(|(d, n)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": d.to_string(), "size": n})).collect::<Vec<_>>(),
    }))
    .expect("manifest");
    let r = http
        .put(format!("{base_url}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .expect("push manifest");
    assert!(r.status().is_success(), "push manifest: {}", r.status());
    sha256(&manifest)
}

/// Runs a program the test needs, failing the test with its output if it fails; returns
/// its stdout.
pub async fn run_ok(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
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

/// A busybox image with `marker` in `/marker.txt`, pushed by docker as
/// `host/repo:<unique tag>` and removed from docker again, so a pull has to fetch it.
pub async fn docker_image(host: &str, repo: &str, dir: &Path, marker: &str) -> String {
    let tar = rootfs_tar(dir, marker).await;
    let image = format!("{host}/{repo}:{}", unique());
    run_ok("docker", &["import", &tar.to_string_lossy(), &image]).await;
    run_ok("docker", &["push", "-q", &image]).await;
    run_ok("docker", &["rmi", &image]).await;
    image
}

/// Runs `program`; whether it succeeded, and its stdout and stderr together.
pub async fn attempt(program: &str, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} could not start ({e}); scripts/test installs it"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs podman with storage of its own under `dir` (vfs, which needs neither root nor fuse);
/// whether it succeeded, and its stdout and stderr together.
pub async fn podman(dir: &Path, args: &[&str]) -> (bool, String) {
    let root = dir.join("podman").to_string_lossy().into_owned();
    let run = dir.join("podman-run").to_string_lossy().into_owned();
    let storage = [
        "--root",
        &root,
        "--runroot",
        &run,
        "--storage-driver",
        "vfs",
    ];
    attempt("podman", &[&storage[..], args].concat()).await
}

/// Pulls `image` with docker (then removes it), podman (storage under `dir`) and a fresh
/// `agent`: each client's name with (success, output).
pub async fn pull_with_every_client(
    image: &str,
    dir: &Path,
) -> [(&'static str, (bool, String)); 3] {
    let docker = attempt("docker", &["pull", "-q", image]).await;
    let _ = attempt("docker", &["rmi", image]).await;
    let podman = podman(dir, &["pull", "-q", "--tls-verify=false", image]).await;
    let ours = Agent::new().run(&["pull", image]).await;
    let ours = (ours.code == 0, format!("{}{}", ours.stdout, ours.stderr));
    [("docker", docker), ("podman", podman), ("agent", ours)]
}

/// A number no other run of the tests uses, for unique tags and subjects.
pub fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A root filesystem tarball with a static busybox and `/marker.txt` holding `marker`.
pub async fn rootfs_tar(dir: &Path, marker: &str) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static is installed");
    std::fs::write(root.join("marker.txt"), marker).expect("marker");
    let tar = dir.join("rootfs.tar");
    run_ok(
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

/// A tmpfs of `size` (such as "4m") mounted on `dir` until dropped. Needs root.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mkdir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mount a {size} tmpfs (needs root)");
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Files under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// How the proxy misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer the first `n` requests with 429 and `Retry-After: 1`, then forward.
    RateLimitFirst(usize),
    /// Answer every request with 429.
    AlwaysRateLimit,
    /// Forward, but pass responses on at about this many bytes per second.
    Throttle(usize),
    /// Forward, but once this many request bytes have gone upstream (over all connections),
    /// drop that connection mid-request, once.
    CutUploadOnceAfter(u64),
}

/// A TCP proxy in front of a registry, with a fault. Counts the response bytes it passes.
pub struct FaultProxy {
    pub url: String,
    /// Response bytes passed to the client.
    pub forwarded: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    pub async fn start(upstream: &str, fault: Fault) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let limited = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicU64::new(0));
        let counted = forwarded.clone();
        let sent = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let limited = limited.clone();
                let counted = counted.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    let _ = serve(client, &upstream, fault, &limited, &counted, sent).await;
                });
            }
        });
        FaultProxy {
            url,
            forwarded,
            task,
        }
    }

    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: Fault,
    limited: &AtomicUsize,
    forwarded: &AtomicU64,
    sent: Arc<AtomicU64>,
) -> std::io::Result<()> {
    // Read the first request's head, to answer it when refusing.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let refuse = match fault {
        Fault::RateLimitFirst(n) => limited.fetch_add(1, Ordering::SeqCst) < n,
        Fault::AlwaysRateLimit => true,
        Fault::Throttle(_) | Fault::CutUploadOnceAfter(_) => false,
    };
    if refuse {
        let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
        let response = format!(
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(response.as_bytes()).await?;
        return client.shutdown().await;
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&head).await?;
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    // Later requests on a kept-alive connection pass through without being looked at.
    let cut = Arc::new(tokio::sync::Notify::new());
    let cutter = cut.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = cr.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let before = sent.fetch_add(n as u64, Ordering::SeqCst);
            if let Fault::CutUploadOnceAfter(limit) = fault
                && before < limit
                && before + n as u64 >= limit
            {
                cutter.notify_one();
                return Ok(());
            }
            sw.write_all(&buf[..n]).await?;
        }
    });
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = tokio::select! {
            read = sr.read(&mut buf) => read?,
            () = cut.notified() => break,
        };
        if n == 0 {
            break;
        }
        cw.write_all(&buf[..n]).await?;
        forwarded.fetch_add(n as u64, Ordering::SeqCst);
        if let Fault::Throttle(rate) = fault {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
        }
    }
    up.abort();
    Ok(())
}
