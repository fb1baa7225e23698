//! Which registry a command talks to, and with what credential.
//!
//! Registry, first match wins:
//! 1. `--registry URL`, or the URL of `--profile NAME`;
//! 2. the registry written in the image reference (`localhost:5000/agent:1.0`);
//! 3. `AGENT_REGISTRY_URL`;
//! 4. the default profile's URL;
//! 5. Docker Hub.
//!
//! Credential, first match wins:
//! 1. the auth of `--profile NAME`;
//! 2. `AGENT_REGISTRY_TOKEN` (a bearer token), or `DOCKER_USERNAME` and `DOCKER_PASSWORD`;
//! 3. the auth of a profile whose URL is this registry (the default profile first);
//! 4. what `docker login` or `podman login` saved for it (`~/.docker/config.json`, its
//!    credential helpers, Podman's `auth.json`);
//! 5. none.

use agent_registry_client::credentials::CredentialFiles;
use agent_registry_client::{Client, ClientOptions, Credential, ImageRef, registry_url};
use anyhow::Context as _;

use crate::config::{Config, Profile};

/// `--registry` and `--profile`, as the transfer commands take them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RegistryArgs {
    /// Registry to use instead of the one in IMAGE (URL or host:port).
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,
    /// Profile from ~/.aac/config.yaml whose URL and credentials to use.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
}

/// A resolved destination: the image on its registry, and a client for that registry.
#[derive(Debug)]
pub struct Target {
    pub image: ImageRef,
    /// The registry's URL, as output prints it.
    pub url: String,
    pub client: Client,
    /// What the client presents; handed to an engine for an engine pull.
    pub credential: Credential,
}

pub struct Env<'a> {
    pub config: &'a Config,
    pub var: &'a dyn Fn(&str) -> Option<String>,
    pub credentials: &'a CredentialFiles,
}

impl Env<'_> {
    /// The registry flags, a profile, the image's own registry, `AGENT_REGISTRY_URL` or the
    /// default profile name, in that order.
    fn registry(
        &self,
        args: &RegistryArgs,
        profile: Option<&crate::config::Profile>,
        image_registry: Option<&str>,
    ) -> Option<String> {
        args.registry
            .clone()
            .or_else(|| profile.map(|p| p.url.clone()))
            .or_else(|| image_registry.map(str::to_owned))
            .or_else(|| (self.var)("AGENT_REGISTRY_URL").filter(|u| !u.is_empty()))
            .or_else(|| self.config.default_profile().map(|p| p.url.clone()))
    }

    /// A client for a registry's own API (the catalogue), which names no image.
    pub fn catalogue(&self, args: &RegistryArgs) -> anyhow::Result<Client> {
        let profile = match &args.profile {
            Some(name) => Some(self.config.profile(name)?),
            None => None,
        };
        let registry = self.registry(args, profile, None).ok_or_else(|| {
            anyhow::anyhow!(
                "which registry? give --registry URL, --profile NAME, or set AGENT_REGISTRY_URL"
            )
        })?;
        let image: ImageRef = format!("{}/catalogue", host_of(&registry_url(&registry))).parse()?;
        Ok(self.target(&image, args)?.client)
    }

    /// Resolves `image` per the module docs.
    pub fn target(&self, image: &ImageRef, args: &RegistryArgs) -> anyhow::Result<Target> {
        let profile = match &args.profile {
            Some(name) => Some(self.config.profile(name)?),
            None => None,
        };
        let registry = self.registry(args, profile, image.registry.as_deref());
        let (url, image) = match registry {
            Some(r) => {
                let url = registry_url(&r);
                let host = host_of(&url);
                (url, image.on_registry(Some(&host)))
            }
            None => {
                let on_hub = image.on_registry(None);
                (registry_url(on_hub.api_host()), on_hub)
            }
        };
        let credential = self.credential(profile, &url, image.api_host())?;
        tracing::debug!(%url, ?credential, "registry resolved");
        let client = Client::new(
            &url,
            ClientOptions {
                credential: credential.clone(),
                ..ClientOptions::default()
            },
        )?;
        Ok(Target {
            image,
            url,
            client,
            credential,
        })
    }

    fn credential(
        &self,
        profile: Option<&Profile>,
        url: &str,
        host: &str,
    ) -> anyhow::Result<Credential> {
        if let Some(auth) = profile.and_then(|p| p.auth.as_ref()) {
            return Ok(auth.credential());
        }
        if let Some(token) = (self.var)("AGENT_REGISTRY_TOKEN").filter(|t| !t.is_empty()) {
            return Ok(Credential::Token(token));
        }
        if let (Some(username), Some(password)) =
            ((self.var)("DOCKER_USERNAME"), (self.var)("DOCKER_PASSWORD"))
        {
            return Ok(Credential::Basic { username, password });
        }
        let matching = self
            .config
            .default_profile()
            .into_iter()
            .chain(self.config.registries.values())
            .find(|p| host_of(&registry_url(&p.url)) == host_of(url));
        if let Some(auth) = matching.and_then(|p| p.auth.as_ref()) {
            return Ok(auth.credential());
        }
        let saved = self
            .credentials
            .lookup(host)
            .context("reading saved registry credentials")?;
        Ok(saved.unwrap_or_default())
    }
}

