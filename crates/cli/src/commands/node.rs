//! Node-side commands: `agent image ensure` (an image under a pull policy, with events) and
//! `agent image runtimes` (the runtime table).

use std::path::Path;
use std::time::Duration;

use agent_registry_client::ImageRef;
use agent_registry_images::{
    AgentRuntime, Ensure, EventBus, JsonLines, PullPolicy, RuntimeRegistry, TransferOptions,
    ensure as ensure_image,
};
use anyhow::Context as _;
use serde::Serialize;

use crate::Context;
use crate::output::{self, Format};
use crate::progress::Bars;
use crate::target::RegistryArgs;

fn table(path: Option<&Path>) -> anyhow::Result<RuntimeRegistry> {
    Ok(match path {
        Some(p) => RuntimeRegistry::load(p)?,
        None => RuntimeRegistry::embedded(),
    })
}

/// What `ensure` did.
#[derive(Serialize)]
struct Ensured {
    image: String,
    policy: String,
    source: agent_registry_images::PullSource,
    digest: String,
    image_id: String,
    size: u64,
}

pub struct EnsureArgs<'a> {
    pub image: Option<&'a str>,
    pub runtime: Option<&'a str>,
    pub runtime_registry: Option<&'a Path>,
    pub policy: PullPolicy,
    pub events: Option<&'a str>,
    pub execution_id: Option<&'a str>,
    pub timeout: Option<u64>,
    pub registry: &'a RegistryArgs,
    pub quiet: bool,
}

pub async fn ensure(ctx: &Context, args: EnsureArgs<'_>) -> anyhow::Result<()> {
    let image: ImageRef = match (args.image, args.runtime) {
        (Some(i), None) => i.parse()?,
        (None, Some(r)) => {
            let (language, version) = r
                .split_once(':')
                .with_context(|| format!("--runtime takes LANGUAGE:VERSION, not {r:?}"))?;
            let resolved = table(args.runtime_registry)?.resolve(&AgentRuntime::Standard {
                language: language.to_owned(),
                version: version.to_owned(),
            })?;
            if let Some(warning) = &resolved.deprecated {
                eprintln!("warning: {warning}");
            }
            resolved.image
        }
        _ => anyhow::bail!("give IMAGE or --runtime LANGUAGE:VERSION"),
    };
    let target = ctx.env().target(&image, args.registry)?;
    let mut events = EventBus::new();
    match args.events {
        Some("-") => events = events.with(JsonLines::new(std::io::stderr())),
        Some(path) => {
            events = events.with(
                JsonLines::append_to(Path::new(path))
                    .with_context(|| format!("opening the event log {path}"))?,
            );
        }
        None => {}
    }
    let request = Ensure {
        image: &target.image,
        policy: args.policy,
        execution_id: args.execution_id,
        timeout: args.timeout.map(Duration::from_secs),
    };
    let store = ctx.store()?;
    let bars = Bars::new(args.quiet);
    let pulled = ensure_image(
        &target.client,
        &store,
        &request,
        &TransferOptions::default(),
        &bars,
        &events,
    )
    .await?;
    let report = Ensured {
        image: pulled.name,
        policy: args.policy.to_string(),
        source: pulled.source,
        digest: pulled.digest.to_string(),
        image_id: pulled.id.to_string(),
        size: pulled.size,
    };
    if args.quiet {
        println!("{}", report.image);
        return Ok(());
    }
    match ctx.output {
        Format::Json => output::json(&report),
        Format::Table => output::fields(&[
            ("Image", report.image.clone()),
            ("Policy", report.policy.clone()),
            ("Source", format!("{:?}", report.source)),
            ("Digest", report.digest.clone()),
            ("Size", output::size(report.size)),
        ]),
    }
}

#[derive(Serialize)]
struct RuntimeRow {
    language: String,
    version: String,
    image: String,
    description: Option<String>,
    deprecated: bool,
}

pub fn runtimes(ctx: &Context, path: Option<&Path>) -> anyhow::Result<()> {
    let rows: Vec<RuntimeRow> = table(path)?
        .entries()
        .map(|(language, version, e)| RuntimeRow {
            language: language.to_owned(),
            version: version.to_owned(),
            image: e.image.clone(),
            description: e.description.clone(),
            deprecated: e.deprecated,
        })
        .collect();
    match ctx.output {
        Format::Json => output::json(&rows),
        Format::Table => output::table(
            &["LANGUAGE", "VERSION", "IMAGE", "DEPRECATED"],
            &rows
                .iter()
                .map(|r| {
                    vec![
                        r.language.clone(),
                        r.version.clone(),
                        r.image.clone(),
                        if r.deprecated {
                            "yes".into()
                        } else {
                            String::new()
                        },
                    ]
                })
                .collect::<Vec<_>>(),
        ),
    }
}
