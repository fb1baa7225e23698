//! The Docker/Podman Engine API backend (through bollard): images that live in an engine
//! rather than in the daemonless store, and containers to run agents in.
//!
//! Podman serves the same API (`podman system service`), so one client serves both; only
//! where the socket is differs. Credentials go to the engine with each pull
//! (`X-Registry-Auth`) and nowhere else: not into the container, not into logs.

use std::collections::HashMap;

use agent_registry_client::{Credential, ImageRef};
use agent_registry_oci::Digest;
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    AttachContainerOptions, CreateImageOptions, ListImagesOptions, PruneImagesOptions,
    PushImageOptions, RemoveContainerOptions,
};
use futures_util::StreamExt as _;

use crate::failure::{FailureKind, PullFailure};
use crate::transfer::{PullSource, Pulled};

/// Which engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Docker,
    Podman,
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "docker" => Ok(EngineKind::Docker),
            "podman" => Ok(EngineKind::Podman),
            other => Err(format!("unknown engine {other:?}: use docker or podman")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the {kind} engine at {socket}: {cause} (is it running?)")]
    Unreachable {
        kind: &'static str,
        socket: String,
        cause: String,
    },
    #[error("the engine failed while {doing}: {cause}")]
    Failed { doing: String, cause: String },
}

/// An image an engine holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineImage {
    /// `sha256:...`, the engine's image ID (its config's digest).
    pub id: String,
    /// `repository:tag` names; none for an untagged image.
    pub names: Vec<String>,
    /// `repository@sha256:...` for images pulled from or pushed to a registry.
    pub digests: Vec<String>,
    /// Seconds since the epoch.
    pub created: i64,
    pub size: u64,
}

/// What an engine's images take on its disk, counted as `docker system df` counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EngineUsage {
    pub images: u64,
    /// Images some container, running or not, was made from.
    pub active: u64,
    /// Bytes of the distinct layers of every image.
    pub size: u64,
    /// What removing the images no container uses would free.
    pub reclaimable: u64,
}

/// A connection to an engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    /// The API socket's path, for the one call bollard's models cannot read (`/system/df`).
    socket: String,
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    /// Replaces the image's command when not empty.
    pub cmd: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// `HOST:CONTAINER` port pairs (TCP).
    pub ports: Vec<(u16, u16)>,
}

