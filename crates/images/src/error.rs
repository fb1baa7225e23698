//! Errors of the local store and of moving images between it and registries.
//!
//! Registry failures keep their [`agent_registry_client::Error`] (and with it their class and
//! exit code); the store adds its own: an image that is not there, a store that is damaged,
//! and I/O, which is classed as a full disk when it is one.

use std::path::PathBuf;

use agent_registry_client::Class;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Registry(#[from] agent_registry_client::Error),
    #[error("no such image in the local store: {0} (see `agent images`)")]
    NotLocal(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the manifest of {reference} cannot be used: {reason}")]
    Unsupported { reference: String, reason: String },
    #[error("the local store at {root} is damaged: {reason}")]
    Corrupt { root: PathBuf, reason: String },
    #[error("insufficient storage space: {0}")]
    StorageFull(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn class(&self) -> Class {
        match self {
            Error::Registry(e) => e.class(),
            Error::StorageFull(_) => Class::StorageFull,
            _ => Class::Other,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        let context = context.into();
        if agent_registry_client::error::is_disk_full(&source) {
            Error::StorageFull(format!("{context}: {source}"))
        } else {
            Error::Io { context, source }
        }
    }
}
