//! Commands on the local store alone: `images`, `tag`, `rmi`, `image prune`, `inspect`.

use std::collections::BTreeMap;

use agent_registry_client::ImageRef;
use agent_registry_images::{
    ConfigSummary, Descriptor, EventKind, ImageEvent, LocalStore, Parts, Removed,
};
use agent_registry_oci::Digest;
use anyhow::{Context as _, bail};
use serde::Serialize;

use crate::Context;
use crate::commands::node::EventArgs;
use crate::output::{self, Format};

/// One stored image under one name, as the commands show it.
#[derive(Debug, Clone, Serialize)]
struct ImageView {
    repository: String,
    tag: String,
    name: Option<String>,
    /// The image ID: the config's digest (the manifest's, for an index).
    id: Digest,
    digest: Digest,
    media_type: String,
    created: Option<String>,
    size: u64,
    os: Option<String>,
    architecture: Option<String>,
    labels: BTreeMap<String, String>,
}

fn view(store: &LocalStore, entry: &Descriptor) -> anyhow::Result<ImageView> {
    let manifest = store.read_blob(&entry.digest)?;
    let parts = Parts::parse(&entry.digest.to_string(), &manifest)?;
    let id = parts.image_id(&entry.digest);
    let summary = match &parts {
        Parts::Image { config, .. } => store
            .read_blob(&config.digest)
            .map(|c| ConfigSummary::parse(&c))
            .unwrap_or_default(),
        Parts::Index { .. } => ConfigSummary::default(),
    };
    let (repository, tag) = match entry.name().and_then(|n| n.parse::<ImageRef>().ok()) {
        Some(r) => (
            r.familiar_repository(),
            r.tag.map_or("<none>".into(), |t| t.to_string()),
        ),
        None => ("<none>".into(), "<none>".into()),
    };
    Ok(ImageView {
        repository,
        tag,
        name: entry.name().map(str::to_owned),
        id,
        digest: entry.digest.clone(),
        media_type: entry.media_type.clone(),
        created: summary.created,
        size: entry.size + parts.content_size(),
        os: summary.os,
        architecture: summary.architecture,
        labels: summary.labels,
    })
}

/// The entries `image` names: by name (`agent:1.0`, as `agent images` prints it), by image ID
/// or manifest digest, or a unique prefix of either. `all_names` returns every name of an
/// image found by ID; otherwise one entry per image.
pub fn find(store: &LocalStore, image: &str, all_names: bool) -> anyhow::Result<Vec<Descriptor>> {
    let entries = store.entries()?;
    if let Ok(r) = image.parse::<ImageRef>() {
        let name = r.familiar();
        if let Some(e) = entries.iter().find(|e| e.name() == Some(name.as_str())) {
            return Ok(vec![e.clone()]);
        }
    }
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut found: Vec<Descriptor> = Vec::new();
        for e in &entries {
            let matches = e.digest.hex().starts_with(hex)
                || view(store, e).is_ok_and(|v| v.id.hex().starts_with(hex));
            if matches {
                found.push(e.clone());
            }
        }
        let images: std::collections::BTreeSet<_> = found.iter().map(|e| &e.digest).collect();
        if images.len() > 1 {
            bail!(
                "{image:?} matches {} images; give more of the ID",
                images.len()
            );
        }
        if !found.is_empty() {
            if !all_names {
                found.truncate(1);
            }
            return Ok(found);
        }
    }
    Err(agent_registry_images::Error::NotLocal(image.to_owned()).into())
}

/// The familiar repository of an image name (`localhost:5000/agent` for
/// `localhost:5000/agent:1.0`).
pub fn repository_of(image: &str) -> anyhow::Result<String> {
    Ok(image.parse::<ImageRef>()?.familiar_repository())
}

