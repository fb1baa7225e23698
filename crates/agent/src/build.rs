//! `agent build`: an agent directory on a base image, as a new image in the local store,
//! without a daemon. Nothing from the base image runs; the build appends one layer (the
//! agent's files under `/app`) and writes a config and manifest that carry the agent's
//! metadata as labels and annotations.
//!
//! Reproducible: the layer's entries are sorted with one fixed mtime, and every timestamp is
//! `created`, which is `SOURCE_DATE_EPOCH` or else the newest mtime of the agent's files. The
//! same files, `agent.yaml`, options and base image give the same manifest digest.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::UNIX_EPOCH;

use agent_registry_images::store::Descriptor;
use agent_registry_images::{LocalStore, Parts};
use agent_registry_oci::catalogue::{self, AgentInfo, format_rfc3339};
use agent_registry_oci::{Algorithm, Digest, media};
use serde_json::{Map, Value, json};

use crate::layer::{self, APP_DIR, Layer};
use crate::spec::{AgentFile, Probe, Runtime};

/// The label naming the path of `agent.yaml` inside the image, so `agent push` can attach it
/// as a referrer artifact.
pub const AGENT_YAML_LABEL: &str = "dev.agent-registry.agent-yaml";
const AGENT_YAML_PATH: &str = "/app/agent.yaml";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading the agent directory {dir}: {source}")]
    Files { dir: String, source: std::io::Error },
    #[error("base image {0}: {1}")]
    Base(String, String),
    #[error(transparent)]
    Store(#[from] agent_registry_images::Error),
    #[error("{0}")]
    Encode(String),
}

/// What the caller decides.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The name to store the image under (as `agent images` shows names).
    pub name: String,
    /// The base image's name (for the annotations) and its manifest in the local store, as
    /// ensuring it reported them.
    pub base_name: String,
    pub base_digest: Digest,
    /// Extra labels (`--label`), applied last.
    pub labels: BTreeMap<String, String>,
    /// Seconds since the Unix epoch for every timestamp; `None` takes the newest file's.
    pub created: Option<i64>,
}

/// The image a build stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Built {
    pub name: String,
    pub digest: Digest,
    /// The image ID (its config's digest).
    pub id: Digest,
    pub size: u64,
    pub files: usize,
    pub created: String,
}

/// Builds the agent in `dir` (described by `agent`) on the stored image `options.base_name`.
pub fn build(
    store: &LocalStore,
    dir: &Path,
    agent: &AgentFile,
    options: &BuildOptions,
) -> Result<Built, BuildError> {
    let files_err = |source| BuildError::Files {
        dir: dir.display().to_string(),
        source,
    };
    let mut files = layer::files(dir).map_err(files_err)?;
    // agent.yaml always travels with the image, whatever .agentignore says.
    if dir.join("agent.yaml").is_file() && !files.iter().any(|f| f == Path::new("agent.yaml")) {
        files.push("agent.yaml".into());
        files.sort();
    }
    let created = match options.created {
        Some(t) => t,
        None => newest_mtime(dir, &files).map_err(files_err)?,
    };
    let layer =
        layer::build_layer(dir, &files, u64::try_from(created).unwrap_or(0)).map_err(files_err)?;

    let base = base_image(store, &options.base_name, &options.base_digest)?;
    let info = agent_info(agent, created);
    let config = config(&base, agent, &info, &layer, created, &options.labels)?;
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| BuildError::Encode(e.to_string()))?;

    let _writing = store.write_guard()?;
    let config_digest = store.write_blob(&config_bytes)?;
    store.write_blob(&layer.gzipped)?;
    let mut layers: Vec<Value> = base
        .layers
        .iter()
        .map(|l| json!({"mediaType": oci_layer_type(&l.media_type), "digest": l.digest.to_string(), "size": l.size}))
        .collect();
    layers.push(json!({"mediaType": OCI_LAYER_GZIP, "digest": layer.digest.to_string(), "size": layer.gzipped.len()}));
    let mut annotations = info.to_keys();
    annotations.insert(
        "org.opencontainers.image.base.name".into(),
        options.base_name.clone(),
    );
    annotations.insert(
        "org.opencontainers.image.base.digest".into(),
        base.digest.to_string(),
    );
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
        "layers": layers,
        "annotations": annotations,
    });
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| BuildError::Encode(e.to_string()))?;
    let digest = store.write_blob(&manifest_bytes)?;
    store.tag(
        &options.name,
        Descriptor {
            media_type: media::OCI_MANIFEST.into(),
            digest: digest.clone(),
            size: manifest_bytes.len() as u64,
            annotations: BTreeMap::new(),
        },
    )?;
    let size = manifest_bytes.len() as u64
        + config_bytes.len() as u64
        + base.layers.iter().map(|l| l.size).sum::<u64>()
        + layer.gzipped.len() as u64;
    Ok(Built {
        name: options.name.clone(),
        digest,
        id: config_digest,
        size,
        files: layer.files,
        created: format_rfc3339(created),
    })
}

