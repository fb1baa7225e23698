//! Image signatures in cosign's key-based format, so that `cosign verify --key` accepts what
//! `agent push --sign` makes and `agent pull --verify-signature` accepts what
//! `cosign sign --key` makes.
//!
//! The format, as cosign 1.x and 2.x write it without a transparency log:
//!
//! - **Payload** ("simple signing"): the JSON
//!   `{"critical":{"identity":{"docker-reference":REPO},"image":{"docker-manifest-digest":DIGEST},"type":"cosign container image signature"},"optional":{..}|null}`.
//!   Only the digest is checked on verification, as cosign does; `optional` carries
//!   annotations (ours: the signer, the time and the key id), covered by the signature.
//! - **Signature**: ECDSA P-256 over the SHA-256 of the payload's bytes, ASN.1 DER, in
//!   standard base64.
//! - **Storage**: the payload is a blob of type [`SIMPLE_SIGNING`]; each signature is a layer
//!   of an OCI image manifest carrying it in the [`SIGNATURE_ANNOTATION`] annotation. The
//!   manifest is tagged `sha256-<hex>.sig` in the image's repository ([`signature_tag`], how
//!   clients that predate the referrers API find it) and names the image as its `subject`
//!   with artifact type [`ARTIFACT_TYPE`] (how the referrers API finds it). More signatures
//!   of one image are more layers of that manifest.
//! - **Keys**: public keys are PEM `PUBLIC KEY` blocks (SubjectPublicKeyInfo, as in
//!   `cosign.pub`); private keys are PEM `PRIVATE KEY` blocks (unencrypted PKCS#8, what
//!   `agent key generate` writes and `openssl genpkey` makes, and what `cosign import-key-pair`
//!   reads). A key's id is the first 16 hex digits of the SHA-256 of its SubjectPublicKeyInfo.
//!
//! Nothing here does I/O: finding and fetching signatures is the client's and the registry's.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self as ecdsa, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::{Algorithm, Digest, media};

/// The media type of a signature's payload blob.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding a signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The artifact type of a signature manifest, as the referrers API lists it.
pub const ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The payload's `critical.type`.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The one algorithm signed and accepted.
pub const ALGORITHM: &str = "ecdsa-p256-sha256";
/// Payload annotations this project writes into `optional`.
pub const SIGNER: &str = "dev.agent-registry.signer";
pub const SIGNED_AT: &str = "dev.agent-registry.signed-at";
pub const KEY_ID: &str = "dev.agent-registry.key-id";
/// Payloads larger than this are not signatures (cosign's are a few hundred bytes).
pub const PAYLOAD_MAX: usize = 64 * 1024;

/// The SubjectPublicKeyInfo of a P-256 key, up to its uncompressed point: SEQUENCE {
/// SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04 || X || Y }.
const SPKI_P256_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const POINT_LEN: usize = 65;

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM block found ({0})")]
    NotPem(String),
    #[error(
        "this is a {0:?} PEM block; a {1} is needed{hint}",
        hint = key_hint(.0)
    )]
    WrongKind(String, &'static str),
    #[error("not an ECDSA P-256 key (only ecdsa-p256-sha256 signatures are made and checked)")]
    NotP256,
    #[error("the private key is not valid PKCS#8 for ECDSA P-256: {0}")]
    BadPrivateKey(String),
}

fn key_hint(tag: &str) -> &'static str {
    match tag {
        "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
            " (cosign's encrypted key files are not read; make a key with `agent key generate`, \
             or give an unencrypted PKCS#8 key, e.g. from `openssl genpkey -algorithm EC \
             -pkeyopt ec_paramgen_curve:P-256`)"
        }
        "EC PRIVATE KEY" => " (convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY`)",
        "PRIVATE KEY" => " (this is a private key: give the .pub file)",
        "PUBLIC KEY" => " (this is a public key: signing needs the private .key file)",
        _ => "",
    }
}

