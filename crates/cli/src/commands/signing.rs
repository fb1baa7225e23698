//! Image signatures in cosign's key-based format (`oci::signature`): `agent key generate`,
//! the signing step of `agent push --sign`, the check of `agent pull --verify-signature`,
//! and `agent registry image signatures`.

use std::path::{Path, PathBuf};

use agent_registry_client::{Client, ImageRef};
use agent_registry_images::{Descriptor, LocalStore};
use agent_registry_oci::signature::{
    self, ALGORITHM, KEY_ID, Layer, Payload, PublicKey, SIGNED_AT, SIGNER, SignatureManifest,
    SigningKey, Verdict,
};
use agent_registry_oci::{Algorithm, Digest};
use anyhow::Context as _;
use serde::Serialize;

use crate::Context;
use crate::commands::transfer::push_artifact;
use crate::output::{self, Format};
use crate::target::RegistryArgs;

/// Where keys live unless a flag says otherwise: `$AAC_HOME/agent.key` and `agent.pub`.
fn default_key(ctx: &Context, extension: &str) -> PathBuf {
    ctx.home.join("agent").with_extension(extension)
}

#[derive(Serialize)]
struct Generated {
    private_key: String,
    public_key: String,
    key_id: String,
}

/// `agent key generate`: a new ECDSA P-256 key pair, `PREFIX.key` (PKCS#8, readable by its
/// owner only) and `PREFIX.pub`.
pub fn generate(ctx: &Context, prefix: Option<&Path>, force: bool) -> anyhow::Result<()> {
    let prefix = prefix.map_or_else(|| ctx.home.join("agent"), Path::to_owned);
    let private = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    for path in [&private, &public] {
        if path.exists() && !force {
            anyhow::bail!(
                "{} exists: refusing to overwrite a key (--force replaces it)",
                path.display()
            );
        }
    }
    if let Some(dir) = private.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (key, pem) = SigningKey::generate();
    write_private(&private, &pem)?;
    std::fs::write(&public, key.public_key().to_pem())
        .with_context(|| format!("writing {}", public.display()))?;
    let generated = Generated {
        private_key: private.display().to_string(),
        public_key: public.display().to_string(),
        key_id: key.public_key().id(),
    };
    match ctx.output {
        Format::Json => output::json(&generated),
        Format::Table => output::fields(&[
            ("Private key", generated.private_key.clone()),
            ("Public key", generated.public_key.clone()),
            ("Key ID", generated.key_id.clone()),
            ("Algorithm", ALGORITHM.to_owned()),
        ]),
    }
}

fn write_private(path: &Path, pem: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The private key at `path` (default `$AAC_HOME/agent.key`).
pub fn signing_key(ctx: &Context, path: Option<&Path>) -> anyhow::Result<SigningKey> {
    let path = path.map_or_else(|| default_key(ctx, "key"), Path::to_owned);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "reading the signing key {} (make one with `agent key generate`)",
            path.display()
        )
    })?;
    SigningKey::from_pem(&text).with_context(|| format!("reading {}", path.display()))
}

/// The public keys in `paths` (default `$AAC_HOME/agent.pub`); `required` fails when none
/// is found, otherwise the default may be absent.
pub fn public_keys(
    ctx: &Context,
    paths: &[PathBuf],
    required: bool,
) -> anyhow::Result<Vec<PublicKey>> {
    let default = default_key(ctx, "pub");
    if paths.is_empty() && !required && !default.exists() {
        return Ok(Vec::new());
    }
    let paths = if paths.is_empty() {
        std::slice::from_ref(&default)
    } else {
        paths
    };
    let mut keys = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "reading the public key {} (give one with --key)",
                path.display()
            )
        })?;
        keys.extend(
            PublicKey::parse_pem(&text).with_context(|| format!("reading {}", path.display()))?,
        );
    }
    Ok(keys)
}

