//! Blob upload: skip what the registry has, mount what another repository has, send small
//! blobs in one PUT and large ones in chunks that resume where the registry says they
//! stopped.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_registry_oci::Digest;
use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, StatusCode, Url};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio_util::io::ReaderStream;

use crate::Progress;
use crate::client::{Client, header_str, scope};
use crate::error::{Error, Result};

/// How a blob came to be in the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPushed {
    /// The repository had it already.
    Existed,
    /// Mounted from another repository without sending its bytes.
    Mounted,
    Uploaded,
}

/// Where the upload stands, per the registry.
enum Started {
    Mounted,
    Session(Url),
}

impl Client {
    /// Makes the blob `digest` of `size` bytes, read from `path`, exist in `repo`.
    /// `mount_from` names a repository on the same registry that may hold it already.
    pub async fn push_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        mount_from: Option<&str>,
        progress: Arc<dyn Progress>,
    ) -> Result<BlobPushed> {
        if self.blob_size_as(repo, digest, "pull,push").await? == Some(size) {
            progress.set_position(size);
            return Ok(BlobPushed::Existed);
        }
        let location = match self.start_upload(repo, digest, mount_from).await? {
            Started::Mounted => {
                progress.set_position(size);
                return Ok(BlobPushed::Mounted);
            }
            Started::Session(url) => url,
        };
        if size <= self.options().monolithic_max {
            self.put_whole(repo, digest, size, path, location, progress)
                .await?;
        } else {
            self.put_chunked(repo, digest, size, path, location, progress)
                .await?;
        }
        Ok(BlobPushed::Uploaded)
    }

    async fn start_upload(
        &self,
        repo: &str,
        digest: &Digest,
        mount_from: Option<&str>,
    ) -> Result<Started> {
        let mut url = self.url(&format!("/v2/{repo}/blobs/uploads/"))?;
        let mut scopes = vec![scope(repo, "pull,push")];
        if let Some(from) = mount_from.filter(|f| *f != repo) {
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", from);
            scopes.push(scope(from, "pull"));
        }
        let what = format!("starting an upload to {repo}");
        let response = self
            .send(&scopes, |http| {
                http.post(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        let response = self.check(&what, response).await?;
        if response.status() == StatusCode::CREATED {
            return Ok(Started::Mounted);
        }
        Ok(Started::Session(self.location(&what, response.headers())?))
    }

    fn location(&self, what: &str, headers: &reqwest::header::HeaderMap) -> Result<Url> {
        let location = header_str(headers, LOCATION.as_str()).ok_or_else(|| Error::Protocol {
            registry: self.host().to_owned(),
            what: what.to_owned(),
            detail: "no Location header".into(),
        })?;
        self.url(location)
    }

    /// One PUT with the whole blob. A failed attempt starts over in a new session: the
    /// body is small enough that resuming would not pay.
    async fn put_whole(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        mut location: Url,
        progress: Arc<dyn Progress>,
    ) -> Result<()> {
        let what = format!("uploading {digest} to {repo}");
        let retry = self.options().retry;
        let mut attempt = 1;
        loop {
            let mut url = location.clone();
            url.query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            progress.set_position(0);
            let p = progress.clone();
            let result = self
                .send_once(&[scope(repo, "pull,push")], |http| {
                    http.put(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, size)
                        .body(file_body(path.to_owned(), 0, size, p.clone()))
                })
                .await;
            match result {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) if !crate::retry::is_retryable(response.status()) => {
                    return Err(self.status_error(&what, response).await);
                }
                other => {
                    let Some(wait) = retry.backoff(attempt, retry_hint(&other)) else {
                        return match other {
                            Ok(response) => Err(self.status_error(&what, response).await),
                            Err(e) => Err(e),
                        };
                    };
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    location = match self.start_upload(repo, digest, None).await? {
                        Started::Session(url) => url,
                        Started::Mounted => return Ok(()),
                    };
                }
            }
        }
    }

    /// PATCH chunks with `Content-Range`, then PUT the digest. After a failure, asks the
    /// registry how much it has (GET on the session) and goes on from there.
    async fn put_chunked(
        &self,
        repo: &str,
        digest: &Digest,
        size: u64,
        path: &Path,
        mut location: Url,
        progress: Arc<dyn Progress>,
    ) -> Result<()> {
        let what = format!("uploading {digest} to {repo}");
        let scopes = [scope(repo, "pull,push")];
        let chunk = self.options().chunk_size.max(1);
        let retry = self.options().retry;
        let mut offset = 0;
        let mut failures = 0;
        while offset < size {
            let len = chunk.min(size - offset);
            progress.set_position(offset);
            let p = progress.clone();
            let url = location.clone();
            let result = self
                .send_once(&scopes, |http| {
                    http.patch(url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len)
                        .header("Content-Range", format!("{}-{}", offset, offset + len - 1))
                        .body(file_body(path.to_owned(), offset, len, p.clone()))
                })
                .await;
            match result {
                Ok(response) if response.status().is_success() => {
                    location = self.location(&what, response.headers())?;
                    offset += len;
                    failures = 0;
                    continue;
                }
                Ok(response)
                    if !crate::retry::is_retryable(response.status())
                        && response.status() != StatusCode::RANGE_NOT_SATISFIABLE =>
                {
                    return Err(self.status_error(&what, response).await);
                }
                other => {
                    failures += 1;
                    let Some(wait) = retry.backoff(failures, retry_hint(&other)) else {
                        return match other {
                            Ok(response) => Err(self.status_error(&what, response).await),
                            Err(e) => Err(e),
                        };
                    };
                    tracing::debug!(%digest, offset, ?wait, "chunk failed; asking where to resume");
                    tokio::time::sleep(wait).await;
                    (location, offset) = self.upload_status(&scopes, &what, &location).await?;
                }
            }
        }
        let mut url = location;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let response = self
            .send(&scopes, |http| {
                http.put(url.clone()).header(CONTENT_LENGTH, 0)
            })
            .await?;
        self.check(&what, response).await.map(drop)
    }

    /// Where an upload session stands: its location and the next byte the registry wants.
    async fn upload_status(
        &self,
        scopes: &[String],
        what: &str,
        location: &Url,
    ) -> Result<(Url, u64)> {
        let response = self.send(scopes, |http| http.get(location.clone())).await?;
        let response = self.check(what, response).await?;
        // "0-0" means nothing as well as one byte (registries write 0-(size-1), floored at
        // 0); resending one byte is safe, skipping one is not.
        let next = header_str(response.headers(), "range")
            .and_then(|r| r.rsplit_once('-'))
            .and_then(|(_, end)| end.trim().parse::<u64>().ok())
            .map_or(0, |end| if end == 0 { 0 } else { end + 1 });
        let location = self
            .location(what, response.headers())
            .unwrap_or_else(|_| location.clone());
        Ok((location, next))
    }
}

/// The server's `Retry-After`, when it answered at all.
fn retry_hint(result: &Result<reqwest::Response>) -> Option<std::time::Duration> {
    result
        .as_ref()
        .ok()
        .and_then(|r| crate::retry::retry_after(r.headers()))
}

/// `len` bytes of the file at `path` from `offset`, opened when the body is first polled,
/// so a retried request reads the file afresh.
fn file_body(path: PathBuf, offset: u64, len: u64, progress: Arc<dyn Progress>) -> Body {
    let opened = futures_util::stream::once(async move {
        let mut file = tokio::fs::File::open(&path).await?;
        file.seek(SeekFrom::Start(offset)).await?;
        Ok::<_, std::io::Error>(ReaderStream::with_capacity(file.take(len), 1 << 20))
    });
    let stream = opened.try_flatten().inspect(move |chunk| {
        if let Ok(c) = chunk {
            progress.advance(c.len() as u64);
        }
    });
    Body::wrap_stream(stream)
}
