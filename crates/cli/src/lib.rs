//! The `agent` command. `main.rs` only calls [`main`]; each subcommand lives in `commands`,
//! and talks to registries through `agent-registry-client` and to the local store through
//! `agent-registry-images`.
//!
//! Exit codes: 0 success; 1 any other failure; 2 a usage error; and one per failure class
//! users script against: 3 authentication failed, 4 image not found in registry, 5 failed
//! to connect to registry, 6 insufficient storage space, 7 rate limit exceeded. `agent run`
//! exits with its container's status once the container has run.

mod commands;
pub mod config;
pub mod output;
mod progress;
pub mod target;

use std::process::ExitCode;

use agent_registry_client::Class;
use agent_registry_client::credentials::CredentialFiles;
use agent_registry_images::LocalStore;
use clap::{Parser, Subcommand};

use crate::output::Format;
use crate::target::{Env, RegistryArgs};

const AFTER_HELP: &str = "\
Environment:
  AGENT_REGISTRY_URL       registry for images that name none
  AGENT_REGISTRY_TOKEN     bearer token for the registry
  DOCKER_USERNAME, DOCKER_PASSWORD
                           credentials for the registry
  AAC_HOME                 configuration and local store (default ~/.aac)
  AAC_LOG_LEVEL            log level: error, warn, info, debug, trace

Exit codes: 0 ok, 1 error, 2 usage, 3 authentication failed, 4 image not found in registry,
5 failed to connect to registry, 6 insufficient storage space, 7 rate limit exceeded;
`agent run` exits with the container's status once the container has run.";

