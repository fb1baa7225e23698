//! Server configuration: a YAML file, then environment variables, then command-line flags, each
//! overriding the one before. Every key has a default, so no file is needed at all.
//!
//! ```yaml
//! listen: 0.0.0.0:5000
//! root: ./agent-registry-data        # blobs/, uploads/ and registry.db live here
//! log: { level: info, format: text, retain_lines: 10000 }  # format: text | json; lines kept
//!                                                           # for `agent registry logs`
//! storage:
//!   backend: filesystem              # filesystem (under root) | s3 (blobs in a bucket)
//!   fsync: true                      # false trades durability on power loss for speed
//!   min_free_bytes: 0                # refuse pushes (507) that would leave less free; 0: off
//!   s3:                              # with backend: s3; credentials may come from the
//!     bucket: agent-registry         # usual AWS_* variables instead of this file
//!     endpoint: http://127.0.0.1:3900  # Garage, MinIO, s3s...; leave out for AWS
//!     region: us-east-1
//!     access_key_id: ""
//!     secret_access_key: ""
//!     prefix: ""                     # keys under this prefix, to share a bucket
//!     redirect_expiry_secs: 0        # >0: blob GETs answer 307 to a presigned URL this long
//! database:
//!   backend: sqlite                  # sqlite (registry.db under root) | postgres (many nodes)
//!   url: postgres://registry:secret@db.example.com:5432/registry  # with backend: postgres
//!   max_connections: 16              # this node's pool
//!   ca_file: /etc/agent-registry/db-ca.pem  # trusted beside the system's, with sslmode=require
//! limits:
//!   manifest_max_bytes: 4194304
//!   body_idle_timeout_secs: 60       # an upload body silent this long is abandoned
//!   request_timeout_secs: 60         # every request that does not stream a body
//!   quotas:                          # blob bytes the matching repositories may hold together
//!     - { repository: "team/*", max_bytes: 10737418240 }
//! uploads: { expire_after_hours: 24 }
//! catalogue:
//!   immutable_releases: ["prod/*"]   # release tags (1.2.3) of these repositories never move
//!   download_window_secs: 60         # pulls by one client within this count as one download
//! shutdown_grace_secs: 30            # in-flight requests get this long to finish
//! auth:
//!   enabled: false                   # off: anyone may do anything (a private network only)
//!   public_by_default: false         # visibility of repositories nobody set one for
//!   realm: ""                        # token URL in challenges; default: this server's /token
//!   service: agent-registry          # `service` in challenges and token audience
//!   token_ttl_secs: 300              # registry tokens from /token
//!   refresh_ttl_days: 30             # refresh tokens (docker's identity tokens)
//!   admin: { name: admin, password: "" }  # made at start when there is no account yet
//!   trusted_issuers:                 # workloads (Kubernetes service accounts) by OIDC token
//!     - { issuer: "https://kubernetes.default.svc.cluster.local", audience: agent-registry,
//!         jwks_file: /etc/agent-registry/k8s-jwks.json }    # or jwks_url: https://...
//!   rate_limit:                      # token buckets; per_second 0 turns one off
//!     per_ip: { per_second: 0, burst: 0 }
//!     per_principal: { per_second: 0, burst: 0 }
//! audit: { retain_days: 90 }         # access log lines older than this are dropped
//! metrics:
//!   enabled: true                    # /metrics (administrators only when auth is on)
//!   history: { interval_secs: 15, retain_days: 7 }  # samples of /metrics in metrics.db for
//!                                    # /api/v1/metrics/query; retain_days 0 turns it off
//! notifications:                     # push, pull and delete events (distribution envelope)
//!   webhooks:
//!     - { name: audit, url: "https://hooks.example.com/registry", headers: { Authorization: "Bearer ..." },
//!         timeout_secs: 5, backoff_ms: 500, give_up_after_secs: 3600 }   # then dead-letter.jsonl
//!   nats: { url: "nats://127.0.0.1:4222", subject: agent-registry.events }
//! tls:                               # HTTPS without a proxy; both files reloaded on SIGHUP
//!   cert_file: /etc/agent-registry/tls.crt   # PEM chain, leaf first
//!   key_file: /etc/agent-registry/tls.key
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Environment variables read by [`Config::apply_env`], with the key each overrides.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("AGENT_REGISTRY_LISTEN", "listen"),
    ("AGENT_REGISTRY_ROOT", "root"),
    ("AGENT_REGISTRY_LOG_LEVEL", "log.level"),
    ("AAC_LOG_LEVEL", "log.level"),
    ("AGENT_REGISTRY_LOG_FORMAT", "log.format"),
    ("AGENT_REGISTRY_STORAGE", "storage.backend"),
    ("AGENT_REGISTRY_FSYNC", "storage.fsync"),
    ("AGENT_REGISTRY_DATABASE", "database.backend"),
    ("AGENT_REGISTRY_DATABASE_URL", "database.url"),
    ("AGENT_REGISTRY_MIN_FREE_BYTES", "storage.min_free_bytes"),
    ("AGENT_REGISTRY_AUTH", "auth.enabled"),
    ("AGENT_REGISTRY_METRICS", "metrics.enabled"),
    ("AGENT_REGISTRY_ADMIN_USER", "auth.admin.name"),
    ("AGENT_REGISTRY_ADMIN_PASSWORD", "auth.admin.password"),
    ("AGENT_REGISTRY_TLS_CERT", "tls.cert_file"),
    ("AGENT_REGISTRY_TLS_KEY", "tls.key_file"),
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub root: PathBuf,
    pub log: LogConfig,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub limits: LimitsConfig,
    pub uploads: UploadsConfig,
    pub catalogue: CatalogueConfig,
    pub shutdown_grace_secs: u64,
    pub auth: AuthConfig,
    pub audit: AuditConfig,
    pub metrics: MetricsConfig,
    pub notifications: NotificationsConfig,
    /// Serve HTTPS with this certificate and key (absent: plain HTTP).
    pub tls: Option<TlsConfig>,
    pub signing: SigningConfig,
    pub scanning: ScanningConfig,
}

