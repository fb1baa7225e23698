//! [`Client`]: one registry, one credential; every request goes through [`Client::send`],
//! which answers auth challenges and retries what may succeed on a second try. Manifests
//! and small requests live here; blob transfer is in `push` and `pull`.

use std::sync::Arc;
use std::time::Duration;

use agent_registry_oci::{Algorithm, Digest, Hasher, media};
use bytes::Bytes;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE,
};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use crate::auth::{Authenticator, Challenge, Credential, TokenError};
use crate::error::{Error, Result};
use crate::retry::{self, RetryPolicy};

/// Every manifest type we can read, in the `Accept` header of manifest requests.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// The largest manifest we read, as registries limit what they accept.
const MANIFEST_MAX: usize = 4 << 20;

/// How to reach a registry and what to present to it.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub credential: Credential,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Blobs up to this size go in one PUT; larger ones in chunks of `chunk_size`.
    pub monolithic_max: u64,
    pub chunk_size: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credential: Credential::Anonymous,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            monolithic_max: 64 << 20,
            chunk_size: 64 << 20,
        }
    }
}

/// A client for one registry. Cheap to clone; clones share connections and tokens.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    base: Url,
    host: String,
    auth: Authenticator,
    pub(crate) options: ClientOptions,
}

/// A manifest as the registry sent it, checked against its digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

/// The scheme for a registry given without one: plain HTTP on loopback, as docker allows
/// without configuration; HTTPS anywhere else.
pub fn registry_url(registry: &str) -> String {
    if registry.starts_with("http://") || registry.starts_with("https://") {
        return registry.trim_end_matches('/').to_owned();
    }
    let host = registry.rsplit_once(':').map_or(registry, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            registry
        }
    });
    let loopback = host == "localhost"
        || host.starts_with("127.")
        || host == "[::1]"
        || host.ends_with(".localhost");
    let scheme = if loopback { "http" } else { "https" };
    format!("{scheme}://{registry}")
}

