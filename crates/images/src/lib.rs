//! The node side of images. So far: the daemonless local image store (an OCI image layout
//! under `~/.aac/store`), and pulling into it and pushing from it through the registry
//! client.
//!
//! Call direction: `transfer` uses `store` and `client`; `store` knows nothing of registries.

pub mod error;
pub mod image;
pub mod store;
pub mod transfer;

pub use error::{Error, Result};
pub use image::{Blob, ConfigSummary, Parts, host_platform};
pub use store::{Descriptor, LocalStore, Removed};
pub use transfer::{
    PullSource, Pulled, Pushed, Quiet, TransferOptions, TransferProgress, pull, push,
};
