//! [`ApiError`]: the one way a handler fails. It renders the spec's error body,
//! `{"errors":[{"code","message","detail"}]}`, with the status that belongs to the code.
//! Internal causes are logged here, once, and reach the client only as an opaque 500.

use agent_registry_oci::ErrorCode;
use agent_registry_registry::Error;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::endpoint::EndpointError;

/// Boxed: errors are rare, and a small `Result` keeps the happy path cheap.
#[derive(Debug)]
pub struct ApiError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    detail: Option<serde_json::Value>,
    headers: HeaderMap,
}

#[derive(Serialize)]
struct Body<'a> {
    errors: [Entry<'a>; 1],
}

#[derive(Serialize)]
struct Entry<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a serde_json::Value>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(Inner {
            status: StatusCode::from_u16(code.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message: message.into(),
            detail: None,
            headers: HeaderMap::new(),
        }))
    }

    /// An internal failure: logged here, opaque to the client.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "request failed");
        ApiError::new(
            ErrorCode::Unknown,
            "internal server error; the registry log has the cause",
        )
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.0.status = status;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: impl TryInto<HeaderValue>) -> ApiError {
        if let Ok(v) = value.try_into() {
            self.0.headers.insert(name, v);
        }
        self
    }

    /// The database cannot take the request now: 503 with a `Retry-After`, the cause logged.
    pub fn unavailable(cause: impl std::fmt::Display) -> ApiError {
        tracing::warn!(error = %cause, "request refused: the database is unavailable");
        ApiError::new(
            ErrorCode::Unknown,
            Error::Unavailable(String::new()).to_string(),
        )
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
        .with_header(axum::http::header::RETRY_AFTER, "1")
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        if e.is_internal() {
            return ApiError::internal(e);
        }
        if let Error::Unavailable(cause) = &e {
            return ApiError::unavailable(cause);
        }
        let detail = match &e {
            Error::NameUnknown(name) => Some(serde_json::json!({ "name": name.as_str() })),
            Error::BlobUnknown { repo, digest } => {
                Some(serde_json::json!({ "name": repo.as_str(), "digest": digest }))
            }
            Error::ManifestUnknown { repo, reference } => {
                Some(serde_json::json!({ "name": repo.as_str(), "reference": reference }))
            }
            Error::TooLarge { limit, .. } => Some(serde_json::json!({ "limit": limit })),
            Error::RangeInvalid { size, .. } => Some(serde_json::json!({ "size": size })),
            _ => None,
        };
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut api = ApiError::new(e.code(), e.to_string()).with_status(status);
        api.0.detail = detail;
        api
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> ApiError {
        match e {
            EndpointError::NotFound(_) => ApiError::new(ErrorCode::Unsupported, e.to_string())
                .with_status(StatusCode::NOT_FOUND),
            EndpointError::Name(n) => ApiError::from(n),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let body = Body {
            errors: [Entry {
                code: this.code,
                message: &this.message,
                detail: this.detail.as_ref(),
            }],
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (
            this.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response();
        response.headers_mut().extend(this.headers);
        response
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

impl From<agent_registry_oci::NameError> for ApiError {
    fn from(e: agent_registry_oci::NameError) -> ApiError {
        ApiError::new(ErrorCode::NameInvalid, e.to_string())
    }
}

impl From<agent_registry_access::AccessError> for ApiError {
    fn from(e: agent_registry_access::AccessError) -> ApiError {
        use agent_registry_access::AccessError as E;
        match e {
            E::Invalid(_) => ApiError::new(ErrorCode::ParameterInvalid, e.to_string()),
            E::NotFound(_) => ApiError::new(ErrorCode::NotFound, e.to_string()),
            E::Exists(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            E::Unauthenticated(_) => ApiError::new(ErrorCode::Unauthorized, e.to_string()),
            E::Throttled(wait) => crate::auth::too_many(wait, &e.to_string()),
            E::Store(agent_registry_metadata::MetadataError::Unavailable { .. }) => {
                ApiError::unavailable(e)
            }
            E::Store(_) | E::Internal(_) => ApiError::internal(e),
        }
    }
}
