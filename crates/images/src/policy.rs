//! Making sure an image is on the node, under a pull policy, with events and classified
//! failures:
//!
//! - `Always` asks the registry every time (layers the store has are not downloaded again);
//! - `IfNotPresent` (the default) uses the local copy when there is one;
//! - `Never` makes no network call: the local copy, or `ImageNotFound` at once.

use std::str::FromStr;
use std::time::{Duration, Instant};

use agent_registry_client::{Client, Credential, ImageRef};

use crate::engine::Engine;
use crate::events::{EventBus, EventKind, ImageEvent};
use crate::failure::{FailureKind, PullFailure};
use crate::store::LocalStore;
use crate::transfer::{self, PullSource, Pulled, TransferOptions, TransferProgress};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl FromStr for PullPolicy {
    type Err = String;

    /// Kubernetes' names, and the CLI's `always`, `missing`, `never`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Always" | "always" => Ok(PullPolicy::Always),
            "IfNotPresent" | "if-not-present" | "missing" => Ok(PullPolicy::IfNotPresent),
            "Never" | "never" => Ok(PullPolicy::Never),
            other => Err(format!(
                "unknown pull policy {other:?}: use Always, IfNotPresent or Never (always, missing, never)"
            )),
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        })
    }
}

/// One request to have an image on the node.
#[derive(Debug, Clone)]
pub struct Ensure<'a> {
    pub image: &'a ImageRef,
    pub policy: PullPolicy,
    pub execution_id: Option<&'a str>,
    /// The whole pull must finish within this, or it fails as `NetworkTimeout`.
    pub timeout: Option<Duration>,
}

/// Where an image is ensured.
pub enum Backend<'a> {
    /// The daemonless local store, filled through a registry client.
    Store {
        client: &'a Client,
        store: &'a LocalStore,
        options: &'a TransferOptions,
        progress: &'a dyn TransferProgress,
    },
    /// A Docker or Podman engine, which pulls with `credential`.
    Engine {
        engine: &'a Engine,
        credential: &'a Credential,
    },
}

impl Backend<'_> {
    async fn local(&self, image: &ImageRef) -> Result<Option<Pulled>, PullFailure> {
        let name = image.familiar();
        match self {
            Backend::Store { store, .. } => {
                transfer::stored(store, &name).map_err(|e| PullFailure::classify(&name, &e))
            }
            Backend::Engine { engine, .. } => engine.local(image).await.map_err(|e| PullFailure {
                kind: FailureKind::Other,
                image: name,
                cause: e.to_string(),
            }),
        }
    }

    async fn pull(&self, image: &ImageRef) -> Result<Pulled, PullFailure> {
        match self {
            Backend::Store {
                client,
                store,
                options,
                progress,
            } => transfer::pull(client, image, store, options, *progress)
                .await
                .map_err(|e| PullFailure::classify(&image.familiar(), &e)),
            Backend::Engine { engine, credential } => engine.pull(image, credential).await,
        }
    }
}

impl std::fmt::Debug for Backend<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Store { .. } => "Backend::Store",
            Backend::Engine { .. } => "Backend::Engine",
        })
    }
}

/// Ensures `request.image` is in `backend`, pulling as the policy says, and reports each
/// step on `events`.
pub async fn ensure(
    backend: &Backend<'_>,
    request: &Ensure<'_>,
    events: &EventBus,
) -> Result<Pulled, PullFailure> {
    let name = request.image.familiar();
    let started = Instant::now();
    let event = |kind| {
        let mut e = ImageEvent::new(kind, &name);
        e.execution_id = request.execution_id.map(str::to_owned);
        e
    };
    events.emit(event(EventKind::ImagePullStarted {
        policy: request.policy.to_string(),
    }));
    let result = match request.policy {
        PullPolicy::Never | PullPolicy::IfNotPresent => match backend.local(request.image).await {
            Ok(Some(local)) => Ok(local),
            Ok(None) if request.policy == PullPolicy::Never => Err(PullFailure {
                kind: FailureKind::ImageNotFound,
                image: name.clone(),
                cause: format!(
                    "image not found: {name} is not present locally and the pull policy is Never"
                ),
            }),
            Ok(None) => pull(backend, request).await,
            Err(e) => Err(e),
        },
        PullPolicy::Always => pull(backend, request).await,
    };
    let duration_ms = Some(started.elapsed().as_millis() as u64);
    match &result {
        Ok(pulled) => {
            let mut done = event(EventKind::ImagePullCompleted {
                source: pulled.source,
            });
            done.digest = Some(pulled.digest.clone());
            done.size = Some(pulled.size);
            done.duration_ms = duration_ms;
            events.emit(done);
            if pulled.source == PullSource::Downloaded {
                let mut cached = event(EventKind::ImageCached);
                cached.digest = Some(pulled.digest.clone());
                cached.size = Some(pulled.size);
                events.emit(cached);
            }
        }
        Err(failure) => {
            let mut failed = event(EventKind::ImagePullFailed {
                reason: failure.kind,
                message: failure.to_string(),
            });
            failed.duration_ms = duration_ms;
            events.emit(failed);
        }
    }
    result
}

async fn pull(backend: &Backend<'_>, request: &Ensure<'_>) -> Result<Pulled, PullFailure> {
    let name = request.image.familiar();
    let pulling = backend.pull(request.image);
    match request.timeout {
        Some(limit) => tokio::time::timeout(limit, pulling)
            .await
            .unwrap_or_else(|_| {
                Err(PullFailure {
                    kind: FailureKind::NetworkTimeout,
                    image: name.clone(),
                    cause: format!(
                        "failed to connect to registry {}: the pull of {name} did not finish within {limit:?}",
                        request.image.registry()
                    ),
                })
            }),
        None => pulling.await,
    }
}
