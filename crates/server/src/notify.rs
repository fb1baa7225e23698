//! Notifications: every manifest push, pull and delete (and blob delete) as the distribution
//! event envelope (`application/vnd.docker.distribution.events.v1+json`), POSTed to each
//! configured webhook and published to NATS when configured.
//!
//! Each destination has its own bounded queue and delivery task, so a slow or absent
//! receiver never slows a request or another destination. Events go out in order, in batches
//! of up to [`BATCH`]; a failed delivery is retried with exponential backoff (from
//! `backoff_ms`, doubling to a minute) until it succeeds or `give_up_after_secs` pass, and is
//! then written to the dead-letter log (`<root>/notifications/dead-letter.jsonl`, one JSON
//! line per batch with the destination and the last error). Events that find a full queue go
//! straight to the dead-letter log.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{NotificationsConfig, WebhookConfig};

/// Events one delivery carries at most.
const BATCH: usize = 100;
/// Events waiting per destination before new ones are dead-lettered.
const QUEUE: usize = 10_000;
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The longest one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

pub const ENVELOPE_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// One event, in the distribution format.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    /// `push`, `pull` or `delete`.
    pub action: &'static str,
    pub target: Target,
    pub request: RequestInfo,
    pub actor: Actor,
    pub source: Source,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    pub repository: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

#[derive(Serialize)]
struct Envelope<'a> {
    events: &'a [Event],
}

/// The destinations, each behind its queue.
#[derive(Debug)]
pub struct Notifier {
    queues: Vec<(String, mpsc::Sender<Event>)>,
    dead_letters: Arc<DeadLetters>,
    /// Names this process in every event's `source`.
    pub instance_id: String,
}

impl Notifier {
    /// Starts a delivery task per destination; `None` when none is configured.
    pub async fn start(
        config: &NotificationsConfig,
        root: &Path,
    ) -> anyhow::Result<Option<Notifier>> {
        if config.webhooks.is_empty() && config.nats.is_none() {
            return Ok(None);
        }
        let dead_letters = Arc::new(DeadLetters::new(root.join("notifications"))?);
        let mut queues = Vec::new();
        for hook in &config.webhooks {
            let (tx, rx) = mpsc::channel(QUEUE);
            let retry = Retry::new(hook.backoff_ms, hook.give_up_after_secs);
            tokio::spawn(deliver_all(
                hook.name.clone(),
                rx,
                webhook(hook)?,
                retry,
                dead_letters.clone(),
            ));
            queues.push((hook.name.clone(), tx));
        }
        if let Some(config) = &config.nats {
            // A NATS server that is down must not keep the registry from starting: the client
            // connects in the background and events wait (and retry) meanwhile.
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(&config.url)
                .await
                .with_context(|| {
                    format!("connecting to NATS at {} (notifications.nats)", config.url)
                })?;
            let (tx, rx) = mpsc::channel(QUEUE);
            let retry = Retry::new(config.backoff_ms, config.give_up_after_secs);
            let deliver = nats(client, config.subject.clone());
            tokio::spawn(deliver_all(
                "nats".to_owned(),
                rx,
                deliver,
                retry,
                dead_letters.clone(),
            ));
            queues.push(("nats".to_owned(), tx));
        }
        Ok(Some(Notifier {
            queues,
            dead_letters,
            instance_id: uuid::Uuid::new_v4().to_string(),
        }))
    }

    /// Queues `event` for every destination; never waits.
    pub fn notify(&self, event: Event) {
        for (name, queue) in &self.queues {
            if let Err(
                mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
            ) = queue.try_send(event.clone())
            {
                self.dead_letters
                    .write(name, "the queue is full", std::slice::from_ref(&event));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    first: Duration,
    give_up_after: Duration,
}

impl Retry {
    fn new(backoff_ms: u64, give_up_after_secs: u64) -> Retry {
        Retry {
            first: Duration::from_millis(backoff_ms.max(1)),
            give_up_after: Duration::from_secs(give_up_after_secs),
        }
    }
}

/// Sends one batch somewhere.
type Deliver = Box<dyn Fn(Vec<Event>) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// POSTs a batch as the envelope to the hook's URL; anything but 2xx is a failure.
fn webhook(hook: &WebhookConfig) -> anyhow::Result<Deliver> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in &hook.headers {
        let bad = || format!("notifications.webhooks {}: header {name:?}", hook.name);
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).with_context(bad)?,
            value.parse().with_context(bad)?,
        );
    }
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(hook.timeout_secs.max(1)))
        .build()
        .context("building the webhook client")?;
    let url = hook.url.clone();
    Ok(Box::new(move |events: Vec<Event>| {
        let request = http
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, ENVELOPE_TYPE)
            .body(serde_json::to_vec(&Envelope { events: &events }).unwrap_or_default())
            .send();
        Box::pin(async move {
            // `{:#}` prints the error with its causes ("connection refused" and the like).
            let response = request
                .await
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))?;
            match response.status() {
                s if s.is_success() => Ok(()),
                s => Err(format!("the receiver answered {s}")),
            }
        })
    }))
}

/// Publishes each event of a batch as JSON to `subject`.
fn nats(client: async_nats::Client, subject: String) -> Deliver {
    Box::new(move |events: Vec<Event>| {
        let (client, subject) = (client.clone(), subject.clone());
        Box::pin(async move {
            for event in &events {
                let payload = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                client
                    .publish(subject.clone(), payload.into())
                    .await
                    .map_err(|e| e.to_string())?;
            }
            client.flush().await.map_err(|e| e.to_string())
        })
    })
}

