//! Image events for node operators: what was pulled, from where, how long it took, what
//! failed and why. Emitted on an in-process [`EventBus`] to its sinks; a sink that fails
//! logs and never fails the pull it reports on.

use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

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
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventBus({} sinks)", self.sinks.len())
    }
}
