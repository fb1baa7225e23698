//! Agents as content: `agent init`, `agent build` (daemonless, on a base image resolved from
//! the runtime table), and the catalogue: `agent search`, `agent versions`, `agent rate`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agent_registry_agent::build::BuildOptions;
use agent_registry_agent::spec::Runtime;
use agent_registry_agent::{AgentFile, init as init_project};
use agent_registry_client::ImageRef;
use agent_registry_images::{
    AgentRuntime, Backend, Ensure, EventBus, PullPolicy, RuntimeRegistry, TransferOptions,
    ensure as ensure_image,
};
use agent_registry_oci::catalogue::{SearchQuery, SortKey, parse_size};
use anyhow::Context as _;

use crate::Context;
use crate::output::{self, Format};
use crate::progress::Bars;
use crate::target::RegistryArgs;

pub fn init(dir: &Path, name: Option<&str>, runtime: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = match name {
        Some(n) => n.to_owned(),
        None => dir
            .canonicalize()?
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .context("name the agent: agent init NAME")?,
    };
    let written = init_project::init(dir, &name, runtime)?;
    for f in &written {
        println!("created {}", f.display());
    }
    println!(
        "\nNext: edit agent.yaml, then\n  agent build -t {name}:0.1.0 {}",
        dir.display()
    );
    Ok(())
}

/// `agent build`'s flags.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The agent's directory (holding agent.yaml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Name and tag for the image (default: metadata.name:metadata.version).
    #[arg(long, short = 't', value_name = "NAME[:TAG]")]
    pub tag: Option<String>,
    /// The agent file, if not DIR/agent.yaml.
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Platform of the base image to build on.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Replace ${KEY} in agent.yaml with VALUE (repeatable).
    #[arg(long = "build-arg", value_name = "KEY=VALUE", value_parser = key_value)]
    pub build_args: Vec<(String, String)>,
    /// Add a label to the image (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
    /// Push the image (and agent.yaml, as an artifact referring to it) when built.
    #[arg(long)]
    pub push: bool,
    /// Pull policy for the base image: always, missing or never (default: agent.yaml's
    /// image_pull_policy, else missing).
    #[arg(long = "pull", value_name = "POLICY")]
    pub policy: Option<PullPolicy>,
    /// A runtime table to use instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub runtime_registry: Option<PathBuf>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// No progress; print only the image digest.
    #[arg(long, short)]
    pub quiet: bool,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Reads and validates an agent file.
pub fn load(file: &Path, build_args: &BTreeMap<String, String>) -> anyhow::Result<AgentFile> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading {} (agent init writes one)", file.display()))?;
    Ok(AgentFile::parse(
        &file.display().to_string(),
        &text,
        build_args,
    )?)
}

/// The image an agent runs on, through `table`: its language (at its version, or the
/// table's newest supported one) or its custom image. Warns when the version is deprecated.
pub fn runtime_image(
    agent: &AgentFile,
    file: &Path,
    table: &RuntimeRegistry,
) -> anyhow::Result<ImageRef> {
    let runtime = match &agent.spec.runtime {
        Some(Runtime::Language { language, version }) => AgentRuntime::Standard {
            language: language.clone(),
            version: match version {
                Some(v) => v.clone(),
                None => table.default_version(language)?,
            },
        },
        Some(Runtime::Image(image)) => AgentRuntime::Custom {
            image: image.clone(),
        },
        None => anyhow::bail!("{}: spec.runtime is required", file.display()),
    };
    let resolved = table.resolve(&runtime)?;
    if let Some(warning) = &resolved.deprecated {
        eprintln!("warning: {warning}");
    }
    Ok(resolved.image)
}

/// The pull policy agent.yaml asks for, if any.
pub fn pull_policy(agent: &AgentFile) -> anyhow::Result<Option<PullPolicy>> {
    agent
        .spec
        .image_pull_policy
        .as_deref()
        .map(|p| p.parse().map_err(anyhow::Error::msg))
        .transpose()
}

