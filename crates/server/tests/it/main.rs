//! Integration tests: the real server, started in-process on a loopback port with a temporary
//! root, driven over HTTP. `interop` drives real clients (docker, skopeo, podman, umoci, oras)
//! against it and against the reference registry; those need the tools `scripts/test`
//! installs, so they are `#[ignore]`d in a plain `cargo test` and run by that script.

mod support;

mod access;
mod base;
mod blobs;
mod catalogue;
mod cluster;
mod health;
mod interop;
mod interop_auth;
mod lifecycle;
mod listing;
mod manifests;
mod metric_history;
mod metrics;
mod notifications;
mod referrers;
mod storage_s3;
mod tls;
mod uploads;
mod workloads;