/// The `agent.yaml` artifact that refers to an image: an OCI artifact manifest (empty config,
/// one layer holding the file) whose `subject` is the image. Returns `(blobs, manifest)`;
/// the same inputs give the same bytes.
pub fn agent_yaml_artifact(
    yaml: &[u8],
    subject: &Digest,
    subject_size: u64,
) -> (Vec<Vec<u8>>, Vec<u8>) {
    let empty = b"{}".to_vec();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "artifactType": catalogue::AGENT_YAML_ARTIFACT,
        "config": {"mediaType": media::OCI_EMPTY, "digest": Digest::of(Algorithm::Sha256, &empty).to_string(), "size": 2},
        "layers": [{"mediaType": catalogue::AGENT_YAML_LAYER, "digest": Digest::of(Algorithm::Sha256, yaml).to_string(),
                    "size": yaml.len(), "annotations": {"org.opencontainers.image.title": "agent.yaml"}}],
        "subject": {"mediaType": media::OCI_MANIFEST, "digest": subject.to_string(), "size": subject_size},
    });
    let bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    (vec![empty, yaml.to_vec()], bytes)
}

/// Reads `agent.yaml` back out of an image `agent build` made (from its last layer), for
/// attaching it when the image is pushed.
pub fn agent_yaml_of(store: &LocalStore, manifest: &Digest) -> Option<Vec<u8>> {
    let parts = Parts::parse("image", &store.read_blob(manifest).ok()?).ok()?;
    let Parts::Image { config, layers } = parts else {
        return None;
    };
    let config: Value = serde_json::from_slice(&store.read_blob(&config.digest).ok()?).ok()?;
    let path = config["config"]["Labels"][AGENT_YAML_LABEL]
        .as_str()?
        .trim_start_matches('/')
        .to_owned();
    let last = layers.last()?;
    let file = std::fs::File::open(store.blob_path(&last.digest)).ok()?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry.path().ok()?.to_str() == Some(path.as_str()) {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).ok()?;
            return Some(bytes);
        }
    }
    None
}

struct Base {
    digest: Digest,
    config: Value,
    layers: Vec<agent_registry_images::Blob>,
}

fn base_image(store: &LocalStore, name: &str, digest: &Digest) -> Result<Base, BuildError> {
    let bad = |why: String| BuildError::Base(name.to_owned(), why);
    match Parts::parse(name, &store.read_blob(digest)?)? {
        Parts::Image { config, layers } => {
            let config: Value = serde_json::from_slice(&store.read_blob(&config.digest)?)
                .map_err(|e| bad(format!("its config is not JSON: {e}")))?;
            Ok(Base {
                digest: digest.clone(),
                config,
                layers,
            })
        }
        Parts::Index { .. } => Err(bad(
            "is a multi-platform index; pull one platform of it".into()
        )),
    }
}

/// The newest modification time among `files`, in seconds since the epoch.
fn newest_mtime(dir: &Path, files: &[std::path::PathBuf]) -> std::io::Result<i64> {
    let mut newest = 0;
    for f in files {
        let modified = std::fs::symlink_metadata(dir.join(f))?.modified()?;
        let secs = modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        newest = newest.max(i64::try_from(secs).unwrap_or(0));
    }
    Ok(newest)
}

fn agent_info(agent: &AgentFile, created: i64) -> AgentInfo {
    let m = &agent.metadata;
    AgentInfo {
        title: Some(m.name.clone()),
        description: m.description.clone(),
        author: m.author.clone(),
        version: m.version.clone(),
        created: Some(format_rfc3339(created)),
        source: m.labels.get("source").cloned(),
        licenses: m.labels.get("license").cloned(),
        capabilities: agent.spec.capabilities.clone(),
        keywords: m.tags.clone(),
        runtime: agent.spec.runtime.as_ref().map(|r| match r {
            Runtime::Language {
                language,
                version: Some(v),
            } => format!("{language}:{v}"),
            Runtime::Language {
                language,
                version: None,
            } => language.clone(),
            Runtime::Image(image) => image.clone(),
        }),
        model_provider: agent.spec.model.as_ref().map(|m| m.provider.clone()),
        model_name: agent.spec.model.as_ref().map(|m| m.name.clone()),
    }
}

/// The command a language runtime runs when agent.yaml names none.
pub fn default_command(language: &str) -> Option<Vec<String>> {
    let words: &[&str] = match language {
        "python" => &["python", "main.py"],
        "nodejs" | "javascript" | "typescript" | "node" => &["node", "index.js"],
        "go" | "rust" => &["/app/agent"],
        "java" => &["java", "-jar", "agent.jar"],
        _ => return None,
    };
    Some(words.iter().map(|w| (*w).to_owned()).collect())
}

/// Docker's layer media types name the same bytes as OCI's.
fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_GZIP.into(),
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".into()
        }
        other => other.into(),
    }
}