/// Vulnerability scanning (`scanning.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanningConfig {
    /// Scan every image manifest pushed (in the background, after the push is answered).
    pub on_push: bool,
    /// Where `agent-registry vulndb import` keeps the OSV database (empty: `<root>/vulndb`).
    pub database_dir: PathBuf,
}

/// Image signatures: the keys `signed_only` pull policies trust when they name none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    /// PEM files of public keys (as `cosign.pub` or `agent key generate`'s `.pub`).
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub enabled: bool,
    pub public_by_default: bool,
    /// The token endpoint's URL for challenges; empty: derived from each request.
    pub realm: String,
    pub service: String,
    pub token_ttl_secs: u64,
    pub refresh_ttl_days: u64,
    pub admin: AdminConfig,
    pub rate_limit: RateLimitConfig,
    pub trusted_issuers: Vec<IssuerConfig>,
}

/// An OIDC issuer whose tokens identify workloads; exactly one of `jwks_file`, `jwks_url`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            public_by_default: false,
            realm: String::new(),
            service: "agent-registry".into(),
            token_ttl_secs: 300,
            refresh_ttl_days: 30,
            admin: AdminConfig::default(),
            rate_limit: RateLimitConfig::default(),
            trusted_issuers: Vec::new(),
        }
    }
}

/// The first administrator, created at start when no account exists.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    pub name: String,
    /// Empty: no account is made (create one with `agent-registry user add`).
    #[serde(skip_serializing)]
    pub password: String,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            name: "admin".into(),
            password: String::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    pub per_ip: RateConfig,
    pub per_principal: RateConfig,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Requests a second on average; 0 turns the limit off.
    pub per_second: f64,
    /// Requests allowed at once; at least 1 (defaults to one second's worth).
    pub burst: f64,
}

impl RateConfig {
    fn rate(self) -> Option<agent_registry_access::Rate> {
        (self.per_second > 0.0).then(|| agent_registry_access::Rate {
            per_second: self.per_second,
            burst: if self.burst >= 1.0 {
                self.burst
            } else {
                self.per_second.max(1.0)
            },
        })
    }
}

