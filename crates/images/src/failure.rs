//! Pull failures classified for node operators, each with the hint that resolves it.

use serde::Serialize;

use agent_registry_client::Class;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FailureKind {
    ImageNotFound,
    AuthenticationFailed,
    NetworkTimeout,
    RateLimited,
    DiskFull,
    Other,
}

impl FailureKind {
    /// The client error class (and so the CLI exit code) of this kind.
    pub fn class(self) -> Class {
        match self {
            FailureKind::ImageNotFound => Class::NotFound,
            FailureKind::AuthenticationFailed => Class::Authentication,
            FailureKind::NetworkTimeout => Class::Connect,
            FailureKind::RateLimited => Class::RateLimited,
            FailureKind::DiskFull => Class::StorageFull,
            FailureKind::Other => Class::Other,
        }
    }

    /// What a node operator can do about it.
    pub fn hint(self) -> &'static str {
        match self {
            FailureKind::ImageNotFound => {
                "check the image name and tag, and that the registry has it; with pull policy Never, pre-cache it first"
            }
            FailureKind::AuthenticationFailed => {
                "check the node's registry credentials (dockerconfigjson secret, ~/.docker/config.json, auth.json)"
            }
            FailureKind::NetworkTimeout => {
                "check that the node reaches the registry, or raise the pull timeout"
            }
            FailureKind::RateLimited => {
                "wait and retry, or authenticate to the registry for a higher limit"
            }
            FailureKind::DiskFull => {
                "free space (agent image prune) or give the image store more room"
            }
            FailureKind::Other => "see the cause",
        }
    }
}

/// A failed pull: its class, the image, and the cause.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{cause} (hint: {})", kind.hint())]
pub struct PullFailure {
    pub kind: FailureKind,
    pub image: String,
    pub cause: String,
}

impl PullFailure {
    pub fn classify(image: &str, error: &Error) -> PullFailure {
        let kind = match error.class() {
            Class::NotFound => FailureKind::ImageNotFound,
            Class::Authentication => FailureKind::AuthenticationFailed,
            Class::Connect => FailureKind::NetworkTimeout,
            Class::RateLimited => FailureKind::RateLimited,
            Class::StorageFull => FailureKind::DiskFull,
            Class::Other => FailureKind::Other,
        };
        PullFailure {
            kind,
            image: image.to_owned(),
            cause: error.to_string(),
        }
    }
}
