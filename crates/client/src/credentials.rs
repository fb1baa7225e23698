//! Credentials that other tools saved: Docker's `config.json` (`auths`, `credHelpers`,
//! `credsStore` through `docker-credential-*` helpers) and Podman's `auth.json`, which
//! share one format (so does a Kubernetes dockerconfigjson secret).
//!
//! Lookup order for a registry host: Docker's config (a per-registry helper, then the
//! default store, then `auths`), then Podman's files (`$REGISTRY_AUTH_FILE`,
//! `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.config/containers/auth.json`).
//! `agent login` writes where `docker login` would, so both tools see the result.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Credential;

/// Docker Hub's key in `auths`, for historical reasons.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid credentials file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("credential helper docker-credential-{helper} failed: {reason}")]
    Helper { helper: String, reason: String },
}

type Result<T> = std::result::Result<T, CredentialError>;

/// One `auths` entry.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identitytoken: Option<String>,
}

impl AuthEntry {
    fn credential(&self) -> Option<Credential> {
        if let Some(token) = self.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Some(Credential::OAuth2 {
                username: self.username.clone(),
                password: None,
                refresh_token: Some(token.clone()),
                client_id: "agent".into(),
                client_secret: None,
            });
        }
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            return Some(Credential::Basic {
                username: u.clone(),
                password: p.clone(),
            });
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(self.auth.as_ref()?.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (u, p) = decoded.split_once(':')?;
        Some(Credential::Basic {
            username: u.to_owned(),
            password: p.to_owned(),
        })
    }
}

/// The parts of `config.json` / `auth.json` we use; the rest is kept as it was on write.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

impl AuthFile {
    /// The credential helper that holds `host`'s credentials, if the file names one: the
    /// per-registry helper, else the default store.
    fn helper_for(&self, host: &str) -> Option<&String> {
        self.cred_helpers.get(host).or(self.creds_store.as_ref())
    }
}

/// Finds a saved credential for `host` in a dockerconfigjson document (as a Kubernetes
/// image pull secret holds).
pub fn from_docker_config_json(json: &str, host: &str) -> Option<Credential> {
    let file: AuthFile = serde_json::from_str(json).ok()?;
    lookup_auths(&file.auths, host)
}

/// Where credentials are read from and written to.
#[derive(Debug, Clone)]
pub struct CredentialFiles {
    pub docker_config: PathBuf,
    pub podman: Vec<PathBuf>,
}

impl CredentialFiles {
    /// The files Docker and Podman use, from `DOCKER_CONFIG`, `REGISTRY_AUTH_FILE`,
    /// `XDG_RUNTIME_DIR` and `HOME`.
    pub fn from_env() -> CredentialFiles {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        let docker_dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".docker"));
        let mut podman = Vec::new();
        if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE") {
            podman.push(PathBuf::from(f));
        }
        if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
            podman.push(PathBuf::from(run).join("containers/auth.json"));
        }
        podman.push(home.join(".config/containers/auth.json"));
        CredentialFiles {
            docker_config: docker_dir.join("config.json"),
            podman,
        }
    }

    /// The saved credential for `host`, if any file or helper has one.
    pub fn lookup(&self, host: &str) -> Result<Option<Credential>> {
        if let Some(docker) = read_auth_file(&self.docker_config)? {
            if let Some(helper) = docker.helper_for(host)
                && let Some(c) = helper_get(helper, &server_key(host))?
            {
                return Ok(Some(c));
            }
            if let Some(c) = lookup_auths(&docker.auths, host) {
                return Ok(Some(c));
            }
        }
        for path in &self.podman {
            if let Some(file) = read_auth_file(path)?
                && let Some(c) = lookup_auths(&file.auths, host)
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// Saves a username and password for `host` as `docker login` would: in the credential
    /// helper the config names, or else in `auths`. Returns where it went.
    pub fn store(&self, host: &str, username: &str, password: &str) -> Result<String> {
        let docker = read_auth_file(&self.docker_config)?.unwrap_or_default();
        let key = server_key(host);
        if let Some(helper) = docker.helper_for(host) {
            let input =
                serde_json::json!({"ServerURL": key, "Username": username, "Secret": password});
            run_helper(helper, "store", &input.to_string())?;
            return Ok(format!("docker-credential-{helper}"));
        }
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.edit_auths(|auths| {
            auths.insert(key.clone(), serde_json::json!({ "auth": auth }));
        })?;
        Ok(self.docker_config.display().to_string())
    }

    /// Removes the saved credential for `host`; false if there was none.
    pub fn erase(&self, host: &str) -> Result<bool> {
        let docker = read_auth_file(&self.docker_config)?.unwrap_or_default();
        let key = server_key(host);
        if let Some(helper) = docker.helper_for(host) {
            return Ok(run_helper(helper, "erase", &key).is_ok());
        }
        let mut removed = false;
        self.edit_auths(|auths| {
            removed = auths.remove(&key).is_some();
        })?;
        Ok(removed)
    }

    /// Rewrites `auths` in Docker's config, keeping every other key, atomically and
    /// readable by the owner only.
    fn edit_auths(&self, edit: impl FnOnce(&mut Map<String, Value>)) -> Result<()> {
        let path = &self.docker_config;
        let mut doc: Map<String, Value> = match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => {
                serde_json::from_str(&text).map_err(|e| CredentialError::Malformed {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            Ok(_) => Map::new(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.clone(),
                    source,
                });
            }
        };
        let auths = doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(map) = auths {
            edit(map);
        }
        let write_err = |source| CredentialError::Write {
            path: path.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let mut tmp = tempfile_in(dir).map_err(write_err)?;
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        tmp.1.write_all(text.as_bytes()).map_err(write_err)?;
        tmp.1.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp.0, path).map_err(write_err)
    }
}

/// A new file in `dir`, mode 0600, with a name no other writer uses.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(format!(
        ".config.json.{}.{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((path, file))
}