/// Where push, pull and delete events go (see `notify.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    pub webhooks: Vec<WebhookConfig>,
    pub nats: Option<NatsConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the destination in logs and the dead-letter log.
    pub name: String,
    pub url: String,
    /// Sent with every delivery (an Authorization header, say); never shown.
    #[serde(default, skip_serializing)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The first wait after a failed delivery; it doubles up to a minute.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    /// A batch still undelivered this long after its first attempt goes to the dead-letter log.
    #[serde(default = "default_give_up_after_secs")]
    pub give_up_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    pub url: String,
    pub subject: String,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_give_up_after_secs")]
    pub give_up_after_secs: u64,
}

fn default_timeout_secs() -> u64 {
    5
}

fn default_backoff_ms() -> u64 {
    500
}

fn default_give_up_after_secs() -> u64 {
    3600
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Count requests and serve `/metrics`.
    pub enabled: bool,
    pub history: HistoryConfig,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            history: HistoryConfig::default(),
        }
    }
}

/// The built-in time series: `/metrics` sampled into `<root>/metrics.db`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Seconds between samples.
    pub interval_secs: u64,
    /// Days samples are kept; 0 keeps none (no sampling, no query API).
    pub retain_days: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            interval_secs: 15,
            retain_days: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    pub retain_days: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { retain_days: 90 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogueConfig {
    /// Repository patterns (`team/agent`, `team/*`, `*`) whose release tags are immutable.
    pub immutable_releases: Vec<String>,
    pub download_window_secs: u64,
}

impl Default for CatalogueConfig {
    fn default() -> Self {
        CatalogueConfig {
            immutable_releases: Vec::new(),
            download_window_secs: 60,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `agent_registry_server=debug,warn`, ...
    pub level: String,
    pub format: LogFormat,
    /// Lines kept in memory for `GET /api/v1/logs` (`agent registry logs`).
    pub retain_lines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    pub fsync: bool,
    /// Free space to keep under the root: a push that would leave less is refused before any
    /// byte is written, and readiness fails below it. 0 turns the floor off.
    pub min_free_bytes: u64,
    /// The bucket, with `backend: s3`.
    pub s3: Option<S3StorageConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// Blobs under `root`: one node.
    Filesystem,
    /// Blobs in an S3-compatible bucket (uploads and blobs kept by the bucket alone).
    S3,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    pub backend: DatabaseBackend,
    /// The PostgreSQL server, with `backend: postgres`: a `postgres://` URL or a
    /// `host=... dbname=...` string. Shown and logged without its password.
    #[serde(serialize_with = "redacted_url")]
    pub url: String,
    /// Connections this node keeps open at most.
    pub max_connections: usize,
    /// With `sslmode=require` in `url`: a PEM file of certificates to trust for the server,
    /// beside the system's roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseBackend {
    /// `registry.db` under `root`: one node.
    Sqlite,
    /// A PostgreSQL database that every node of the registry shares.
    Postgres,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            backend: DatabaseBackend::Sqlite,
            url: String::new(),
            max_connections: agent_registry_metadata::postgres::DEFAULT_CONNECTIONS,
            ca_file: None,
        }
    }
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("backend", &self.backend)
            .field(
                "url",
                &agent_registry_metadata::postgres::redacted(&self.url),
            )
            .field("max_connections", &self.max_connections)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&agent_registry_metadata::postgres::redacted(url))
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3StorageConfig {
    pub bucket: String,
    /// The service's URL for anything but AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    /// With the secret below; when both are empty, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` and the other usual AWS sources are used.
    pub access_key_id: String,
    #[serde(skip_serializing)]
    pub secret_access_key: String,
    pub prefix: String,
    /// When above 0, blob GETs are answered with a redirect to a URL signed for this long,
    /// so clients fetch bytes from the bucket (or a CDN in front of it), not through a node.
    pub redirect_expiry_secs: u64,
}

impl std::fmt::Debug for S3StorageConfig {
    /// The store's own Debug, which leaves the secret out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3StorageConfig")
            .field("store", &self.store_config())
            .field("redirect_expiry_secs", &self.redirect_expiry_secs)
            .finish()
    }
}

