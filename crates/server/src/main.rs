//! The `agent-registry` binary: parses arguments, loads configuration, serves.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agent_registry_server::config::{Config, LogFormat};
use agent_registry_server::logs::{Capture, LogStore};
use agent_registry_server::{AppState, migrate, run};
use anyhow::Context;
use clap::{Parser, Subcommand};

mod admin;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Upload bodies arrive as a stream of short-lived buffers of a few hundred KiB each. glibc's
/// malloc hands such buffers back to the kernel as they are freed, so every one is faulted in
/// and zeroed again (a sixth of the server's CPU on a chunked upload); jemalloc reuses them,
/// and gives back memory left unused for about ten seconds.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "agent-registry", version, about = "An OCI registry for AI agents", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the OCI Distribution API over HTTP.
    #[command(after_help = "\
Configuration is read from --config, then environment variables, then these flags; every key
has a default, so `agent-registry serve` alone starts a registry on 0.0.0.0:5000 storing data
in ./agent-registry-data.

Environment: AGENT_REGISTRY_LISTEN, AGENT_REGISTRY_ROOT, AGENT_REGISTRY_LOG_LEVEL (or
AAC_LOG_LEVEL), AGENT_REGISTRY_LOG_FORMAT (text|json), AGENT_REGISTRY_STORAGE (filesystem|s3),
AGENT_REGISTRY_FSYNC (true|false); with S3, the usual AWS_* credentials.

Examples:
  agent-registry serve
  agent-registry serve --listen 127.0.0.1:5055 --root /var/lib/agent-registry
  agent-registry serve --config /etc/agent-registry/registry.yaml
  agent-registry config --config registry.yaml     # print the effective configuration")]
    Serve(ConfigArgs),
    /// Print the effective configuration (file + environment + flags) as YAML, then exit.
    Config(ConfigArgs),
    /// Move a single-node registry onto S3 (blobs) and PostgreSQL (metadata).
    #[command(after_help = "\
The configuration (file, environment, flags, as for serve) names the destinations:
storage.backend: s3 with a storage.s3 section copies the blobs under --root (or root) into
the bucket; database.backend: postgres with database.url copies <root>/registry.db into that
database. Either or both; blobs go first.

Each blob is hashed on the way and must match its digest; blobs already in the bucket are
skipped, so an interrupted blob copy is finished by running it again. The metadata is copied
in one transaction into an empty database: an interrupted copy leaves nothing, and a database
that already holds repositories or accounts is refused. Stop the server on this root first;
then serve with the same configuration, on as many nodes as you like.

Example:
  agent-registry migrate --config scale-out.yaml --root /var/lib/agent-registry")]
    Migrate(ConfigArgs),
    /// Manage users and robot accounts (works while the server runs).
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Manage API tokens: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Manage permissions: who may pull, push, delete or administer which repositories.
    #[command(subcommand)]
    Permission(admin::PermissionCommand),
    /// The vulnerability database scans match packages against.
    #[command(subcommand)]
    Vulndb(VulndbCommand),
}

#[derive(Subcommand)]
enum VulndbCommand {
    /// Add OSV advisories from a directory of JSON files or an OSV zip (works while the
    /// server runs: it loads the new database within seconds, and images are scanned again
    /// when a policy next asks).
    #[command(after_help = "\
The OSV project publishes one zip per ecosystem:
  https://osv-vulnerabilities.storage.googleapis.com/Debian/all.zip
  (and Alpine, PyPI, npm, crates.io, Go). Download them where there is internet, carry them
over, and import each; advisories with the same id are replaced. The database lives in
scanning.database_dir (default <root>/vulndb); nodes that share a registry share it.

Example:
  agent-registry vulndb import Debian-all.zip --root /var/lib/agent-registry")]
    Import {
        /// A directory of OSV JSON files, or an OSV .zip.
        source: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(clap::Args)]
pub(crate) struct ConfigArgs {
    /// YAML configuration file (README.md, Configuration, lists every key).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:5000 (overrides `listen`).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Directory holding blobs, uploads and registry.db (overrides `root`).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

impl ConfigArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(root) = &self.root {
            config.root = root.clone();
        }
        Ok(config)
    }
}

/// Logs to stderr, and keeps the recent lines in the returned store for `/api/v1/logs`.
fn init_logging(config: &Config) -> anyhow::Result<Arc<LogStore>> {
    let filter = EnvFilter::try_new(&config.log.level).with_context(|| {
        format!(
            "log level {:?} is not a valid filter (try info, debug or warn)",
            config.log.level
        )
    })?;
    let store = Arc::new(LogStore::new(config.log.retain_lines));
    let stderr = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(Capture(store.clone()));
    match config.log.format {
        LogFormat::Json => registry.with(stderr.json()).init(),
        LogFormat::Text => registry.with(stderr).init(),
    }
    Ok(store)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run_command(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole chain of causes, whatever RUST_BACKTRACE says.
            eprintln!("agent-registry: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config(args) => {
            print!("{}", serde_yaml_ng::to_string(&args.load()?)?);
            Ok(())
        }
        Command::Migrate(args) => {
            let config = args.load()?;
            let (blobs, metadata) = migrate::destinations(&config);
            if !blobs && !metadata {
                anyhow::bail!(
                    "nothing to migrate to: the configuration must select storage.backend: s3, database.backend: postgres, or both"
                );
            }
            if blobs {
                let moved = migrate::blobs_to_s3(&config, |digest, size, copied| {
                    let done = if copied { "copied" } else { "present" };
                    eprintln!("{done} {digest} ({size} bytes)");
                })
                .await?;
                println!(
                    "copied {} blobs ({} bytes); {} were already in the bucket",
                    moved.copied, moved.bytes, moved.present
                );
            }
            if metadata {
                let imported = migrate::metadata_to_postgres(&config).await?;
                let rows: Vec<String> = imported
                    .tables
                    .iter()
                    .map(|(table, n)| format!("{table} {n}"))
                    .collect();
                println!("copied the metadata into PostgreSQL: {}", rows.join(", "));
            }
            Ok(())
        }
        Command::User(c) => admin::user(c).await,
        Command::Token(c) => admin::token(c).await,
        Command::Permission(c) => admin::permission(c).await,
        Command::Vulndb(VulndbCommand::Import { source, config }) => {
            let config = config.load()?;
            let dir = agent_registry_server::scanning::database_dir(&config);
            let imported = agent_registry_server::scanning::import(&dir, &source)?;
            println!(
                "read {} advisories from {}; the database in {} now holds {} (import {})",
                imported.read,
                source.display(),
                dir.display(),
                imported.total,
                imported.stamp
            );
            Ok(())
        }
        Command::Serve(args) => {
            let config = args.load()?;
            let logs = init_logging(&config)?;
            let listen = config.listen;
            let root = config.root.clone();
            let mut state = AppState::open(config).await?;
            state.logs = Some(logs);
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| {
                    format!("failed to listen on {listen} (is another registry running there?)")
                })?;
            tracing::info!(addr = %listener.local_addr()?, root = %root.display(), "agent-registry listening");
            run(listener, state, shutdown_signal()).await
        }
    }
}
