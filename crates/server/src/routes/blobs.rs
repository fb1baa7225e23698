//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single-range `Range` support, and
//! GETs redirected to the object store when it signs URLs and redirects are configured.

use std::ops::Range;
use std::time::Duration;

use agent_registry_oci::{ErrorCode, RepoName, media};
use agent_registry_registry::Registry;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::distribution::{Request, empty};
use super::{header_str, set_header};
use crate::endpoint;
use crate::error::{ApiError, ApiResult};

pub async fn get(
    registry: &Registry,
    name: &RepoName,
    digest: &str,
    req: &Request,
    redirect: Option<Duration>,
) -> ApiResult {
    let digest = endpoint::digest(digest)?;
    let size = registry.blob_size(name, &digest).await?;
    if req.method == Method::GET
        && let Some(expiry) = redirect
        && let Some(url) = registry.blob_url(&digest, expiry).await?
    {
        // The client sends its Range header again to the bucket, which answers it.
        let mut response = empty(StatusCode::TEMPORARY_REDIRECT).into_response();
        set_header(&mut response, header::LOCATION, url);
        set_header(&mut response, "docker-content-digest", digest.to_string());
        return Ok(response);
    }
    let range = match header_str(&req.headers, "range") {
        Some(r) => Some(byte_range(r, size).ok_or_else(|| {
            ApiError::new(
                ErrorCode::BlobUnknown,
                format!("range {r:?} is not satisfiable for a blob of {size} bytes"),
            )
            .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
        })?),
        None => None,
    };
    let span = range.clone().unwrap_or(0..size);
    let mut response = if req.method == Method::HEAD || span.is_empty() {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from_stream(
            registry.read_blob(name, &digest, span.clone()).await?,
        ))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media::OCTET_STREAM),
    );
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(span.end - span.start),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    set_header(&mut response, header::ETAG, format!("\"{digest}\""));
    set_header(&mut response, "docker-content-digest", digest.to_string());
    if range.is_some() {
        let value = format!("bytes {}-{}/{size}", span.start, span.end.saturating_sub(1));
        set_header(&mut response, header::CONTENT_RANGE, value);
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

pub async fn delete(registry: &Registry, name: &RepoName, digest: &str) -> ApiResult {
    let digest = endpoint::digest(digest)?;
    registry.delete_blob(name, &digest).await?;
    Ok(empty(StatusCode::ACCEPTED).into_response())
}

/// Parses a single `bytes=` range against a blob of `size` bytes. Multiple ranges and
/// unsatisfiable ones are `None`.
fn byte_range(value: &str, size: u64) -> Option<Range<u64>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        // Suffix: the last b bytes.
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return None;
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().ok()?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return None;
        }
        start..end + 1
    };
    Some(range)
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_as_rfc_9110_defines_them() {
        assert_eq!(byte_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(byte_range("bytes=90-", 100), Some(90..100));
        assert_eq!(byte_range("bytes=-10", 100), Some(90..100));
        assert_eq!(byte_range("bytes=-1000", 100), Some(0..100));
        assert_eq!(byte_range("bytes=50-1000", 100), Some(50..100));
        for bad in [
            "bytes=100-",
            "bytes=5-1",
            "bytes=-0",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=x-1",
        ] {
            assert_eq!(byte_range(bad, 100), None, "{bad}");
        }
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::byte_range;

    proptest! {
        #[test]
        fn any_range_header_yields_a_range_inside_the_blob_or_none(value in "(bytes=)?[0-9-, ]{0,30}|.{0,40}", size in 0u64..1 << 40) {
            if let Some(r) = byte_range(&value, size) {
                prop_assert!(r.start < r.end && r.end <= size, "{:?} for size {}", r, size);
            }
        }
    }
}
