//! `agent push` and `agent pull` (into the local store, or with `--engine` into an engine).

use agent_registry_client::ImageRef;
use agent_registry_images::{
    Descriptor, Engine, LocalStore, TransferOptions, pull as pull_image, push as push_image,
};
use serde::Serialize;

use crate::Context;
use crate::commands::local::{find, repository_of};
use crate::output::{self, Format};
use crate::progress::Bars;
use crate::target::RegistryArgs;

#[derive(Serialize)]
struct PushReport {
    repository: String,
    tag: Option<String>,
    digest: String,
    size: u64,
    registry_url: String,
    uploaded: usize,
    existed: usize,
    mounted: usize,
    /// The agent.yaml artifact pushed with the image (images `agent build` made).
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_yaml: Option<String>,
    /// Set after the push when `--visibility` asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    visibility: Option<String>,
    /// With `--sign`: the signature manifest (under the `sha256-<hex>.sig` tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
    /// With `--security-scan`: the registry's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    scan: Option<serde_json::Value>,
}

/// What `agent push` does after the upload.
#[derive(Default)]
pub struct PushExtras<'a> {
    /// Make the repository public or private.
    pub visibility: Option<&'a str>,
    /// Sign, with this key (`None`: the default key).
    pub sign: Option<Option<&'a std::path::Path>>,
    /// Have the registry scan the image.
    pub security_scan: bool,
}

pub async fn push(
    ctx: &Context,
    image: &str,
    args: &RegistryArgs,
    all_tags: bool,
    quiet: bool,
    extras: PushExtras<'_>,
) -> anyhow::Result<()> {
    let PushExtras {
        visibility,
        sign,
        security_scan,
    } = extras;
    // Read the key first: a push that cannot be signed should not happen at all.
    let key = sign
        .map(|path| super::signing::signing_key(ctx, path))
        .transpose()?;
    let store = ctx.store()?;
    let entries = if all_tags {
        let repo = repository_of(image)?;
        let all: Vec<_> = store
            .entries()?
            .into_iter()
            .filter(|e| {
                e.name()
                    .is_some_and(|n| repository_of(n).ok().as_deref() == Some(&repo))
            })
            .collect();
        if all.is_empty() {
            anyhow::bail!("no tags of {repo} in the local store (see `agent images`)");
        }
        all
    } else {
        find(&store, image, false)?
    };
    let bars = Bars::new(quiet);
    let env = ctx.env();
    let mut reports = Vec::new();
    for entry in entries {
        let name = entry.name().map_or(image.to_owned(), str::to_owned);
        let local: ImageRef = name.parse()?;
        let target = env.target(&local, args)?;
        let mount_from = mount_source(&store, &entry, &target.image)?;
        let pushed = push_image(
            &target.client,
            &store,
            &entry,
            &target.image,
            mount_from.as_deref(),
            &TransferOptions::default(),
            &bars,
        )
        .await?;
        let agent_yaml = attach_agent_yaml(&target.client, &store, &target.image, &entry).await?;
        let signature = match &key {
            Some(key) => {
                let signer = signer(&target.credential);
                Some(
                    super::signing::sign(
                        &target.client,
                        &store,
                        &target.image,
                        &entry,
                        key,
                        &signer,
                    )
                    .await?
                    .to_string(),
                )
            }
            None => None,
        };
        let visibility = match visibility {
            Some(v) => Some(
                target
                    .client
                    .set_visibility(&target.image.api_repository(), v)
                    .await?
                    .visibility,
            ),
            None => None,
        };
        let scan = if security_scan {
            let reference = entry.digest.to_string();
            Some(
                target
                    .client
                    .scan(&target.image.api_repository(), &reference)
                    .await?,
            )
        } else {
            None
        };
        reports.push(PushReport {
            repository: target.image.familiar_repository(),
            tag: target.image.tag_or_latest().map(|t| t.to_string()),
            digest: pushed.digest.to_string(),
            size: pushed.size,
            registry_url: target.url.clone(),
            uploaded: pushed.uploaded,
            existed: pushed.existed,
            mounted: pushed.mounted,
            agent_yaml: agent_yaml.map(|d| d.to_string()),
            visibility,
            signature,
            scan,
        });
    }
    if quiet {
        for r in &reports {
            println!("{}", r.digest);
        }
        return Ok(());
    }
    match ctx.output {
        Format::Json if all_tags => output::json(&reports),
        Format::Json => output::json(&reports[0]),
        Format::Table => {
            for (i, r) in reports.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let mut fields = vec![
                    ("Repository", r.repository.clone()),
                    ("Tag", r.tag.clone().unwrap_or_else(|| "<none>".into())),
                    ("Digest", r.digest.clone()),
                    ("Size", output::size(r.size)),
                    ("Registry URL", r.registry_url.clone()),
                ];
                if let Some(d) = &r.agent_yaml {
                    fields.push(("Agent file", d.clone()));
                }
                if let Some(v) = &r.visibility {
                    fields.push(("Visibility", v.clone()));
                }
                if let Some(s) = &r.signature {
                    fields.push(("Signature", s.clone()));
                }
                if let Some(report) = &r.scan {
                    fields.push(("Vulnerabilities", super::scanning::summary(report)));
                }
                output::fields(&fields)?;
            }
            Ok(())
        }
    }
}

