//! The shared test harness: [`TestRegistry`] starts the real server and stops it; helpers push
//! blobs and manifests and check error bodies.

use agent_registry_oci::{Algorithm, Digest};
use agent_registry_server::Config;
use agent_registry_server::testing::TestServer;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A running registry on 127.0.0.1:<random port> over a temporary directory.
pub struct TestRegistry {
    pub url: String,
    pub http: reqwest::Client,
    server: std::sync::Arc<TestServer>,
}

impl TestRegistry {
    pub async fn start() -> TestRegistry {
        Self::start_with(|_| {}).await
    }

    /// Starts with a configuration adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestRegistry {
        Self::wrap(TestServer::start_with(tweak).await)
    }

    fn wrap(server: TestServer) -> TestRegistry {
        TestRegistry {
            url: server.url.clone(),
            http: client_with(None),
            server: std::sync::Arc::new(server),
        }
    }

    /// Starts `nodes` nodes sharing a bucket and a database (see `TestServer::start_cluster`).
    pub async fn start_cluster(nodes: usize) -> TestRegistry {
        Self::wrap(TestServer::start_cluster(nodes, |_| {}).await)
    }

    /// The same registry through node `i` alone (0 is the first).
    pub fn node(&self, i: usize) -> TestRegistry {
        TestRegistry {
            url: self.server.node_urls()[i].clone(),
            http: self.http.clone(),
            server: self.server.clone(),
        }
    }

    fn server(self) -> TestServer {
        std::sync::Arc::into_inner(self.server).expect("no node views of this registry left")
    }

    pub fn root(&self) -> &std::path::Path {
        self.server.root()
    }

    /// The `host:port` docker-style clients want.
    pub fn host(&self) -> &str {
        self.server.host()
    }

    /// Starts over a directory [`TestRegistry::stop`] handed back.
    pub async fn start_on(dir: tempfile::TempDir, tweak: impl FnOnce(&mut Config)) -> TestRegistry {
        Self::wrap(TestServer::start_on(dir, tweak).await)
    }

    /// Stops the server gracefully and hands back the directory it served.
    pub async fn stop(self) -> tempfile::TempDir {
        self.server().stop().await
    }

    /// Stops the server gracefully and starts a new one over the same storage.
    pub async fn restart(self) -> TestRegistry {
        Self::wrap(self.server().restart().await)
    }

    /// From now on, the helpers send `authorization` with every request.
    pub fn sign_in(&mut self, authorization: &str) {
        self.http = client_with(Some(authorization));
    }

    pub fn v2(&self, path: &str) -> String {
        format!("{}/v2/{path}", self.url)
    }

    /// GETs `path` (from the root) and parses the JSON body.
    pub async fn get_json_at(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK, "GET {path}");
        r.json().await.expect("json body")
    }

    /// GETs manifest `reference` of `repo`, accepting OCI image manifests.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Response {
        self.http
            .get(self.v2(&format!("{repo}/manifests/{reference}")))
            .header("accept", OCI_MANIFEST)
            .send()
            .await
            .expect("get manifest")
    }

    /// GETs `/v2/<path>` and parses the JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let r = self.http.get(self.v2(path)).send().await.expect("get");
        r.json().await.expect("json body")
    }

    /// Pushes `data` as a blob of `repo` in one request; returns its digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> Digest {
        let digest = sha256(data);
        let r = self
            .http
            .post(self.v2(&format!("{repo}/blobs/uploads/?digest={digest}")))
            .body(data.to_vec())
            .send()
            .await
            .expect("push blob");
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "push blob: {}",
            r.text().await.unwrap_or_default()
        );
        digest
    }

    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.http
            .put(self.v2(&format!("{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .expect("put manifest")
    }

    /// Pushes a config and one layer, then an OCI image manifest tagged `tag`; returns the
    /// manifest's bytes and digest.
    pub async fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, Digest) {
        let config = self
            .push_blob(repo, br#"{"architecture":"amd64","os":"linux"}"#)
            .await;
        let layer_digest = self.push_blob(repo, layer).await;
        let manifest = image_manifest(&config, 38, &[(&layer_digest, layer.len())], None);
        let r = self.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "push manifest: {}",
            r.text().await.unwrap_or_default()
        );
        let digest = sha256(&manifest);
        (manifest, digest)
    }
}

/// Starts an upload; returns its absolute URL.
pub async fn start_upload(reg: &TestRegistry, repo: &str) -> String {
    let r = reg
        .http
        .post(reg.v2(&format!("{repo}/blobs/uploads/")))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(header(&r, "docker-upload-uuid").is_some());
    assert_eq!(header(&r, "range"), Some("0-0"));
    let location = header(&r, "location").expect("location");
    assert!(
        location.starts_with(&format!("/v2/{repo}/blobs/uploads/")),
        "{location}"
    );
    format!("{}{location}", reg.url)
}

/// Finishes an upload with `PUT <url>?digest=` and no body.
pub async fn finish_upload(
    reg: &TestRegistry,
    url: &str,
    digest: &agent_registry_oci::Digest,
) -> reqwest::Response {
    reg.http
        .put(format!("{url}?digest={digest}"))
        .send()
        .await
        .expect("put")
}

/// Sends a PATCH of `data` to the upload at `url`, with `Content-Range: range` if given.
pub async fn patch_upload(
    reg: &TestRegistry,
    url: &str,
    range: Option<&str>,
    data: &[u8],
) -> reqwest::Response {
    let mut req = reg
        .http
        .patch(url)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec());
    if let Some(range) = range {
        req = req.header("content-range", range);
    }
    req.send().await.expect("patch")
}