/// A public key that verifies signatures.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    /// The uncompressed point, 65 bytes.
    point: Vec<u8>,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl PublicKey {
    /// Every `PUBLIC KEY` block in `text` (a file may hold several); at least one.
    pub fn parse_pem(text: &str) -> Result<Vec<PublicKey>, KeyError> {
        let blocks = pem::parse_many(text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        if blocks.is_empty() {
            return Err(KeyError::NotPem("the text has no BEGIN line".into()));
        }
        blocks
            .iter()
            .map(|block| {
                if block.tag() != "PUBLIC KEY" {
                    return Err(KeyError::WrongKind(block.tag().to_owned(), "PUBLIC KEY"));
                }
                Self::from_spki(block.contents())
            })
            .collect()
    }

    fn from_spki(der: &[u8]) -> Result<PublicKey, KeyError> {
        match der.strip_prefix(&SPKI_P256_PREFIX[..]) {
            Some(point) if point.len() == POINT_LEN && point[0] == 0x04 => Ok(PublicKey {
                point: point.to_vec(),
            }),
            _ => Err(KeyError::NotP256),
        }
    }

    fn spki(&self) -> Vec<u8> {
        [&SPKI_P256_PREFIX[..], &self.point].concat()
    }

    /// The key as a PEM `PUBLIC KEY` block (what `cosign.pub` holds).
    pub fn to_pem(&self) -> String {
        encode_pem("PUBLIC KEY", self.spki())
    }

    /// The first 16 hex digits of the SHA-256 of the key's SubjectPublicKeyInfo.
    pub fn id(&self) -> String {
        let digest = Digest::of(Algorithm::Sha256, &self.spki());
        digest.hex()[..16].to_owned()
    }

    /// Whether `signature` (base64 ASN.1 DER) is this key's signature of `payload`.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(der) = STANDARD.decode(signature.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(&ecdsa::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, &der)
            .is_ok()
    }
}

/// A private key that signs.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.public.id())
    }
}

impl SigningKey {
    /// A new random key, and its PEM `PRIVATE KEY` text to keep.
    pub fn generate() -> (SigningKey, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ecdsa::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("the system's random source works");
        let key = Self::from_pkcs8(pkcs8.as_ref()).expect("ring reads the key it made");
        (key, encode_pem("PRIVATE KEY", pkcs8.as_ref().to_vec()))
    }

    /// The first `PRIVATE KEY` block of `text`.
    pub fn from_pem(text: &str) -> Result<SigningKey, KeyError> {
        let block = pem::parse(text).map_err(|e| KeyError::NotPem(e.to_string()))?;
        if block.tag() != "PRIVATE KEY" {
            return Err(KeyError::WrongKind(block.tag().to_owned(), "PRIVATE KEY"));
        }
        Self::from_pkcs8(block.contents())
    }

    fn from_pkcs8(der: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ecdsa::ECDSA_P256_SHA256_ASN1_SIGNING,
            der,
            &SystemRandom::new(),
        )
        .map_err(|e| KeyError::BadPrivateKey(e.to_string()))?;
        let public = PublicKey {
            point: pair.public_key().as_ref().to_vec(),
        };
        Ok(SigningKey { pair, public })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The base64 ASN.1 DER signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature = self
            .pair
            .sign(&SystemRandom::new(), payload)
            .expect("signing with a valid key and a working random source");
        STANDARD.encode(signature.as_ref())
    }
}

fn encode_pem(tag: &str, contents: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, contents), config)
}

/// What a signature says: the simple-signing payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The repository the image was signed in (`registry/path`), as the signer named it.
    pub reference: String,
    /// The manifest signed.
    pub digest: Digest,
    /// `optional`: free annotations, signed with the rest.
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    critical: Critical,
    #[serde(default)]
    optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize, Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Serialize, Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

impl Payload {
    /// The payload's bytes, as cosign writes them (Go's field order, `optional` keys sorted,
    /// `null` when there are none).
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            critical: Critical {
                identity: Identity {
                    docker_reference: self.reference.clone(),
                },
                image: Image {
                    docker_manifest_digest: self.digest.to_string(),
                },
                kind: PAYLOAD_TYPE.to_owned(),
            },
            optional: (!self.annotations.is_empty()).then(|| {
                self.annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                    .collect()
            }),
        };
        serde_json::to_vec(&wire).expect("a payload serializes")
    }

    /// Reads a payload; one of another type, or naming no valid digest, is refused.
    /// Annotations that are not strings are kept as their JSON text.
    pub fn parse(bytes: &[u8]) -> Result<Payload, String> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|e| format!("not a signature payload: {e}"))?;
        if wire.critical.kind != PAYLOAD_TYPE {
            return Err(format!(
                "the payload's type is {:?}, not {PAYLOAD_TYPE:?}",
                wire.critical.kind
            ));
        }
        let digest = wire
            .critical
            .image
            .docker_manifest_digest
            .parse()
            .map_err(|e| format!("the payload's digest: {e}"))?;
        let annotations = wire
            .optional
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect();
        Ok(Payload {
            reference: wire.critical.identity.docker_reference,
            digest,
            annotations,
        })
    }
}

