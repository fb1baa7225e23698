//! Client errors.
//!
//! Which type to use where: everything in this crate returns [`Error`], whose variants name
//! what went wrong (a credential the registry refused, a missing image, a connection that
//! could not be made, a full disk, a rate limit, content that did not match its digest). The
//! five classes users script against start their message with the exact phrases DESIGN.md
//! fixes, and [`Error::class`] maps each to a [`Class`] with its own exit code, so the CLI and
//! the node side report them the same way. The detail after the phrase says which reference,
//! which registry, and what the server said.

use std::io;

use agent_registry_oci::Digest;

use crate::reference::ReferenceError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("authentication failed for {registry}: {detail}")]
    Authentication { registry: String, detail: String },
    #[error("image not found in registry {registry}: {what}")]
    NotFound { registry: String, what: String },
    #[error("failed to connect to registry {registry}: {detail}")]
    Connect { registry: String, detail: String },
    #[error("insufficient storage space: {detail}")]
    StorageFull { detail: String },
    #[error("rate limit exceeded at {registry}: {detail}")]
    RateLimited { registry: String, detail: String },
    #[error("content of {digest} failed verification: expected {expected}, received {actual}")]
    Integrity {
        digest: Digest,
        expected: String,
        actual: String,
    },
    #[error("registry {registry} refused {what}: {status} {detail}")]
    Refused {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("registry {registry} sent an unusable response to {what}: {detail}")]
    Protocol {
        registry: String,
        what: String,
        detail: String,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// The classes of failure with their own exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Authentication,
    NotFound,
    Connect,
    StorageFull,
    RateLimited,
    Other,
}

impl Class {
    /// The process exit code for this class; 1 is every other failure, 2 is a usage error.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Other => 1,
            Class::Authentication => 3,
            Class::NotFound => 4,
            Class::Connect => 5,
            Class::StorageFull => 6,
            Class::RateLimited => 7,
        }
    }
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Authentication { .. } => Class::Authentication,
            Error::NotFound { .. } => Class::NotFound,
            Error::Connect { .. } => Class::Connect,
            Error::StorageFull { .. } => Class::StorageFull,
            Error::RateLimited { .. } => Class::RateLimited,
            _ => Class::Other,
        }
    }

    /// An I/O error with what was being done, classed as a full disk when it is one.
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        let context = context.into();
        if is_disk_full(&source) {
            return Error::StorageFull {
                detail: format!("{context}: {source}"),
            };
        }
        Error::Io { context, source }
    }
}

/// ENOSPC or EDQUOT: no room left on the device or in the quota.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28 | 122))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_classes_start_with_their_phrases() {
        let r = || "localhost:5000".to_owned();
        let d = || "detail".to_owned();
        let cases = [
            (
                Error::Authentication {
                    registry: r(),
                    detail: d(),
                },
                "authentication failed",
            ),
            (
                Error::NotFound {
                    registry: r(),
                    what: d(),
                },
                "image not found in registry",
            ),
            (
                Error::Connect {
                    registry: r(),
                    detail: d(),
                },
                "failed to connect to registry",
            ),
            (
                Error::StorageFull { detail: d() },
                "insufficient storage space",
            ),
            (
                Error::RateLimited {
                    registry: r(),
                    detail: d(),
                },
                "rate limit exceeded",
            ),
        ];
        let mut codes = std::collections::HashSet::new();
        for (e, phrase) in cases {
            assert!(e.to_string().starts_with(phrase), "{e}");
            assert!(codes.insert(e.class().exit_code()), "{e}: exit code shared");
        }
    }

    #[test]
    fn a_full_disk_is_storage_full() {
        let e = Error::io("writing blob", io::Error::from_raw_os_error(28));
        assert_eq!(e.class(), Class::StorageFull);
        assert!(e.to_string().contains("writing blob"));
    }
}
