//! Credentials and the registry authentication dance.
//!
//! A registry answers an unauthenticated request with 401 and a `WWW-Authenticate` challenge:
//!
//! - `Basic realm=...`: send the username and password with every request;
//! - `Bearer realm=...,service=...,scope=...`: exchange the credential for a token at the
//!   realm, per Docker's token specification: GET with Basic for a username and password,
//!   POST an OAuth2 form for a refresh token (`grant_type=refresh_token`) or an OAuth2
//!   password grant. Tokens are cached per scope until they expire; a refresh token the
//!   server hands back replaces the one we had.
//!
//! A pre-issued token ([`Credential::Token`], `AGENT_REGISTRY_TOKEN`) is sent as a Bearer
//! token from the first request on.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

/// What we can prove to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credential {
    #[default]
    Anonymous,
    /// A username and password (or access key), as `docker login` stores them.
    Basic { username: String, password: String },
    /// A bearer token issued out of band, sent as is.
    Token(String),
    /// OAuth2 at the token realm: a refresh token (docker's identity token), a password
    /// grant when there is none, or a client credentials grant (a robot's id and secret).
    OAuth2 {
        username: Option<String>,
        password: Option<String>,
        refresh_token: Option<String>,
        client_id: String,
        client_secret: Option<String>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, even in debug logs.
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Basic { username, .. } => write!(f, "Basic({username})"),
            Credential::Token(_) => f.write_str("Token(..)"),
            Credential::OAuth2 { username, .. } => write!(f, "OAuth2({username:?})"),
        }
    }
}

impl Credential {
    /// The `Authorization` header to send before any challenge, if any.
    pub(crate) fn preemptive_header(&self) -> Option<String> {
        match self {
            Credential::Token(t) => Some(format!("Bearer {t}")),
            _ => None,
        }
    }

    fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password }
            | Credential::OAuth2 {
                username: Some(username),
                password: Some(password),
                ..
            } => Some(basic(username, password)),
            _ => None,
        }
    }
}

