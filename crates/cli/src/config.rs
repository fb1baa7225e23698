//! `~/.aac/config.yaml`: named registry profiles.
//!
//! ```yaml
//! default_profile: prod            # optional; "default" when absent
//! registries:
//!   prod:
//!     url: https://registry.example.com
//!     auth:
//!       type: username             # token | oauth2 | username
//!       username: ci
//!       password: ${REGISTRY_PASSWORD}
//!   ci:
//!     url: https://registry.example.com
//!     auth: { type: token, token: ${AGENT_REGISTRY_TOKEN} }
//!   robot:
//!     url: https://registry.example.com
//!     auth: { type: oauth2, client_id: ci-bot, client_secret: ${ROBOT_TOKEN} }
//! ```
//!
//! `${VAR}` anywhere in a value is replaced by the environment variable; an unset variable
//! is an error naming the key that used it. `$$` is a literal `$`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_registry_client::Credential;
use anyhow::{Context as _, bail};
use serde::Deserialize;
use serde_yaml_ng::Value;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub default_profile: Option<String>,
    #[serde(default)]
    pub registries: BTreeMap<String, Profile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub url: String,
    #[serde(default)]
    pub auth: Option<Auth>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    Token {
        token: String,
    },
    Username {
        username: String,
        password: String,
    },
    #[serde(rename = "oauth2")]
    OAuth2 {
        #[serde(default)]
        refresh_token: Option<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        client_id: Option<String>,
        /// With client_id, a client credentials grant (a robot and one of its API tokens).
        #[serde(default)]
        client_secret: Option<String>,
    },
}

impl Auth {
    pub fn credential(&self) -> Credential {
        match self.clone() {
            Auth::Token { token } => Credential::Token(token),
            Auth::Username { username, password } => Credential::Basic { username, password },
            Auth::OAuth2 {
                refresh_token,
                username,
                password,
                client_id,
                client_secret,
            } => Credential::OAuth2 {
                username,
                password,
                refresh_token,
                client_id: client_id.unwrap_or_else(|| "agent".into()),
                client_secret,
            },
        }
    }
}

impl Config {
    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::parse(&text, env).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let mut value: Value = serde_yaml_ng::from_str(text)?;
        expand(&mut value, "", env)?;
        let config: Config = serde_yaml_ng::from_value(value)?;
        if let Some(name) = &config.default_profile
            && !config.registries.contains_key(name)
        {
            bail!("default_profile {name:?} is not one of registries");
        }
        Ok(config)
    }

    /// The profile named `name`, or an error listing those that exist.
    pub fn profile(&self, name: &str) -> anyhow::Result<&Profile> {
        self.registries.get(name).with_context(|| {
            let known: Vec<_> = self.registries.keys().map(String::as_str).collect();
            if known.is_empty() {
                format!("no profile {name:?}: the configuration defines no registries")
            } else {
                format!("no profile {name:?}; defined: {}", known.join(", "))
            }
        })
    }

    /// The default profile, if the configuration has one.
    pub fn default_profile(&self) -> Option<&Profile> {
        self.registries
            .get(self.default_profile.as_deref().unwrap_or("default"))
    }
}

/// `$AAC_HOME`, else `~/.aac`.
pub fn home(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(h) = env("AAC_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    PathBuf::from(env("HOME").unwrap_or_else(|| ".".into())).join(".aac")
}

fn expand(
    value: &mut Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<()> {
    match value {
        Value::String(s) => *s = expand_str(s, path, env)?,
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let child = if path.is_empty() {
                    key.to_owned()
                } else {
                    format!("{path}.{key}")
                };
                expand(v, &child, env)?;
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                expand(v, &format!("{path}[{i}]"), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn expand_str(s: &str, path: &str, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                bail!("{path}: unterminated ${{ in {s:?}");
            };
            let name = &inner[..end];
            match env(name) {
                Some(v) => out.push_str(&v),
                None => bail!("{path} uses ${{{name}}}, which is not set in the environment"),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "PASS").then(|| "s3cret".to_owned())
    }

    #[test]
    fn expands_variables_in_profiles() {
        let c = Config::parse(
            "registries:\n  default:\n    url: http://localhost:5000\n    auth: {type: username, username: ci, password: '${PASS}-$$x'}\n",
            &env,
        )
        .expect("parse");
        let p = c.default_profile().expect("default");
        assert_eq!(
            p.auth.as_ref().map(Auth::credential),
            Some(Credential::Basic {
                username: "ci".into(),
                password: "s3cret-$x".into()
            })
        );
    }

    #[test]
    fn an_unset_variable_names_the_key() {
        let e = Config::parse(
            "registries:\n  prod:\n    url: x\n    auth: {type: token, token: '${NOPE}'}\n",
            &env,
        )
        .expect_err("unset");
        assert!(
            e.to_string()
                .contains("registries.prod.auth.token uses ${NOPE}"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_auth_types_are_errors() {
        assert!(Config::parse("registry: {}", &env).is_err());
        assert!(Config::parse("registries: {a: {url: x, auth: {type: magic}}}", &env).is_err());
        let e = Config::parse("default_profile: b\nregistries: {a: {url: x}}", &env)
            .expect_err("missing default");
        assert!(e.to_string().contains("\"b\""), "{e}");
    }

    #[test]
    fn a_missing_profile_lists_the_defined_ones() {
        let c = Config::parse("registries: {a: {url: x}, b: {url: y}}", &env).expect("parse");
        let e = c.profile("c").expect_err("missing");
        assert!(e.to_string().contains("a, b"), "{e}");
    }
}
