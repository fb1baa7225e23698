//! Agents as content: the `agent.yaml` model and its validation ([`spec`]), the project
//! templates of `agent init` ([`init`]), and the daemonless build that turns a directory into
//! an OCI image in the local store ([`build`]): a reproducible layer of the agent's files
//! ([`layer`]) on a base image resolved from the runtime table.
//!
//! This crate does no network I/O: the caller ensures the base image is in the local store
//! (pulling it under its pull policy) and pushes the result.

pub mod build;
mod check;
pub mod init;
pub mod layer;
pub mod spec;

pub use build::{BuildOptions, Built, build};
pub use check::Problem;
pub use spec::{AgentFile, Invalid};
