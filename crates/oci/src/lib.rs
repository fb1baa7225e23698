//! OCI protocol types shared by every other crate: content digests and the hasher that makes
//! them, repository names, tags and references, media types, manifest parsing and validation,
//! and the distribution spec's error codes with their HTTP status.
//!
//! This crate does no I/O. Everything here is a pure function of its input, tested beside it.
//! Manifests are parsed with the `oci-spec` crate; what this crate adds is the validation a
//! registry needs and the list of everything a manifest references.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use error::ErrorCode;
pub use manifest::{Manifest, ManifestError, ManifestKind};
pub use name::{NameError, Reference, RepoName, Tag};
