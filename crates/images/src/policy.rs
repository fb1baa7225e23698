//! Making sure an image is on the node, under a pull policy, with events and classified
//! failures:
//!
//! - `Always` asks the registry every time (layers the store has are not downloaded again);
//! - `IfNotPresent` (the default) uses the local copy when there is one;
//! - `Never` makes no network call: the local copy, or `ImageNotFound` at once.

use std::str::FromStr;
use std::time::{Duration, Instant};

use agent_registry_client::{Client, ImageRef};

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

/// Ensures `request.image` is in `store`, pulling through `client` as the policy says, and
/// reports each step on `events`.
pub async fn ensure(
    client: &Client,
    store: &LocalStore,
    request: &Ensure<'_>,
    options: &TransferOptions,
    progress: &dyn TransferProgress,
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
        PullPolicy::Never | PullPolicy::IfNotPresent => match transfer::stored(store, &name) {
            Ok(Some(local)) => Ok(local),
            Ok(None) if request.policy == PullPolicy::Never => Err(PullFailure {
                kind: FailureKind::ImageNotFound,
                image: name.clone(),
                cause: format!(
                    "image not found: {name} is not in the local store and the pull policy is Never"
                ),
            }),
            Ok(None) => pull(client, store, request, options, progress).await,
            Err(e) => Err(PullFailure::classify(&name, &e)),
        },
        PullPolicy::Always => pull(client, store, request, options, progress).await,
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

async fn pull(
    client: &Client,
    store: &LocalStore,
    request: &Ensure<'_>,
    options: &TransferOptions,
    progress: &dyn TransferProgress,
) -> Result<Pulled, PullFailure> {
    let name = request.image.familiar();
    let pulling = transfer::pull(client, request.image, store, options, progress);
    let outcome = match request.timeout {
        Some(limit) => match tokio::time::timeout(limit, pulling).await {
            Ok(outcome) => outcome,
            Err(_) => {
                return Err(PullFailure {
                    kind: FailureKind::NetworkTimeout,
                    image: name.clone(),
                    cause: format!(
                        "failed to connect to registry {}: the pull of {name} did not finish within {limit:?}",
                        request.image.registry()
                    ),
                });
            }
        },
        None => pulling.await,
    };
    outcome.map_err(|e| PullFailure::classify(&name, &e))
}