#[derive(Debug, Parser)]
#[command(
    name = "agent",
    version,
    about = "Build, push, pull, find and run AI agent images on any OCI registry",
    after_help = AFTER_HELP
)]
struct Cli {
    /// How commands that print data print it.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a new agent project: agent.yaml, a minimal agent and an .agentignore.
    #[command(after_help = "Examples:
  agent init summarizer
  agent init team/summarizer --runtime nodejs --dir ./summarizer")]
    Init {
        /// The agent's name (default: the directory's name).
        name: Option<String>,
        /// python, nodejs, go, rust or java.
        #[arg(long, default_value = "python")]
        runtime: String,
        /// Where to write the project.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Build an agent's directory into an image in the local store, without a daemon.
    #[command(
        after_help = "The base image comes from spec.runtime through the runtime table (see
`agent image runtimes`) or is spec.runtime.image; it is pulled into the local store as the
pull policy says. The agent's files (less .agentignore) become one layer under /app.
SOURCE_DATE_EPOCH fixes every timestamp; without it the newest file's time is used, so the
same directory builds to the same digest.

Examples:
  agent build -t summarizer:1.0 .
  agent build -t localhost:5000/team/summarizer:1.0 --push
  agent build --build-arg MODEL=gpt-4o --label team=ai --platform linux/arm64"
    )]
    Build(commands::agent::BuildArgs),
    /// Search a registry's agent catalogue.
    #[command(after_help = "Examples:
  agent search summarizer
  agent search team/summarizer:1.0
  agent search --capability chat --sort downloads
  agent search pdf --author ann --since 30d --size '<500MB' -o json")]
    Search(commands::agent::SearchArgs),
    /// List an agent's versions (semantic versions first), downloads and rating.
    #[command(after_help = "Example:\n  agent versions team/summarizer --registry localhost:5000")]
    Versions {
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Rate an agent from 1 to 5 stars (a later rating replaces yours).
    #[command(after_help = "Example:\n  agent rate team/summarizer 5 --registry localhost:5000")]
    Rate {
        name: String,
        stars: u8,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Upload an image from the local store to a registry.
    #[command(after_help = "Examples:
  agent push localhost:5000/summarizer:1.0
  agent push summarizer:1.0 --registry https://registry.example.com
  agent push summarizer --all-tags --profile prod
  agent push --engine docker localhost:5000/summarizer:1.0   # the image docker holds
  agent push localhost:5000/summarizer:1.0 --sign             # with $AAC_HOME/agent.key

--sign signs the pushed manifest in cosign's key-based format (ECDSA P-256): the signature is
stored as a referrer of the image and under its sha256-<hex>.sig tag, so `cosign verify --key
agent.pub` and `agent pull --verify-signature` both accept it.")]
    Push {
        /// Image to push, as named in `agent images`.
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Push every local tag of the image's repository.
        #[arg(long)]
        all_tags: bool,
        /// No progress; print only the digest.
        #[arg(long, short)]
        quiet: bool,
        /// Then make the repository public or private (Agent Registry; needs admin on it).
        #[arg(long, value_parser = ["public", "private"])]
        visibility: Option<String>,
        #[command(flatten)]
        sign: SignArgs,
        /// Then have the registry scan the image for known vulnerabilities and print what it
        /// found (Agent Registry with a vulnerability database).
        #[arg(long)]
        security_scan: bool,
        #[command(flatten)]
        engine: commands::engine::EngineArgs,
    },
    /// Download an image from a registry into the local store.
    #[command(after_help = "Examples:
  agent pull localhost:5000/summarizer:1.0
  agent pull summarizer@sha256:... --profile prod
  agent pull busybox --platform linux/arm64
  agent pull --engine podman localhost:5000/summarizer:1.0   # into podman
  agent pull localhost:5000/summarizer:1.0 --verify-signature --key team.pub")]
    Pull {
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
        /// Platform to take from a multi-platform image.
        #[arg(long, value_name = "OS/ARCH")]
        platform: Option<String>,
        /// No progress; print only the image name.
        #[arg(long, short)]
        quiet: bool,
        /// Refuse the image, before any layer is stored, unless a signature of it verifies
        /// with a trusted key (--key, default $AAC_HOME/agent.pub).
        #[arg(long)]
        verify_signature: bool,
        /// A trusted public key (PEM, as cosign.pub); repeatable.
        #[arg(long, value_name = "PUB", requires = "verify_signature")]
        key: Vec<std::path::PathBuf>,
        #[command(flatten)]
        engine: commands::engine::EngineArgs,
    },
    /// Make and manage signing keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// List images in the local store.
    #[command(after_help = "Filters (repeatable, all must match):
  NAME or NAME:TAG     repository (and tag); '*' matches within a path component
  reference=PATTERN    the same, as docker writes it
  dangling=true|false  images without a name
  label=KEY[=VALUE]    config label
  before=IMAGE         created before IMAGE
  since=IMAGE          created after IMAGE

Examples:
  agent images
  agent images summarizer
  agent images --filter label=org.opencontainers.image.version=1.0 -o json
  agent images --engine docker")]
    Images {
        /// Repository to list: shorthand for --filter reference=NAME.
        name: Option<String>,
        #[arg(long, short, value_name = "FILTER")]
        filter: Vec<String>,
        /// Show untagged (dangling) images too.
        #[arg(long, short)]
        all: bool,
        /// Print image IDs only.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        engine: commands::engine::EngineArgs,
    },
    /// Name an image, or tag a release with its semantic-version tags.
    #[command(after_help = "Examples:
  agent tag summarizer:build localhost:5000/summarizer:1.0
  agent tag --semver v1.2.3 summarizer:build            # 1.2.3, 1.2, 1
  agent tag --semver 1.2.3 --latest --sha 3f2a9c1 summarizer:build")]
    Tag {
        /// Source image; with --semver, the image to tag.
        source: String,
        /// New name (not with --semver).
        target: Option<String>,
        /// Apply MAJOR.MINOR.PATCH, MAJOR.MINOR and MAJOR (pre-releases get only their own).
        #[arg(long, value_name = "VERSION")]
        semver: Option<String>,
        /// With --semver, also tag latest.
        #[arg(long, requires = "semver")]
        latest: bool,
        /// With --semver, also tag sha-SHORT.
        #[arg(long, value_name = "SHORT", requires = "semver")]
        sha: Option<String>,
    },
    /// Remove images from the local store.
    #[command(after_help = "Examples:
  agent rmi summarizer:1.0
  agent rmi 3f2a9c1e8b7d --force")]
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
        /// Remove an image by ID even when several names point at it.
        #[arg(long, short)]
        force: bool,
        /// ImageRemoved events for what is deleted.
        #[command(flatten)]
        events: commands::node::EventArgs,
    },
    /// Manage images (`agent image prune`, `df`, `ensure`, `precache`, `runtimes`).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show an image's manifest, config, agent metadata and local details as JSON.
    #[command(after_help = "Example:\n  agent inspect summarizer:1.0")]
    Inspect {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Save credentials for a registry (where `docker login` keeps them), or check a
    /// profile's.
    #[command(after_help = "Examples:
  echo \"$PASSWORD\" | agent login localhost:5000 -u ci --password-stdin
  echo \"$AGENT_TOKEN\" | agent login registry.example.com --token-stdin
  agent login --profile prod          # token, username or oauth2 from ~/.aac/config.yaml")]
    Login(commands::login::LoginArgs),
    /// Remove saved credentials for a registry.
    Logout { registry: String },
    /// Operate an Agent Registry: ping, health, configuration, credentials, permissions,
    /// visibility, users, tokens, access logs.
    #[command(subcommand)]
    Registry(commands::registry::RegistryCommand),
    /// Run an image, or the agent an agent.yaml describes, in Docker or Podman, pulling it as
    /// the policy says.
    #[command(
        after_help = "The image is ensured in the engine (--pull, credentials and events as for
`agent image ensure`), run with its output here, and removed when it exits; agent exits
with the container's exit code.

Given an agent.yaml, agent runs the image `agent build` names from it
(metadata.name:metadata.version; --registry to take it from a registry), with the file's
image_pull_policy, its TCP ports published, and each `from:` variable taken from this
environment. Its values, health check and volumes are in the image already.

Examples:
  agent run localhost:5000/team/summarizer:1.0
  agent run summarizer:1.0 --pull never -e MODEL=small -p 8080:8080
  agent run busybox --engine podman -- echo hello
  agent run ./summarizer/agent.yaml --registry localhost:5000"
    )]
    Run {
        /// An image reference, or an agent.yaml file.
        image: String,
        /// Environment for the container, KEY=VALUE (repeatable).
        #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Publish a port, HOST:CONTAINER (repeatable).
        #[arg(long = "publish", short = 'p', value_name = "HOST:CONTAINER", value_parser = commands::node::parse_port)]
        ports: Vec<(u16, u16)>,
        #[command(flatten)]
        node: commands::node::NodeArgs,
        /// Command to run instead of the image's.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Write images to an OCI archive (a tar skopeo reads as oci-archive:FILE:TAG).
    #[command(after_help = "Example:\n  agent save summarizer:1.0 tools:2 -O images.tar")]
    Save {
        #[arg(required = true)]
        images: Vec<String>,
        /// The archive to write.
        #[arg(
            long = "output-file",
            short = 'O',
            value_name = "FILE",
            required = true
        )]
        file: std::path::PathBuf,
    },
    /// Load images from an OCI archive into the local store, verifying every blob.
    #[command(after_help = "Example:\n  agent load -i images.tar")]
    Load {
        #[arg(long, short, value_name = "FILE")]
        input: std::path::PathBuf,
    },
}