impl Default for S3StorageConfig {
    fn default() -> Self {
        S3StorageConfig {
            bucket: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            prefix: String::new(),
            redirect_expiry_secs: 0,
        }
    }
}

impl From<agent_registry_storage::S3Config> for S3StorageConfig {
    fn from(c: agent_registry_storage::S3Config) -> Self {
        S3StorageConfig {
            bucket: c.bucket,
            endpoint: c.endpoint,
            region: c.region,
            access_key_id: c.access_key_id.unwrap_or_default(),
            secret_access_key: c.secret_access_key.unwrap_or_default(),
            prefix: c.prefix,
            redirect_expiry_secs: 0,
        }
    }
}

impl S3StorageConfig {
    pub fn store_config(&self) -> agent_registry_storage::S3Config {
        let given = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        agent_registry_storage::S3Config {
            bucket: self.bucket.clone(),
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: given(&self.access_key_id),
            secret_access_key: given(&self.secret_access_key),
            prefix: self.prefix.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub manifest_max_bytes: usize,
    pub body_idle_timeout_secs: u64,
    pub request_timeout_secs: u64,
    /// Most blob bytes the repositories matching each pattern may hold together.
    pub quotas: Vec<QuotaConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// `team/agent`, `team/*` or `*`.
    pub repository: String,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    pub expire_after_hours: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            root: PathBuf::from("agent-registry-data"),
            log: LogConfig::default(),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            limits: LimitsConfig::default(),
            uploads: UploadsConfig {
                expire_after_hours: 24,
            },
            catalogue: CatalogueConfig::default(),
            shutdown_grace_secs: 30,
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            metrics: MetricsConfig::default(),
            notifications: NotificationsConfig::default(),
            tls: None,
            signing: SigningConfig::default(),
            scanning: ScanningConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            retain_lines: 10_000,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Filesystem,
            fsync: true,
            min_free_bytes: 0,
            s3: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            manifest_max_bytes: 4 << 20,
            body_idle_timeout_secs: 60,
            request_timeout_secs: 60,
            quotas: Vec::new(),
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            expire_after_hours: 24,
        }
    }
}

