//! The registry's error type.
//!
//! Which error type to use where: the `oci`, `storage` and `metadata` crates each have their
//! own `thiserror` enum naming what went wrong in their domain. This crate turns those into
//! [`Error`], whose variants are what a client did wrong (each with the spec's error code)
//! or `Internal` for faults the client cannot fix. The server maps `Error` to a response and
//! nothing else; binaries use `anyhow` only at start-up.

use agent_registry_metadata::MetadataError;
use agent_registry_oci::{Digest, ErrorCode, NameError, RepoName};
use agent_registry_storage::StorageError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NameInvalid(NameError),
    #[error("{0}")]
    TagInvalid(NameError),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("repository {0} is not known to this registry")]
    NameUnknown(RepoName),
    #[error("blob {digest} is not in repository {repo}")]
    BlobUnknown { repo: RepoName, digest: Digest },
    #[error(
        "upload {0} is not known (it finished, was cancelled, expired, or belongs to another repository)"
    )]
    UploadUnknown(String),
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk that does not start where the upload ends (HTTP 416).
    #[error("chunk starts at byte {start}, but the upload holds {size} bytes; resume from {size}")]
    RangeInvalid { start: u64, size: u64 },
    /// Another request appended a chunk at the same offset first (HTTP 416).
    #[error(
        "another request wrote the chunk at byte {start} of this upload first; GET the upload to see where to resume"
    )]
    ChunkRaced { start: u64 },
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("{0}")]
    ManifestBlobUnknown(String),
    #[error("manifest {reference} is not in repository {repo}")]
    ManifestUnknown { repo: RepoName, reference: String },
    #[error("{0}")]
    SizeInvalid(String),
    /// A body over a configured limit (HTTP 413).
    #[error("{what} is larger than the limit of {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    /// Deleting something still in use (HTTP 409).
    #[error("{0}")]
    StillReferenced(String),
    #[error("{0}")]
    PaginationInvalid(String),
    /// A bad `/api/v1` parameter.
    #[error("{0}")]
    ParameterInvalid(String),
    /// Refused by a repository rule (for example an immutable release tag).
    #[error("{0}")]
    Denied(String),
    #[error("insufficient storage space: {0}")]
    StorageFull(String),
    /// A request body that stalled or broke off.
    #[error("request body failed: {0}")]
    BodyFailed(String),
    /// The metadata database cannot take the request now (HTTP 503); the cause is logged.
    #[error("the registry's database is unavailable (overloaded or restarting); try again shortly")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The spec's error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NameInvalid(_) => ErrorCode::NameInvalid,
            Error::TagInvalid(_) => ErrorCode::TagInvalid,
            Error::DigestInvalid(_) => ErrorCode::DigestInvalid,
            Error::NameUnknown(_) => ErrorCode::NameUnknown,
            Error::BlobUnknown { .. } => ErrorCode::BlobUnknown,
            Error::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            Error::UploadInvalid(_)
            | Error::RangeInvalid { .. }
            | Error::ChunkRaced { .. }
            | Error::BodyFailed(_) => ErrorCode::BlobUploadInvalid,
            Error::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            Error::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            Error::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
            Error::SizeInvalid(_) | Error::TooLarge { .. } => ErrorCode::SizeInvalid,
            Error::StillReferenced(_) => ErrorCode::Denied,
            Error::PaginationInvalid(_) => ErrorCode::PaginationNumberInvalid,
            Error::ParameterInvalid(_) => ErrorCode::ParameterInvalid,
            Error::Denied(_) => ErrorCode::Denied,
            Error::StorageFull(_) | Error::Unavailable(_) | Error::Internal(_) => {
                ErrorCode::Unknown
            }
        }
    }

    /// The HTTP status: the code's own, except where the spec or HTTP asks for a sharper one.
    pub fn status(&self) -> u16 {
        match self {
            Error::RangeInvalid { .. } | Error::ChunkRaced { .. } => 416,
            Error::TooLarge { .. } => 413,
            Error::StillReferenced(_) => 409,
            Error::StorageFull(_) => 507,
            Error::Unavailable(_) => 503,
            _ => self.code().status(),
        }
    }

    /// Whether this is the server's fault (logged, and shown to the client only as opaque).
    pub fn is_internal(&self) -> bool {
        matches!(self, Error::Internal(_))
    }
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::UploadUnknown(id) => Error::UploadUnknown(id),
            StorageError::UploadMoved { at, .. } => Error::ChunkRaced { start: at },
            StorageError::Full(io) => Error::StorageFull(io.to_string()),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<MetadataError> for Error {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::MissingReference { .. } => Error::ManifestBlobUnknown(e.to_string()),
            MetadataError::StillReferenced { .. } => Error::StillReferenced(e.to_string()),
            MetadataError::Full { .. } => Error::StorageFull(e.to_string()),
            MetadataError::TagImmutable { .. } => Error::Denied(e.to_string()),
            MetadataError::Unavailable { .. } => Error::Unavailable(e.to_string()),
            MetadataError::Backend { .. } => Error::Internal(e.to_string()),
        }
    }
}