pub fn images(
    ctx: &Context,
    name: Option<String>,
    filters: &[String],
    all: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut views = Vec::new();
    for entry in store.entries()? {
        views.push(view(&store, &entry)?);
    }
    let mut filters: Vec<Filter> = filters
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<anyhow::Result<_>>()?;
    if let Some(n) = name {
        filters.push(Filter::Reference(n));
    }
    let wants_dangling = filters.iter().any(|f| matches!(f, Filter::Dangling(_)));
    let mut shown = Vec::new();
    for v in &views {
        if v.name.is_none() && !all && !wants_dangling {
            continue;
        }
        let mut keep = true;
        for f in &filters {
            keep &= f.matches(v, &store)?;
        }
        if keep {
            shown.push(v.clone());
        }
    }
    // Newest first, as docker lists them.
    shown.sort_by_key(|v| {
        std::cmp::Reverse(
            v.created
                .as_deref()
                .and_then(agent_registry_oci::catalogue::parse_rfc3339)
                .unwrap_or(0),
        )
    });
    if quiet {
        let mut seen = std::collections::BTreeSet::new();
        for v in &shown {
            if seen.insert(v.id.clone()) {
                println!("{}", output::short_id(&v.id));
            }
        }
        return Ok(());
    }
    match ctx.output {
        Format::Json => output::json(&shown),
        Format::Table => {
            let now = output::now();
            let rows: Vec<Vec<String>> = shown
                .iter()
                .map(|v| {
                    vec![
                        v.repository.clone(),
                        v.tag.clone(),
                        output::short_id(&v.id),
                        output::ago(v.created.as_deref(), now),
                        output::size(v.size),
                    ]
                })
                .collect();
            output::table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
        }
    }
}

/// One `--filter`.
enum Filter {
    Reference(String),
    Dangling(bool),
    Label(String, Option<String>),
    Before(String),
    Since(String),
}

impl Filter {
    fn parse(s: &str) -> anyhow::Result<Filter> {
        let Some((key, value)) = s.split_once('=') else {
            return Ok(Filter::Reference(s.to_owned()));
        };
        Ok(match key {
            "reference" => Filter::Reference(value.to_owned()),
            "dangling" => Filter::Dangling(match value {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("dangling= takes true or false, not {value:?}"),
            }),
            "label" => match value.split_once('=') {
                Some((k, v)) => Filter::Label(k.to_owned(), Some(v.to_owned())),
                None => Filter::Label(value.to_owned(), None),
            },
            "before" => Filter::Before(value.to_owned()),
            "since" => Filter::Since(value.to_owned()),
            other => bail!(
                "unknown filter {other:?}: use reference=, dangling=, label=, before= or since="
            ),
        })
    }

    fn matches(&self, v: &ImageView, store: &LocalStore) -> anyhow::Result<bool> {
        Ok(match self {
            Filter::Reference(pattern) => {
                let Some(name) = &v.name else {
                    return Ok(false);
                };
                let last = pattern.rsplit('/').next().unwrap_or(pattern);
                let subject = if last.contains(':') {
                    format!("{}:{}", v.repository, v.tag)
                } else {
                    v.repository.clone()
                };
                glob(pattern, &subject) || glob(pattern, name)
            }
            Filter::Dangling(d) => v.name.is_none() == *d,
            Filter::Label(k, want) => match (v.labels.get(k), want) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            },
            Filter::Before(other) | Filter::Since(other) => {
                let anchor = find(store, other, false)?
                    .first()
                    .map(|e| view(store, e))
                    .transpose()?
                    .and_then(|a| {
                        a.created
                            .as_deref()
                            .and_then(agent_registry_oci::catalogue::parse_rfc3339)
                    });
                let mine = v
                    .created
                    .as_deref()
                    .and_then(agent_registry_oci::catalogue::parse_rfc3339);
                match (mine, anchor) {
                    (Some(m), Some(a)) if matches!(self, Filter::Before(_)) => m < a,
                    (Some(m), Some(a)) => m > a,
                    _ => false,
                }
            }
        })
    }
}

/// `*` matches any run of characters but `/`; `?` one character but `/`.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some('?') => s.first().is_some_and(|&c| c != '/') && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(&p, &s)
}

#[derive(Serialize)]
struct Tagged {
    source: String,
    tags: Vec<String>,
}