impl Config {
    /// Reads a YAML file; unknown keys are errors, so typos do not pass silently.
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        Config::from_yaml(&text).with_context(|| format!("in config file {}", path.display()))
    }

    pub fn from_yaml(text: &str) -> anyhow::Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        Ok(serde_yaml_ng::from_str(text)?)
    }

    /// Applies the variables of [`ENV_VARS`] that `get` finds.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        for (var, _) in ENV_VARS {
            let Some(value) = get(var) else { continue };
            let bad = |what: &str| format!("environment variable {var}={value:?} is not {what}");
            match *var {
                "AGENT_REGISTRY_LISTEN" => {
                    self.listen = value
                        .parse()
                        .with_context(|| bad("an address like 0.0.0.0:5000"))?
                }
                "AGENT_REGISTRY_ROOT" => self.root = PathBuf::from(&value),
                "AGENT_REGISTRY_LOG_LEVEL" | "AAC_LOG_LEVEL" => self.log.level = value,
                "AGENT_REGISTRY_LOG_FORMAT" => {
                    self.log.format = match value.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        _ => anyhow::bail!(bad("text or json")),
                    }
                }
                "AGENT_REGISTRY_STORAGE" => {
                    self.storage.backend = match value.as_str() {
                        "filesystem" => StorageBackend::Filesystem,
                        "s3" => StorageBackend::S3,
                        _ => anyhow::bail!(bad("filesystem or s3")),
                    }
                }
                "AGENT_REGISTRY_DATABASE" => {
                    self.database.backend = match value.as_str() {
                        "sqlite" => DatabaseBackend::Sqlite,
                        "postgres" => DatabaseBackend::Postgres,
                        _ => anyhow::bail!(bad("sqlite or postgres")),
                    }
                }
                "AGENT_REGISTRY_DATABASE_URL" => self.database.url = value,
                "AGENT_REGISTRY_FSYNC" => {
                    self.storage.fsync =
                        boolean(&value).ok_or_else(|| anyhow::anyhow!(bad("true or false")))?
                }
                "AGENT_REGISTRY_MIN_FREE_BYTES" => {
                    self.storage.min_free_bytes =
                        value.parse().with_context(|| bad("a number of bytes"))?
                }
                "AGENT_REGISTRY_METRICS" => {
                    self.metrics.enabled =
                        boolean(&value).ok_or_else(|| anyhow::anyhow!(bad("true or false")))?
                }
                "AGENT_REGISTRY_AUTH" => {
                    self.auth.enabled =
                        boolean(&value).ok_or_else(|| anyhow::anyhow!(bad("true or false")))?
                }
                "AGENT_REGISTRY_ADMIN_USER" => self.auth.admin.name = value,
                "AGENT_REGISTRY_ADMIN_PASSWORD" => self.auth.admin.password = value,
                "AGENT_REGISTRY_TLS_CERT" => {
                    self.tls.get_or_insert_with(TlsConfig::default).cert_file =
                        PathBuf::from(&value)
                }
                "AGENT_REGISTRY_TLS_KEY" => {
                    self.tls.get_or_insert_with(TlsConfig::default).key_file = PathBuf::from(&value)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The catalogue rules, with every repository pattern checked.
    pub fn catalogue_rules(&self) -> anyhow::Result<agent_registry_registry::CatalogueRules> {
        let immutable_releases = self
            .catalogue
            .immutable_releases
            .iter()
            .map(|p| {
                p.parse().with_context(|| {
                    format!("catalogue.immutable_releases: {p:?} is not a repository pattern (team/agent, team/* or *)")
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(agent_registry_registry::CatalogueRules {
            immutable_releases,
            download_window: Duration::from_secs(self.catalogue.download_window_secs),
        })
    }

    /// Checks what no single key can: settings that only make sense together.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(tls) = &self.tls
            && (tls.cert_file.as_os_str().is_empty() || tls.key_file.as_os_str().is_empty())
        {
            anyhow::bail!(
                "tls needs both cert_file and key_file (AGENT_REGISTRY_TLS_CERT and AGENT_REGISTRY_TLS_KEY)"
            );
        }
        match (self.storage.backend, &self.storage.s3) {
            (StorageBackend::S3, None) => {
                anyhow::bail!("storage.backend is s3 but there is no storage.s3 section")
            }
            (StorageBackend::S3, Some(s3)) if s3.bucket.is_empty() => {
                anyhow::bail!("storage.s3.bucket must name the bucket")
            }
            (StorageBackend::S3, Some(s3))
                if s3.access_key_id.is_empty() != s3.secret_access_key.is_empty() =>
            {
                anyhow::bail!(
                    "storage.s3: give both access_key_id and secret_access_key, or neither (to use the AWS_* environment)"
                )
            }
            _ => {}
        }
        if self.database.backend == DatabaseBackend::Postgres && self.database.url.is_empty() {
            anyhow::bail!(
                "database.backend is postgres but database.url is empty (or set AGENT_REGISTRY_DATABASE_URL)"
            );
        }
        self.catalogue_rules()?;
        self.limits()?;
        let mut names = std::collections::HashSet::new();
        for hook in &self.notifications.webhooks {
            if hook.name.is_empty() || !names.insert(hook.name.as_str()) {
                anyhow::bail!(
                    "notifications.webhooks: every webhook needs a name of its own ({:?})",
                    hook.name
                );
            }
            if !(hook.url.starts_with("http://") || hook.url.starts_with("https://")) {
                anyhow::bail!(
                    "notifications.webhooks {}: url must be http:// or https://, not {:?}",
                    hook.name,
                    hook.url
                );
            }
        }
        if self.metrics.history.interval_secs == 0 {
            anyhow::bail!("metrics.history.interval_secs must be at least 1");
        }
        self.access_settings()?;
        Ok(())
    }

    /// Access control settings, checked.
    pub fn access_settings(&self) -> anyhow::Result<agent_registry_access::Settings> {
        let auth = &self.auth;
        if auth.service.is_empty() {
            anyhow::bail!("auth.service must not be empty");
        }
        if auth.token_ttl_secs == 0 {
            anyhow::bail!("auth.token_ttl_secs must be at least 1");
        }
        let trusted_issuers = auth
            .trusted_issuers
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let at = format!("auth.trusted_issuers[{i}]");
                if t.issuer.is_empty() || t.audience.is_empty() {
                    anyhow::bail!("{at}: issuer and audience are both required");
                }
                let jwks = match (&t.jwks_file, &t.jwks_url) {
                    (Some(f), None) => agent_registry_access::JwksSource::File(f.clone()),
                    (None, Some(u)) => agent_registry_access::JwksSource::Url(u.clone()),
                    _ => anyhow::bail!("{at}: give exactly one of jwks_file and jwks_url"),
                };
                Ok(agent_registry_access::TrustedIssuer {
                    issuer: t.issuer.clone(),
                    audience: t.audience.clone(),
                    jwks,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(agent_registry_access::Settings {
            enabled: auth.enabled,
            public_by_default: auth.public_by_default,
            issuer: auth.service.clone(),
            service: auth.service.clone(),
            token_ttl: Duration::from_secs(auth.token_ttl_secs),
            refresh_ttl: Duration::from_secs(auth.refresh_ttl_days.saturating_mul(86_400)),
            per_ip: auth.rate_limit.per_ip.rate(),
            per_principal: auth.rate_limit.per_principal.rate(),
            trusted_issuers,
        })
    }

    /// How long presigned blob URLs last, when blob GETs are to be redirected to them.
    pub fn blob_redirect(&self) -> Option<Duration> {
        match (&self.storage.backend, &self.storage.s3) {
            (StorageBackend::S3, Some(s3)) if s3.redirect_expiry_secs > 0 => {
                Some(Duration::from_secs(s3.redirect_expiry_secs))
            }
            _ => None,
        }
    }

    /// The limits the registry enforces, checked.
    pub fn limits(&self) -> anyhow::Result<agent_registry_registry::Limits> {
        let quotas = self
            .limits
            .quotas
            .iter()
            .map(|q| {
                let pattern = q.repository.parse().with_context(|| {
                    format!(
                        "limits.quotas: {:?} is not a repository pattern (team/agent, team/* or *)",
                        q.repository
                    )
                })?;
                Ok((pattern, q.max_bytes))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(agent_registry_registry::Limits {
            manifest_max_bytes: self.limits.manifest_max_bytes,
            body_idle_timeout: Duration::from_secs(self.limits.body_idle_timeout_secs),
            min_free_bytes: self.storage.min_free_bytes,
            quotas,
        })
    }
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_read_and_bad_patterns_named() {
        let config =
            Config::from_yaml("limits: { quotas: [ { repository: 'team/*', max_bytes: 1000 } ] }")
                .expect("yaml");
        let limits = config.limits().expect("limits");
        assert_eq!(limits.quotas.len(), 1);
        assert_eq!(limits.quotas[0].0.as_str(), "team/*");
        assert_eq!(limits.quotas[0].1, 1000);
        let bad =
            Config::from_yaml("limits: { quotas: [ { repository: 'Team/*', max_bytes: 1 } ] }")
                .expect("yaml");
        let e = bad.check().expect_err("bad pattern");
        assert!(e.to_string().contains("limits.quotas: \"Team/*\""), "{e}");
    }

    #[test]
    fn s3_storage_is_read_checked_and_keeps_its_secret() {
        let c = Config::from_yaml(
            "storage:\n  backend: s3\n  s3: { bucket: reg, endpoint: 'http://127.0.0.1:9000', access_key_id: k, secret_access_key: hush, redirect_expiry_secs: 60 }\n",
        )
        .expect("parses");
        c.check().expect("complete");
        assert_eq!(c.blob_redirect(), Some(Duration::from_secs(60)));
        let store = c.storage.s3.as_ref().expect("section").store_config();
        assert_eq!(
            (store.bucket.as_str(), store.region.as_str()),
            ("reg", "us-east-1")
        );
        let shown = serde_json::to_string(&c).expect("serializes");
        assert!(!shown.contains("hush"), "{shown}");
        assert!(!format!("{c:?}").contains("hush"));

        for (yaml, says) in [
            ("storage: { backend: s3 }", "no storage.s3 section"),
            (
                "storage: { backend: s3, s3: { bucket: '' } }",
                "storage.s3.bucket",
            ),
            (
                "storage: { backend: s3, s3: { bucket: b, access_key_id: k } }",
                "secret_access_key",
            ),
        ] {
            let e = Config::from_yaml(yaml)
                .expect("yaml")
                .check()
                .expect_err(yaml);
            assert!(e.to_string().contains(says), "{yaml}: {e}");
        }
        // Redirects belong to S3 alone.
        let fs = Config::from_yaml("storage: { s3: { bucket: b, redirect_expiry_secs: 60 } }")
            .expect("yaml");
        assert_eq!(fs.blob_redirect(), None);
    }

    #[test]
    fn postgres_is_read_checked_and_keeps_its_password() {
        let c = Config::from_yaml(
            "database: { backend: postgres, url: 'postgres://reg:hush@db:5432/registry', max_connections: 4 }",
        )
        .expect("parses");
        c.check().expect("complete");
        assert_eq!(c.database.max_connections, 4);
        let shown = serde_yaml_ng::to_string(&c).expect("serializes");
        assert!(
            !shown.contains("hush") && shown.contains("postgres://reg:***@db:5432/registry"),
            "{shown}"
        );
        assert!(!format!("{c:?}").contains("hush"));

        let e = Config::from_yaml("database: { backend: postgres }")
            .expect("yaml")
            .check()
            .expect_err("no url");
        assert!(e.to_string().contains("database.url"), "{e}");

        let mut c = Config::default();
        c.apply_env(|k| match k {
            "AGENT_REGISTRY_DATABASE" => Some("postgres".into()),
            "AGENT_REGISTRY_DATABASE_URL" => Some("host=db dbname=registry".into()),
            _ => None,
        })
        .expect("applies");
        assert_eq!(c.database.backend, DatabaseBackend::Postgres);
        assert_eq!(c.database.url, "host=db dbname=registry");
        let e = Config::default()
            .apply_env(|k| (k == "AGENT_REGISTRY_DATABASE").then(|| "mysql".into()))
            .expect_err("unknown backend");
        assert!(format!("{e:#}").contains("sqlite or postgres"), "{e:#}");
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(Config::from_yaml("").expect("parses"), Config::default());
    }

    #[test]
    fn file_sets_keys_and_keeps_other_defaults() {
        let c = Config::from_yaml("listen: 127.0.0.1:6000\nlimits: {manifest_max_bytes: 10}\n")
            .expect("parses");
        assert_eq!(c.listen.port(), 6000);
        assert_eq!(c.limits.manifest_max_bytes, 10);
        assert_eq!(c.limits.body_idle_timeout_secs, 60);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::from_yaml("lisen: 1.2.3.4:5\n").expect_err("typo");
        assert!(format!("{err:#}").contains("lisen"), "{err:#}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::default();
        c.apply_env(|k| match k {
            "AGENT_REGISTRY_ROOT" => Some("/data".into()),
            "AAC_LOG_LEVEL" => Some("debug".into()),
            "AGENT_REGISTRY_FSYNC" => Some("false".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(
            (c.root.as_path(), c.log.level.as_str(), c.storage.fsync),
            (Path::new("/data"), "debug", false)
        );
        let err = c
            .apply_env(|k| (k == "AGENT_REGISTRY_LISTEN").then(|| "nope".into()))
            .expect_err("bad address");
        assert!(err.to_string().contains("AGENT_REGISTRY_LISTEN"));
    }
}
