//! Node-side commands: `agent image ensure` (an image under a pull policy, with events),
//! `agent image precache` (runtime images ahead of time, for nodes that will be offline),
//! `agent image runtimes` (the runtime table), and `agent save` / `agent load` (OCI
//! archives to carry images where no registry reaches).

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_registry_client::credentials::from_docker_config_json;
use agent_registry_client::{Client, ClientOptions, ImageRef};
use agent_registry_images::{
    AgentRuntime, Backend, Engine, EngineKind, Ensure, EventBus, JsonLines, PullPolicy, Pulled,
    Queued, RunSpec, RuntimeRegistry, TransferOptions, archive, ensure as ensure_image,
};
use anyhow::Context as _;
use serde::Serialize;

use crate::Context;
use crate::output::{self, Format};
use crate::progress::Bars;
use crate::target::{RegistryArgs, Target};

/// How a node pulls: policy, credentials, events, limits.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// always, missing (IfNotPresent; the default) or never.
    #[arg(long = "pull", value_name = "POLICY")]
    pub policy: Option<PullPolicy>,
    /// A dockerconfigjson file (a Kubernetes image pull secret's content) to take registry
    /// credentials from, before any other source.
    #[arg(long, value_name = "FILE")]
    pub pull_secret: Option<PathBuf>,
    #[command(flatten)]
    pub events: EventArgs,
    /// Give up a pull that has not finished after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub engine: super::engine::EngineArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Where image events go.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EventArgs {
    /// Append image events as JSON lines to FILE (- for stderr).
    #[arg(long, value_name = "FILE")]
    pub events: Option<String>,
    /// POST each image event as JSON to URL.
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Publish each image event to NATS at URL (JetStream-acknowledged when a stream holds
    /// the subject).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    #[arg(long, value_name = "SUBJECT", default_value = "agent.images")]
    pub nats_subject: String,
    /// Execution ID carried by every event.
    #[arg(long, value_name = "ID")]
    pub execution_id: Option<String>,
}

impl EventArgs {
    /// The bus with the sinks these flags name; `close` it to deliver everything.
    pub async fn bus(&self) -> anyhow::Result<EventBus> {
        let mut bus = EventBus::new();
        match self.events.as_deref() {
            Some("-") => bus = bus.with(JsonLines::new(std::io::stderr())),
            Some(path) => {
                bus = bus.with(
                    JsonLines::append_to(Path::new(path))
                        .with_context(|| format!("opening the event log {path}"))?,
                );
            }
            None => {}
        }
        if let Some(url) = &self.webhook {
            bus = bus.with(Queued::webhook(url.clone()));
        }
        if let Some(url) = &self.nats {
            bus = bus.with(
                Queued::nats(url, self.nats_subject.clone())
                    .await
                    .map_err(anyhow::Error::msg)?,
            );
        }
        Ok(bus)
    }
}

impl NodeArgs {
    /// The registry and client for `image`; a pull secret's credential wins.
    fn target(&self, ctx: &Context, image: &ImageRef) -> anyhow::Result<Target> {
        let mut target = ctx.env().target(image, &self.registry)?;
        if let Some(path) = &self.pull_secret {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading the pull secret {}", path.display()))?;
            if let Some(credential) = from_docker_config_json(&json, target.image.api_host()) {
                target.client = Client::new(
                    &target.url,
                    ClientOptions {
                        credential: credential.clone(),
                        ..ClientOptions::default()
                    },
                )?;
                target.credential = credential;
            }
        }
        Ok(target)
    }

    /// Ensures `image` in the engine these flags name, or else in the local store.
    async fn ensure(
        &self,
        ctx: &Context,
        image: &ImageRef,
        bars: &Bars,
        events: &EventBus,
    ) -> anyhow::Result<Pulled> {
        let target = self.target(ctx, image)?;
        let engine = self.engine.connect().await?;
        self.ensure_on(ctx, &target, engine.as_ref(), bars, events)
            .await
    }

    /// Ensures `target.image` in `engine`, or in the local store when there is none.
    async fn ensure_on(
        &self,
        ctx: &Context,
        target: &Target,
        engine: Option<&Engine>,
        bars: &Bars,
        events: &EventBus,
    ) -> anyhow::Result<Pulled> {
        let request = Ensure {
            image: &target.image,
            policy: self.policy.unwrap_or_default(),
            execution_id: self.events.execution_id.as_deref(),
            timeout: self.timeout.map(Duration::from_secs),
        };
        if let Some(engine) = engine {
            let backend = Backend::Engine {
                engine,
                credential: &target.credential,
            };
            return Ok(ensure_image(&backend, &request, events).await?);
        }
        let store = ctx.store()?;
        let backend = Backend::Store {
            client: &target.client,
            store: &store,
            options: &TransferOptions::default(),
            progress: bars,
        };
        Ok(ensure_image(&backend, &request, events).await?)
    }
}