/// Pushes the `agent.yaml` of an image `agent build` made as an artifact whose subject is the
/// image, so the registry's referrers API finds it. Other images have none: `None`.
async fn attach_agent_yaml(
    client: &agent_registry_client::Client,
    store: &LocalStore,
    image: &ImageRef,
    entry: &Descriptor,
) -> anyhow::Result<Option<agent_registry_oci::Digest>> {
    use agent_registry_agent::build::{agent_yaml_artifact, agent_yaml_of};
    let Some(yaml) = agent_yaml_of(store, &entry.digest) else {
        return Ok(None);
    };
    let (blobs, manifest) = agent_yaml_artifact(&yaml, &entry.digest, entry.size);
    let digest = agent_registry_oci::Digest::of(agent_registry_oci::Algorithm::Sha256, &manifest);
    let reference = digest.to_string();
    push_artifact(
        client,
        store,
        &image.api_repository(),
        &blobs,
        manifest,
        &reference,
    )
    .await?;
    Ok(Some(digest))
}

/// Pushes an artifact's `blobs` (staged through the local store) and then its OCI `manifest`
/// under `reference` (a tag, or its digest).
pub async fn push_artifact(
    client: &agent_registry_client::Client,
    store: &LocalStore,
    repo: &str,
    blobs: &[Vec<u8>],
    manifest: Vec<u8>,
    reference: &str,
) -> anyhow::Result<agent_registry_oci::Digest> {
    for blob in blobs {
        let digest = store.write_blob(blob)?;
        client
            .push_blob(
                repo,
                &digest,
                blob.len() as u64,
                &store.blob_path(&digest),
                None,
                std::sync::Arc::new(agent_registry_client::NoProgress),
            )
            .await?;
    }
    Ok(client
        .put_manifest(
            repo,
            reference,
            manifest.into(),
            agent_registry_oci::media::OCI_MANIFEST,
        )
        .await?)
}

/// Who a signature says signed: the registry account pushing, else the local user.
fn signer(credential: &agent_registry_client::Credential) -> String {
    use agent_registry_client::Credential;
    match credential {
        Credential::Basic { username, .. }
        | Credential::OAuth2 {
            username: Some(username),
            ..
        } => username.clone(),
        _ => std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
    }
}

/// Another repository on the target's registry that the local store says holds this image,
/// to mount its blobs from instead of uploading them.
fn mount_source(
    store: &LocalStore,
    entry: &Descriptor,
    target: &ImageRef,
) -> anyhow::Result<Option<String>> {
    let repo = target.api_repository();
    Ok(store
        .entries()?
        .iter()
        .filter(|e| e.digest == entry.digest)
        .filter_map(|e| e.name()?.parse::<ImageRef>().ok())
        .filter(|r| r.api_host() == target.api_host())
        .map(|r| r.api_repository())
        .find(|r| *r != repo))
}

#[derive(Serialize)]
struct PullReport {
    name: String,
    image_id: String,
    size: u64,
    digest: String,
    registry_url: String,
    source: agent_registry_images::PullSource,
    /// With `--verify-signature`: the id of the key whose signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified_by: Option<String>,
}

/// How `agent pull` pulls.
pub struct Pull {
    pub platform: Option<String>,
    pub quiet: bool,
    /// With `--verify-signature`: the keys a signature must verify with.
    pub trusted: Option<Vec<agent_registry_oci::signature::PublicKey>>,
}

pub async fn pull(
    ctx: &Context,
    image: &str,
    args: &RegistryArgs,
    how: Pull,
    engine: Option<&Engine>,
) -> anyhow::Result<()> {
    let wanted: ImageRef = image.parse()?;
    let target = ctx.env().target(&wanted, args)?;
    let quiet = how.quiet;
    let mut verified_by = None;
    let pulled = match engine {
        Some(engine) => engine.pull(&target.image, &target.credential).await?,
        None => {
            let store = ctx.store()?;
            let bars = Bars::new(quiet);
            let mut options = TransferOptions::default();
            if let Some(p) = how.platform {
                options.platform = p;
            }
            if let Some(keys) = &how.trusted {
                // Check the digest the reference names now, then pull exactly that one.
                let repo = target.image.api_repository();
                let reference = target.image.manifest_reference();
                let digest = target
                    .client
                    .manifest_digest(&repo, &reference)
                    .await?
                    .ok_or_else(|| agent_registry_client::Error::NotFound {
                        registry: target.client.host().to_owned(),
                        what: format!("manifest {repo}:{reference}"),
                    })?;
                let key =
                    super::signing::verify(&target.client, &target.image, &digest, keys).await?;
                verified_by = Some(key);
                options.manifest = Some(digest);
            }
            pull_image(&target.client, &target.image, &store, &options, &bars).await?
        }
    };
    let report = PullReport {
        name: pulled.name,
        image_id: pulled.id.to_string(),
        size: pulled.size,
        digest: pulled.digest.to_string(),
        registry_url: target.url,
        source: pulled.source,
        verified_by,
    };
    if quiet {
        println!("{}", report.name);
        return Ok(());
    }
    match ctx.output {
        Format::Json => output::json(&report),
        Format::Table => {
            let mut fields = vec![
                ("Name", report.name.clone()),
                ("Image ID", report.image_id.clone()),
                ("Size", output::size(report.size)),
                ("Digest", report.digest.clone()),
                ("Registry URL", report.registry_url.clone()),
            ];
            if let Some(key) = &report.verified_by {
                fields.push(("Signed by key", key.clone()));
            }
            output::fields(&fields)
        }
    }
}