/// The tag a signature manifest of `digest` lives under: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// One signature as a signature manifest holds it: the payload blob and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Layer {
    pub payload: Digest,
    pub size: u64,
    pub signature: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireManifest {
    #[serde(default)]
    layers: Vec<WireDescriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDescriptor {
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// The signatures a signature manifest holds (layers of other types are skipped).
pub fn layers(manifest: &[u8]) -> Vec<Layer> {
    let Ok(m) = serde_json::from_slice::<WireManifest>(manifest) else {
        return Vec::new();
    };
    m.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING)
        .filter_map(|l| {
            Some(Layer {
                payload: l.digest.parse().ok()?,
                size: l.size,
                signature: l.annotations.get(SIGNATURE_ANNOTATION)?.clone(),
            })
        })
        .collect()
}

/// Whether a manifest is attached to another rather than an image to run: it names a
/// `subject` (a signature, an SBOM, an agent.yaml), or it holds only signatures (a cosign
/// signature manifest under its `.sig` tag). Signing policies do not apply to these: a
/// verifier must be able to read them.
pub fn is_attachment(manifest: &[u8]) -> bool {
    let Ok(m) = serde_json::from_slice::<WireManifest>(manifest) else {
        return false;
    };
    m.subject.is_some()
        || (!m.layers.is_empty() && m.layers.iter().all(|l| l.media_type == SIMPLE_SIGNING))
}

/// A signature manifest and its config blob: `layers` signing the manifest `subject`
/// (`media_type`, `size` bytes).
pub struct SignatureManifest {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
}

impl SignatureManifest {
    pub fn new(
        subject_media_type: &str,
        subject: &Digest,
        subject_size: u64,
        layers: &[Layer],
    ) -> SignatureManifest {
        // The config cosign writes: an image config whose layers are the payloads.
        let diff_ids: Vec<String> = layers.iter().map(|l| l.payload.to_string()).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"}],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "config": {},
        }))
        .expect("a config serializes");
        let descriptor = |media_type: &str, digest: &Digest, size: u64| serde_json::json!({"mediaType": media_type, "digest": digest.to_string(), "size": size});
        let layers: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": SIMPLE_SIGNING,
                    "digest": l.payload.to_string(),
                    "size": l.size,
                    "annotations": {SIGNATURE_ANNOTATION: l.signature},
                })
            })
            .collect();
        let config_digest = Digest::of(Algorithm::Sha256, &config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "artifactType": ARTIFACT_TYPE,
            "config": descriptor(media::OCI_CONFIG, &config_digest, config.len() as u64),
            "layers": layers,
            "subject": descriptor(subject_media_type, subject, subject_size),
        }))
        .expect("a manifest serializes");
        SignatureManifest { config, manifest }
    }
}

/// The outcome of checking one signature of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A trusted key verifies it, and it signs this image. The key's id.
    Valid(String),
    /// No key was given to check it with.
    Unchecked,
    /// None of the keys verifies the signature.
    UntrustedKey,
    /// It is well signed, but for another manifest.
    OtherImage(Digest),
    /// The payload is not a signature payload.
    Malformed(String),
}