pub async fn build(ctx: &Context, args: &BuildArgs) -> anyhow::Result<()> {
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| args.dir.join("agent.yaml"));
    let build_args: BTreeMap<String, String> = args.build_args.iter().cloned().collect();
    let agent = load(&file, &build_args)?;
    let name = match &args.tag {
        Some(t) => t.clone(),
        None => format!(
            "{}:{}",
            agent.metadata.name,
            agent.metadata.version.as_deref().unwrap_or("latest")
        ),
    };
    let name = name
        .parse::<ImageRef>()
        .with_context(|| format!("-t {name}"))?
        .familiar();
    let table = match &args.runtime_registry {
        Some(p) => RuntimeRegistry::load(p)?,
        None => RuntimeRegistry::embedded(),
    };
    let base_image = runtime_image(&agent, &file, &table)?;
    let policy = match args.policy {
        Some(p) => p,
        None => pull_policy(&agent)?.unwrap_or_default(),
    };

    // The base image comes from its own registry, with its own credentials.
    let base_target = ctx.env().target(&base_image, &RegistryArgs::default())?;
    let store = ctx.store()?;
    let bars = Bars::new(args.quiet);
    let options = TransferOptions {
        platform: args
            .platform
            .clone()
            .unwrap_or_else(agent_registry_images::host_platform),
        ..TransferOptions::default()
    };
    let base = ensure_image(
        &Backend::Store {
            client: &base_target.client,
            store: &store,
            options: &options,
            progress: &bars,
        },
        &Ensure {
            image: &base_target.image,
            policy,
            execution_id: None,
            timeout: None,
        },
        &EventBus::new(),
    )
    .await
    .with_context(|| format!("getting the base image {}", base_target.image))?;

    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .map(|v| {
            v.parse::<i64>()
                .context("SOURCE_DATE_EPOCH must be seconds since 1970")
        })
        .transpose()?;
    let built = agent_registry_agent::build(
        &store,
        &args.dir,
        &agent,
        &BuildOptions {
            name: name.clone(),
            base_name: base.name.clone(),
            base_digest: base.digest.clone(),
            labels: args.labels.iter().cloned().collect(),
            created,
        },
    )?;
    if args.push {
        super::transfer::push(
            ctx,
            &name,
            &args.registry,
            false,
            args.quiet,
            super::transfer::PushExtras::default(),
        )
        .await?;
        return Ok(());
    }
    if args.quiet {
        println!("{}", built.digest);
        return Ok(());
    }
    match ctx.output {
        Format::Json => output::json(&built),
        Format::Table => output::fields(&[
            ("Image", built.name.clone()),
            ("Digest", built.digest.to_string()),
            ("ID", output::short_id(&built.id)),
            ("Base", base.name.clone()),
            ("Files", built.files.to_string()),
            ("Size", output::size(built.size)),
            ("Created", built.created.clone()),
        ]),
    }
}

/// `agent search`'s flags.
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// Words, a (partial) name, or NAME:TAG.
    pub term: Option<String>,
    #[arg(long)]
    pub capability: Option<String>,
    #[arg(long)]
    pub author: Option<String>,
    /// Created since a date (2024-01-31) or within a duration (24h, 7d).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Size bounds: <100MB, >1GB or 10MB..1GB.
    #[arg(long, value_name = "RANGE", allow_hyphen_values = true)]
    pub size: Option<String>,
    #[arg(long, value_enum, default_value = "relevance")]
    pub sort: SortArg,
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    #[arg(long, default_value_t = 10)]
    pub per_page: u32,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SortArg {
    Relevance,
    Downloads,
    Rating,
    Created,
    Name,
}

impl From<SortArg> for SortKey {
    fn from(s: SortArg) -> SortKey {
        match s {
            SortArg::Relevance => SortKey::Relevance,
            SortArg::Downloads => SortKey::Downloads,
            SortArg::Rating => SortKey::Rating,
            SortArg::Created => SortKey::Created,
            SortArg::Name => SortKey::Name,
        }
    }
}

pub async fn search(ctx: &Context, args: &SearchArgs) -> anyhow::Result<()> {
    let (q, tag) = match args.term.as_deref() {
        Some(term) => match term.rsplit_once(':') {
            Some((name, tag))
                if !tag.contains('/') && tag.parse::<agent_registry_oci::Tag>().is_ok() =>
            {
                (Some(name.to_owned()), Some(tag.to_owned()))
            }
            _ => (Some(term.to_owned()), None),
        },
        None => (None, None),
    };
    let (size_min, size_max) = match args.size.as_deref() {
        Some(range) => size_range(range)?,
        None => (None, None),
    };
    let query = SearchQuery {
        q,
        tag,
        capability: args.capability.clone(),
        author: args.author.clone(),
        created_after: args.since.as_deref().map(since).transpose()?,
        size_min,
        size_max,
        sort: Some(args.sort.into()),
        page: Some(args.page),
        per_page: Some(args.per_page),
        ..SearchQuery::default()
    };
    let client = ctx.env().catalogue(&args.registry)?;
    let found = client.search(&query).await?;
    if ctx.output == Format::Json {
        return output::json(&found);
    }
    let now = output::now();
    let rows: Vec<Vec<String>> = found
        .images
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.tag.clone(),
                shorten(h.description.as_deref().unwrap_or(""), 40),
                h.author.clone().unwrap_or_default(),
                h.capabilities.join(","),
                h.size.clone(),
                output::ago(Some(&h.created), now),
                h.downloads.to_string(),
                h.rating
                    .map_or("-".into(), |r| format!("{r:.1} ({})", h.rating_count)),
            ]
        })
        .collect();
    output::table(
        &[
            "NAME",
            "TAG",
            "DESCRIPTION",
            "AUTHOR",
            "CAPABILITIES",
            "SIZE",
            "CREATED",
            "DOWNLOADS",
            "RATING",
        ],
        &rows,
    )?;
    eprintln!(
        "{} of {} (page {}; --page for more)",
        found.images.len(),
        found.total,
        found.page
    );
    Ok(())
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        format!("{}...", s.chars().take(max - 3).collect::<String>())
    }
}