/// Signs the manifest `entry` just pushed to `image`: adds a signature to its `.sig`
/// manifest, which also names it as subject. Returns the signature manifest's digest.
pub async fn sign(
    client: &Client,
    store: &LocalStore,
    image: &ImageRef,
    entry: &Descriptor,
    key: &SigningKey,
    signer: &str,
) -> anyhow::Result<Digest> {
    let repo = image.api_repository();
    let signed_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let payload = Payload {
        reference: format!("{}/{}", image.registry(), repo),
        digest: entry.digest.clone(),
        annotations: [
            (SIGNER.to_owned(), signer.to_owned()),
            (SIGNED_AT.to_owned(), signed_at),
            (KEY_ID.to_owned(), key.public_key().id()),
        ]
        .into(),
    }
    .to_json();
    let layer = Layer {
        payload: Digest::of(Algorithm::Sha256, &payload),
        size: payload.len() as u64,
        signature: key.sign(&payload),
    };
    let mut layers = client.tagged_signatures(&repo, &entry.digest).await?;
    layers.push(layer);
    let m = SignatureManifest::new(&entry.media_type, &entry.digest, entry.size, &layers);
    let tag = signature::signature_tag(&entry.digest);
    push_artifact(client, store, &repo, &[m.config, payload], m.manifest, &tag).await
}

/// Fails unless a signature of `digest` verifies with one of `keys`; returns that key's id.
pub async fn verify(
    client: &Client,
    image: &ImageRef,
    digest: &Digest,
    keys: &[PublicKey],
) -> anyhow::Result<String> {
    let found = client.signatures(&image.api_repository(), digest).await?;
    if found.is_empty() {
        anyhow::bail!("{image} ({digest}) is not signed: refusing to pull it (--verify-signature)");
    }
    let mut reasons = Vec::new();
    for f in &found {
        match Verdict::of(&f.payload, &f.layer.signature, digest, keys).0 {
            Verdict::Valid(key) => return Ok(key),
            other => reasons.push(format!("{}: {}", f.layer.payload, other.describe())),
        }
    }
    anyhow::bail!(
        "no signature of {image} ({digest}) verifies with the trusted keys ({}): refusing to pull it\n  {}",
        keys.iter()
            .map(PublicKey::id)
            .collect::<Vec<_>>()
            .join(", "),
        reasons.join("\n  ")
    )
}

#[derive(Serialize)]
struct Listed {
    key_id: Option<String>,
    algorithm: &'static str,
    signer: Option<String>,
    signed_at: Option<String>,
    valid: bool,
    status: String,
    /// The signature manifest holding it.
    manifest: String,
}

/// `agent registry image signatures IMAGE`.
pub async fn list(
    ctx: &Context,
    image: &str,
    args: &RegistryArgs,
    key_paths: &[PathBuf],
) -> anyhow::Result<()> {
    let wanted: ImageRef = image.parse()?;
    let target = ctx.env().target(&wanted, args)?;
    let keys = public_keys(ctx, key_paths, false)?;
    let repo = target.image.api_repository();
    let digest = target
        .client
        .manifest(&repo, &target.image.manifest_reference())
        .await?
        .digest;
    let found = target.client.signatures(&repo, &digest).await?;
    let rows: Vec<Listed> = found
        .iter()
        .map(|f| {
            let (verdict, payload) = Verdict::of(&f.payload, &f.layer.signature, &digest, &keys);
            let claim = |key: &str| {
                payload
                    .as_ref()
                    .and_then(|p| p.annotations.get(key).cloned())
            };
            Listed {
                key_id: match &verdict {
                    Verdict::Valid(id) => Some(id.clone()),
                    _ => claim(KEY_ID),
                },
                algorithm: ALGORITHM,
                signer: claim(SIGNER),
                signed_at: claim(SIGNED_AT),
                valid: verdict.is_valid(),
                status: verdict.describe(),
                manifest: f.manifest.to_string(),
            }
        })
        .collect();
    match ctx.output {
        Format::Json => output::json(&serde_json::json!({
            "image": target.image.to_string(),
            "digest": digest.to_string(),
            "signatures": rows,
        })),
        Format::Table => {
            if rows.is_empty() {
                println!("{} ({digest}) has no signatures", target.image);
                return Ok(());
            }
            let dash = || "-".to_owned();
            output::table(
                &["KEY ID", "ALGORITHM", "SIGNER", "SIGNED", "STATUS"],
                &rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.key_id.clone().unwrap_or_else(dash),
                            r.algorithm.to_owned(),
                            r.signer.clone().unwrap_or_else(dash),
                            r.signed_at.clone().unwrap_or_else(dash),
                            r.status.clone(),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )
        }
    }
}