impl Verdict {
    /// Checks `signature` of `payload` against `keys` for the image `subject`.
    pub fn of(
        payload: &[u8],
        signature: &str,
        subject: &Digest,
        keys: &[PublicKey],
    ) -> (Verdict, Option<Payload>) {
        let parsed = match Payload::parse(payload) {
            Ok(p) => p,
            Err(e) => return (Verdict::Malformed(e), None),
        };
        if keys.is_empty() {
            return (Verdict::Unchecked, Some(parsed));
        }
        let Some(key) = keys.iter().find(|k| k.verifies(payload, signature)) else {
            return (Verdict::UntrustedKey, Some(parsed));
        };
        if &parsed.digest != subject {
            return (Verdict::OtherImage(parsed.digest.clone()), Some(parsed));
        }
        (Verdict::Valid(key.id()), Some(parsed))
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid(_))
    }

    /// How the verdict reads in a listing or an error.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Valid(key) => format!("valid (key {key})"),
            Verdict::Unchecked => "not checked (no key given)".into(),
            Verdict::UntrustedKey => "invalid: no trusted key verifies it".into(),
            Verdict::OtherImage(d) => format!("invalid: it signs another manifest, {d}"),
            Verdict::Malformed(why) => format!("invalid: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn payload_is_byte_for_byte_what_cosign_writes() {
        let d: Digest = "sha256:0000000000000000000000000000000000000000000000000000000000000001"
            .parse()
            .expect("test value");
        let bare = Payload {
            reference: "localhost:5000/team/agent".into(),
            digest: d.clone(),
            annotations: BTreeMap::new(),
        };
        assert_eq!(
            String::from_utf8(bare.to_json()).expect("test value"),
            r#"{"critical":{"identity":{"docker-reference":"localhost:5000/team/agent"},"image":{"docker-manifest-digest":"sha256:0000000000000000000000000000000000000000000000000000000000000001"},"type":"cosign container image signature"},"optional":null}"#
        );
        let annotated = Payload {
            annotations: [("z".into(), "1".into()), ("a".into(), "2".into())].into(),
            ..bare
        };
        let json = String::from_utf8(annotated.to_json()).expect("test value");
        assert!(json.ends_with(r#""optional":{"a":"2","z":"1"}}"#), "{json}");
        assert_eq!(
            Payload::parse(json.as_bytes()).expect("test value"),
            annotated
        );
    }

    #[test]
    fn a_signature_verifies_only_with_its_key_and_only_its_image() {
        let (key, pem) = SigningKey::generate();
        let (other, _) = SigningKey::generate();
        let image = digest("image");
        let payload = Payload {
            reference: "r/a".into(),
            digest: image.clone(),
            annotations: BTreeMap::new(),
        }
        .to_json();
        let signature = key.sign(&payload);
        let public = key.public_key().clone();
        let id = public.id();
        assert_eq!(id.len(), 16);
        assert_eq!(
            Verdict::of(&payload, &signature, &image, std::slice::from_ref(&public)).0,
            Verdict::Valid(id.clone())
        );
        // The key read back from its PEM is the same key.
        let again = SigningKey::from_pem(&pem).expect("test value");
        assert_eq!(again.public_key(), &public);
        assert_eq!(
            PublicKey::parse_pem(&public.to_pem()).expect("test value"),
            vec![public.clone()]
        );
        // Another key, another image, a changed payload, a changed signature.
        let other_key = other.public_key().clone();
        assert_eq!(
            Verdict::of(
                &payload,
                &signature,
                &image,
                std::slice::from_ref(&other_key)
            )
            .0,
            Verdict::UntrustedKey
        );
        assert_eq!(
            Verdict::of(
                &payload,
                &signature,
                &digest("other"),
                std::slice::from_ref(&public)
            )
            .0,
            Verdict::OtherImage(image.clone())
        );
        let mut tampered = payload.clone();
        let at = tampered
            .windows(3)
            .position(|w| w == b"r/a")
            .expect("test value");
        tampered[at + 2] = b'b';
        assert_eq!(
            Verdict::of(&tampered, &signature, &image, std::slice::from_ref(&public)).0,
            Verdict::UntrustedKey
        );
        let mut bad = STANDARD.decode(&signature).expect("test value");
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            Verdict::of(
                &payload,
                &STANDARD.encode(bad),
                &image,
                std::slice::from_ref(&public)
            )
            .0,
            Verdict::UntrustedKey
        );
        // With several keys, the one that verifies is named.
        assert_eq!(
            Verdict::of(&payload, &signature, &image, &[other_key, public]).0,
            Verdict::Valid(id)
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused_with_a_hint() {
        let (key, private) = SigningKey::generate();
        let e = PublicKey::parse_pem(&private).expect_err("refused");
        assert!(e.to_string().contains("give the .pub file"), "{e}");
        let e = SigningKey::from_pem(&key.public_key().to_pem()).expect_err("refused");
        assert!(e.to_string().contains("signing needs the private"), "{e}");
        let cosign = "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n";
        let e = SigningKey::from_pem(cosign).expect_err("refused");
        assert!(e.to_string().contains("agent key generate"), "{e}");
        assert!(matches!(
            PublicKey::parse_pem("hello"),
            Err(KeyError::NotPem(_))
        ));
        // An RSA key's SubjectPublicKeyInfo is not a P-256 key.
        let rsa = encode_pem("PUBLIC KEY", vec![0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86]);
        assert_eq!(PublicKey::parse_pem(&rsa), Err(KeyError::NotP256));
    }

    #[test]
    fn a_signature_manifest_holds_its_layers_and_names_its_subject() {
        let image = digest("image");
        let layer = Layer {
            payload: digest("payload"),
            size: 7,
            signature: "MEUC".into(),
        };
        let m = SignatureManifest::new(
            media::OCI_MANIFEST,
            &image,
            500,
            std::slice::from_ref(&layer),
        );
        assert_eq!(layers(&m.manifest), vec![layer]);
        assert!(is_attachment(&m.manifest));
        let parsed =
            crate::Manifest::parse(Some(media::OCI_MANIFEST), &m.manifest).expect("test value");
        assert_eq!(parsed.subject, Some(image.clone()));
        assert_eq!(parsed.artifact_type.as_deref(), Some(ARTIFACT_TYPE));
        // Cosign's own tag-only manifest (no subject) is an attachment too; an image is not.
        let cosign = format!(
            r#"{{"schemaVersion":2,"layers":[{{"mediaType":"{SIMPLE_SIGNING}","digest":"{image}","size":1}}]}}"#
        );
        assert!(is_attachment(cosign.as_bytes()));
        let plain = format!(
            r#"{{"schemaVersion":2,"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{image}","size":1}}]}}"#
        );
        assert!(!is_attachment(plain.as_bytes()));
        assert_eq!(signature_tag(&image), format!("sha256-{}.sig", image.hex()));
    }
}
