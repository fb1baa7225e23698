//! `/metrics`: what the registry does and holds, in the Prometheus (OpenMetrics) text format.
//!
//! Requests update counters and histograms as they finish (atomic adds behind a read lock per
//! label set): `/v2/` requests in the dispatcher, which knows their endpoint, the rest in a
//! middleware; what the stores hold (repositories, blobs, bytes, open uploads, free space) and
//! the registry's own running totals are read when the page is scraped.
//!
//! Labels stay few: `family` names the kind of route (`manifests`, `blobs`, `uploads`, `tags`,
//! `catalog`, `referrers`, `base`, `search`, `api`, `token`, `metrics`, `other`; probes are not timed),
//! `repository_class` the first part of a repository's name (`team` for `team/agent`; `_`
//! for a name without one), `result` `success`, `client_error` or `server_error`.

use std::sync::Arc;
use std::time::Instant;

use agent_registry_access::Access;
use agent_registry_oci::RepoName;
use agent_registry_registry::Registry;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Unit;

use crate::endpoint::Endpoint;

/// A `/v2/` request the dispatcher is timing, with what it will count when answered.
#[derive(Debug)]
pub struct Observation {
    family: &'static str,
    method: &'static str,
    /// `pulls` or `pushes`, and the repository class, for manifest GETs and PUTs.
    operation: Option<(bool, String)>,
    started: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Route {
    family: &'static str,
    method: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Operation {
    repository_class: String,
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct Attempt {
    result: &'static str,
}

/// The registry's metrics. One per server, shared by every request.
#[derive(Debug)]
pub struct Metrics {
    registry: prometheus_client::registry::Registry,
    pushes: Family<Operation, Counter>,
    pulls: Family<Operation, Counter>,
    auth_attempts: Family<Attempt, Counter>,
    bytes_sent: Counter,
    durations: Family<Route, Histogram, fn() -> Histogram>,
}

/// What the page is: Prometheus asks for it by name, and it is what the Prometheus project's
/// client writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let pushes = Family::<Operation, Counter>::default();
        registry.register(
            "push_operations",
            "Manifest pushes (PUT), by repository class and result",
            pushes.clone(),
        );
        let pulls = Family::<Operation, Counter>::default();
        registry.register(
            "pull_operations",
            "Manifest pulls (GET), by repository class and result",
            pulls.clone(),
        );
        let auth_attempts = Family::<Attempt, Counter>::default();
        registry.register(
            "auth_attempts",
            "Requests that presented credentials: success, failure or throttled",
            auth_attempts.clone(),
        );
        let bytes_sent = Counter::default();
        registry.register(
            "registry_bytes_sent",
            "Blob bytes served by GET",
            bytes_sent.clone(),
        );
        let durations = Family::<Route, Histogram, fn() -> Histogram>::new_with_constructor(|| {
            // 0.25 ms to about 16 s.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 17))
        });
        registry.register_with_unit(
            "registry_http_request_duration",
            "Time to answer a request, by route family and method",
            Unit::Seconds,
            durations.clone(),
        );
        Metrics {
            registry,
            pushes,
            pulls,
            auth_attempts,
            bytes_sent,
            durations,
        }
    }
}

impl Metrics {
    /// Starts timing a `/v2/` request (the dispatcher's, so it needs no middleware).
    pub fn start(&self, endpoint: &Endpoint, method: &Method) -> Observation {
        let family = endpoint.family();
        let push = match (family, method) {
            ("manifests", &Method::GET) => Some(false),
            ("manifests", &Method::PUT) => Some(true),
            _ => None,
        };
        Observation {
            family,
            method: method_label(method),
            operation: push.map(|push| (push, repository_class(endpoint.name()))),
            started: Instant::now(),
        }
    }

    /// Records a `/v2/` request's time, a manifest push or pull, and the bytes of a blob
    /// served.
    pub fn finish(&self, observed: Observation, response: &Response) {
        let status = response.status();
        self.durations
            .get_or_create(&Route {
                family: observed.family,
                method: observed.method,
            })
            .observe(observed.started.elapsed().as_secs_f64());
        if let Some((push, repository_class)) = observed.operation {
            let counter = if push { &self.pushes } else { &self.pulls };
            counter
                .get_or_create(&Operation {
                    repository_class,
                    result: result(status),
                })
                .inc();
        } else if observed.family == "blobs" && observed.method == "GET" && status.is_success() {
            let sent = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            self.bytes_sent.inc_by(sent);
        }
    }