pub(crate) fn basic(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses the first challenge of a header value; `None` for schemes we do not speak.
    pub fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(params);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `key="value", key2=value2`, with commas allowed inside quotes (scopes have them).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.insert(key, value);
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

/// Why a token could not be had.
#[derive(Debug)]
pub(crate) enum TokenError {
    /// The realm could not be reached.
    Connect(reqwest::Error),
    /// The realm answered, but not with a token.
    Refused(String),
    RateLimited(String),
}

/// Tokens per scope, and the credential that earns them.
#[derive(Debug)]
pub(crate) struct Authenticator {
    credential: Mutex<Credential>,
    /// `Authorization` header values, keyed by the scopes they were granted for.
    cache: Mutex<HashMap<String, (String, Instant)>>,
    /// Held while a challenge is answered, so tasks that are refused together fetch one token.
    answering: tokio::sync::Mutex<()>,
}

/// Tokens without `expires_in` last 60 seconds, per the token specification.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

impl Authenticator {
    pub(crate) fn new(credential: Credential) -> Authenticator {
        Authenticator {
            credential: Mutex::new(credential),
            cache: Mutex::new(HashMap::new()),
            answering: tokio::sync::Mutex::new(()),
        }
    }

    fn credential(&self) -> Credential {
        self.credential
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn has_credential(&self) -> bool {
        self.credential() != Credential::Anonymous
    }

    /// The header to send for `scope_key`, from the cache or the credential itself.
    pub(crate) fn header(&self, scope_key: &str) -> Option<String> {
        self.cached(scope_key)
            .or_else(|| self.credential().preemptive_header())
    }

    fn cached(&self, scope_key: &str) -> Option<String> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(scope_key)
            .filter(|(_, expires)| Instant::now() < *expires)
            .map(|(value, _)| value.clone())
    }

    /// Answers `challenge` for `scopes` after `refused` was refused; returns the header to
    /// retry with, cached under `scope_key`. If another task got a new one meanwhile, that is
    /// the answer.
    pub(crate) async fn answer(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        scopes: &[String],
        scope_key: &str,
        refused: Option<&str>,
    ) -> Result<Option<String>, TokenError> {
        let _one_at_a_time = self.answering.lock().await;
        if let Some(fresh) = self.cached(scope_key)
            && Some(fresh.as_str()) != refused
        {
            return Ok(Some(fresh));
        }
        let credential = self.credential();
        if let Credential::Token(_) = credential {
            // A pre-issued token is the whole credential: when it is refused, trading it
            // for an anonymous token would only hide that.
            return Ok(None);
        }
        let (value, lifetime) = match challenge {
            Challenge::Basic => match credential.basic_header() {
                Some(h) => (h, Duration::from_secs(3600 * 24)),
                None => return Ok(None),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let mut scopes = scopes.to_vec();
                if let Some(s) = scope
                    && !scopes.contains(s)
                {
                    scopes.push(s.clone());
                }
                let token = self
                    .fetch_token(http, &credential, realm, service.as_deref(), &scopes)
                    .await?;
                let lifetime = token
                    .expires_in
                    .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
                if let Some(refresh) = token.refresh_token
                    && let Credential::OAuth2 { refresh_token, .. } =
                        &mut *self.credential.lock().unwrap_or_else(|p| p.into_inner())
                {
                    *refresh_token = Some(refresh);
                }
                let Some(t) = token.token.or(token.access_token) else {
                    return Err(TokenError::Refused(
                        "the token response holds no token".into(),
                    ));
                };
                (format!("Bearer {t}"), lifetime)
            }
        };
        // Renew a little early so a token does not expire on its way.
        let expires = Instant::now() + lifetime.saturating_sub(Duration::from_secs(5));
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope_key.to_owned(), (value.clone(), expires));
        Ok(Some(value))
    }

    async fn fetch_token(
        &self,
        http: &reqwest::Client,
        credential: &Credential,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        let request = match credential {
            Credential::OAuth2 {
                refresh_token,
                username,
                password,
                client_id,
                client_secret,
            } if refresh_token.is_some() || password.is_some() || client_secret.is_some() => {
                let mut form: Vec<(&str, &str)> = vec![("client_id", client_id)];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                let joined = scopes.join(" ");
                if !joined.is_empty() {
                    form.push(("scope", &joined));
                }
                if let Some(rt) = refresh_token {
                    form.push(("grant_type", "refresh_token"));
                    form.push(("refresh_token", rt));
                } else if let Some(secret) = client_secret {
                    form.push(("grant_type", "client_credentials"));
                    form.push(("client_secret", secret));
                } else if let Some(p) = password {
                    form.push(("grant_type", "password"));
                    form.push(("username", username.as_deref().unwrap_or_default()));
                    form.push(("password", p));
                    form.push(("access_type", "offline"));
                }
                http.post(realm).form(&form).send().await
            }
            _ => {
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = service {
                    query.push(("service", service));
                }
                for s in scopes {
                    query.push(("scope", s));
                }
                let mut req = http.get(realm).query(&query);
                if let Some(h) = credential.basic_header() {
                    req = req.header(reqwest::header::AUTHORIZATION, h);
                }
                req.send().await
            }
        };
        let response = request.map_err(TokenError::Connect)?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(TokenError::RateLimited(format!("token service {realm}")));
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(TokenError::Refused(format!(
                "token service {realm} answered {status}: {}",
                body.trim()
            )));
        }
        response
            .json::<TokenResponse>()
            .await
            .map_err(|e| TokenError::Refused(format!("token service {realm} sent no token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_commas_in_scope() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:a:pull,push".into()),
            })
        );
    }

    #[test]
    fn parses_basic_and_unquoted_params() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("bearer realm=http://x/token, service=reg"),
            Some(Challenge::Bearer {
                realm: "http://x/token".into(),
                service: Some("reg".into()),
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Bearer service=x"), None);
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::Token("tok".into())).contains("tok"));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn challenge_parsing_never_panics(s in ".{0,200}") {
            let _ = Challenge::parse(&s);
        }
    }
}
