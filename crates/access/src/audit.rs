//! The access log's writer: events queue in memory and reach the store in batches, so
//! recording costs a channel send, not a database write. Pulls are many and mostly repeats
//! (a client polling a tag, a fleet of nodes starting), so a pull is recorded once per
//! caller, address, reference and outcome within [`PULL_WINDOW`]; logins, pushes and
//! deletes are recorded every time.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_registry_metadata::access::{AccessEvent, AccessStore};
use tokio::sync::mpsc;

/// Events that may wait for the writer; beyond this they are dropped (and counted in the
/// log), rather than slowing requests down.
const QUEUE: usize = 16_384;
/// Events written in one batch.
const BATCH: usize = 512;
/// How long an event may wait for its batch to fill.
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Repeats of a pull within this long are not recorded again.
pub const PULL_WINDOW: Duration = Duration::from_secs(60);
/// Pulls remembered before old ones are forgotten.
const REMEMBERED_PULLS: usize = 100_000;

#[derive(Debug, Clone)]
pub struct AuditLog {
    events: mpsc::Sender<AccessEvent>,
    /// A hash of (who, from where, what, outcome) -> when it was last recorded.
    recent_pulls: Arc<Mutex<HashMap<u64, Instant>>>,
}

/// Whether a request that ended with `status` got past access control (a 404 did: the
/// caller may look, there was nothing there).
pub fn allowed(status: u16) -> bool {
    !matches!(status, 401 | 403 | 429)
}

/// One pull, as [`AuditLog::record_pull`] takes it.
#[derive(Debug, Clone, Copy, Hash)]
pub struct Pull<'a> {
    pub principal: Option<&'a str>,
    pub client: Option<IpAddr>,
    pub repo: &'a str,
    pub target: &'a str,
    pub status: u16,
}

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn AccessStore>) -> AuditLog {
        let (events, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, rx));
        AuditLog {
            events,
            recent_pulls: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records a pull unless the same one was recorded within [`PULL_WINDOW`]. Nothing is
    /// allocated for a repeat.
    pub fn record_pull(&self, pull: Pull<'_>, at: i64) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        pull.hash(&mut hasher);
        let key = hasher.finish();
        let now = Instant::now();
        {
            let Ok(mut recent) = self.recent_pulls.lock() else {
                return;
            };
            if recent
                .get(&key)
                .is_some_and(|t| now.duration_since(*t) < PULL_WINDOW)
            {
                return;
            }
            if recent.len() >= REMEMBERED_PULLS {
                recent.retain(|_, t| now.duration_since(*t) < PULL_WINDOW);
            }
            recent.insert(key, now);
        }
        self.record(AccessEvent {
            at,
            principal: pull.principal.map(str::to_owned),
            action: "pull".into(),
            repo: Some(pull.repo.to_owned()),
            target: Some(pull.target.to_owned()),
            allowed: allowed(pull.status),
            status: pull.status,
            client: pull.client.map(|c| c.to_string()),
        });
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
