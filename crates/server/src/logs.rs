//! The recent log, kept for administrators: the last `log.retain_lines` lines the log level
//! lets through, in memory, queryable by level, time and position (`GET /api/v1/logs`,
//! `agent registry logs`). The whole log goes to stderr as well (JSON with
//! `log.format: json`) for whatever keeps logs longer.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Mutex;

use agent_registry_oci::logs::LogRecord;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

#[derive(Debug)]
pub struct LogStore {
    capacity: usize,
    lines: Mutex<(u64, VecDeque<LogRecord>)>,
}

impl LogStore {
    pub fn new(capacity: usize) -> LogStore {
        LogStore {
            capacity: capacity.max(1),
            lines: Mutex::new((0, VecDeque::new())),
        }
    }

    fn push(&self, mut record: LogRecord) {
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        lines.0 += 1;
        record.seq = lines.0;
        if lines.1.len() == self.capacity {
            lines.1.pop_front();
        }
        lines.1.push_back(record);
    }

    /// The newest `limit` lines at `level` or above, from `since` (Unix seconds) on and
    /// after line `after`, oldest first.
    pub fn query(
        &self,
        level: Level,
        since: Option<i64>,
        after: u64,
        limit: usize,
    ) -> Vec<LogRecord> {
        let Ok(lines) = self.lines.lock() else {
            return Vec::new();
        };
        let since = since.map(agent_registry_oci::catalogue::format_rfc3339);
        let mut found: Vec<LogRecord> = lines
            .1
            .iter()
            .rev()
            .filter(|r| r.seq > after)
            // RFC 3339 times in UTC to the second sort as text.
            .filter(|r| since.as_ref().is_none_or(|s| r.time >= *s))
            .filter(|r| r.level.parse::<Level>().is_ok_and(|l| l <= level))
            .take(limit)
            .cloned()
            .collect();
        found.reverse();
        found
    }
}

/// The `tracing` layer that feeds a [`LogStore`].
#[derive(Debug)]
pub struct Capture(pub std::sync::Arc<LogStore>);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        self.0.push(LogRecord {
            seq: 0,
            time: crate::notify::now_rfc3339(),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            message: fields.message,
            fields: fields.others,
        });
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    others: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.others
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others
                .insert(field.name().to_owned(), format!("{value:?}"));
        }
    }
}