impl Engine {
    /// Connects to `socket`, or to the engine's usual socket: `DOCKER_HOST` or
    /// `/var/run/docker.sock` for docker; `CONTAINER_HOST`,
    /// `$XDG_RUNTIME_DIR/podman/podman.sock` or `/run/podman/podman.sock` for podman.
    pub async fn connect(kind: EngineKind, socket: Option<&str>) -> Result<Engine, EngineError> {
        let socket = socket
            .map(str::to_owned)
            .unwrap_or_else(|| default_socket(kind));
        let name = match kind {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
        };
        let unreachable = |cause: String| EngineError::Unreachable {
            kind: name,
            socket: socket.clone(),
            cause,
        };
        let docker = Docker::connect_with_socket(&socket, 600, bollard::API_DEFAULT_VERSION)
            .map_err(|e| unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let socket = socket.trim_start_matches("unix://").to_owned();
        Ok(Engine { docker, socket })
    }

    /// The image the engine holds under `image`'s name, if any.
    pub async fn local(&self, image: &ImageRef) -> Result<Option<Pulled>, EngineError> {
        let name = engine_name(image);
        match self.docker.inspect_image(&name).await {
            Ok(inspect) => {
                let id = inspect
                    .id
                    .as_deref()
                    .and_then(|i| i.parse::<Digest>().ok())
                    .ok_or_else(|| EngineError::Failed {
                        doing: format!("inspecting {name}"),
                        cause: "the engine gave no image ID".into(),
                    })?;
                let digest = inspect
                    .repo_digests
                    .unwrap_or_default()
                    .iter()
                    .find_map(|d| d.rsplit_once('@').and_then(|(_, d)| d.parse().ok()))
                    .unwrap_or_else(|| id.clone());
                Ok(Some(Pulled {
                    name: image.familiar(),
                    digest,
                    media_type: String::new(),
                    id,
                    size: inspect.size.unwrap_or(0).max(0) as u64,
                    source: PullSource::Cached,
                }))
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::Failed {
                doing: format!("inspecting {name}"),
                cause: e.to_string(),
            }),
        }
    }

    /// Has the engine pull `image` with `credential`; classified on failure.
    pub async fn pull(
        &self,
        image: &ImageRef,
        credential: &Credential,
    ) -> Result<Pulled, PullFailure> {
        let name = engine_name(image);
        let (from_image, tag) = match (&image.digest, image.tag_or_latest()) {
            (Some(_), _) => (name.clone(), None),
            (None, Some(t)) => (
                name.rsplit_once(':')
                    .map_or(name.clone(), |(r, _)| r.to_owned()),
                Some(t.to_string()),
            ),
            (None, None) => (name.clone(), None),
        };
        let options = CreateImageOptions {
            from_image: Some(from_image),
            tag,
            ..Default::default()
        };
        let mut progress =
            self.docker
                .create_image(Some(options), None, credentials(image, credential));
        while let Some(step) = progress.next().await {
            if let Err(e) = step {
                return Err(classify(&image.familiar(), &e.to_string()));
            }
        }
        match self.local(image).await {
            Ok(Some(mut pulled)) => {
                pulled.source = PullSource::Downloaded;
                Ok(pulled)
            }
            Ok(None) => Err(PullFailure {
                kind: FailureKind::Other,
                image: image.familiar(),
                cause: format!("the engine reported {name} pulled but does not have it"),
            }),
            Err(e) => Err(PullFailure {
                kind: FailureKind::Other,
                image: image.familiar(),
                cause: e.to_string(),
            }),
        }
    }

    /// Has the engine push `image` (which it holds under that name) to its registry with
    /// `credential`; returns the manifest digest the registry stored. Classified on failure.
    pub async fn push(
        &self,
        image: &ImageRef,
        credential: &Credential,
    ) -> Result<Digest, PullFailure> {
        let name = engine_name(image);
        let failure = |kind: FailureKind, cause: String| PullFailure {
            kind,
            image: image.familiar(),
            cause,
        };
        match self.local(image).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(failure(
                    FailureKind::ImageNotFound,
                    format!("the engine has no image {name} to push (see `agent images --engine`)"),
                ));
            }
            Err(e) => return Err(failure(FailureKind::Other, e.to_string())),
        }
        let (repository, tag) = match image.tag_or_latest() {
            Some(t) if image.digest.is_none() => (
                name.rsplit_once(':')
                    .map_or(name.as_str(), |(r, _)| r)
                    .to_owned(),
                Some(t.to_string()),
            ),
            _ => (name.clone(), None),
        };
        let options = PushImageOptions {
            tag,
            ..Default::default()
        };
        let mut progress =
            self.docker
                .push_image(&repository, Some(options), credentials(image, credential));
        let mut digest = None;
        while let Some(step) = progress.next().await {
            let info = step.map_err(|e| classify(&image.familiar(), &e.to_string()))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(classify(&image.familiar(), &error));
            }
            // The engine's last word is `<tag>: digest: sha256:... size: N`.
            if let Some(found) = info.status.as_deref().and_then(pushed_digest) {
                digest = Some(found);
            }
        }
        digest.ok_or_else(|| {
            failure(
                FailureKind::Other,
                format!(
                    "the engine pushed {name} but did not say which digest the registry stored"
                ),
            )
        })
    }

    /// Every image the engine holds, newest first.
    pub async fn images(&self) -> Result<Vec<EngineImage>, EngineError> {
        let mut found: Vec<EngineImage> = self
            .docker
            .list_images(None::<ListImagesOptions>)
            .await
            .map_err(|e| EngineError::Failed {
                doing: "listing images".into(),
                cause: e.to_string(),
            })?
            .into_iter()
            .map(|i| EngineImage {
                id: i.id,
                names: i
                    .repo_tags
                    .into_iter()
                    .filter(|t| t != "<none>:<none>")
                    .collect(),
                digests: i.repo_digests,
                created: i.created,
                size: i.size.max(0) as u64,
            })
            .collect();
        found.sort_by_key(|i| std::cmp::Reverse(i.created));
        Ok(found)
    }

    /// What the engine's images take on disk, from its `/system/df`. Asked for without an API
    /// version, the engine answers in its own version's shape; bollard's model reads only the
    /// newest one, so this reads the fields every engine since API 1.25 (and Podman) sends.
    pub async fn disk_usage(&self) -> Result<EngineUsage, EngineError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Df {
            layers_size: i64,
            #[serde(default)]
            images: Option<Vec<DfImage>>,
        }
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct DfImage {
            size: i64,
            shared_size: i64,
            containers: i64,
        }
        let failed = |cause: String| EngineError::Failed {
            doing: "reading its disk usage".into(),
            cause,
        };
        let df: Df = reqwest::Client::builder()
            .unix_socket(self.socket.as_str())
            .build()
            .map_err(|e| failed(e.to_string()))?
            .get("http://engine/system/df")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| failed(e.to_string()))?
            .json()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let images = df.images.unwrap_or_default();
        // The docker CLI's reckoning: all layers, less what active images hold alone.
        let used: i64 = images
            .iter()
            .filter(|i| i.containers > 0 && i.size >= 0 && i.shared_size >= 0)
            .map(|i| i.size - i.shared_size)
            .sum();
        let size = df.layers_size.max(0) as u64;
        Ok(EngineUsage {
            images: images.len() as u64,
            active: images.iter().filter(|i| i.containers > 0).count() as u64,
            size,
            reclaimable: size.saturating_sub(used.max(0) as u64),
        })
    }

    /// Has the engine remove its unused images: untagged ones, or with `all` every image no
    /// container uses. Returns the images that went (found by listing before and after, as
    /// the engine's own answer mixes images with layers) and the space it freed.
    pub async fn prune(&self, all: bool) -> Result<(Vec<EngineImage>, u64), EngineError> {
        let before = self.images().await?;
        let filters =
            all.then(|| HashMap::from([("dangling".to_owned(), vec!["false".to_owned()])]));
        let pruned = self
            .docker
            .prune_images(Some(PruneImagesOptions { filters }))
            .await
            .map_err(|e| EngineError::Failed {
                doing: "pruning images".into(),
                cause: e.to_string(),
            })?;
        let after: std::collections::HashSet<String> =
            self.images().await?.into_iter().map(|i| i.id).collect();
        let removed = before
            .into_iter()
            .filter(|i| !after.contains(&i.id))
            .collect();
        Ok((removed, pruned.space_reclaimed.unwrap_or(0).max(0) as u64))
    }

    /// Runs `image` to completion, streaming its output to `out` (stdout and stderr as the
    /// container wrote them), removes the container, and returns its exit code.
    pub async fn run(
        &self,
        image: &ImageRef,
        spec: &RunSpec,
        mut out: impl FnMut(&[u8], bool),
    ) -> Result<i64, EngineError> {
        let failed = |doing: &str, e: bollard::errors::Error| EngineError::Failed {
            doing: doing.to_owned(),
            cause: e.to_string(),
        };
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for (host, container) in &spec.ports {
            bindings.insert(
                format!("{container}/tcp"),
                Some(vec![PortBinding {
                    host_ip: None,
                    host_port: Some(host.to_string()),
                }]),
            );
        }
        let body = ContainerCreateBody {
            image: Some(engine_name(image)),
            cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
            env: (!spec.env.is_empty()).then(|| spec.env.clone()),
            exposed_ports: (!bindings.is_empty()).then(|| bindings.keys().cloned().collect()),
            host_config: Some(HostConfig {
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                ..Default::default()
            }),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None, body)
            .await
            .map_err(|e| failed("creating the container", e))?;
        let id = created.id;
        let outcome = async {
            // Attach before starting, as docker's own CLI does: output written before a
            // later attach (or a logs request) would otherwise be lost.
            let attached = self
                .docker
                .attach_container(
                    &id,
                    Some(AttachContainerOptions {
                        stream: true,
                        logs: true,
                        stdout: true,
                        stderr: true,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| failed("attaching to the container", e))?;
            self.docker
                .start_container(&id, None)
                .await
                .map_err(|e| failed("starting the container", e))?;
            let mut output = attached.output;
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| failed("reading the container's output", e))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        out(&message, false)
                    }
                    LogOutput::StdErr { message } => out(&message, true),
                    LogOutput::StdIn { .. } => {}
                }
            }
            let mut wait = self.docker.wait_container(&id, None);
            let mut code = 0;
            while let Some(status) = wait.next().await {
                match status {
                    Ok(s) => code = s.status_code,
                    Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => {
                        code = c
                    }
                    Err(e) => return Err(failed("waiting for the container", e)),
                }
            }
            Ok(code)
        }
        .await;
        let _ = self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        outcome
    }
}