fn table(path: Option<&Path>) -> anyhow::Result<RuntimeRegistry> {
    Ok(match path {
        Some(p) => RuntimeRegistry::load(p)?,
        None => RuntimeRegistry::embedded(),
    })
}

/// What `ensure` did to one image.
#[derive(Serialize)]
struct Ensured {
    image: String,
    policy: String,
    source: agent_registry_images::PullSource,
    digest: String,
    image_id: String,
    size: u64,
}

impl Ensured {
    fn new(pulled: Pulled, policy: PullPolicy) -> Ensured {
        Ensured {
            image: pulled.name,
            policy: policy.to_string(),
            source: pulled.source,
            digest: pulled.digest.to_string(),
            image_id: pulled.id.to_string(),
            size: pulled.size,
        }
    }
}

/// What `agent image ensure` is asked for: an image, a runtime, or an agent file's runtime.
pub struct EnsureTarget<'a> {
    pub image: Option<&'a str>,
    pub runtime: Option<&'a str>,
    pub agent_file: Option<&'a Path>,
    pub runtime_registry: Option<&'a Path>,
}

pub async fn ensure(
    ctx: &Context,
    what: &EnsureTarget<'_>,
    args: &NodeArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    let mut args = args.clone();
    let runtime_registry = what.runtime_registry;
    let image: ImageRef = match (what.image, what.runtime, what.agent_file) {
        (Some(i), None, None) => i.parse()?,
        (None, None, Some(file)) => {
            let agent = super::agent::load(file, &Default::default())?;
            if args.policy.is_none() {
                args.policy = super::agent::pull_policy(&agent)?;
            }
            super::agent::runtime_image(&agent, file, &table(runtime_registry)?)?
        }
        (None, Some(r), None) => {
            let (language, version) = r
                .split_once(':')
                .with_context(|| format!("--runtime takes LANGUAGE:VERSION, not {r:?}"))?;
            let resolved = table(runtime_registry)?.resolve(&AgentRuntime::Standard {
                language: language.to_owned(),
                version: version.to_owned(),
            })?;
            if let Some(warning) = &resolved.deprecated {
                eprintln!("warning: {warning}");
            }
            resolved.image
        }
        _ => anyhow::bail!("give one of IMAGE, --runtime LANGUAGE:VERSION or --agent FILE"),
    };
    let events = args.events.bus().await?;
    let bars = Bars::new(quiet);
    let outcome = args.ensure(ctx, &image, &bars, &events).await;
    events.close().await;
    let report = Ensured::new(outcome?, args.policy.unwrap_or_default());
    if quiet {
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

/// Pulls every runtime image (the supported ones, or `all`), limited to `languages` when
/// given, plus `images`; reports each and fails at the end if any failed.
pub async fn precache(
    ctx: &Context,
    runtime_registry: Option<&Path>,
    languages: &[String],
    all: bool,
    images: &[String],
    args: &NodeArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    let runtimes = table(runtime_registry)?;
    let mut wanted: Vec<ImageRef> = Vec::new();
    for (language, version, entry) in runtimes.entries() {
        if (entry.deprecated && !all)
            || (!languages.is_empty() && !languages.iter().any(|l| l == language))
        {
            continue;
        }
        let resolved = runtimes.resolve(&AgentRuntime::Standard {
            language: language.to_owned(),
            version: version.to_owned(),
        })?;
        if !wanted.contains(&resolved.image) {
            wanted.push(resolved.image);
        }
    }
    for i in images {
        wanted.push(i.parse()?);
    }
    if wanted.is_empty() {
        anyhow::bail!("nothing to pre-cache: no runtime matches and no IMAGE was given");
    }
    let events = args.events.bus().await?;
    let bars = Bars::new(quiet);
    let mut reports = Vec::new();
    let mut first_error = None;
    for image in &wanted {
        match args.ensure(ctx, image, &bars, &events).await {
            Ok(pulled) => reports.push(Ensured::new(pulled, args.policy.unwrap_or_default())),
            Err(e) => {
                eprintln!("agent: {image}: {e:#}");
                first_error.get_or_insert(e);
            }
        }
    }
    events.close().await;
    if !quiet {
        match ctx.output {
            Format::Json => output::json(&reports)?,
            Format::Table => output::table(
                &["IMAGE", "SOURCE", "SIZE"],
                &reports
                    .iter()
                    .map(|r| {
                        vec![
                            r.image.clone(),
                            format!("{:?}", r.source),
                            output::size(r.size),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )?,
        }
    }
    match first_error {
        Some(e) => Err(e.context(format!(
            "{} of {} images could not be pre-cached",
            wanted.len() - reports.len(),
            wanted.len()
        ))),
        None => Ok(()),
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

/// `agent save IMAGE... -o FILE`.
pub fn save(ctx: &Context, images: &[String], out: &Path) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut entries = Vec::new();
    for image in images {
        entries.extend(crate::commands::local::find(&store, image, false)?);
    }
    let tmp = out.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = archive::save(&store, &entries, std::io::BufWriter::new(file));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.into());
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("Saved {} image(s) to {}", entries.len(), out.display());
    Ok(())
}

/// `agent load -i FILE`.
pub fn load(ctx: &Context, input: &Path) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let file =
        std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
    let names = archive::load(&store, std::io::BufReader::new(file))
        .with_context(|| format!("loading {}", input.display()))?;
    match ctx.output {
        Format::Json => output::json(&names),
        Format::Table => {
            for n in &names {
                println!("Loaded image: {n}");
            }
            Ok(())
        }
    }
}

/// What `agent run agent.yaml` runs: the image `agent build` names from the file
/// (`metadata.name:metadata.version`), with the file's pull policy unless `--pull` says
/// otherwise, its TCP ports published (on their `host` port, or the container's), and the
/// variables it leaves to the platform (`from:`) taken from this process's environment.
/// What the build baked into the image (its values, health check, volumes) the engine
/// applies itself. `-e` and `-p` win over the file.
pub fn agent_file_run(
    file: &Path,
    spec: &mut RunSpec,
    args: &mut NodeArgs,
) -> anyhow::Result<String> {
    let agent = super::agent::load(file, &Default::default())?;
    if args.policy.is_none() {
        args.policy = super::agent::pull_policy(&agent)?;
    }
    for port in &agent.spec.ports {
        if port.protocol != "tcp" {
            eprintln!(
                "warning: {}: port {}/{} is not published (agent run publishes TCP ports)",
                file.display(),
                port.container,
                port.protocol
            );
            continue;
        }
        if !spec.ports.iter().any(|(_, c)| *c == port.container) {
            spec.ports
                .push((port.host.unwrap_or(port.container), port.container));
        }
    }
    for var in agent.spec.environment.iter().filter(|v| v.value.is_none()) {
        let given = |e: &String| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == var.name;
        if spec.env.iter().any(given) {
            continue;
        }
        match std::env::var(&var.name) {
            Ok(value) => spec.env.push(format!("{}={value}", var.name)),
            Err(_) => anyhow::bail!(
                "{}: {} comes from {}: set it in this environment, or pass -e {}=VALUE",
                file.display(),
                var.name,
                var.from.as_deref().unwrap_or("the platform"),
                var.name
            ),
        }
    }
    Ok(format!(
        "{}:{}",
        agent.metadata.name,
        agent.metadata.version.as_deref().unwrap_or("latest")
    ))
}

/// `agent run`: the image ensured in an engine under the pull policy, then run there with
/// its output on ours; returns the container's exit code.
pub async fn run(
    ctx: &Context,
    image: &str,
    spec: &RunSpec,
    args: &NodeArgs,
) -> anyhow::Result<i64> {
    let image: ImageRef = image.parse()?;
    let target = args.target(ctx, &image)?;
    let kind = args.engine.engine.unwrap_or(EngineKind::Docker);
    let engine = Engine::connect(kind, args.engine.engine_socket.as_deref()).await?;
    let events = args.events.bus().await?;
    let ensured = args
        .ensure_on(ctx, &target, Some(&engine), &Bars::new(true), &events)
        .await;
    events.close().await;
    let pulled = ensured?;
    tracing::debug!(image = %pulled.name, "running");
    let code = engine
        .run(&target.image, spec, |bytes, to_stderr| {
            use std::io::Write as _;
            let _ = if to_stderr {
                std::io::stderr().write_all(bytes)
            } else {
                std::io::stdout().write_all(bytes)
            };
        })
        .await?;
    Ok(code)
}

/// `HOST:CONTAINER` as a port pair.
pub fn parse_port(s: &str) -> Result<(u16, u16), String> {
    let (host, container) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:CONTAINER"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{p:?} in {s:?} is not a port number"))
    };
    Ok((port(host)?, port(container)?))
}

/// `agent image df`: what the store (or an engine) holds and what a prune would free.
pub async fn disk_usage(ctx: &Context, engine: Option<&Engine>) -> anyhow::Result<()> {
    if let Some(engine) = engine {
        let usage = engine.disk_usage().await?;
        return match ctx.output {
            Format::Json => output::json(&usage),
            Format::Table => output::table(
                &["IMAGES", "ACTIVE", "SIZE", "RECLAIMABLE"],
                &[vec![
                    usage.images.to_string(),
                    usage.active.to_string(),
                    output::size(usage.size),
                    output::size(usage.reclaimable),
                ]],
            ),
        };
    }
    let usage = ctx.store()?.usage()?;
    match ctx.output {
        Format::Json => output::json(&usage),
        Format::Table => output::table(
            &["IMAGES", "DANGLING", "BLOBS", "PARTIAL", "RECLAIMABLE"],
            &[vec![
                usage.images.to_string(),
                usage.dangling.to_string(),
                output::size(usage.blobs),
                output::size(usage.partial),
                output::size(usage.reclaimable),
            ]],
        ),
    }
}
