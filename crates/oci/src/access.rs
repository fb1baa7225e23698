//! The access administration API's wire types (`/api/v1/auth`, `users`, `tokens`,
//! `permissions`, `repositories`, `access-logs`), shared by the server and the client.
//! Request bodies refuse unknown fields, so a typo is an error and not a silent default.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/auth/whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    pub name: String,
    /// `user`, `robot`, `workload` or `anonymous`.
    pub kind: String,
    pub authenticated: bool,
    pub admin: bool,
    pub groups: Vec<String>,
    /// Whether the registry checks access at all.
    pub access_control: bool,
}

/// A user or robot account, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub kind: String,
    pub admin: bool,
    pub groups: Vec<String>,
    pub has_password: bool,
    pub created: String,
}

/// `POST /api/v1/users`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    #[serde(default)]
    pub robot: bool,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .field("robot", &self.robot)
            .field("admin", &self.admin)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

/// `PUT /api/v1/users/{name}/password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
}

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

/// An API token, as listed; `token` (the secret) is present only in the answer that
/// created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    pub owner: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// `GET /api/v1/tokens?owner=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    /// Whose token; default the caller. Only administrators make tokens for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// `PATTERN:PERMISSION`, such as `team/*:read`; none means everything the owner may do.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u64>,
}

/// A grant: `subject` holds `permission` on repositories matching `repository`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub subject: String,
    pub repository: String,
    pub permission: String,
}

/// `GET|DELETE /api/v1/permissions?subject=&repository=`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// `GET|PUT /api/v1/repositories/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub name: String,
    /// `public` or `private`.
    pub visibility: String,
}

/// The body of `PUT /api/v1/repositories/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVisibility {
    pub visibility: String,
}

/// `GET /api/v1/access-logs?...`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// RFC 3339 time, or a duration back from now (`30m`, `24h`, `7d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub denied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One access log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub time: String,
    pub user: Option<String>,
    pub action: String,
    pub repository: Option<String>,
    pub target: Option<String>,
    pub allowed: bool,
    pub status: u16,
    pub client: Option<String>,
}

/// `GET`/`PUT /api/v1/policies`: what a manifest must satisfy before it is pulled from the
/// repositories `repository` (a name, `team/*` or `*`) matches. The most specific pattern
/// that matches a repository is its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullPolicy {
    pub repository: String,
    /// Only manifests with a valid signature by a trusted key (cosign's format).
    pub signed_only: bool,
    /// Trusted public keys, PEM; none: the registry's own (`signing.trusted_keys`).
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// The ids of the trusted keys (set by the registry; ignored in requests).
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Refuse manifests whose scan finds a vulnerability at or above this severity:
    /// `critical`, `high`, `medium` or `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_vulnerabilities: Option<String>,
    /// Advisories (ids or aliases, such as CVE ids) accepted despite the block.
    #[serde(default)]
    pub allowed_advisories: Vec<String>,
}
