//! One module per group of subcommands: `transfer` (push, pull) talks to registries,
//! `local` (images, tag, rmi, prune, inspect) to the local store only, `login` to both
//! registries and saved credentials, `node` ensures images under a pull policy.

pub mod local;
pub mod login;
pub mod node;
pub mod transfer;