    /// Counts a request that presented credentials.
    pub fn record_auth(&self, result: &'static str) {
        self.auth_attempts.get_or_create(&Attempt { result }).inc();
    }

    /// The page Prometheus scrapes: the request metrics, then what the registry holds now.
    pub async fn render(&self, registry: &Registry, access: &Access) -> Result<String, String> {
        let usage = registry.usage().await.map_err(|e| e.to_string())?;
        let counters = registry.counters();
        let credentials = access.credential_cache();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let mut now = prometheus_client::registry::Registry::default();
        now.register(
            "registry_bytes_received",
            "Blob bytes taken into uploads",
            ConstCounter::new(load(&counters.bytes_received)),
        );
        now.register(
            "registry_uploads_purged",
            "Abandoned uploads removed by the hourly purge",
            ConstCounter::new(load(&counters.uploads_purged)),
        );
        now.register(
            "registry_tag_cache_hits",
            "Tag lists served from memory",
            ConstCounter::new(load(&counters.tag_cache_hits)),
        );
        now.register(
            "registry_tag_cache_misses",
            "Tag lists read from the database",
            ConstCounter::new(load(&counters.tag_cache_misses)),
        );
        now.register(
            "registry_credential_cache_hits",
            "Credentials answered from the cache, without hashing or a database read",
            ConstCounter::new(credentials.hits),
        );
        now.register(
            "registry_credential_cache_misses",
            "Credentials checked in full",
            ConstCounter::new(credentials.misses),
        );
        let gauge = |n: u64| ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX));
        now.register(
            "registry_credential_cache_entries",
            "Checked credentials held in the cache",
            gauge(credentials.entries),
        );
        now.register(
            "registry_repositories",
            "Repositories",
            gauge(usage.repositories),
        );
        now.register("registry_storage_blobs", "Blobs stored", gauge(usage.blobs));
        now.register_with_unit(
            "registry_storage",
            "Bytes of the blobs stored",
            Unit::Bytes,
            gauge(usage.blob_bytes),
        );
        now.register(
            "registry_upload_sessions",
            "Upload sessions in flight",
            gauge(usage.uploads),
        );
        if let Some(free) = usage.free_bytes {
            now.register_with_unit(
                "registry_storage_free",
                "Free space where blobs are written",
                Unit::Bytes,
                gauge(free),
            );
        }
        let mut page = String::new();
        encode_registry(&mut page, &self.registry)
            .and_then(|()| encode_registry(&mut page, &now))
            .and_then(|()| encode_eof(&mut page))
            .map_err(|e| e.to_string())?;
        Ok(page)
    }
}

/// Times a request outside `/v2/<name>/...` (which the dispatcher times itself) into the
/// duration histogram of its route family.
pub async fn observe(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let method = method_label(request.method());
    let family = family_of_path(request.uri().path());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .durations
        .get_or_create(&Route { family, method })
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The family of a path the middleware times: outside `/v2/<name>/...` and `/v2/_catalog`
/// (the dispatcher's) and the probes (not timed).
fn family_of_path(path: &str) -> &'static str {
    match path {
        "/v2/" | "/v2" => "base",
        "/token" => "token",
        "/metrics" => "metrics",
        "/api/v1/search" => "search",
        p if p.starts_with("/api/v1/") => "api",
        _ => "other",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn result(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "server_error"
    } else if status.is_client_error() {
        "client_error"
    } else {
        "success"
    }
}

fn repository_class(repo: Option<&RepoName>) -> String {
    match repo.and_then(|r| r.as_str().split_once('/')) {
        Some((namespace, _)) => namespace.to_owned(),
        None => "_".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_repositories_have_their_own_families() {
        assert_eq!(family_of_path("/v2/"), "base");
        assert_eq!(family_of_path("/api/v1/search"), "search");
        assert_eq!(family_of_path("/api/v1/users/alice"), "api");
        assert_eq!(family_of_path("/token"), "token");
        assert_eq!(family_of_path("/favicon.ico"), "other");
    }

    #[test]
    fn a_repository_class_is_its_first_part() {
        let repo = |s: &str| s.parse::<RepoName>().expect("name");
        assert_eq!(repository_class(Some(&repo("team/a/b"))), "team");
        assert_eq!(repository_class(Some(&repo("alpine"))), "_");
        assert_eq!(repository_class(None), "_");
    }
}
