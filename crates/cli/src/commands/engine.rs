//! `--engine docker|podman` on `push`, `pull` and `images`: the same commands on the images
//! an engine holds (through its API), instead of the local store.

use agent_registry_client::ImageRef;
use agent_registry_images::{Engine, EngineKind};
use serde::Serialize;

use crate::Context;
use crate::output::{self, Format};
use crate::target::RegistryArgs;

/// Which engine a command works on; none: the local store.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EngineArgs {
    /// Work on the images in this engine (docker or podman) instead of the local store.
    #[arg(long, value_name = "docker|podman")]
    pub engine: Option<EngineKind>,
    /// The engine's API socket (default: its usual one).
    #[arg(long, value_name = "PATH")]
    pub engine_socket: Option<String>,
}

impl EngineArgs {
    /// The engine these flags name, connected; `None` without `--engine`.
    pub async fn connect(&self) -> anyhow::Result<Option<Engine>> {
        Ok(match (self.engine, &self.engine_socket) {
            (Some(kind), socket) => Some(Engine::connect(kind, socket.as_deref()).await?),
            (None, Some(_)) => anyhow::bail!("--engine-socket needs --engine docker or podman"),
            (None, None) => None,
        })
    }
}

#[derive(Serialize)]
struct EnginePush {
    repository: String,
    tag: Option<String>,
    digest: String,
    registry_url: String,
}

/// `agent push --engine`: the engine pushes the image it holds under `image`'s name, with
/// the credentials found for its registry.
pub async fn push(
    ctx: &Context,
    engine: &Engine,
    image: &str,
    args: &RegistryArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    let wanted: ImageRef = image.parse()?;
    let target = ctx.env().target(&wanted, args)?;
    if target.image.familiar() != wanted.familiar() {
        anyhow::bail!(
            "with --engine the image is pushed under the name the engine holds it by: \
             tag it as {} in the engine first",
            target.image.familiar()
        );
    }
    let digest = engine.push(&target.image, &target.credential).await?;
    let report = EnginePush {
        repository: target.image.familiar_repository(),
        tag: target.image.tag_or_latest().map(|t| t.to_string()),
        digest: digest.to_string(),
        registry_url: target.url,
    };
    if quiet {
        println!("{}", report.digest);
        return Ok(());
    }
    match ctx.output {
        Format::Json => output::json(&report),
        Format::Table => output::fields(&[
            ("Repository", report.repository.clone()),
            ("Tag", report.tag.clone().unwrap_or_else(|| "<none>".into())),
            ("Digest", report.digest.clone()),
            ("Registry URL", report.registry_url.clone()),
        ]),
    }
}

/// `agent images --engine`: what the engine holds, a row per name (untagged images with
/// `--all`), newest first; `name` keeps the repositories it names.
pub async fn images(
    ctx: &Context,
    engine: &Engine,
    name: Option<&str>,
    all: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let found = engine.images().await?;
    #[derive(Serialize)]
    struct Row {
        repository: String,
        tag: String,
        id: String,
        created: i64,
        size: u64,
    }
    let mut rows = Vec::new();
    for image in &found {
        let names: Vec<(String, String)> = image
            .names
            .iter()
            .filter_map(|n| n.rsplit_once(':').filter(|(_, t)| !t.contains('/')))
            .map(|(r, t)| (r.to_owned(), t.to_owned()))
            .collect();
        if names.is_empty() && all && name.is_none() {
            rows.push(Row {
                repository: "<none>".into(),
                tag: "<none>".into(),
                id: image.id.clone(),
                created: image.created,
                size: image.size,
            });
        }
        for (repository, tag) in names {
            if name.is_some_and(|n| n != repository) {
                continue;
            }
            rows.push(Row {
                repository,
                tag,
                id: image.id.clone(),
                created: image.created,
                size: image.size,
            });
        }
    }
    if quiet {
        let mut seen = std::collections::BTreeSet::new();
        for r in &rows {
            if seen.insert(&r.id) {
                println!("{}", short(&r.id));
            }
        }
        return Ok(());
    }
    match ctx.output {
        Format::Json => output::json(&rows),
        Format::Table => {
            let now = output::now();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let created = agent_registry_oci::catalogue::format_rfc3339(r.created);
                    vec![
                        r.repository.clone(),
                        r.tag.clone(),
                        short(&r.id),
                        output::ago(Some(&created), now),
                        output::size(r.size),
                    ]
                })
                .collect();
            output::table(
                &["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"],
                &table,
            )
        }
    }
}

/// An engine's image ID as `docker images` shows it: 12 hex digits.
fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}
