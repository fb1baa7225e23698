//! OCI protocol types shared by every other crate: content digests and the hasher that makes
//! them, repository names, tags and references, media types, manifest parsing and validation,
//! the distribution spec's error codes with their HTTP status, tags read as semantic versions,
//! and the agent catalogue's metadata keys and API shapes.
//!
//! This crate does no I/O. Everything here is a pure function of its input, tested beside it.
//! Manifests are parsed with the `oci-spec` crate; what this crate adds is the validation a
//! registry needs and the list of everything a manifest references.

pub mod access;
pub mod catalogue;
pub mod digest;
pub mod error;
pub mod health;
pub mod logs;
pub mod manifest;
pub mod media;
pub mod metrics;
pub mod name;
pub mod signature;
pub mod version;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use manifest::{Manifest, ManifestError, ManifestKind};
pub use name::{NameError, Reference, RepoName, RepoPattern, Tag};
pub use version::TagVersion;