pub fn tag(
    ctx: &Context,
    source: &str,
    target: Option<&str>,
    semver: Option<&str>,
    latest: bool,
    sha: Option<String>,
) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let entry = find(&store, source, false)?
        .into_iter()
        .next()
        .with_context(|| format!("no such image: {source}"))?;
    let descriptor = Descriptor {
        annotations: BTreeMap::new(),
        ..entry
    };
    let names: Vec<String> = match (target, semver) {
        (Some(t), None) => vec![t.parse::<ImageRef>()?.familiar()],
        (None, Some(version)) => {
            let base: ImageRef = source
                .parse()
                .with_context(|| format!("--semver needs IMAGE as a name, not {source:?}"))?;
            release_tags(version, latest, sha.as_deref())?
                .into_iter()
                .map(|t| {
                    let tag = t.parse().with_context(|| format!("tag {t:?}"))?;
                    Ok(base.with_tag(tag).familiar())
                })
                .collect::<anyhow::Result<_>>()?
        }
        (Some(_), Some(_)) => bail!("give either TARGET or --semver, not both"),
        (None, None) => bail!("give TARGET, or --semver VERSION to apply release tags"),
    };
    for name in &names {
        store.tag(name, descriptor.clone())?;
    }
    match ctx.output {
        Format::Json => output::json(&Tagged {
            source: source.to_owned(),
            tags: names,
        }),
        Format::Table => {
            for n in &names {
                println!("Tagged {n}");
            }
            Ok(())
        }
    }
}

/// The tags a release gets, as container platforms tag them: `1.2.3`, `1.2`, `1` (a
/// pre-release only its own), plus `latest` and `sha-<short>` when asked.
pub fn release_tags(version: &str, latest: bool, sha: Option<&str>) -> anyhow::Result<Vec<String>> {
    let v = semver::Version::parse(version.strip_prefix('v').unwrap_or(version))
        .with_context(|| format!("{version:?} is not a semantic version (MAJOR.MINOR.PATCH)"))?;
    let full = v.to_string().replace('+', "_");
    let mut tags = vec![full];
    if v.pre.is_empty() {
        tags.push(format!("{}.{}", v.major, v.minor));
        tags.push(v.major.to_string());
    }
    if latest {
        tags.push("latest".into());
    }
    if let Some(sha) = sha {
        if sha.len() < 4 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("--sha takes a short commit hash (hex digits), not {sha:?}");
        }
        tags.push(format!("sha-{}", sha.to_ascii_lowercase()));
    }
    Ok(tags)
}

#[derive(Serialize, Default)]
struct RemoveReport {
    untagged: Vec<String>,
    deleted: Vec<Digest>,
    reclaimed: u64,
    #[serde(skip)]
    removed_images: Vec<(Digest, Vec<String>)>,
}

pub async fn rmi(
    ctx: &Context,
    images: &[String],
    force: bool,
    events: &EventArgs,
) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut report = RemoveReport::default();
    for image in images {
        let by_name = image
            .parse::<ImageRef>()
            .ok()
            .map(|r| r.familiar())
            .filter(|n| {
                store
                    .entries()
                    .is_ok_and(|es| es.iter().any(|e| e.name() == Some(n)))
            });
        let removed = match by_name {
            Some(name) => store.remove(|e| e.name() == Some(name.as_str()))?,
            None => {
                let found = find(&store, image, true)?;
                let named = found.iter().filter(|e| e.name().is_some()).count();
                if named > 1 && !force {
                    bail!(
                        "image {image} has {named} names; remove them by name, or use --force to remove them all"
                    );
                }
                let digest = found[0].digest.clone();
                store.remove(|e| e.digest == digest)?
            }
        };
        report.add(removed);
    }
    report.announce(events).await?;
    print_removed(ctx, &report, false)
}

pub async fn prune(
    ctx: &Context,
    all: bool,
    events: &EventArgs,
    engine: Option<&agent_registry_images::Engine>,
) -> anyhow::Result<()> {
    let mut report = RemoveReport::default();
    match engine {
        Some(engine) => {
            let (removed, reclaimed) = engine.prune(all).await?;
            for image in removed {
                report.untagged.extend(image.names.iter().cloned());
                if let Ok(digest) = image.id.parse::<Digest>() {
                    report.deleted.push(digest.clone());
                    report.removed_images.push((digest, image.names));
                }
            }
            report.reclaimed = reclaimed;
        }
        None => report.add(ctx.store()?.remove(|e| all || e.name().is_none())?),
    }
    report.announce(events).await?;
    print_removed(ctx, &report, true)
}

