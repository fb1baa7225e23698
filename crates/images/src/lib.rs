//! The node side of images. So far: the daemonless local image store (an OCI image layout
//! under `~/.aac/store`), pulling into it and pushing from it through the registry client,
//! runtime resolution (language + version to a pinned image), pull policies with classified
//! failures, and image events.
//!
//! Call direction: `policy` uses `transfer` and `events`; `transfer` uses `store` and
//! `client`; `store` knows nothing of registries; `runtime` is a pure lookup.

pub mod archive;
pub mod engine;
pub mod error;
pub mod events;
pub mod failure;
pub mod image;
pub mod policy;
pub mod runtime;
pub mod store;
pub mod transfer;

pub use engine::{Engine, EngineError, EngineImage, EngineKind, EngineUsage, RunSpec};
pub use error::{Error, Result};
pub use events::{EventBus, EventKind, EventSink, ImageEvent, JsonLines, Queued};
pub use failure::{FailureKind, PullFailure};
pub use image::{Blob, ConfigSummary, Parts, host_platform};
pub use policy::{Backend, Ensure, PullPolicy, ensure};
pub use runtime::{AgentRuntime, ResolvedRuntime, RuntimeError, RuntimeRegistry};
pub use store::{Descriptor, LocalStore, Removed, Usage};
pub use transfer::{
    PullSource, Pulled, Pushed, Quiet, TransferOptions, TransferProgress, pull, push, stored,
};
