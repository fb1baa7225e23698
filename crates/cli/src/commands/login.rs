//! `agent login` and `agent logout`.

use std::io::Read as _;

use agent_registry_client::{Client, ClientOptions, Credential, registry_url};
use anyhow::{Context as _, bail};

use crate::Context;
use crate::target::host_of;

/// The API address of a registry as people name it (`docker.io` is served elsewhere).
fn api_url(registry: &str) -> String {
    match registry.trim_end_matches('/') {
        "docker.io" | "index.docker.io" | "https://index.docker.io/v1" => {
            "https://registry-1.docker.io".into()
        }
        other => registry_url(other),
    }
}

/// What `agent login` was given.
#[derive(Debug, Clone, clap::Args)]
pub struct LoginArgs {
    /// Registry (host:port or URL); with --profile, the profile's URL is used.
    #[arg(required_unless_present = "profile")]
    pub registry: Option<String>,
    #[arg(long, short)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin: this one shows in process lists).
    #[arg(long, short)]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long, conflicts_with = "password")]
    pub password_stdin: bool,
    /// Read an API token (art_...) from standard input; it is saved as the password of the
    /// user `token`, which docker and podman can use too.
    #[arg(long, conflicts_with_all = ["password", "password_stdin", "username"])]
    pub token_stdin: bool,
    /// Check the credentials of a profile in ~/.aac/config.yaml (token, username or oauth2)
    /// instead; nothing is saved, the profile already holds them.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["username", "password", "password_stdin", "token_stdin"])]
    pub profile: Option<String>,
}

/// The whole of standard input, less its final line break.
pub(crate) fn read_stdin(what: &str) -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .with_context(|| format!("reading the {what} from standard input"))?;
    Ok(s.trim_end_matches(['\n', '\r']).to_owned())
}

pub async fn login(ctx: &Context, args: LoginArgs) -> anyhow::Result<()> {
    if let Some(name) = &args.profile {
        let profile = ctx.config.profile(name)?;
        let auth = profile.auth.as_ref().with_context(|| {
            format!("profile {name} has no auth section; add one (type: token, username or oauth2)")
        })?;
        let url = api_url(args.registry.as_deref().unwrap_or(&profile.url));
        let client = verified(&url, auth.credential()).await?;
        println!("Login Succeeded{}", as_whom(&client).await);
        return Ok(());
    }
    let registry = args.registry.as_deref().unwrap_or_default();
    let (username, password) = if args.token_stdin {
        ("token".to_owned(), read_stdin("token")?)
    } else {
        let username = args
            .username
            .or_else(|| std::env::var("DOCKER_USERNAME").ok())
            .context("give a username with --username (or DOCKER_USERNAME), or a token with --token-stdin")?;
        let password = if args.password_stdin {
            read_stdin("password")?
        } else {
            args.password
                .or_else(|| std::env::var("DOCKER_PASSWORD").ok())
                .context(
                    "give a password with --password-stdin (or --password, or DOCKER_PASSWORD)",
                )?
        };
        (username, password)
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let url = api_url(registry);
    let client = verified(
        &url,
        Credential::Basic {
            username: username.clone(),
            password: password.clone(),
        },
    )
    .await?;
    let saved_in = ctx
        .credentials
        .store(&host_of(&url), &username, &password)?;
    eprintln!("Credentials saved in {saved_in}");
    println!("Login Succeeded{}", as_whom(&client).await);
    Ok(())
}

/// A client for `url` whose credential the registry accepted.
async fn verified(url: &str, credential: Credential) -> anyhow::Result<Client> {
    let client = Client::new(
        url,
        ClientOptions {
            credential,
            ..ClientOptions::default()
        },
    )?;
    client.ping().await?;
    Ok(client)
}

/// ` as NAME` when the registry is an Agent Registry that says who we are.
async fn as_whom(client: &Client) -> String {
    match client.whoami().await {
        Ok(me) if me.authenticated => format!(" as {}", me.name),
        _ => String::new(),
    }
}

pub fn logout(ctx: &Context, registry: &str) -> anyhow::Result<()> {
    let host = host_of(&api_url(registry));
    if ctx.credentials.erase(&host)? {
        println!("Removing login credentials for {host}");
    } else {
        println!("Not logged in to {host}");
    }
    Ok(())
}
