//! `agent-registry user|token|permission ...`: access administration on the database of a
//! registry root, for the first administrator and for scripts on the server host. The same
//! operations are served over HTTP under `/api/v1` (and by `agent registry ...`).

use std::io::BufRead;
use std::time::Duration;

use agent_registry_access::Permission;
use agent_registry_metadata::access::PrincipalKind;
use agent_registry_oci::catalogue::format_rfc3339;
use anyhow::Context;
use clap::Subcommand;

use crate::ConfigArgs;

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user (password read from stdin) or a robot (which signs in with tokens).
    #[command(after_help = "\
Examples:
  echo \"$PASSWORD\" | agent-registry user add alice --password-stdin --group team-a
  echo \"$PASSWORD\" | agent-registry user add root --admin --password-stdin
  agent-registry user add ci-bot --robot")]
    Add {
        name: String,
        /// Make the account a registry administrator.
        #[arg(long)]
        admin: bool,
        /// A robot account: no password; give it API tokens (`agent-registry token create`).
        #[arg(long, conflicts_with = "password_stdin")]
        robot: bool,
        /// Groups the account belongs to (grants can name `group:NAME`); repeatable.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List users and robots.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove an account with its tokens and grants.
    Remove {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Set a user's password (read from stdin).
    Passwd {
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokenCommand {
    /// Create an API token for a user or robot and print it (it is never shown again).
    #[command(after_help = "\
Scopes narrow a token to repositories: PATTERN:PERMISSION, such as team/*:read or
team/agent:write. Without --scope the token may do whatever its owner may.

Examples:
  agent-registry token create --user ci-bot --name deploy --scope 'team/*:write' --expires-in-days 90
  AGENT_REGISTRY_TOKEN=$(agent-registry token create --user alice --name laptop) agent push ...")]
    Create {
        #[arg(long, value_name = "USER")]
        user: String,
        #[arg(long, value_name = "NAME")]
        name: String,
        #[arg(long = "scope", value_name = "PATTERN:PERMISSION")]
        scopes: Vec<String>,
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u64>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List tokens (never their secrets).
    List {
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Revoke a token by its id.
    Revoke {
        id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
pub(crate) enum PermissionCommand {
    /// Grant SUBJECT (a user, robot, group:NAME or system:serviceaccount:NS:NAME) a
    /// permission (read, write, delete, admin) on repositories matching PATTERN.
    #[command(after_help = "\
Examples:
  agent-registry permission add alice 'team/*' write
  agent-registry permission add group:readers '*' read
  agent-registry permission add system:serviceaccount:agents:runner 'prod/*' read")]
    Add {
        subject: String,
        pattern: String,
        permission: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List grants.
    List {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Remove SUBJECT's grant on PATTERN.
    Remove {
        subject: String,
        pattern: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

async fn open(config: &ConfigArgs) -> anyhow::Result<agent_registry_access::Access> {
    agent_registry_server::open_access_only(&config.load()?).await
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!(
            "no password on stdin: pipe one in, e.g. echo \"$PASSWORD\" | agent-registry user ..."
        );
    }
    Ok(password)
}

pub(crate) async fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            admin,
            robot,
            groups,
            password_stdin,
            config,
        } => {
            if !robot && !password_stdin {
                anyhow::bail!(
                    "a user needs a password: pass --password-stdin (or --robot for a token-only account)"
                );
            }
            let password = if password_stdin {
                Some(read_password()?)
            } else {
                None
            };
            let kind = if robot {
                PrincipalKind::Robot
            } else {
                PrincipalKind::User
            };
            open(&config)
                .await?
                .add_principal(&name, kind, admin, groups, password.as_deref())
                .await?;
            println!("added {} {name}", kind.as_str());
        }
        UserCommand::List { config } => {
            println!(
                "{:<24} {:<6} {:<6} {:<20} CREATED",
                "NAME", "KIND", "ADMIN", "GROUPS"
            );
            for p in open(&config).await?.principals().await? {
                println!(
                    "{:<24} {:<6} {:<6} {:<20} {}",
                    p.name,
                    p.kind.as_str(),
                    if p.admin { "yes" } else { "no" },
                    p.groups.join(","),
                    format_rfc3339(p.created_at)
                );
            }
        }
        UserCommand::Remove { name, config } => {
            open(&config).await?.remove_principal(&name).await?;
            println!("removed {name}");
        }
        UserCommand::Passwd { name, config } => {
            let password = read_password()?;
            open(&config).await?.set_password(&name, &password).await?;
            println!("password of {name} changed");
        }
    }
    Ok(())
}

pub(crate) async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            user,
            name,
            scopes,
            expires_in_days,
            config,
        } => {
            let ttl = expires_in_days.map(|d| Duration::from_secs(d.saturating_mul(86_400)));
            let made = open(&config)
                .await?
                .create_token(&user, &name, scopes, ttl)
                .await?;
            eprintln!(
                "created token {} for {user}; store it now, it is not shown again",
                made.record.id
            );
            println!("{}", made.secret);
        }
        TokenCommand::List { user, config } => {
            println!(
                "{:<18} {:<16} {:<16} {:<22} {:<22} SCOPES",
                "ID", "OWNER", "NAME", "EXPIRES", "REVOKED"
            );
            for t in open(&config).await?.tokens(user.as_deref()).await? {
                println!(
                    "{:<18} {:<16} {:<16} {:<22} {:<22} {}",
                    t.id,
                    t.owner,
                    t.name,
                    t.expires_at.map_or("never".into(), format_rfc3339),
                    t.revoked_at.map_or("-".into(), format_rfc3339),
                    if t.scopes.is_empty() {
                        "(owner's)".into()
                    } else {
                        t.scopes.join(" ")
                    }
                );
            }
        }
        TokenCommand::Revoke { id, config } => {
            open(&config).await?.revoke_token(&id, None).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub(crate) async fn permission(command: PermissionCommand) -> anyhow::Result<()> {
    let pattern = |p: &str| {
        p.parse()
            .with_context(|| format!("{p:?} is not a repository pattern (team/agent, team/* or *)"))
    };
    match command {
        PermissionCommand::Add {
            subject,
            pattern: p,
            permission,
            config,
        } => {
            let permission: Permission = permission.parse()?;
            open(&config)
                .await?
                .grant(&subject, &pattern(&p)?, permission)
                .await?;
            println!("granted {permission} on {p} to {subject}");
        }
        PermissionCommand::List { config } => {
            println!("{:<40} {:<32} PERMISSION", "SUBJECT", "REPOSITORIES");
            for g in open(&config).await?.grants().await? {
                println!(
                    "{:<40} {:<32} {}",
                    g.subject,
                    g.pattern.as_str(),
                    g.permission
                );
            }
        }
        PermissionCommand::Remove {
            subject,
            pattern: p,
            config,
        } => {
            open(&config)
                .await?
                .revoke_grant(&subject, &pattern(&p)?)
                .await?;
            println!("removed the grant on {p} from {subject}");
        }
    }
    Ok(())
}