/// The digest in a push's final status line (`1.0: digest: sha256:... size: 528`).
fn pushed_digest(status: &str) -> Option<Digest> {
    let (_, rest) = status.split_once("digest: ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The name an engine knows an image by: Docker Hub images by their familiar name, others
/// with their registry.
fn engine_name(image: &ImageRef) -> String {
    let mut s = image.familiar_repository();
    match (&image.digest, image.tag_or_latest()) {
        (Some(d), _) => {
            s.push('@');
            s.push_str(&d.to_string());
        }
        (None, Some(t)) => {
            s.push(':');
            s.push_str(t.as_str());
        }
        (None, None) => {}
    }
    s
}

fn default_socket(kind: EngineKind) -> String {
    match kind {
        EngineKind::Docker => std::env::var("DOCKER_HOST")
            .ok()
            .filter(|h| h.starts_with("unix://"))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
        EngineKind::Podman => std::env::var("CONTAINER_HOST")
            .ok()
            .filter(|h| h.starts_with("unix://"))
            .or_else(|| {
                let run = std::env::var("XDG_RUNTIME_DIR").ok()?;
                let path = format!("{run}/podman/podman.sock");
                std::path::Path::new(&path)
                    .exists()
                    .then(|| format!("unix://{path}"))
            })
            .unwrap_or_else(|| "unix:///run/podman/podman.sock".into()),
    }
}

/// The engine's form of a credential, for this pull only.
fn credentials(image: &ImageRef, credential: &Credential) -> Option<DockerCredentials> {
    let server = Some(image.api_host().to_owned());
    match credential {
        Credential::Anonymous => None,
        Credential::Basic { username, password } => Some(DockerCredentials {
            username: Some(username.clone()),
            password: Some(password.clone()),
            serveraddress: server,
            ..Default::default()
        }),
        Credential::Token(token) => Some(DockerCredentials {
            registrytoken: Some(token.clone()),
            serveraddress: server,
            ..Default::default()
        }),
        Credential::OAuth2 {
            username,
            password,
            refresh_token,
            ..
        } => Some(DockerCredentials {
            username: username.clone(),
            password: password.clone(),
            identitytoken: refresh_token.clone(),
            serveraddress: server,
            ..Default::default()
        }),
    }
}

/// Classifies an engine's pull error by what engines say.
fn classify(image: &str, message: &str) -> PullFailure {
    let m = message.to_ascii_lowercase();
    let kind = if m.contains("manifest unknown")
        || m.contains("not found")
        || m.contains("does not exist")
    {
        FailureKind::ImageNotFound
    } else if m.contains("unauthorized")
        || m.contains("authentication required")
        || m.contains("denied")
        || m.contains("no basic auth credentials")
    {
        FailureKind::AuthenticationFailed
    } else if m.contains("toomanyrequests") || m.contains("rate limit") {
        FailureKind::RateLimited
    } else if m.contains("no space left") || m.contains("disk quota") {
        FailureKind::DiskFull
    } else if m.contains("connection refused")
        || m.contains("timeout")
        || m.contains("dial tcp")
        || m.contains("no such host")
        || m.contains("connection reset")
    {
        FailureKind::NetworkTimeout
    } else {
        FailureKind::Other
    };
    PullFailure {
        kind,
        image: image.to_owned(),
        cause: format!("the engine could not pull {image}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_are_classified_by_what_engines_say() {
        for (msg, kind) in [
            (
                "manifest unknown: manifest unknown",
                FailureKind::ImageNotFound,
            ),
            (
                "pull access denied for x, repository does not exist",
                FailureKind::ImageNotFound,
            ),
            (
                "unauthorized: authentication required",
                FailureKind::AuthenticationFailed,
            ),
            (
                "toomanyrequests: You have reached your pull rate limit",
                FailureKind::RateLimited,
            ),
            (
                "write /var/lib/docker/x: no space left on device",
                FailureKind::DiskFull,
            ),
            (
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                FailureKind::NetworkTimeout,
            ),
            ("something else", FailureKind::Other),
        ] {
            assert_eq!(classify("x", msg).kind, kind, "{msg}");
        }
    }

    #[test]
    fn engines_name_hub_images_familiarly_and_others_fully() {
        let n = |s: &str| engine_name(&s.parse().expect("ref"));
        assert_eq!(n("busybox"), "busybox:latest");
        assert_eq!(n("localhost:5000/a/b:1"), "localhost:5000/a/b:1");
    }

    #[test]
    fn a_push_reports_the_digest_in_its_last_status_line() {
        let digest = "sha256:4c3e5a8b9d2f1e0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a";
        assert_eq!(
            pushed_digest(&format!("1.0: digest: {digest} size: 528")),
            digest.parse().ok()
        );
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(pushed_digest("latest: digest: nonsense size: 1"), None);
    }

    #[test]
    fn credentials_go_to_the_engine_for_the_registry_they_belong_to() {
        let image: ImageRef = "r.example.com/a:1".parse().expect("ref");
        let c = credentials(
            &image,
            &Credential::Basic {
                username: "u".into(),
                password: "p".into(),
            },
        )
        .expect("basic");
        assert_eq!(c.serveraddress.as_deref(), Some("r.example.com"));
        assert_eq!(credentials(&image, &Credential::Anonymous), None);
    }
}