/// `agent push --sign`.
#[derive(Debug, clap::Args)]
struct SignArgs {
    /// Sign the pushed manifest (cosign's format, ECDSA P-256).
    #[arg(long)]
    sign: bool,
    /// The private key to sign with (PEM PKCS#8; default $AAC_HOME/agent.key).
    #[arg(long, value_name = "KEY", env = "AGENT_SIGNING_KEY", requires = "sign")]
    key: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make an ECDSA P-256 key pair for signing images: PREFIX.key (PKCS#8 PEM, readable by
    /// you alone) and PREFIX.pub (the public key to hand to verifiers and policies).
    #[command(after_help = "Examples:
  agent key generate                       # $AAC_HOME/agent.key and agent.pub
  agent key generate --output-key-prefix ./release    # release.key and release.pub

The public key is a PEM SubjectPublicKeyInfo, as cosign.pub is: `cosign verify --key
release.pub` checks what `agent push --sign --key release.key` signs. The private key is
unencrypted: keep it as you keep other secrets (a CI secret, a vault).")]
    Generate {
        /// Path of the pair without its extension (cosign's flag).
        #[arg(long, value_name = "PREFIX")]
        output_key_prefix: Option<std::path::PathBuf>,
        /// Replace keys already there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Remove dangling images and unused blobs (all images with -a), in the local store or
    /// an engine.
    #[command(
        after_help = "Examples:\n  agent image prune\n  agent image prune -a\n  agent image prune -a --engine docker --events -"
    )]
    Prune {
        /// Remove every image, not only dangling ones.
        #[arg(long, short)]
        all: bool,
        /// ImageRemoved events for what is deleted.
        #[command(flatten)]
        events: commands::node::EventArgs,
        #[command(flatten)]
        engine: commands::engine::EngineArgs,
    },
    /// Show what the local store (or an engine) holds and what a prune would free.
    #[command(after_help = "Examples:\n  agent image df\n  agent image df --engine docker -o json")]
    Df {
        #[command(flatten)]
        engine: commands::engine::EngineArgs,
    },
    /// Make sure an image is in the local store, as a node does before running an agent.
    #[command(after_help = "Pull policies:
  always   ask the registry every time (layers already here are not downloaded again)
  missing  use the local copy if there is one (Kubernetes' IfNotPresent; the default)
  never    use the local copy or fail at once, with no network call

Failures exit with the class's code: 4 image not found, 3 authentication failed,
5 network (including --timeout), 7 rate limited, 6 disk full.

Examples:
  agent image ensure localhost:5000/team/summarizer:1.0 --pull always
  agent image ensure --runtime python:3.11 --events events.jsonl --execution-id run-42
  agent image ensure --agent ./summarizer/agent.yaml --runtime-registry runtimes.yaml
  agent image ensure summarizer:1.0 --pull never -o json
  agent image ensure r.example.com/a:1 --pull-secret secret.json --nats nats://127.0.0.1:4222")]
    Ensure {
        /// The image (or give --runtime).
        image: Option<String>,
        /// Resolve LANGUAGE:VERSION through the runtime table instead of naming an image.
        #[arg(long, value_name = "LANGUAGE:VERSION", conflicts_with = "image")]
        runtime: Option<String>,
        /// Ensure the runtime image of an agent.yaml (spec.runtime, under its
        /// image_pull_policy unless --pull is given).
        #[arg(long = "agent", value_name = "FILE", conflicts_with_all = ["image", "runtime"])]
        agent_file: Option<std::path::PathBuf>,
        /// A runtime table to use instead of the built-in one.
        #[arg(long, value_name = "FILE")]
        runtime_registry: Option<std::path::PathBuf>,
        #[command(flatten)]
        node: commands::node::NodeArgs,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Pull runtime images (and any IMAGE given) ahead of time, for nodes that will be offline.
    #[command(after_help = "Examples:
  agent image precache                               # every supported runtime
  agent image precache --language python --all       # python, deprecated versions too
  agent image precache --runtime-registry mine.yaml registry.local/tools:1
  agent save $(agent images -q) -O node-images.tar   # then carry it over and: agent load -i ...")]
    Precache {
        #[arg(long, value_name = "FILE")]
        runtime_registry: Option<std::path::PathBuf>,
        /// Only these languages (repeatable).
        #[arg(long, value_name = "LANGUAGE")]
        language: Vec<String>,
        /// Deprecated runtime versions too.
        #[arg(long)]
        all: bool,
        /// More images to pre-cache.
        images: Vec<String>,
        #[command(flatten)]
        node: commands::node::NodeArgs,
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the runtime table: language and version to base image.
    #[command(
        after_help = "Examples:\n  agent image runtimes\n  agent image runtimes --runtime-registry runtime-registry.yaml -o json"
    )]
    Runtimes {
        #[arg(long, value_name = "FILE")]
        runtime_registry: Option<std::path::PathBuf>,
    },
}

/// What every command may need: configuration, environment, local store.
pub struct Context {
    pub config: config::Config,
    pub home: std::path::PathBuf,
    pub credentials: CredentialFiles,
    pub output: Format,
}

impl Context {
    fn env(&self) -> Env<'_> {
        Env {
            config: &self.config,
            var: &var,
            credentials: &self.credentials,
        }
    }