/// `host[:port]` of a registry URL.
pub fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with<'a>(config: &'a Config, var: &'a dyn Fn(&str) -> Option<String>) -> Env<'a> {
        let nowhere = Box::leak(Box::new(CredentialFiles {
            docker_config: "/nonexistent/config.json".into(),
            podman: Vec::new(),
        }));
        Env {
            config,
            var,
            credentials: nowhere,
        }
    }

    fn image(s: &str) -> ImageRef {
        s.parse().expect("reference")
    }

    #[test]
    fn registry_precedence_is_flag_then_reference_then_env_then_profile() {
        let config = Config::parse(
            "registries: {default: {url: 'http://profile:1'}, other: {url: 'http://other:2'}}",
            &|_| None,
        )
        .expect("config");
        let var = |k: &str| (k == "AGENT_REGISTRY_URL").then(|| "http://env:3".to_owned());
        let env = env_with(&config, &var);
        let t = |i: &str, registry: Option<&str>, profile: Option<&str>| {
            let args = RegistryArgs {
                registry: registry.map(str::to_owned),
                profile: profile.map(str::to_owned),
            };
            env.target(&image(i), &args).expect("target").url
        };
        assert_eq!(t("a:1", Some("http://flag:4"), None), "http://flag:4");
        assert_eq!(t("a:1", None, Some("other")), "http://other:2");
        assert_eq!(t("localhost:5/a:1", None, None), "http://localhost:5");
        assert_eq!(t("a:1", None, None), "http://env:3");

        let no_env = |_: &str| None;
        let env = env_with(&config, &no_env);
        let target = env
            .target(&image("a:1"), &RegistryArgs::default())
            .expect("target");
        assert_eq!(target.url, "http://profile:1");
        assert_eq!(target.image.to_string(), "profile:1/a:1");
    }

    #[test]
    fn without_any_registry_it_is_docker_hub() {
        let config = Config::default();
        let no_env = |_: &str| None;
        let env = env_with(&config, &no_env);
        let t = env
            .target(&image("busybox"), &RegistryArgs::default())
            .expect("target");
        assert_eq!(t.url, "https://registry-1.docker.io");
        assert_eq!(t.image.api_repository(), "library/busybox");
    }

    #[test]
    fn credential_precedence_is_profile_then_env_then_matching_profile() {
        let config = Config::parse(
            "registries: {default: {url: 'http://r:1', auth: {type: token, token: p}}, ci: {url: 'http://r:1', auth: {type: username, username: u, password: w}}}",
            &|_| None,
        )
        .expect("config");
        let var = |k: &str| (k == "AGENT_REGISTRY_TOKEN").then(|| "e".to_owned());
        let env = env_with(&config, &var);
        let ci = config.profile("ci").ok();
        assert!(matches!(
            env.credential(ci, "http://r:1", "r:1").expect("cred"),
            Credential::Basic { .. }
        ));
        assert_eq!(
            env.credential(None, "http://r:1", "r:1").expect("cred"),
            Credential::Token("e".into())
        );
        let no_env = |_: &str| None;
        let env = env_with(&config, &no_env);
        assert_eq!(
            env.credential(None, "http://r:1", "r:1").expect("cred"),
            Credential::Token("p".into())
        );
    }
}