fn read_auth_file(path: &Path) -> Result<Option<AuthFile>> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(None),
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CredentialError::Malformed {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CredentialError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// The key Docker files credentials under for `host`.
fn server_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_owned(),
        h => h.to_owned(),
    }
}

/// Finds `host` among `auths` keys, which may be bare hosts or URLs.
fn lookup_auths(auths: &BTreeMap<String, AuthEntry>, host: &str) -> Option<Credential> {
    let want = server_key(host);
    auths
        .iter()
        .find(|(key, _)| {
            *key == &want || {
                let bare = key
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let bare = bare.split('/').next().unwrap_or(bare);
                bare == host || server_key(bare) == want
            }
        })
        .and_then(|(_, entry)| entry.credential())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// Asks `docker-credential-<helper>` for `server`; `None` when it has nothing.
fn helper_get(helper: &str, server: &str) -> Result<Option<Credential>> {
    let out = match run_helper(helper, "get", server) {
        Ok(out) => out,
        // Helpers say "credentials not found in native keychain" for an unknown server.
        Err(CredentialError::Helper { reason, .. }) if reason.contains("not found") => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let answer: HelperAnswer = serde_json::from_str(&out).map_err(|e| CredentialError::Helper {
        helper: helper.to_owned(),
        reason: format!("its answer is not valid JSON: {e}"),
    })?;
    // A username of "<token>" marks an identity (refresh) token.
    Ok(Some(if answer.username == "<token>" {
        Credential::OAuth2 {
            username: None,
            password: None,
            refresh_token: Some(answer.secret),
            client_id: "agent".into(),
            client_secret: None,
        }
    } else {
        Credential::Basic {
            username: answer.username,
            password: answer.secret,
        }
    }))
}

fn run_helper(helper: &str, action: &str, input: &str) -> Result<String> {
    let program = format!("docker-credential-{helper}");
    let failed = |reason: String| CredentialError::Helper {
        helper: helper.to_owned(),
        reason,
    };
    let mut child = Command::new(&program)
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("could not run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| failed(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let msg = if stdout.is_empty() {
            stderr.trim()
        } else {
            &stdout
        };
        return Err(failed(msg.to_owned()));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> CredentialFiles {
        CredentialFiles {
            docker_config: dir.join("docker/config.json"),
            podman: vec![dir.join("containers/auth.json")],
        }
    }

    #[test]
    fn reads_auths_by_host_or_url_and_docker_hub_key() {
        let json = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "https://ghcr.io": {"username": "a", "password": "b"},
            "localhost:5000": {"identitytoken": "rt"}}}"#;
        let basic = |u: &str, p: &str| {
            Some(Credential::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(from_docker_config_json(json, "docker.io"), basic("u", "p"));
        assert_eq!(from_docker_config_json(json, "ghcr.io"), basic("a", "b"));
        assert!(matches!(
            from_docker_config_json(json, "localhost:5000"),
            Some(Credential::OAuth2 { refresh_token: Some(t), .. }) if t == "rt"
        ));
        assert_eq!(from_docker_config_json(json, "quay.io"), None);
    }

    #[test]
    fn login_then_logout_round_trips_and_keeps_other_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        std::fs::create_dir_all(dir.path().join("docker")).expect("mkdir");
        std::fs::write(&f.docker_config, r#"{"experimental":"enabled"}"#).expect("write");
        f.store("localhost:5000", "me", "secret").expect("store");
        assert_eq!(
            f.lookup("localhost:5000").expect("lookup"),
            Some(Credential::Basic {
                username: "me".into(),
                password: "secret".into()
            })
        );
        let text = std::fs::read_to_string(&f.docker_config).expect("read");
        assert!(text.contains("experimental"), "{text}");
        assert!(f.erase("localhost:5000").expect("erase"));
        assert_eq!(f.lookup("localhost:5000").expect("lookup"), None);
        assert!(!f.erase("localhost:5000").expect("erase again"));
    }

    #[test]
    fn podman_auth_json_is_read_after_docker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        std::fs::create_dir_all(dir.path().join("containers")).expect("mkdir");
        std::fs::write(&f.podman[0], r#"{"auths":{"quay.io":{"auth":"cTpy"}}}"#).expect("write");
        assert_eq!(
            f.lookup("quay.io").expect("lookup"),
            Some(Credential::Basic {
                username: "q".into(),
                password: "r".into()
            })
        );
    }

    #[test]
    fn a_malformed_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        std::fs::create_dir_all(dir.path().join("docker")).expect("mkdir");
        std::fs::write(&f.docker_config, "{not json").expect("write");
        let e = f.lookup("x.io").expect_err("malformed");
        assert!(e.to_string().contains("config.json"), "{e}");
    }

    #[test]
    fn a_missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        std::fs::create_dir_all(dir.path().join("docker")).expect("mkdir");
        std::fs::write(&f.docker_config, r#"{"credsStore":"nonexistent-xyz"}"#).expect("write");
        let e = f.lookup("x.io").expect_err("no helper");
        assert!(
            e.to_string().contains("docker-credential-nonexistent-xyz"),
            "{e}"
        );
    }
}
