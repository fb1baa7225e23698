//! The access log: `GET /api/v1/access-logs?user=&action=&repository=&since=&denied=&limit=`.

use agent_registry_metadata::access::{AccessEvent, AccessLogQuery};
use agent_registry_oci::access::{LogFilter, LogLine};
use agent_registry_oci::catalogue::{format_rfc3339, parse_rfc3339};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};

use super::{admin, invalid, query, who};
use crate::AppState;
use crate::auth::Who;
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/access-logs", get(access_logs))
}

const DEFAULT_LOG_LINES: u32 = 100;
const MAX_LOG_LINES: u32 = 10_000;

fn line(e: AccessEvent) -> LogLine {
    LogLine {
        time: format_rfc3339(e.at),
        user: e.principal,
        action: e.action,
        repository: e.repo,
        target: e.target,
        allowed: e.allowed,
        status: e.status,
        client: e.client,
    }
}

/// `24h`, `30m`, `7d`, `90s` back from `now`, or an RFC 3339 time.
pub(in crate::routes) fn since(s: &str, now: i64) -> Option<i64> {
    if let Some(t) = parse_rfc3339(s) {
        return Some(t);
    }
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: i64 = n.parse().ok()?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(now.saturating_sub(n.saturating_mul(secs)))
}

async fn access_logs(
    State(state): State<AppState>,
    w: Option<Extension<Who>>,
    headers: HeaderMap,
    q: Result<Query<LogFilter>, QueryRejection>,
) -> ApiResult {
    admin(&state, &headers, &who(w))?;
    let f = query(q)?;
    let now = crate::unix_now();
    let since = match &f.since {
        Some(s) => Some(since(s, now).ok_or_else(|| {
            invalid(format!(
                "since={s:?} is neither a time (2026-01-02T03:04:05Z) nor a duration (30m, 24h, 7d)"
            ))
        })?),
        None => None,
    };
    let limit = f.limit.unwrap_or(DEFAULT_LOG_LINES);
    if limit == 0 || limit > MAX_LOG_LINES {
        return Err(invalid(format!(
            "limit must be between 1 and {MAX_LOG_LINES}"
        )));
    }
    let lines: Vec<LogLine> = state
        .access
        .store()
        .access_log(&AccessLogQuery {
            principal: f.user,
            action: f.action,
            repo: f.repository,
            since,
            denied_only: f.denied,
            limit,
        })
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .map(line)
        .collect();
    Ok(Json(lines).into_response())
}

#[cfg(test)]
mod tests {
    use super::since;

    #[test]
    fn since_takes_times_and_durations() {
        assert_eq!(since("24h", 100_000), Some(100_000 - 86_400));
        assert_eq!(since("30m", 10_000), Some(10_000 - 1_800));
        assert_eq!(since("1970-01-01T00:01:00Z", 0), Some(60));
        assert_eq!(since("yesterday", 0), None);
        assert_eq!(since("5w", 0), None);
    }
}