/// `<100MB`, `>1GB`, `10MB..1GB`, as (min, max) for the search API.
fn size_range(range: &str) -> anyhow::Result<(Option<String>, Option<String>)> {
    let check = |s: &str| -> anyhow::Result<String> {
        parse_size(s)
            .map(|_| s.trim().to_owned())
            .with_context(|| format!("--size: {s:?} is not a size like 100MB or 1.5GiB"))
    };
    if let Some(max) = range.strip_prefix('<') {
        Ok((None, Some(check(max)?)))
    } else if let Some(min) = range.strip_prefix('>') {
        Ok((Some(check(min)?), None))
    } else if let Some((min, max)) = range.split_once("..") {
        Ok((Some(check(min)?), Some(check(max)?)))
    } else {
        anyhow::bail!("--size takes <MAX, >MIN or MIN..MAX (for example <100MB), not {range:?}")
    }
}

/// `--since`: a date or time for the API, from a date or a duration back from now.
fn since(when: &str) -> anyhow::Result<String> {
    let unit = when.chars().last().unwrap_or(' ');
    let number = &when[..when.len().saturating_sub(1)];
    let seconds = match (unit, number.parse::<i64>()) {
        ('m', Ok(n)) => Some(n * 60),
        ('h', Ok(n)) => Some(n * 3600),
        ('d', Ok(n)) => Some(n * 86_400),
        ('w', Ok(n)) => Some(n * 7 * 86_400),
        _ => None,
    };
    match seconds {
        Some(s) => Ok(agent_registry_oci::catalogue::format_rfc3339(
            output::now() - s,
        )),
        None => Ok(when.to_owned()),
    }
}

pub async fn versions(ctx: &Context, name: &str, registry: &RegistryArgs) -> anyhow::Result<()> {
    let client = ctx.env().catalogue(registry)?;
    let agent = client.agent(name).await?;
    if ctx.output == Format::Json {
        return output::json(&agent);
    }
    let now = output::now();
    let rows: Vec<Vec<String>> = agent
        .versions
        .iter()
        .map(|v| {
            let kind = match (
                v.semver,
                v.prerelease,
                agent.latest_release.as_deref() == Some(v.tag.as_str()),
            ) {
                (_, _, true) => "latest release",
                (true, true, _) => "pre-release",
                (true, false, _) => "release",
                (false, _, _) => "",
            };
            vec![
                v.tag.clone(),
                kind.to_owned(),
                v.digest
                    .split(':')
                    .nth(1)
                    .unwrap_or(&v.digest)
                    .chars()
                    .take(12)
                    .collect(),
                output::size(v.size_bytes),
                output::ago(Some(&v.pushed_at), now),
                v.pushed_by.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["TAG", "", "DIGEST", "SIZE", "PUSHED", "BY"], &rows)?;
    eprintln!(
        "{}: {} downloads, rating {}",
        agent.name,
        agent.downloads,
        agent.rating.map_or("none yet".into(), |r| format!(
            "{r:.1} from {}",
            agent.rating_count
        ))
    );
    Ok(())
}

pub async fn rate(
    ctx: &Context,
    name: &str,
    stars: u8,
    registry: &RegistryArgs,
) -> anyhow::Result<()> {
    if !(1..=5).contains(&stars) {
        anyhow::bail!("STARS is 1 to 5, not {stars}");
    }
    let client = ctx.env().catalogue(registry)?;
    let summary = client.rate(name, stars).await?;
    match ctx.output {
        Format::Json => output::json(&summary),
        Format::Table => {
            println!(
                "{name}: {} from {} rating{}",
                summary.rating.map_or("-".into(), |r| format!("{r:.1}")),
                summary.rating_count,
                if summary.rating_count == 1 { "" } else { "s" }
            );
            Ok(())
        }
    }
}