/// `url` (an upload's, say) on `node`: the same path, another node's origin.
pub fn on_node(node: &TestRegistry, url: &str) -> String {
    let path = url
        .strip_prefix("http://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or(url);
    format!("{}{path}", node.url)
}

impl TestRegistry {
    /// GETs a blob, which must be there, and returns its bytes.
    pub async fn get_blob(&self, repo: &str, digest: &Digest) -> bytes::Bytes {
        let r = self
            .http
            .get(self.v2(&format!("{repo}/blobs/{digest}")))
            .send()
            .await
            .expect("get blob");
        assert_eq!(r.status(), StatusCode::OK, "{}", self.url);
        r.bytes().await.expect("body")
    }
}

/// The real binary serving `root` on a free loopback port, with `envs` set (the log level
/// is `warn` unless they say otherwise) and its stderr sent to `stderr`.
pub async fn spawn_binary(
    root: &std::path::Path,
    envs: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--root"])
        .arg(root)
        .env("AGENT_REGISTRY_LOG_LEVEL", "warn")
        .envs(envs.iter().copied())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("start agent-registry");
    // The binary opens its stores before it listens, so a connection means it is ready
    // (and this works for HTTPS too).
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, url);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("agent-registry did not start");
}

/// Writes `name` in `dir`: a configuration for a registry with its blobs in `bucket` and,
/// given a PostgreSQL URL, its metadata in `database`, plus `extra` YAML; returns its path.
pub fn scale_out_config(
    dir: &std::path::Path,
    name: &str,
    bucket: &agent_registry_server::config::S3StorageConfig,
    database: Option<&str>,
    extra: &str,
) -> std::path::PathBuf {
    let mut yaml = format!(
        "storage:\n  fsync: false\n  backend: s3\n  s3: {{ bucket: {}, endpoint: '{}', access_key_id: {}, secret_access_key: {} }}\n",
        bucket.bucket,
        bucket.endpoint.as_deref().unwrap_or_default(),
        bucket.access_key_id,
        bucket.secret_access_key,
    );
    if let Some(url) = database {
        yaml.push_str(&format!(
            "database: {{ backend: postgres, url: '{url}', max_connections: 4 }}\n"
        ));
    }
    yaml.push_str(extra);
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write the configuration");
    path
}

/// Runs `agent-registry migrate --config CONFIG --root ROOT` to the end.
pub fn migrate(config: &std::path::Path, root: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agent-registry"))
        .arg("migrate")
        .arg("--config")
        .arg(config)
        .arg("--root")
        .arg(root)
        .output()
        .expect("run agent-registry migrate")
}

/// Whether this run serves every test registry from several nodes
/// (`AGENT_REGISTRY_TEST_NODES`); a test of what each node keeps for itself (its metrics, its
/// rate limits, its files) says so and stands aside then.
pub fn skip_on_several_nodes(what: &str) -> bool {
    let several = agent_registry_server::testing::nodes_from_env() > 1;
    if several {
        eprintln!("skipped on several nodes: {what} is per node");
    }
    several
}

/// Waits out the second within which other nodes see a revocation made on one (a node checks
/// the store's access version at most once a second; grants count everywhere at once).
pub async fn revocations_reach_every_node() {
    if agent_registry_server::testing::nodes_from_env() > 1 {
        tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    }
}

/// An HTTP client that sends `authorization` (if any) with every request.
pub fn client_with(authorization: Option<&str>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = authorization {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            a.parse().expect("header value"),
        );
    }
    let builder = reqwest::Client::builder().default_headers(headers);
    // Against several nodes, a connection per request: the proxy in front of them hands
    // each connection to the next node, so every request of a test moves on.
    let builder = if agent_registry_server::testing::nodes_from_env() > 1 {
        builder.pool_max_idle_per_host(0)
    } else {
        builder
    };
    builder.build().expect("client")
}

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

pub fn sha256(data: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, data)
}

/// An OCI image manifest with the given config and layers, and an optional subject.
pub fn image_manifest(
    config: &Digest,
    config_size: usize,
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_size},
        "layers": layers.iter().map(|(d, n)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d.to_string(), "size": n
        })).collect::<Vec<_>>(),
    });
    if let Some((d, n)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": n});
    }
    serde_json::to_vec(&m).expect("json")
}

/// Asserts `r` is an error with `status` and the spec's body shape with `code`; returns the
/// message.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) -> String {
    assert_eq!(r.status(), status, "status for expected {code}");
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "error bodies are JSON"
    );
    let body: Value = r.json().await.expect("error body is JSON");
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["code"], code, "{body}");
    let message = errors[0]["message"]
        .as_str()
        .expect("message string")
        .to_owned();
    assert!(!message.is_empty());
    for key in errors[0].as_object().expect("object").keys() {
        assert!(
            ["code", "message", "detail"].contains(&key.as_str()),
            "unexpected key {key} in {body}"
        );
    }
    message
}

pub fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A small tmpfs on a temporary directory, unmounted on drop. Needs root (`scripts/test`).
pub struct TinyFs(pub tempfile::TempDir);

impl TinyFs {
    pub async fn mount(bytes: usize) -> TinyFs {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = tokio::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .await
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (scripts/test runs as root)"
        );
        TinyFs(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}
