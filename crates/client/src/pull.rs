//! Blob download into a partial file that survives interruption: the next attempt (in this
//! process or the next) hashes what is there and asks for the rest with `Range`. Every byte
//! is hashed as it arrives; the blob is good only when its size and digest match.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::Arc;

use agent_registry_oci::{Digest, Hasher};
use reqwest::StatusCode;
use reqwest::header::RANGE;

use crate::Progress;
use crate::client::{Client, error_chain, header_str, scope};
use crate::error::{Error, Result};

impl Client {
    /// Downloads blob `digest` of `repo` into `partial`, resuming from what the file holds,
    /// and verifies its size (when `size` is known) and digest. On success `partial` holds
    /// exactly the blob; on a verification failure it is removed.
    pub async fn pull_blob(
        &self,
        repo: &str,
        digest: &Digest,
        size: Option<u64>,
        partial: &Path,
        progress: Arc<dyn Progress>,
    ) -> Result<()> {
        let io = |what: &str, e| Error::io(format!("{what} {}", partial.display()), e);
        let (mut file, mut hasher, mut have) = {
            let partial = partial.to_owned();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || resume_from(&partial, &digest, size))
                .await
                .map_err(|e| io("reading", std::io::Error::other(e)))?
                .map_err(|e| io("reading", e))?
        };
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"))?;
        let what = format!("blob {digest} of {repo}");
        let retry = self.options().retry;
        let mut failures = 0;
        loop {
            progress.set_position(have);
            if size.is_some_and(|s| have >= s) && have > 0 {
                break;
            }
            let from = have;
            let response = self
                .send(&[scope(repo, "pull")], |http| {
                    let r = http.get(url.clone());
                    if from > 0 {
                        r.header(RANGE, format!("bytes={from}-"))
                    } else {
                        r
                    }
                })
                .await?;
            let status = response.status();
            if status == StatusCode::OK && have > 0 {
                // The registry ignored the range: start over.
                (file, hasher, have) = restart(file, digest).map_err(|e| io("truncating", e))?;
            } else if status == StatusCode::PARTIAL_CONTENT {
                let start = header_str(response.headers(), "content-range")
                    .and_then(|r| r.trim_start_matches("bytes ").split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(have) {
                    (file, hasher, have) =
                        restart(file, digest).map_err(|e| io("truncating", e))?;
                    continue;
                }
            } else if !status.is_success() {
                return Err(self.status_error(&what, response).await);
            }
            let mut response = response;
            let interrupted = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        if size.is_some_and(|s| have + chunk.len() as u64 > s) {
                            drop(file);
                            let _ = std::fs::remove_file(partial);
                            return Err(Error::Integrity {
                                digest: digest.clone(),
                                expected: format!("{} bytes", size.unwrap_or_default()),
                                actual: "more".into(),
                            });
                        }
                        hasher.update(&chunk);
                        file.write_all(&chunk).map_err(|e| io("writing", e))?;
                        have += chunk.len() as u64;
                        progress.advance(chunk.len() as u64);
                    }
                    Ok(None) => break None,
                    Err(e) => break Some(e),
                }
            };
            if interrupted.is_none() && size.is_none_or(|s| have == s) {
                break;
            }
            failures += 1;
            let Some(wait) = retry.backoff(failures, None) else {
                return Err(match interrupted {
                    Some(e) => self.connect_error(&e),
                    None => Error::Protocol {
                        registry: self.host().to_owned(),
                        what,
                        detail: format!(
                            "the body ended after {have} of {} bytes",
                            size.unwrap_or_default()
                        ),
                    },
                });
            };
            if let Some(e) = &interrupted {
                tracing::debug!(%digest, have, error = %error_chain(e), "download interrupted");
            }
            tokio::time::sleep(wait).await;
        }
        tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .map_err(|e| io("syncing", std::io::Error::other(e)))?
            .map_err(|e| io("syncing", e))?;
        let actual = hasher.finish();
        if &actual != digest {
            let _ = std::fs::remove_file(partial);
            return Err(Error::Integrity {
                digest: digest.clone(),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(())
    }
}

/// Opens `partial` for appending and hashes what it already holds (none of it if it is
/// longer than the blob can be).
fn resume_from(
    partial: &Path,
    digest: &Digest,
    size: Option<u64>,
) -> std::io::Result<(std::fs::File, Hasher, u64)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)?;
    let len = file.metadata()?.len();
    if size.is_some_and(|s| len > s) {
        return restart(file, digest);
    }
    let mut hasher = Client::hasher(digest);
    let mut buf = vec![0; 1 << 20];
    file.seek(SeekFrom::Start(0))?;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    file.seek(SeekFrom::End(0))?;
    Ok((file, hasher, len))
}

fn restart(
    mut file: std::fs::File,
    digest: &Digest,
) -> std::io::Result<(std::fs::File, Hasher, u64)> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    Ok((file, Client::hasher(digest), 0))
}