impl Client {
    /// A client for the registry at `registry` (`host[:port]` or a URL).
    pub fn new(registry: &str, options: ClientOptions) -> Result<Client> {
        let url = registry_url(registry);
        let base = Url::parse(&format!("{url}/")).map_err(|e| Error::Protocol {
            registry: registry.to_owned(),
            what: "its address".into(),
            detail: e.to_string(),
        })?;
        let host = base
            .host_str()
            .map(|h| match base.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
            .unwrap_or_else(|| registry.to_owned());
        let http = reqwest::Client::builder()
            .user_agent(concat!("agent/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Connect {
                registry: host.clone(),
                detail: error_chain(&e),
            })?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                host,
                auth: Authenticator::new(options.credential.clone()),
                options,
            }),
        })
    }

    /// `host[:port]` of the registry, as messages name it.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    pub(crate) fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The HTTP client itself, for requests that must go without credentials.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// An absolute URL for a path under the registry, or a `Location` the registry sent.
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        self.inner.base.join(path).map_err(|e| Error::Protocol {
            registry: self.host().to_owned(),
            what: format!("the location {path:?}"),
            detail: e.to_string(),
        })
    }

    /// Sends the request `build` makes, answering auth challenges for `scopes` and retrying
    /// connection errors, 5xx and 429 with backoff. Returns the final response, whatever its
    /// status; [`Client::check`] turns failures into errors.
    pub(crate) async fn send(
        &self,
        scopes: &[String],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_with(scopes, &self.inner.options.retry, build)
            .await
    }

    /// [`Client::send`] without retrying: for upload requests, whose retry depends on what
    /// the registry kept of the failed one (see `push`). Challenges are still answered.
    pub(crate) async fn send_once(
        &self,
        scopes: &[String],
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_with(scopes, &RetryPolicy::none(), build).await
    }

    async fn send_with(
        &self,
        scopes: &[String],
        retry: &RetryPolicy,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response> {
        let inner = &self.inner;
        let key = scopes.join(" ");
        let mut attempt = 1;
        let mut answered = false;
        loop {
            let mut request = build(&inner.http);
            let sent = inner.auth.header(&key);
            if let Some(h) = &sent {
                request = request.header(AUTHORIZATION, h);
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => match retry.backoff(attempt, None) {
                    Some(wait) => {
                        tracing::debug!(attempt, ?wait, error = %error_chain(&e), "retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    None => return Err(self.connect_error(&e)),
                },
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !answered {
                answered = true;
                if self
                    .answer_challenge(response.headers(), scopes, &key, sent.as_deref())
                    .await?
                {
                    continue;
                }
                return Err(self.status_error("the request", response).await);
            }
            if retry::is_retryable(status)
                && let Some(wait) = retry.backoff(attempt, retry::retry_after(response.headers()))
            {
                tracing::debug!(attempt, ?wait, %status, "retrying");
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            return Ok(response);
        }
    }

    /// Gets a header that answers the challenge in `headers`; false when we have nothing
    /// that could.
    async fn answer_challenge(
        &self,
        headers: &HeaderMap,
        scopes: &[String],
        key: &str,
        refused: Option<&str>,
    ) -> Result<bool> {
        let Some(challenge) = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
        else {
            return Ok(false);
        };
        let answered = self
            .inner
            .auth
            .answer(&self.inner.http, &challenge, scopes, key, refused)
            .await;
        match answered {
            Ok(header) => Ok(header.is_some()),
            Err(TokenError::Connect(e)) => Err(self.connect_error(&e)),
            Err(TokenError::RateLimited(detail)) => Err(Error::RateLimited {
                registry: self.host().to_owned(),
                detail,
            }),
            Err(TokenError::Refused(detail)) => Err(Error::Authentication {
                registry: self.host().to_owned(),
                detail,
            }),
        }
    }

    /// Passes a successful response; turns any other into the error its status means.
    pub(crate) async fn check(&self, what: &str, response: Response) -> Result<Response> {
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(what, response).await)
        }
    }

    pub(crate) async fn status_error(&self, what: &str, response: Response) -> Error {
        let status = response.status();
        let registry = self.host().to_owned();
        let body = response.text().await.unwrap_or_default();
        let detail = server_message(&body).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned()
        });
        match status {
            StatusCode::UNAUTHORIZED => Error::Authentication {
                detail: if self.inner.auth.has_credential() {
                    format!("the registry refused the credentials for {what}: {detail}")
                } else {
                    format!("{what} needs credentials; run `agent login {registry}`: {detail}")
                },
                registry,
            },
            StatusCode::FORBIDDEN => Error::Authentication {
                registry,
                detail: format!("access to {what} denied: {detail}"),
            },
            StatusCode::NOT_FOUND => Error::NotFound {
                registry,
                what: format!("{what}: {detail}"),
            },
            StatusCode::TOO_MANY_REQUESTS => Error::RateLimited {
                registry,
                detail: format!("{what}: {detail}"),
            },
            StatusCode::INSUFFICIENT_STORAGE => Error::StorageFull {
                detail: format!("registry {registry} has no room for {what}: {detail}"),
            },
            _ => Error::Refused {
                registry,
                what: what.to_owned(),
                status: status.as_u16(),
                detail,
            },
        }
    }

    pub(crate) fn connect_error(&self, e: &reqwest::Error) -> Error {
        Error::Connect {
            registry: self.host().to_owned(),
            detail: error_chain(e),
        }
    }

    /// Checks that the registry answers the API and accepts our credential (`GET /v2/`).
    pub async fn ping(&self) -> Result<()> {
        let url = self.url("/v2/")?;
        let response = self.send(&[], |http| http.get(url.clone())).await?;
        self.check("/v2/", response).await.map(drop)
    }

    /// Makes sure later requests that name no repository carry our credential. A registry
    /// answers those (search, who am I) anonymously instead of challenging, so without this
    /// a signed-in user would be served as anonymous. Pinging earns the header once.
    pub(crate) async fn sign_in(&self) -> Result<()> {
        if self.inner.auth.has_credential() && self.inner.auth.header("").is_none() {
            self.ping().await?;
        }
        Ok(())
    }

    /// Fetches a manifest by tag or digest and checks it against its digest.
    pub async fn manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let what = format!("manifest {repo}:{reference}");
        let response = self
            .send(&[scope(repo, "pull")], |http| {
                http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        let response = self.check(&what, response).await?;
        let media_type = header_str(response.headers(), CONTENT_TYPE.as_str())
            .map(|s| s.split(';').next().unwrap_or(s).trim().to_owned());
        let header_digest = header_str(response.headers(), "docker-content-digest")
            .and_then(|d| d.parse::<Digest>().ok());
        let bytes = read_limited(response, MANIFEST_MAX)
            .await
            .map_err(|detail| Error::Protocol {
                registry: self.host().to_owned(),
                what: what.clone(),
                detail,
            })?;
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        let algorithm = expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of(algorithm, &bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(Error::Integrity {
                expected: expected.to_string(),
                actual: digest.to_string(),
                digest: expected,
            });
        }
        let media_type = media_type
            .filter(|m| !m.is_empty() && m != media::OCTET_STREAM && m != "application/json")
            .or_else(|| declared_media_type(&bytes))
            .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// A small blob (an image config) in memory, checked against its digest; one larger than
    /// `max` bytes is refused.
    pub async fn small_blob(&self, repo: &str, digest: &Digest, max: usize) -> Result<Bytes> {
        let what = format!("blob {digest} of {repo}");
        let bytes = self
            .get_limited(repo, &format!("blobs/{digest}"), &what, max)
            .await?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            return Err(Error::Integrity {
                expected: digest.to_string(),
                actual: actual.to_string(),
                digest: digest.clone(),
            });
        }
        Ok(bytes)
    }

    /// The manifests whose subject is `digest` (signatures, SBOMs, scan reports, agent.yaml),
    /// as the referrers API lists them: descriptors with `artifactType` and annotations.
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Vec<serde_json::Value>> {
        #[derive(Deserialize)]
        struct Index {
            #[serde(default)]
            manifests: Vec<serde_json::Value>,
        }
        let what = format!("referrers of {repo}@{digest}");
        let bytes = self
            .get_limited(repo, &format!("referrers/{digest}"), &what, MANIFEST_MAX)
            .await?;
        serde_json::from_slice::<Index>(&bytes)
            .map(|i| i.manifests)
            .map_err(|e| Error::Protocol {
                registry: self.host().to_owned(),
                what,
                detail: e.to_string(),
            })
    }

    /// GETs `/v2/{repo}/{path}` with pull rights and reads at most `max` bytes of it.
    async fn get_limited(&self, repo: &str, path: &str, what: &str, max: usize) -> Result<Bytes> {
        let url = self.url(&format!("/v2/{repo}/{path}"))?;
        let response = self
            .send(&[scope(repo, "pull")], |http| http.get(url.clone()))
            .await?;
        let response = self.check(what, response).await?;
        read_limited(response, max)
            .await
            .map_err(|detail| Error::Protocol {
                registry: self.host().to_owned(),
                what: what.to_owned(),
                detail,
            })
    }

    /// The digest a tag or digest points at, without fetching the manifest; `None` if absent.
    pub async fn manifest_digest(&self, repo: &str, reference: &str) -> Result<Option<Digest>> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let response = self
            .send(&[scope(repo, "pull")], |http| {
                http.head(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
            })
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self
            .check(&format!("manifest {repo}:{reference}"), response)
            .await?;
        Ok(header_str(response.headers(), "docker-content-digest").and_then(|d| d.parse().ok()))
    }

    /// Stores a manifest under a tag or its digest; returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: Bytes,
        media_type: &str,
    ) -> Result<Digest> {
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"))?;
        let response = self
            .send(&[scope(repo, "pull,push")], |http| {
                http.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        let response = self
            .check(&format!("pushing manifest {repo}:{reference}"), response)
            .await?;
        let local = Digest::of(Algorithm::Sha256, &bytes);
        Ok(header_str(response.headers(), "docker-content-digest")
            .and_then(|d| d.parse().ok())
            .unwrap_or(local))
    }

    /// The size of a blob if the repository has it.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        self.blob_size_as(repo, digest, "pull").await
    }

    /// [`Client::blob_size`] asking for a token for `actions`: a push asks for `pull,push`
    /// from the first request, so one token serves it all.
    pub(crate) async fn blob_size_as(
        &self,
        repo: &str,
        digest: &Digest,
        actions: &str,
    ) -> Result<Option<u64>> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let response = self
            .send(&[scope(repo, actions)], |http| http.head(url.clone()))
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.check(&format!("blob {digest}"), response).await?;
        // Not `content_length()`: for HEAD that is the (empty) body's length.
        Ok(header_str(response.headers(), CONTENT_LENGTH.as_str()).and_then(|l| l.parse().ok()))
    }

    /// Tags of a repository, following `Link` pages.
    pub async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut next = Some(self.url(&format!("/v2/{repo}/tags/list"))?);
        let mut tags = Vec::new();
        while let Some(url) = next.take() {
            let response = self
                .send(&[scope(repo, "pull")], |http| http.get(url.clone()))
                .await?;
            let response = self.check(&format!("tags of {repo}"), response).await?;
            next = link_next(response.headers()).and_then(|l| self.url(&l).ok());
            let page: TagList = response.json().await.map_err(|e| Error::Protocol {
                registry: self.host().to_owned(),
                what: format!("tags of {repo}"),
                detail: e.to_string(),
            })?;
            tags.extend(page.tags.unwrap_or_default());
        }
        Ok(tags)
    }

    /// A new hasher for `digest`'s algorithm.
    pub(crate) fn hasher(digest: &Digest) -> Hasher {
        Hasher::new(digest.algorithm())
    }
}

