//! `agent registry ...`: operating an Agent Registry over its `/api/v1`: reachability,
//! health, configuration and logs, checking credentials, permissions, repository visibility, users and robots, API
//! tokens and the access log. The registry comes from `--registry`, `--profile`, a host in the repository
//! argument (`localhost:5000/team/agent`) or `AGENT_REGISTRY_URL`.

use std::time::Duration;

use agent_registry_client::Client;
use agent_registry_oci::access::{Grant, GrantFilter, LogFilter, NewToken, NewUser, TokenFilter};
use agent_registry_oci::health::HealthStatus;
use agent_registry_oci::logs::{LogQuery, LogRecord};
use anyhow::bail;
use clap::Subcommand;

use crate::Context;
use crate::output::{self, Format};
use crate::target::RegistryArgs;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Round-trip time to a registry and the API version it speaks.
    #[command(after_help = "Examples:
  agent registry ping --registry localhost:5000
  agent registry ping --registry registry.example.com -o json")]
    Ping {
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Whether an Agent Registry is ready: storage writable, database reachable, free space
    /// above its floor.
    #[command(
        after_help = "Exits 1 when a check fails (the registry answers 503), 5 when it \
cannot be reached.

Examples:
  agent registry health --registry localhost:5000
  agent registry health --detailed --timeout 5s -o json"
    )]
    Health {
        /// Show each check with its latency and what it found.
        #[arg(long)]
        detailed: bool,
        /// Give up after this long: 500ms, 30s, 1m.
        #[arg(long, default_value = "30s", value_parser = positive_duration)]
        timeout: Duration,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Check the credentials for a registry: who it takes you to be.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Who may pull, push, delete or administer repositories.
    #[command(subcommand)]
    Permission(PermissionCommand),
    /// Show a repository's visibility, or make it public or private.
    #[command(after_help = "Examples:
  agent registry visibility team/summarizer
  agent registry visibility localhost:5000/team/summarizer public")]
    Visibility {
        /// Repository, optionally with its registry (host:port/name).
        repository: String,
        /// public or private; absent: show the current one.
        #[arg(value_parser = ["public", "private"])]
        visibility: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// The registry's effective configuration (administrators).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// What a registry holds for an image, without pulling it.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Pull policies: what an image must satisfy before the registry serves it
    /// (administrators).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// What the registry has been doing: counts, bytes and levels over a period, each with
    /// a sparkline (administrators).
    #[command(
        after_help = "Without --metric or --query: pushes, pulls, requests, failed sign-ins, \
bytes received and sent, and what the registry holds. VALUE is the total over the period for \
counts and the latest value for levels. The registry answers from its built-in history \
(metrics.history in its config); --prometheus asks a Prometheus that scrapes its /metrics \
instead.

Examples:
  agent registry metrics --registry localhost:5000
  agent registry metrics --metric push_operations_total --period 7d
  agent registry metrics --query 'sum by (result) (rate(pull_operations_total[5m]))' --period 1h
  agent registry metrics --query 'rate(registry_http_request_duration_seconds_sum[5m]) / rate(registry_http_request_duration_seconds_count[5m])'
  agent registry metrics --prometheus http://prometheus:9090 -o json"
    )]
    Metrics {
        /// One metric, a row per series: its events per step for a counter (`_total`,
        /// `_count`, `_sum`), its value for anything else.
        #[arg(long, value_name = "NAME", conflicts_with = "query")]
        metric: Option<String>,
        /// A PromQL expression, a row per series it returns.
        #[arg(long, value_name = "PROMQL")]
        query: Option<String>,
        /// How far back: 30m, 24h, 7d.
        #[arg(long, default_value = "24h", value_parser = positive_duration)]
        period: Duration,
        /// Time between points (default: the period over 60, at least 15s).
        #[arg(long, value_parser = positive_duration)]
        step: Option<Duration>,
        /// Ask this Prometheus instead of the registry's own history.
        #[arg(long, value_name = "URL", env = "AGENT_PROMETHEUS_URL")]
        prometheus: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// The server's recent log lines (administrators).
    #[command(after_help = "Examples:
  agent registry logs --level error --since 1h --registry localhost:5000
  agent registry logs --follow --registry localhost:5000")]
    Logs {
        /// Only lines this severe or more: error, warn, info, debug, trace.
        #[arg(long, value_name = "LEVEL")]
        level: Option<String>,
        /// A duration back from now (30m, 1h, 7d) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Most lines to show (the newest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Keep printing new lines as they come (every second) until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Users and robot accounts (administrators).
    #[command(subcommand)]
    User(UserCommand),
    /// API tokens: yours, or (administrators) a robot's.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Who did what: logins, pulls, pushes and deletes (administrators).
    #[command(after_help = "Examples:
  agent registry access-logs --since 24h
  agent registry access-logs --user alice --action push --denied
  agent registry access-logs --repository team/summarizer --limit 20 -o json")]
    AccessLogs {
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// pull, push, delete or login.
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
        #[arg(long, value_name = "NAME")]
        repository: Option<String>,
        /// A duration back from now (30m, 24h, 7d) or an RFC 3339 time.
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Only refused attempts.
        #[arg(long)]
        denied: bool,
        /// Most lines to show (newest first).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Digest, media type, platforms, layers, size, created, labels, agent metadata, pull
    /// count and what refers to the image (signatures, SBOMs, scan reports).
    #[command(after_help = "Examples:
  agent registry image info localhost:5000/team/summarizer:1.0.0
  agent registry image info team/summarizer:latest --registry localhost:5000 -o json")]
    Info {
        /// Image, optionally with its registry (host:port/name:tag or @digest).
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// The image's signatures (cosign's format): key id, algorithm, signer, time, and
    /// whether each verifies with the given keys.
    #[command(
        after_help = "A signature is valid when one of the keys (--key, default
$AAC_HOME/agent.pub when it exists) verifies it and it signs this manifest. Signer and time
are what the signature's payload says (signed with it); signatures cosign made carry neither.

Examples:
  agent registry image signatures localhost:5000/team/summarizer:1.0
  agent registry image signatures team/summarizer:1.0 --key team.pub -o json"
    )]
    Signatures {
        image: String,
        /// A public key to check signatures with (PEM); repeatable.
        #[arg(long, value_name = "PUB")]
        key: Vec<std::path::PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// The registry's newest vulnerability report of the image: counts by severity and each
    /// finding (package, installed version, fixed version, advisory).
    #[command(
        after_help = "Images are scanned on push when the registry's scanning.on_push is
set, by `agent push --security-scan`, and when a pull policy needs a result with the current
vulnerability database.

Examples:
  agent registry image scan-results localhost:5000/team/summarizer:1.0
  agent registry image scan-results team/summarizer:1.0 --registry localhost:5000 -o json"
    )]
    ScanResults {
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The pull policies in force.
    #[command(
        after_help = "Example:\n  agent registry policy list --registry localhost:5000 -o json"
    )]
    List {
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Set the pull policy of a repository or namespace, replacing the one it had.
    #[command(
        after_help = "A repository's policy is the one of the most specific pattern that
matches it: team/agent before team/*, team/* before *. docker, podman, skopeo and agent pulls
of a manifest the policy refuses get 403 DENIED, saying why. Signatures, SBOMs and other
attachments stay readable.

--signed-only: one of the manifest's signatures (cosign's format: agent push --sign, cosign
sign --key) must verify with a trusted key and sign that very manifest. Without --key the
registry's own keys (signing.trusted_keys in its configuration) are trusted.

--block-vulnerabilities: the manifest's scan, with the registry's current vulnerability
database (scanned then if it has none), must have no finding of that severity or worse, other
than the advisories --allow accepts (ids or aliases such as CVE ids).

Examples:
  agent registry policy set --repository 'team/*' --signed-only --key team.pub
  agent registry policy set --repository localhost:5000/prod/agent --signed-only
  agent registry policy set --repository '*' --block-vulnerabilities critical
  agent registry policy set --repository 'prod/*' --block-vulnerabilities high --allow CVE-2023-5363"
    )]
    Set {
        /// A repository, `team/*` or `*`, optionally with its registry.
        #[arg(long, value_name = "PATTERN")]
        repository: String,
        /// Serve only manifests signed by a trusted key.
        #[arg(long, required_unless_present = "block_vulnerabilities")]
        signed_only: bool,
        /// Refuse manifests with a known vulnerability this severe or worse.
        #[arg(long, value_name = "SEVERITY", value_parser = ["critical", "high", "medium", "low"])]
        block_vulnerabilities: Option<String>,
        /// An advisory to accept despite --block-vulnerabilities (id or alias); repeatable.
        #[arg(
            long = "allow",
            value_name = "ADVISORY",
            requires = "block_vulnerabilities"
        )]
        allowed: Vec<String>,
        /// A trusted public key (PEM, as cosign.pub); repeatable.
        #[arg(long, value_name = "PUB")]
        key: Vec<std::path::PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Remove the pull policy of a pattern.
    #[command(after_help = "Example:\n  agent registry policy remove --repository 'team/*'")]
    Remove {
        #[arg(long, value_name = "PATTERN")]
        repository: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the configuration the server runs with (file, environment and flags applied),
    /// as YAML or with -o json. Secrets are never sent.
    #[command(after_help = "Examples:
  agent registry config show --registry localhost:5000
  agent registry config show --profile prod -o json")]
    Show {
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Sign in with the credentials the other commands would use and say who you are.
    #[command(
        after_help = "Exits 3 (authentication failed) when the registry refuses them.

Examples:
  agent registry auth test --registry localhost:5000
  AGENT_REGISTRY_TOKEN=art_... agent registry auth test --registry registry.example.com
  agent registry auth test --profile prod"
    )]
    Test {
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Who a grant is for: exactly one of these.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Subject {
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// Any subject, e.g. system:serviceaccount:NAMESPACE:NAME.
    #[arg(long, value_name = "SUBJECT")]
    subject: Option<String>,
}

impl Subject {
    fn name(&self) -> String {
        match (&self.user, &self.group, &self.subject) {
            (Some(u), _, _) => u.clone(),
            (_, Some(g), _) => format!("group:{g}"),
            (_, _, Some(s)) => s.clone(),
            _ => String::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PermissionCommand {
    /// Grant a permission on a repository or pattern (team/*).
    #[command(
        after_help = "Permissions: read (pull), write (pull, push), delete (and delete), admin
(everything, including visibility and the repository's permissions).

Examples:
  agent registry permission add team/summarizer --user alice --permission write
  agent registry permission add 'team/*' --group readers --permission read
  agent registry permission add 'prod/*' --subject system:serviceaccount:agents:runner --permission read"
    )]
    Add {
        repository: String,
        #[command(flatten)]
        subject: Subject,
        #[arg(long, value_parser = ["read", "write", "delete", "admin"])]
        permission: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List grants (on one repository, or yours, or all for administrators).
    #[command(after_help = "Examples:
  agent registry permission list team/summarizer
  agent registry permission list --user alice -o json")]
    List {
        repository: Option<String>,
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Remove a grant.
    #[command(
        after_help = "Example:\n  agent registry permission remove team/summarizer --user alice"
    )]
    Remove {
        repository: String,
        #[command(flatten)]
        subject: Subject,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (password from stdin) or a robot.
    #[command(after_help = "Examples:
  echo \"$PASSWORD\" | agent registry user add alice --password-stdin --group team-a
  agent registry user add ci-bot --robot")]
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        #[arg(long, conflicts_with = "password_stdin")]
        robot: bool,
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List users and robots.
    List {
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Remove an account with its tokens and grants.
    Remove {
        name: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token and print it (it is not shown again).
    #[command(
        after_help = "Scopes narrow a token: PATTERN:PERMISSION, such as team/*:read.

Examples:
  agent registry token create laptop
  agent registry token create deploy --owner ci-bot --scope 'team/*:write' --expires-in-days 90"
    )]
    Create {
        name: String,
        /// Whose token (administrators only, for robots and others); default yours.
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        #[arg(long = "scope", value_name = "PATTERN:PERMISSION")]
        scopes: Vec<String>,
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u64>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_name = "USER")]
        owner: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Revoke a token by its id.
    Revoke {
        id: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Splits `host:port/team/agent` into the registry and the repository (or pattern); a first
/// component is a registry when it has a `.` or `:` or is `localhost`, as docker decides.
fn split_registry(image: &str) -> (Option<&str>, &str) {
    match image.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, image),
    }
}

/// The client for `repository`'s registry, and the repository without its host.
async fn policy(ctx: &Context, command: PolicyCommand) -> anyhow::Result<()> {
    let shown = match command {
        PolicyCommand::List { registry } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            client.pull_policies(None).await?
        }
        PolicyCommand::Set {
            repository,
            signed_only,
            block_vulnerabilities,
            allowed,
            key,
            registry,
        } => {
            let (client, pattern) = client_for(ctx, Some(&repository), &registry)?;
            // Read here, so a wrong file is named before anything is sent. No --key means the
            // registry's keys, not this machine's default one.
            let trusted_keys = if key.is_empty() {
                Vec::new()
            } else {
                super::signing::public_keys(ctx, &key, true)?
                    .iter()
                    .map(agent_registry_oci::signature::PublicKey::to_pem)
                    .collect()
            };
            let set = agent_registry_oci::access::PullPolicy {
                repository: pattern.unwrap_or_default().to_owned(),
                signed_only,
                trusted_keys,
                key_ids: Vec::new(),
                block_vulnerabilities,
                allowed_advisories: allowed,
            };
            vec![client.set_pull_policy(&set).await?]
        }
        PolicyCommand::Remove {
            repository,
            registry,
        } => {
            let (client, pattern) = client_for(ctx, Some(&repository), &registry)?;
            let pattern = pattern.unwrap_or_default();
            client.remove_pull_policy(pattern).await?;
            if ctx.output == Format::Table {
                println!("removed the pull policy for {pattern}");
            }
            return Ok(());
        }
    };
    match ctx.output {
        Format::Json => output::json(&shown),
        Format::Table => output::table(
            &[
                "REPOSITORY",
                "SIGNED ONLY",
                "TRUSTED KEYS",
                "BLOCKS",
                "ALLOWED",
            ],
            &shown
                .iter()
                .map(|p| {
                    vec![
                        p.repository.clone(),
                        p.signed_only.to_string(),
                        match (p.signed_only, p.key_ids.is_empty()) {
                            (false, _) => "-".to_owned(),
                            (true, true) => "the registry's".to_owned(),
                            (true, false) => p.key_ids.join(", "),
                        },
                        p.block_vulnerabilities
                            .as_ref()
                            .map_or("-".to_owned(), |s| format!("{s} and above")),
                        p.allowed_advisories.join(", "),
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}

fn client_for<'a>(
    ctx: &Context,
    repository: Option<&'a str>,
    args: &RegistryArgs,
) -> anyhow::Result<(Client, Option<&'a str>)> {
    let (host, repo) = match repository.map(split_registry) {
        Some((host, repo)) => (host, Some(repo)),
        None => (None, None),
    };
    let mut args = args.clone();
    if args.registry.is_none() && args.profile.is_none() {
        args.registry = host.map(str::to_owned);
    }
    Ok((ctx.env().catalogue(&args)?, repo))
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    agent_registry_agent::spec::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{s:?} is not a duration such as 500ms, 30s, 1h or 7d"))
}

pub async fn run(ctx: &Context, command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Ping { registry } => ping(ctx, &registry).await,
        RegistryCommand::Health {
            detailed,
            timeout,
            registry,
        } => health(ctx, detailed, timeout, &registry).await,
        RegistryCommand::Auth(AuthCommand::Test { registry }) => auth_test(ctx, &registry).await,
        RegistryCommand::Permission(c) => permission(ctx, c).await,
        RegistryCommand::Visibility {
            repository,
            visibility,
            registry,
        } => {
            let (client, repo) = client_for(ctx, Some(&repository), &registry)?;
            let repo = repo.unwrap_or_default();
            let shown = match visibility {
                Some(v) => client.set_visibility(repo, &v).await?,
                None => client.repository(repo).await?,
            };
            if ctx.output == Format::Json {
                return output::json(&shown);
            }
            println!("{} is {}", shown.name, shown.visibility);
            Ok(())
        }
        RegistryCommand::Config(ConfigCommand::Show { registry }) => {
            let (client, _) = client_for(ctx, None, &registry)?;
            let config = client.server_config().await?;
            if ctx.output == Format::Json {
                return output::json(&config);
            }
            print!("{}", serde_yaml_ng::to_string(&config)?);
            Ok(())
        }
        RegistryCommand::Image(ImageCommand::Info { image, registry }) => {
            super::image_info::info(ctx, &image, &registry).await
        }
        RegistryCommand::Policy(c) => policy(ctx, c).await,
        RegistryCommand::Image(ImageCommand::Signatures {
            image,
            key,
            registry,
        }) => super::signing::list(ctx, &image, &registry, &key).await,
        RegistryCommand::Image(ImageCommand::ScanResults { image, registry }) => {
            super::scanning::results(ctx, &image, &registry).await
        }
        RegistryCommand::Metrics {
            metric,
            query,
            period,
            step,
            prometheus,
            registry,
        } => {
            let source = match prometheus {
                Some(url) => super::metrics::Source::Prometheus(
                    agent_registry_client::Prometheus::new(&url, Duration::from_secs(60))?,
                ),
                None => super::metrics::Source::Registry(client_for(ctx, None, &registry)?.0),
            };
            let ask = super::metrics::Ask {
                metric,
                query,
                period,
                step,
            };
            super::metrics::show(ctx, &source, ask).await
        }
        RegistryCommand::Logs {
            level,
            since,
            limit,
            follow,
            registry,
        } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            let mut query = LogQuery {
                level,
                since,
                after: None,
                limit: Some(limit),
            };
            let lines = client.server_logs(&query).await?;
            if ctx.output == Format::Json && !follow {
                return output::json(&lines);
            }
            let mut last = print_log(ctx, &lines)?;
            if !follow {
                return Ok(());
            }
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                query.after = last.or(query.after);
                let lines = client.server_logs(&query).await?;
                last = print_log(ctx, &lines)?.or(last);
            }
        }
        RegistryCommand::User(c) => user(ctx, c).await,
        RegistryCommand::Token(c) => token(ctx, c).await,
        RegistryCommand::AccessLogs {
            user,
            action,
            repository,
            since,
            denied,
            limit,
            registry,
        } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            let lines = client
                .access_logs(&LogFilter {
                    user,
                    action,
                    repository,
                    since,
                    denied,
                    limit: Some(limit),
                })
                .await?;
            if ctx.output == Format::Json {
                return output::json(&lines);
            }
            let rows: Vec<Vec<String>> = lines
                .into_iter()
                .map(|l| {
                    vec![
                        l.time,
                        l.user.unwrap_or_else(|| "-".into()),
                        l.action,
                        match (l.repository, l.target) {
                            (Some(r), Some(t)) => format!("{r}:{t}"),
                            (Some(r), None) => r,
                            _ => "-".into(),
                        },
                        if l.allowed { "allowed" } else { "denied" }.to_owned(),
                        l.status.to_string(),
                        l.client.unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(
                &[
                    "TIME", "USER", "ACTION", "WHAT", "RESULT", "STATUS", "CLIENT",
                ],
                &rows,
            )
        }
    }
}

async fn ping(ctx: &Context, registry: &RegistryArgs) -> anyhow::Result<()> {
    let (client, _) = client_for(ctx, None, registry)?;
    let ping = client.round_trip().await?;
    let ms = ping.round_trip.as_secs_f64() * 1e3;
    if ctx.output == Format::Json {
        return output::json(&serde_json::json!({
            "registry": client.host(),
            "round_trip_ms": ms,
            "api_version": ping.api_version,
            "needs_auth": ping.needs_auth,
        }));
    }
    let api = ping
        .api_version
        .as_deref()
        .unwrap_or("no API version header");
    let auth = if ping.needs_auth {
        ", credentials required"
    } else {
        ""
    };
    println!("{}: {ms:.1} ms, {api}{auth}", client.host());
    Ok(())
}

async fn health(
    ctx: &Context,
    detailed: bool,
    timeout: Duration,
    registry: &RegistryArgs,
) -> anyhow::Result<()> {
    let (client, _) = client_for(ctx, None, registry)?;
    // Always asked in detail, so a failure can say which check failed.
    let Ok(health) = tokio::time::timeout(timeout, client.health(true)).await else {
        bail!(
            "{} did not answer its health check within {}",
            client.host(),
            humanize(timeout)
        );
    };
    let health = health?;
    let mut shown = health.clone();
    if !detailed {
        shown.checks.clear();
    }
    if ctx.output == Format::Json {
        output::json(&shown)?;
    } else {
        let status = match health.status {
            HealthStatus::Ok => "ok",
            HealthStatus::Failing => "FAILING",
        };
        println!(
            "{}: {status} (version {}, up {})",
            client.host(),
            health.version,
            humanize(Duration::from_secs(health.uptime_secs))
        );
        if !shown.checks.is_empty() {
            let rows: Vec<Vec<String>> = shown
                .checks
                .iter()
                .map(|c| {
                    vec![
                        c.name.clone(),
                        if c.ok { "ok" } else { "FAILING" }.to_owned(),
                        format!("{:.1} ms", c.latency_ms),
                        c.message.clone(),
                    ]
                })
                .collect();
            output::table(&["CHECK", "STATUS", "LATENCY", "MESSAGE"], &rows)?;
        }
    }
    if health.status == HealthStatus::Failing {
        let failing: Vec<String> = health
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.message))
            .collect();
        bail!("{} is not healthy: {}", client.host(), failing.join("; "));
    }
    Ok(())
}

/// Prints log lines (JSON lines with `-o json`); returns the last one's number.
fn print_log(ctx: &Context, lines: &[LogRecord]) -> anyhow::Result<Option<u64>> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for line in lines {
        if ctx.output == Format::Json {
            writeln!(out, "{}", serde_json::to_string(line)?)?;
            continue;
        }
        let fields: String = line
            .fields
            .iter()
            .map(|(k, v)| format!(" {k}={v}"))
            .collect();
        writeln!(
            out,
            "{} {:>5} {}: {}{fields}",
            line.time, line.level, line.target, line.message
        )?;
    }
    out.flush()?;
    Ok(lines.last().map(|l| l.seq))
}

/// `1h 5m`, `42s`, `500ms`.
fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 if d.subsec_millis() > 0 => format!("{}ms", d.as_millis()),
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86400, secs % 86400 / 3600),
    }
}

async fn auth_test(ctx: &Context, registry: &RegistryArgs) -> anyhow::Result<()> {
    let (client, _) = client_for(ctx, None, registry)?;
    let me = client.whoami().await?;
    if ctx.output == Format::Json {
        return output::json(&me);
    }
    if !me.access_control {
        println!(
            "{} does not check access: anyone may push and pull",
            client.host()
        );
    } else if me.authenticated {
        let mut what = me.kind.clone();
        if me.admin {
            what.push_str(", administrator");
        }
        if !me.groups.is_empty() {
            what.push_str(&format!(", groups {}", me.groups.join(",")));
        }
        println!("authenticated to {} as {} ({what})", client.host(), me.name);
    } else {
        println!(
            "no credentials for {}: anonymous (public repositories only); run `agent login {}`",
            client.host(),
            client.host()
        );
    }
    Ok(())
}

async fn permission(ctx: &Context, command: PermissionCommand) -> anyhow::Result<()> {
    match command {
        PermissionCommand::Add {
            repository,
            subject,
            permission,
            registry,
        } => {
            let (client, repo) = client_for(ctx, Some(&repository), &registry)?;
            let grant = client
                .add_permission(&Grant {
                    subject: subject.name(),
                    repository: repo.unwrap_or_default().to_owned(),
                    permission,
                })
                .await?;
            println!(
                "granted {} on {} to {}",
                grant.permission, grant.repository, grant.subject
            );
            Ok(())
        }
        PermissionCommand::List {
            repository,
            user,
            registry,
        } => {
            let (client, repo) = client_for(ctx, repository.as_deref(), &registry)?;
            let grants = client
                .permissions(&GrantFilter {
                    subject: user,
                    repository: repo.map(str::to_owned),
                })
                .await?;
            if ctx.output == Format::Json {
                return output::json(&grants);
            }
            let rows: Vec<Vec<String>> = grants
                .into_iter()
                .map(|g| vec![g.subject, g.repository, g.permission])
                .collect();
            output::table(&["SUBJECT", "REPOSITORIES", "PERMISSION"], &rows)
        }
        PermissionCommand::Remove {
            repository,
            subject,
            registry,
        } => {
            let (client, repo) = client_for(ctx, Some(&repository), &registry)?;
            let repo = repo.unwrap_or_default();
            client.remove_permission(&subject.name(), repo).await?;
            println!("removed the grant on {repo} from {}", subject.name());
            Ok(())
        }
    }
}

async fn user(ctx: &Context, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            admin,
            robot,
            groups,
            password_stdin,
            registry,
        } => {
            if !robot && !password_stdin {
                bail!(
                    "a user needs a password: pass --password-stdin (or --robot for a token-only account)"
                );
            }
            let password = if password_stdin {
                Some(super::login::read_stdin("password")?)
            } else {
                None
            };
            let (client, _) = client_for(ctx, None, &registry)?;
            let added = client
                .add_user(&NewUser {
                    name,
                    robot,
                    admin,
                    groups,
                    password,
                })
                .await?;
            println!("added {} {}", added.kind, added.name);
            Ok(())
        }
        UserCommand::List { registry } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            let users = client.users().await?;
            if ctx.output == Format::Json {
                return output::json(&users);
            }
            let rows: Vec<Vec<String>> = users
                .into_iter()
                .map(|u| {
                    vec![
                        u.name,
                        u.kind,
                        if u.admin { "yes" } else { "no" }.to_owned(),
                        u.groups.join(","),
                        u.created,
                    ]
                })
                .collect();
            output::table(&["NAME", "KIND", "ADMIN", "GROUPS", "CREATED"], &rows)
        }
        UserCommand::Remove { name, registry } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            client.remove_user(&name).await?;
            println!("removed {name}");
            Ok(())
        }
    }
}

async fn token(ctx: &Context, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            owner,
            scopes,
            expires_in_days,
            registry,
        } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            let made = client
                .create_token(&NewToken {
                    name,
                    owner,
                    scopes,
                    expires_in_days,
                })
                .await?;
            if ctx.output == Format::Json {
                return output::json(&made);
            }
            eprintln!(
                "created token {} for {}; store it now, it is not shown again",
                made.id, made.owner
            );
            println!("{}", made.token.unwrap_or_default());
            Ok(())
        }
        TokenCommand::List { owner, registry } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            let tokens = client.tokens(&TokenFilter { owner }).await?;
            if ctx.output == Format::Json {
                return output::json(&tokens);
            }
            let rows: Vec<Vec<String>> = tokens
                .into_iter()
                .map(|t| {
                    vec![
                        t.id,
                        t.owner,
                        t.name,
                        t.expires.unwrap_or_else(|| "never".into()),
                        t.revoked.unwrap_or_else(|| "-".into()),
                        if t.scopes.is_empty() {
                            "(owner's)".into()
                        } else {
                            t.scopes.join(" ")
                        },
                    ]
                })
                .collect();
            output::table(
                &["ID", "OWNER", "NAME", "EXPIRES", "REVOKED", "SCOPES"],
                &rows,
            )
        }
        TokenCommand::Revoke { id, registry } => {
            let (client, _) = client_for(ctx, None, &registry)?;
            client.revoke_token(&id).await?;
            println!("revoked {id}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_registry;

    #[test]
    fn a_leading_host_is_the_registry() {
        assert_eq!(
            split_registry("localhost:5000/team/a"),
            (Some("localhost:5000"), "team/a")
        );
        assert_eq!(
            split_registry("registry.example.com/a"),
            (Some("registry.example.com"), "a")
        );
        assert_eq!(split_registry("localhost/a"), (Some("localhost"), "a"));
        assert_eq!(split_registry("team/*"), (None, "team/*"));
        assert_eq!(split_registry("agent"), (None, "agent"));
    }
}