/// Delivers what `queue` receives, batch by batch, in order, retrying each batch until it is
/// delivered or its time is up.
async fn deliver_all(
    name: String,
    mut queue: mpsc::Receiver<Event>,
    deliver: Deliver,
    retry: Retry,
    dead_letters: Arc<DeadLetters>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(event) => batch.push(event),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut wait = retry.first;
        loop {
            // A destination that hangs (NATS still connecting, say) fails like one that refuses.
            let limit = retry
                .give_up_after
                .clamp(Duration::from_secs(1), ATTEMPT_TIMEOUT);
            let attempt = tokio::time::timeout(limit, deliver(batch.clone()))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {}s", limit.as_secs())));
            match attempt {
                Ok(()) => break,
                Err(e) if started.elapsed() + wait > retry.give_up_after => {
                    tracing::warn!(destination = name, error = %e, events = batch.len(), "giving up on notifications; see the dead-letter log");
                    dead_letters.write(&name, &e, &batch);
                    break;
                }
                Err(e) => {
                    tracing::debug!(destination = name, error = %e, ?wait, "notification delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Batches that could not be delivered, one JSON line each.
#[derive(Debug)]
struct DeadLetters {
    path: PathBuf,
    file: std::sync::Mutex<()>,
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    destination: &'a str,
    error: &'a str,
    failed_at: String,
    events: &'a [Event],
}

impl DeadLetters {
    fn new(dir: PathBuf) -> anyhow::Result<DeadLetters> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(DeadLetters {
            path: dir.join("dead-letter.jsonl"),
            file: std::sync::Mutex::new(()),
        })
    }

    fn write(&self, destination: &str, error: &str, events: &[Event]) {
        let line = DeadLetter {
            destination,
            error,
            failed_at: now_rfc3339(),
            events,
        };
        let Ok(mut text) = serde_json::to_vec(&line) else {
            return;
        };
        text.push(b'\n');
        let _guard = self.file.lock();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(&text));
        if let Err(e) = written {
            tracing::error!(path = %self.path.display(), error = %e, "notifications were lost: the dead-letter log could not be written");
        }
    }
}

/// Now, in RFC 3339 to the second (event and log line times).
pub fn now_rfc3339() -> String {
    agent_registry_oci::catalogue::format_rfc3339(crate::unix_now())
}

/// What a request will report once answered, taken before it is handled (the handler consumes
/// the request).
#[derive(Debug)]
pub(crate) struct Notice {
    action: &'static str,
    repository: String,
    /// The tag or digest in the path.
    reference: String,
    kind: &'static str,
    method: String,
    content_type: Option<String>,
    content_length: Option<u64>,
    host: String,
    useragent: String,
    addr: String,
}

impl Notice {
    /// `None` for requests that are not notified: manifest pushes, pulls and deletes, and
    /// blob deletes, are.
    pub(crate) fn of(
        endpoint: &crate::endpoint::Endpoint,
        method: &axum::http::Method,
        headers: &axum::http::HeaderMap,
        client: Option<std::net::IpAddr>,
    ) -> Option<Notice> {
        use crate::endpoint::Endpoint;
        use axum::http::Method;
        let (action, name, reference, kind) = match (endpoint, method) {
            (Endpoint::Manifest { name, reference }, &Method::GET) => {
                ("pull", name, reference, "manifests")
            }
            (Endpoint::Manifest { name, reference }, &Method::PUT) => {
                ("push", name, reference, "manifests")
            }
            (Endpoint::Manifest { name, reference }, &Method::DELETE) => {
                ("delete", name, reference, "manifests")
            }
            (Endpoint::Blob { name, digest }, &Method::DELETE) => ("delete", name, digest, "blobs"),
            _ => return None,
        };
        let header = |h: axum::http::HeaderName| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Some(Notice {
            action,
            repository: name.to_string(),
            reference: reference.clone(),
            kind,
            method: method.to_string(),
            content_type: header(axum::http::header::CONTENT_TYPE),
            content_length: header(axum::http::header::CONTENT_LENGTH).and_then(|v| v.parse().ok()),
            host: header(axum::http::header::HOST).unwrap_or_default(),
            useragent: header(axum::http::header::USER_AGENT).unwrap_or_default(),
            addr: client.map(|a| a.to_string()).unwrap_or_default(),
        })
    }

    /// The event for a successful answer; `None` for a failed one.
    pub(crate) fn event(
        self,
        response: &axum::response::Response,
        actor: Option<&str>,
        source: &str,
        notifier: &Notifier,
        scheme: &str,
    ) -> Option<Event> {
        if !response.status().is_success() {
            return None;
        }
        let header = |h: &str| {
            response
                .headers()
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let by_digest = self.reference.parse::<agent_registry_oci::Digest>().is_ok();
        let digest =
            header("docker-content-digest").or_else(|| by_digest.then(|| self.reference.clone()));
        let (media_type, size) = match self.action {
            "pull" => (
                header("content-type"),
                header("content-length").and_then(|v| v.parse().ok()),
            ),
            "push" => (self.content_type, self.content_length),
            _ => (None, None),
        };
        let url = format!(
            "{scheme}://{}/v2/{}/{}/{}",
            self.host,
            self.repository,
            self.kind,
            digest.as_deref().unwrap_or(&self.reference)
        );
        Some(Event {
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: now_rfc3339(),
            action: self.action,
            target: Target {
                media_type,
                digest,
                size,
                length: size,
                url,
                repository: self.repository,
                tag: (!by_digest && self.kind == "manifests").then_some(self.reference),
            },
            request: RequestInfo {
                id: uuid::Uuid::new_v4().to_string(),
                addr: self.addr,
                host: self.host,
                method: self.method,
                useragent: self.useragent,
            },
            actor: Actor {
                name: actor.map(str::to_owned),
            },
            source: Source {
                addr: source.to_owned(),
                instance_id: notifier.instance_id.clone(),
            },
        })
    }
}
