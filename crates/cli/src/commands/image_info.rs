//! `agent registry image info NAME:TAG`: what a registry holds for an image, read without
//! pulling it: digest, media type, platforms, layers, size, created, labels, agent metadata,
//! pull count (Agent Registry only), and what refers to it (signatures, SBOMs, scan reports).

use std::collections::BTreeMap;

use agent_registry_client::{Client, ImageRef};
use agent_registry_oci::catalogue::AgentInfo;
use agent_registry_oci::{Digest, media};
use serde::Serialize;
use serde_json::Value;

use super::local::string_map;
use crate::Context;
use crate::output::{self, Format};
use crate::target::RegistryArgs;

/// Largest image config read.
const CONFIG_MAX: usize = 4 << 20;

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Info {
    name: String,
    digest: String,
    media_type: String,
    /// For an index: every platform it lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    platforms: Vec<String>,
    /// For an index: the image described below (its first runnable one).
    #[serde(skip_serializing_if = "Option::is_none")]
    image_digest: Option<String>,
    layers: Vec<Layer>,
    /// Config and layers, compressed, as stored.
    size: u64,
    created: Option<String>,
    labels: BTreeMap<String, String>,
    agent: AgentInfo,
    /// Counted pulls; only an Agent Registry counts them.
    downloads: Option<u64>,
    signatures: Vec<Referrer>,
    /// Everything else that refers to the image, by artifact type.
    referrers: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Layer {
    digest: String,
    size: u64,
    media_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Referrer {
    digest: String,
    artifact_type: String,
}

pub async fn info(ctx: &Context, image: &str, args: &RegistryArgs) -> anyhow::Result<()> {
    let wanted: ImageRef = image.parse()?;
    let target = ctx.env().target(&wanted, args)?;
    let client = &target.client;
    let repo = target.image.api_repository();
    let top = client
        .manifest(&repo, &target.image.manifest_reference())
        .await?;
    let top_json: Value = serde_json::from_slice(&top.bytes)?;
    let is_index =
        [media::OCI_INDEX, media::DOCKER_MANIFEST_LIST].contains(&top.media_type.as_str());
    let (manifest, image_digest, platforms) = if is_index {
        let entries = top_json["manifests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let platforms: Vec<String> = entries.iter().filter_map(platform).collect();
        // Attestations sit in indexes as `unknown/unknown`; describe the first real image.
        let runnable = entries
            .iter()
            .find(|m| platform(m).is_some_and(|p| !p.starts_with("unknown")))
            .and_then(|m| m["digest"].as_str()?.parse::<Digest>().ok());
        match runnable {
            Some(digest) => {
                let fetched = client.manifest(&repo, &digest.to_string()).await?;
                (
                    serde_json::from_slice(&fetched.bytes)?,
                    Some(digest),
                    platforms,
                )
            }
            None => (top_json.clone(), None, platforms),
        }
    } else {
        (top_json.clone(), None, Vec::new())
    };
    let layers: Vec<Layer> = manifest["layers"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .map(|l| Layer {
                    digest: l["digest"].as_str().unwrap_or_default().to_owned(),
                    size: l["size"].as_u64().unwrap_or(0),
                    media_type: l["mediaType"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let config = read_config(client, &repo, &manifest["config"]).await?;
    let labels = string_map(&config["config"]["Labels"]);
    let mut annotations = string_map(&top_json["annotations"]);
    annotations.extend(string_map(&manifest["annotations"]));
    let mut signatures = Vec::new();
    let mut referrers = BTreeMap::new();
    for r in client
        .referrers(&repo, &top.digest)
        .await
        .unwrap_or_default()
    {
        let artifact_type = r["artifactType"].as_str().unwrap_or("unknown").to_owned();
        if artifact_type.contains("signature") || artifact_type.contains(".sig") {
            signatures.push(Referrer {
                digest: r["digest"].as_str().unwrap_or_default().to_owned(),
                artifact_type,
            });
        } else {
            *referrers.entry(artifact_type).or_insert(0) += 1;
        }
    }
    let info = Info {
        name: format!(
            "{}/{}",
            target.image.api_host(),
            target.image.api_repository()
        ) + &target
            .image
            .tag
            .as_ref()
            .map(|t| format!(":{t}"))
            .unwrap_or_default(),
        digest: top.digest.to_string(),
        media_type: top.media_type.clone(),
        platforms,
        image_digest: image_digest.map(|d| d.to_string()),
        size: manifest["config"]["size"].as_u64().unwrap_or(0)
            + layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        created: config["created"].as_str().map(str::to_owned),
        agent: AgentInfo::from_keys(&annotations, &labels),
        labels,
        // Other registries answer the catalogue API with 404.
        downloads: client.agent(&repo).await.ok().map(|a| a.downloads),
        signatures,
        referrers,
    };
    match ctx.output {
        Format::Json => output::json(&info),
        Format::Table => show(&info),
    }
}

async fn read_config(client: &Client, repo: &str, descriptor: &Value) -> anyhow::Result<Value> {
    let digest = descriptor["digest"]
        .as_str()
        .and_then(|d| d.parse::<Digest>().ok());
    let small = descriptor["size"]
        .as_u64()
        .is_some_and(|s| s <= CONFIG_MAX as u64);
    match digest {
        Some(digest) if small => {
            let bytes = client.small_blob(repo, &digest, CONFIG_MAX).await?;
            // An artifact's config need not be JSON.
            Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
        }
        _ => Ok(Value::Null),
    }
}

fn platform(entry: &Value) -> Option<String> {
    let p = &entry["platform"];
    let mut name = format!("{}/{}", p["os"].as_str()?, p["architecture"].as_str()?);
    if let Some(variant) = p["variant"].as_str() {
        name = format!("{name}/{variant}");
    }
    Some(name)
}

fn show(info: &Info) -> anyhow::Result<()> {
    let none = || "-".to_owned();
    let mut fields = vec![
        ("Name", info.name.clone()),
        ("Digest", info.digest.clone()),
        ("Media type", info.media_type.clone()),
    ];
    if !info.platforms.is_empty() {
        fields.push(("Platforms", info.platforms.join(", ")));
    }
    if let Some(d) = &info.image_digest {
        fields.push(("Image digest", d.clone()));
    }
    fields.extend([
        ("Size", output::size(info.size)),
        ("Layers", info.layers.len().to_string()),
        ("Created", info.created.clone().unwrap_or_else(none)),
        (
            "Agent",
            match (&info.agent.title, &info.agent.version) {
                (Some(n), Some(v)) => format!("{n} {v}"),
                (Some(n), None) => n.clone(),
                _ => none(),
            },
        ),
        (
            "Description",
            info.agent.description.clone().unwrap_or_else(none),
        ),
        (
            "Capabilities",
            match info.agent.capabilities.is_empty() {
                true => none(),
                false => info.agent.capabilities.join(", "),
            },
        ),
        (
            "Downloads",
            info.downloads.map_or_else(none, |d| d.to_string()),
        ),
        (
            "Signatures",
            match info.signatures.len() {
                0 => "none".to_owned(),
                n => format!("{n} ({})", info.signatures[0].artifact_type),
            },
        ),
        (
            "Referrers",
            match info.referrers.is_empty() {
                true => "none".to_owned(),
                false => info
                    .referrers
                    .iter()
                    .map(|(t, n)| format!("{n} {t}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        ),
    ]);
    for (k, v) in &info.labels {
        fields.push(("Label", format!("{k}={v}")));
    }
    output::fields(&fields)
}