/// The token scope for `actions` on `repo`.
pub(crate) fn scope(repo: &str, actions: &str) -> String {
    format!("repository:{repo}:{actions}")
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `<url>; rel="next"` from a `Link` header.
fn link_next(headers: &HeaderMap) -> Option<String> {
    let link = header_str(headers, "link")?;
    let (target, params) = link.split_once(';')?;
    params.contains("rel=\"next\"").then(|| {
        target
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_owned()
    })
}

fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// Reads a body of at most `max` bytes.
async fn read_limited(mut response: Response, max: usize) -> Result<Bytes, String> {
    if response.content_length().is_some_and(|l| l > max as u64) {
        return Err(format!("it is larger than {max} bytes"));
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if out.len() + chunk.len() > max {
            return Err(format!("it is larger than {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.into())
}

/// The message in an error body: the first of the distribution spec's `{"errors":[...]}`, or the
/// `{"status":"error","errorType","error"}` of Prometheus's query API (which the registry's
/// metric queries answer in too).
pub(crate) fn server_message(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Query {
        error_type: String,
        error: String,
    }
    if let Ok(q) = serde_json::from_str::<Query>(body) {
        return Some(format!("{}: {}", q.error_type, q.error));
    }
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(Deserialize)]
    struct Entry {
        code: String,
        message: Option<String>,
    }
    let parsed: Body = serde_json::from_str(body).ok()?;
    let first = parsed.errors.into_iter().next()?;
    Some(match first.message {
        Some(m) if !m.is_empty() => format!("{}: {m}", first.code),
        _ => first.code,
    })
}

/// An error and its causes on one line: reqwest's own message rarely says what failed.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_default_to_http() {
        assert_eq!(registry_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(registry_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(registry_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(registry_url("https://x.io/"), "https://x.io");
        assert_eq!(registry_url("http://x.io:80"), "http://x.io:80");
    }

    #[test]
    fn oci_error_bodies_become_messages() {
        let body =
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            server_message(body).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(server_message("<html>"), None);
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            "</v2/a/tags/list?n=1&last=b>; rel=\"next\""
                .parse()
                .expect("header"),
        );
        assert_eq!(link_next(&h).as_deref(), Some("/v2/a/tags/list?n=1&last=b"));
    }
}