fn config(
    base: &Base,
    agent: &AgentFile,
    info: &AgentInfo,
    layer: &Layer,
    created: i64,
    extra_labels: &BTreeMap<String, String>,
) -> Result<Value, BuildError> {
    let created_text = format_rfc3339(created);
    let base_layers = base.layers.len();
    let mut config = base.config.clone();
    let root = config
        .as_object_mut()
        .ok_or_else(|| BuildError::Base("config".into(), "is not a JSON object".into()))?;
    root.insert("created".into(), json!(created_text));
    let runtime = root.entry("config").or_insert_with(|| json!({}));
    if !runtime.is_object() {
        *runtime = json!({});
    }
    let c = runtime
        .as_object_mut()
        .ok_or_else(|| BuildError::Encode("config".into()))?;

    // Env: the base's, then agent.yaml's values (platform-supplied ones are not baked in).
    let mut env: Vec<String> = c
        .get("Env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for var in &agent.spec.environment {
        if let Some(value) = &var.value {
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != var.name);
            env.push(format!("{}={value}", var.name));
        }
    }
    c.insert("Env".into(), json!(env));

    let command = match (&agent.spec.entrypoint, &agent.spec.runtime) {
        (Some(e), _) => Some(e.clone()),
        (None, Some(Runtime::Language { language, .. })) => default_command(language),
        (None, _) => None,
    };
    if let Some(command) = command {
        c.insert("Entrypoint".into(), json!(command));
        c.insert("Cmd".into(), Value::Null);
    }
    c.insert("WorkingDir".into(), json!(format!("/{APP_DIR}")));
    if let Some(user) = &agent.spec.user {
        c.insert("User".into(), json!(user));
    }
    if !agent.spec.ports.is_empty() {
        let mut ports = obj(c.get("ExposedPorts"));
        for p in &agent.spec.ports {
            ports.insert(format!("{}/{}", p.container, p.protocol), json!({}));
        }
        c.insert("ExposedPorts".into(), Value::Object(ports));
    }
    let volumes: Vec<&str> = agent
        .spec
        .volumes
        .iter()
        .filter(|v| v.kind == "volume")
        .map(|v| v.target.as_str())
        .collect();
    if !volumes.is_empty() {
        let mut all = obj(c.get("Volumes"));
        for v in volumes {
            all.insert(v.to_owned(), json!({}));
        }
        c.insert("Volumes".into(), Value::Object(all));
    }
    if let Some(h) = &agent.spec.health_check {
        let test = match &h.probe {
            Probe::Command(cmd) => {
                let mut t = vec!["CMD".to_owned()];
                t.extend(cmd.iter().cloned());
                t
            }
            // wget is in busybox and alpine; curl in most Debian-based images.
            Probe::Http { port, path } => vec![
                "CMD-SHELL".into(),
                format!(
                    "wget -q -O /dev/null http://127.0.0.1:{port}{path} || curl -fsS -o /dev/null http://127.0.0.1:{port}{path} || exit 1"
                ),
            ],
            Probe::Tcp { port } => vec![
                "CMD-SHELL".into(),
                format!("nc -z 127.0.0.1 {port} || exit 1"),
            ],
        };
        c.insert(
            "Healthcheck".into(),
            json!({"Test": test, "Interval": h.interval.as_nanos() as u64, "Timeout": h.timeout.as_nanos() as u64,
                   "StartPeriod": h.start_period.as_nanos() as u64, "Retries": h.retries}),
        );
    }
    let mut labels = obj(c.get("Labels"));
    for (k, v) in info
        .to_keys()
        .into_iter()
        .chain(agent.metadata.labels.clone())
        .chain(extra_labels.clone())
    {
        labels.insert(k, json!(v));
    }
    labels.insert(AGENT_YAML_LABEL.into(), json!(AGENT_YAML_PATH));
    if !agent.spec.dependencies.is_empty() {
        labels.insert(
            "dev.agent-registry.dependencies".into(),
            json!(agent.spec.dependencies.join(",")),
        );
    }
    c.insert("Labels".into(), Value::Object(labels));

    let rootfs = root
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        Some(ids) if ids.len() == base_layers => ids.push(json!(layer.diff_id.to_string())),
        Some(ids) => {
            return Err(BuildError::Base(
                "config".into(),
                format!(
                    "lists {} rootfs.diff_ids for {base_layers} layers",
                    ids.len()
                ),
            ));
        }
        None => {
            return Err(BuildError::Base(
                "config".into(),
                "has no rootfs.diff_ids".into(),
            ));
        }
    }
    let history = root.entry("history").or_insert_with(|| json!([]));
    if let Some(h) = history.as_array_mut() {
        h.push(json!({"created": created_text, "created_by": "agent build", "comment": format!("{} files of {}", layer.files, agent.metadata.name)}));
    }
    Ok(config)
}

fn obj(v: Option<&Value>) -> Map<String, Value> {
    v.and_then(Value::as_object).cloned().unwrap_or_default()
}
