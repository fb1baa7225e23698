//! What `/readyz` and `GET /api/v1/health` answer: whether the registry can take pushes and
//! serve pulls now, and why not.

use serde::{Deserialize, Serialize};

/// A registry's health. `checks` is left out of a plain `/api/v1/health` and filled with
/// `?detailed=true` and on `/readyz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// The server's version.
    pub version: String,
    pub uptime_secs: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every check passed.
    Ok,
    /// At least one check failed: the registry answers 503 on `/readyz`.
    Failing,
}

/// One readiness check: `storage` (writable), `database` (reachable), `free_space` (above the
/// configured floor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub latency_ms: f64,
    /// What was found (`writable`, `12GB free`) or what is wrong.
    pub message: String,
}

impl Health {
    pub fn new(version: &str, uptime_secs: u64, checks: Vec<Check>) -> Health {
        let status = if checks.iter().all(|c| c.ok) {
            HealthStatus::Ok
        } else {
            HealthStatus::Failing
        };
        Health {
            status,
            version: version.to_owned(),
            uptime_secs,
            checks,
        }
    }
}
