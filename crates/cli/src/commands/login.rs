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

pub async fn login(
    ctx: &Context,
    registry: &str,
    username: Option<String>,
    password: Option<String>,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let username = username
        .or_else(|| std::env::var("DOCKER_USERNAME").ok())
        .context("give a username with --username (or DOCKER_USERNAME)")?;
    let password = if password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        password
            .or_else(|| std::env::var("DOCKER_PASSWORD").ok())
            .context("give a password with --password-stdin (or --password, or DOCKER_PASSWORD)")?
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let url = api_url(registry);
    let client = Client::new(
        &url,
        ClientOptions {
            credential: Credential::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            ..ClientOptions::default()
        },
    )?;
    client.ping().await?;
    let saved_in = ctx
        .credentials
        .store(&host_of(&url), &username, &password)?;
    eprintln!("Credentials saved in {saved_in}");
    println!("Login Succeeded");
    Ok(())
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
