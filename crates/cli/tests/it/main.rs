//! Integration tests of the `agent` binary against real registries: ours in-process, and in
//! `interop` the reference docker-registry (with htpasswd auth), docker and skopeo.

mod access;
mod build;
mod engine;
mod faults;
mod interop;
mod metrics;
mod node;
mod operate;
mod scanning;
mod signing;
mod support;
mod token;
mod workflow;
