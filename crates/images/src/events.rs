//! Image events for node operators: what was pulled, from where, how long it took, what
//! failed and why. Emitted on an in-process [`EventBus`] to its sinks: JSON lines to a file
//! or stdout, an HTTP webhook, a NATS subject (JetStream-acknowledged when a stream holds
//! it). A sink that fails logs and never fails the pull it reports on. Network sinks deliver
//! from a queue, in order; [`EventBus::close`] waits until they have.

use std::future::Future;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use agent_registry_oci::Digest;
use serde::Serialize;

use crate::failure::FailureKind;
use crate::transfer::PullSource;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum EventKind {
    ImagePullStarted {
        policy: String,
    },
    ImagePullCompleted {
        source: PullSource,
    },
    ImagePullFailed {
        reason: FailureKind,
        message: String,
    },
    ImageCached,
    ImageRemoved,
}

/// One event, with what every event carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageEvent {
    #[serde(flatten)]
    pub kind: EventKind,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
}

impl ImageEvent {
    pub fn new(kind: EventKind, image: impl Into<String>) -> ImageEvent {
        ImageEvent {
            kind,
            image: image.into(),
            digest: None,
            execution_id: None,
            size: None,
            duration_ms: None,
            timestamp_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

/// Where events go.
pub trait EventSink: Send + Sync {
    fn send(&self, event: &ImageEvent) -> std::io::Result<()>;

    /// Stops taking events; the returned task ends when everything sent is delivered.
    fn close(&self) -> Option<JoinHandle<()>> {
        None
    }
}

/// A sink that delivers from a queue on its own task, one event at a time, in order.
pub struct Queued {
    name: &'static str,
    queue: Mutex<Option<mpsc::UnboundedSender<ImageEvent>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Queued {
    /// Spawns the delivery task; `deliver` sends one event. Needs a Tokio runtime.
    pub fn spawn<F, Fut>(name: &'static str, deliver: F) -> Queued
    where
        F: Fn(ImageEvent) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<ImageEvent>();
        let task = tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if let Err(e) = deliver(event).await {
                    tracing::warn!(sink = name, error = %e, "an image event was not delivered");
                }
            }
        });
        Queued {
            name,
            queue: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
        }
    }

    /// Posts each event as JSON to `url`; a status other than 2xx is a failed delivery.
    pub fn webhook(url: String) -> Queued {
        let http = reqwest::Client::new();
        Queued::spawn("webhook", move |event| {
            let request = http.post(&url).json(&event).send();
            async move {
                let response = request.await.map_err(|e| e.to_string())?;
                response
                    .error_for_status()
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// Publishes each event as JSON to `subject` through JetStream, so a stream that captures
    /// the subject acknowledges it before the next is sent.
    pub async fn nats(url: &str, subject: String) -> Result<Queued, String> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| format!("connecting to NATS at {url}: {e}"))?;
        let jetstream = async_nats::jetstream::new(client);
        Ok(Queued::spawn("nats", move |event| {
            let payload = serde_json::to_vec(&event).unwrap_or_default();
            let (jetstream, subject) = (jetstream.clone(), subject.clone());
            async move {
                jetstream
                    .publish(subject, payload.into())
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        }))
    }
}

impl EventSink for Queued {
    fn send(&self, event: &ImageEvent) -> std::io::Result<()> {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        match queue.as_ref() {
            Some(tx) => tx
                .send(event.clone())
                .map_err(|_| std::io::Error::other(format!("the {} sink has stopped", self.name))),
            None => Err(std::io::Error::other(format!(
                "the {} sink is closed",
                self.name
            ))),
        }
    }

    fn close(&self) -> Option<JoinHandle<()>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.task.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// One JSON object per line, to a file or stdout.
pub struct JsonLines {
    out: Mutex<Box<dyn Write + Send>>,
}

impl JsonLines {
    pub fn new(out: impl Write + Send + 'static) -> JsonLines {
        JsonLines {
            out: Mutex::new(Box::new(out)),
        }
    }

    /// Appends to the file at `path`, creating it.
    pub fn append_to(path: &std::path::Path) -> std::io::Result<JsonLines> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(JsonLines::new(file))
    }
}

impl EventSink for JsonLines {
    fn send(&self, event: &ImageEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        out.write_all(&line)?;
        out.flush()
    }
}

/// The in-process bus: every event goes to every sink, in order.
#[derive(Default)]
pub struct EventBus {
    sinks: Vec<Box<dyn EventSink>>,
}

impl EventBus {
    pub fn new() -> EventBus {
        EventBus::default()
    }

    pub fn with(mut self, sink: impl EventSink + 'static) -> EventBus {
        self.sinks.push(Box::new(sink));
        self
    }

    pub fn emit(&self, event: ImageEvent) {
        for sink in &self.sinks {
            if let Err(e) = sink.send(&event) {
                tracing::warn!(error = %e, "an image event sink failed");
            }
        }
    }

    /// Waits until every queued event is delivered (or given up on).
    pub async fn close(self) {
        for sink in &self.sinks {
            if let Some(task) = sink.close() {
                let _ = task.await;
            }
        }
    }
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventBus({} sinks)", self.sinks.len())
    }
}