    fn store(&self) -> anyhow::Result<LocalStore> {
        Ok(LocalStore::open(self.home.join("store"))?)
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Runs the CLI with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agent: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ContainerExit>().is_some() => {
            let code = e.downcast_ref::<ContainerExit>().map_or(1, |c| c.0);
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
        Err(e) => {
            eprintln!("agent: {e:#}");
            ExitCode::from(class_of(&e).exit_code())
        }
    }
}

/// Output cut short by its reader (`agent images | head`) is not a failure.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn init_logging() {
    let level = var("AAC_LOG_LEVEL").unwrap_or_else(|| "warn".into());
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},h2=warn,hyper=warn,hyper_util=warn,reqwest=warn,rustls=warn"
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}

/// A container that exited with a status other than 0: agent exits with the same.
#[derive(Debug, thiserror::Error)]
#[error("the container exited with status {0}")]
struct ContainerExit(i64);

/// The class of the first error in the chain that has one.
fn class_of(e: &anyhow::Error) -> Class {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<agent_registry_images::Error>() {
            return e.class();
        }
        if let Some(e) = cause.downcast_ref::<agent_registry_client::Error>() {
            return e.class();
        }
        if let Some(f) = cause.downcast_ref::<agent_registry_images::PullFailure>() {
            return f.kind.class();
        }
    }
    Class::Other
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let home = config::home(&var);
    let config = config::Config::load(&home.join("config.yaml"), &var)?;
    let ctx = Context {
        config,
        home,
        credentials: CredentialFiles::from_env(),
        output: cli.output,
    };
    match cli.command {
        Command::Init { name, runtime, dir } => {
            commands::agent::init(&dir, name.as_deref(), &runtime)
        }
        Command::Build(args) => commands::agent::build(&ctx, &args).await,
        Command::Search(args) => commands::agent::search(&ctx, &args).await,
        Command::Versions { name, registry } => {
            commands::agent::versions(&ctx, &name, &registry).await
        }
        Command::Rate {
            name,
            stars,
            registry,
        } => commands::agent::rate(&ctx, &name, stars, &registry).await,
        Command::Push {
            image,
            registry,
            all_tags,
            quiet,
            visibility,
            sign,
            security_scan,
            engine,
        } => {
            if let Some(engine) = engine.connect().await? {
                if all_tags || visibility.is_some() || sign.sign || security_scan {
                    anyhow::bail!(
                        "--all-tags, --visibility, --sign and --security-scan work on the local store, not with --engine"
                    );
                }
                return commands::engine::push(&ctx, &engine, &image, &registry, quiet).await;
            }
            commands::transfer::push(
                &ctx,
                &image,
                &registry,
                all_tags,
                quiet,
                commands::transfer::PushExtras {
                    visibility: visibility.as_deref(),
                    sign: sign.sign.then_some(sign.key.as_deref()),
                    security_scan,
                },
            )
            .await
        }
        Command::Pull {
            image,
            registry,
            platform,
            quiet,
            verify_signature,
            key,
            engine,
        } => {
            let engine = engine.connect().await?;
            if engine.is_some() && (platform.is_some() || verify_signature) {
                anyhow::bail!(
                    "--platform and --verify-signature work on the local store, not with --engine"
                );
            }
            let trusted = if verify_signature {
                Some(commands::signing::public_keys(&ctx, &key, true)?)
            } else {
                None
            };
            let pull = commands::transfer::Pull {
                platform,
                quiet,
                trusted,
            };
            commands::transfer::pull(&ctx, &image, &registry, pull, engine.as_ref()).await
        }
        Command::Key(KeyCommand::Generate {
            output_key_prefix,
            force,
        }) => commands::signing::generate(&ctx, output_key_prefix.as_deref(), force),
        Command::Images {
            name,
            filter,
            all,
            quiet,
            engine,
        } => match engine.connect().await? {
            Some(_) if !filter.is_empty() => {
                anyhow::bail!("--filter works on the local store; with --engine, name a repository")
            }
            Some(engine) => {
                commands::engine::images(&ctx, &engine, name.as_deref(), all, quiet).await
            }
            None => commands::local::images(&ctx, name, &filter, all, quiet),
        },
        Command::Tag {
            source,
            target,
            semver,
            latest,
            sha,
        } => commands::local::tag(
            &ctx,
            &source,
            target.as_deref(),
            semver.as_deref(),
            latest,
            sha,
        ),
        Command::Rmi {
            images,
            force,
            events,
        } => commands::local::rmi(&ctx, &images, force, &events).await,
        Command::Image(ImageCommand::Prune {
            all,
            events,
            engine,
        }) => {
            let engine = engine.connect().await?;
            commands::local::prune(&ctx, all, &events, engine.as_ref()).await
        }
        Command::Image(ImageCommand::Df { engine }) => {
            let engine = engine.connect().await?;
            commands::node::disk_usage(&ctx, engine.as_ref()).await
        }
        Command::Image(ImageCommand::Ensure {
            image,
            runtime,
            agent_file,
            runtime_registry,
            node,
            quiet,
        }) => {
            let what = commands::node::EnsureTarget {
                image: image.as_deref(),
                runtime: runtime.as_deref(),
                agent_file: agent_file.as_deref(),
                runtime_registry: runtime_registry.as_deref(),
            };
            commands::node::ensure(&ctx, &what, &node, quiet).await
        }
        Command::Image(ImageCommand::Precache {
            runtime_registry,
            language,
            all,
            images,
            node,
            quiet,
        }) => {
            commands::node::precache(
                &ctx,
                runtime_registry.as_deref(),
                &language,
                all,
                &images,
                &node,
                quiet,
            )
            .await
        }
        Command::Save { images, file } => commands::node::save(&ctx, &images, &file),
        Command::Run {
            image,
            env,
            ports,
            mut node,
            cmd,
        } => {
            let mut spec = agent_registry_images::RunSpec { cmd, env, ports };
            let path = std::path::Path::new(&image);
            let image = if path.is_file() {
                commands::node::agent_file_run(path, &mut spec, &mut node)?
            } else {
                image
            };
            let code = commands::node::run(&ctx, &image, &spec, &node).await?;
            if code != 0 {
                return Err(ContainerExit(code).into());
            }
            Ok(())
        }
        Command::Load { input } => commands::node::load(&ctx, &input),
        Command::Image(ImageCommand::Runtimes { runtime_registry }) => {
            commands::node::runtimes(&ctx, runtime_registry.as_deref())
        }
        Command::Inspect { images } => commands::local::inspect(&ctx, &images),
        Command::Login(args) => commands::login::login(&ctx, args).await,
        Command::Logout { registry } => commands::login::logout(&ctx, &registry),
        Command::Registry(c) => commands::registry::run(&ctx, c).await,
    }
}
