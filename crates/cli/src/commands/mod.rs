//! One module per group of subcommands: `transfer` (push, pull) talks to registries,
//! `local` (images, tag, rmi, prune, inspect) to the local store only, `login` to both
//! registries and saved credentials, `engine` runs push, pull and images on a Docker or Podman
//! engine, `node` ensures images under a pull policy, `agent`
//! makes agents (init, build) and finds them (search, versions, rate), `registry` operates
//! an Agent Registry (ping, health, metrics, logs, config, image info, auth test, permissions,
//! visibility, users, tokens, access logs, signatures, policies), `metrics` draws its metric
//! history, `signing` makes and checks image signatures (key generate, push --sign, pull
//! --verify-signature, image signatures).

pub mod agent;
pub mod engine;
pub mod image_info;
pub mod local;
pub mod login;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod scanning;
pub mod signing;
pub mod transfer;