impl RemoveReport {
    fn add(&mut self, removed: Removed) {
        self.untagged.extend(removed.untagged);
        for (digest, names) in removed.deleted {
            self.deleted.push(digest.clone());
            self.removed_images.push((digest, names));
        }
        self.reclaimed += removed.reclaimed;
    }

    /// One ImageRemoved event per deleted image, named by its first name (or its digest).
    async fn announce(&self, events: &EventArgs) -> anyhow::Result<()> {
        let bus = events.bus().await?;
        for (digest, names) in &self.removed_images {
            let image = names.first().cloned().unwrap_or_else(|| digest.to_string());
            let mut event = ImageEvent::new(EventKind::ImageRemoved, image);
            event.digest = Some(digest.clone());
            event.execution_id = events.execution_id.clone();
            bus.emit(event);
        }
        bus.close().await;
        Ok(())
    }
}

fn print_removed(ctx: &Context, r: &RemoveReport, totals: bool) -> anyhow::Result<()> {
    match ctx.output {
        Format::Json => output::json(r),
        Format::Table => {
            if totals && !r.deleted.is_empty() {
                println!("Deleted Images:");
            }
            for n in &r.untagged {
                println!("Untagged: {n}");
            }
            for d in &r.deleted {
                println!("Deleted: {d}");
            }
            if totals {
                println!("Total reclaimed space: {}", output::size(r.reclaimed));
            }
            Ok(())
        }
    }
}

pub fn inspect(ctx: &Context, images: &[String]) -> anyhow::Result<()> {
    let store = ctx.store()?;
    let mut out = Vec::new();
    for image in images {
        let entry = find(&store, image, false)?
            .into_iter()
            .next()
            .with_context(|| format!("no such image: {image}"))?;
        let v = view(&store, &entry)?;
        let manifest: serde_json::Value = serde_json::from_slice(&store.read_blob(&entry.digest)?)?;
        let config = if v.id != v.digest {
            serde_json::from_slice(&store.read_blob(&v.id)?).unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Null
        };
        let names: Vec<String> = store
            .entries()?
            .iter()
            .filter(|e| e.digest == entry.digest)
            .filter_map(|e| e.name().map(str::to_owned))
            .collect();
        let agent = agent_registry_oci::catalogue::AgentInfo::from_keys(
            &string_map(&manifest["annotations"]),
            &string_map(&config["config"]["Labels"]),
        );
        out.push(serde_json::json!({
            "Id": v.id,
            "Agent": agent,
            "Names": names,
            "Digest": v.digest,
            "MediaType": v.media_type,
            "Created": v.created,
            "Size": v.size,
            "Os": v.os,
            "Architecture": v.architecture,
            "Labels": v.labels,
            "Manifest": manifest,
            "Config": config,
        }));
    }
    output::json(&out)
}

/// A JSON object of strings (annotations, labels) as a map; anything else is empty.
pub(crate) fn string_map(v: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_tags_follow_semver() {
        assert_eq!(
            release_tags("v1.2.3", false, None).expect("tags"),
            ["1.2.3", "1.2", "1"]
        );
        assert_eq!(
            release_tags("1.2.3", true, Some("3F2A9C1")).expect("tags"),
            ["1.2.3", "1.2", "1", "latest", "sha-3f2a9c1"]
        );
        assert_eq!(
            release_tags("2.0.0-rc.1", false, None).expect("tags"),
            ["2.0.0-rc.1"]
        );
        assert!(release_tags("1.2", false, None).is_err());
        assert!(release_tags("1.2.3", false, Some("xyz")).is_err());
    }

    #[test]
    fn globs_stay_within_path_components() {
        assert!(glob("agent*", "agent-x"));
        assert!(glob("team/*", "team/a"));
        assert!(!glob("*", "team/a"));
        assert!(glob("*/*", "team/a"));
        assert!(glob("a:1.?", "a:1.2"));
        assert!(!glob("a", "ab"));
    }
}
