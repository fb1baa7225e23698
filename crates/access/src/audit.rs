//! The access log's writer: events queue in memory and reach the store in batches, so
//! recording a pull costs a channel send, not a database write.

use std::sync::Arc;
use std::time::Duration;

use agent_registry_metadata::access::{AccessEvent, AccessStore};
use tokio::sync::mpsc;

/// Events that may wait for the writer; beyond this they are dropped (and counted in the
/// log), rather than slowing requests down.
const QUEUE: usize = 16_384;
/// Events written in one batch.
const BATCH: usize = 512;
/// How long an event may wait for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct AuditLog {
    events: mpsc::Sender<AccessEvent>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn AccessStore>) -> AuditLog {
        let (events, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        AuditLog { events }
    }

    pub fn record(&self, event: AccessEvent) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("access log queue is full; an event was dropped");
        }
    }
}

async fn write_batches(store: Arc<dyn AccessStore>, mut rx: mpsc::Receiver<AccessEvent>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(first) = rx.recv().await else { return };
        batch.push(first);
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                Ok(None) | Err(_) => break,
            }
        }
        let n = batch.len();
        if let Err(e) = store.record_access(std::mem::take(&mut batch)).await {
            tracing::warn!(error = %e, events = n, "writing the access log failed");
        }
    }
}
