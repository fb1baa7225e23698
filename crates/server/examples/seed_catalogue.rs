//! Seeds a registry root with a catalogue of synthetic agents, for the search benchmark
//! (`scripts/bench-search`). Every agent goes through `Registry::put_manifest`, so the
//! indexing path is the one pushes take.
//!
//! ```text
//! cargo run --release -p agent-registry-server --example seed_catalogue -- ROOT [COUNT]
//! ```
//!
//! Names, descriptions, capabilities, authors, dates and sizes are drawn from fixed word lists
//! with a fixed seed, so two seedings make the same catalogue.

use std::sync::Arc;

use agent_registry_metadata::{MetadataStore, SqliteStore};
use agent_registry_oci::{Algorithm, Digest, Reference, RepoName};
use agent_registry_registry::{CatalogueRules, Limits, Registry};
use agent_registry_storage::FsBlobStore;
use anyhow::Context;
use futures_util::StreamExt;
use serde_json::json;

const TEAMS: &[&str] = &[
    "acme",
    "ml-platform",
    "support",
    "finance",
    "research",
    "sales",
    "security",
    "data",
    "infra",
    "growth",
    "legal",
    "ops",
];
const NOUNS: &[&str] = &[
    "assistant",
    "summarizer",
    "translator",
    "classifier",
    "router",
    "planner",
    "reviewer",
    "extractor",
    "chatbot",
    "researcher",
    "scheduler",
    "monitor",
    "coder",
    "tutor",
    "analyst",
];
const ADJECTIVES: &[&str] = &[
    "fast",
    "tiny",
    "smart",
    "secure",
    "friendly",
    "deep",
    "local",
    "multilingual",
    "cheap",
    "robust",
    "realtime",
    "batch",
];
const WORDS: &[&str] = &[
    "answers",
    "questions",
    "about",
    "invoices",
    "tickets",
    "documents",
    "code",
    "contracts",
    "emails",
    "meetings",
    "logs",
    "alerts",
    "customers",
    "orders",
    "reports",
    "policies",
    "search",
    "knowledge",
    "base",
    "with",
    "citations",
    "using",
    "retrieval",
    "tools",
    "workflows",
    "slack",
    "github",
    "calendar",
    "spreadsheets",
    "images",
    "audio",
    "sql",
    "kubernetes",
    "incidents",
    "pricing",
    "onboarding",
    "compliance",
    "translation",
    "notes",
    "summaries",
];
const CAPABILITIES: &[&str] = &[
    "chat",
    "text-generation",
    "summarization",
    "translation",
    "code-generation",
    "data-analysis",
    "sentiment-analysis",
    "image-generation",
    "speech-to-text",
    "retrieval",
];

/// xorshift64*: fast, and the same sequence every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args.next().context("usage: seed_catalogue ROOT [COUNT]")?;
    let count: usize = args.next().map_or(Ok(100_000), |c| c.parse())?;
    std::fs::create_dir_all(&root)?;
    let meta = Arc::new(SqliteStore::open(format!("{root}/registry.db"), false)?);
    let blobs = Arc::new(FsBlobStore::open(&root, false)?);
    let registry = Registry::new(
        blobs,
        meta.clone(),
        Limits::default(),
        CatalogueRules::default(),
    );

    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = Digest::of(Algorithm::Sha256, config);
    let first: RepoName = "seed/config".parse()?;
    let body = futures_util::stream::once(async move { Ok(bytes::Bytes::from_static(config)) });
    registry
        .put_blob(
            &first,
            &config_digest,
            Some(config.len() as u64),
            Box::pin(body),
        )
        .await?;

    let started = std::time::Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let agents: Vec<(RepoName, serde_json::Value, u64, u64)> = (0..count)
        .map(|i| {
            let name = format!(
                "{}/{}-{}-{i}",
                rng.pick(TEAMS),
                rng.pick(ADJECTIVES),
                rng.pick(NOUNS)
            );
            let description: Vec<&str> = (0..8).map(|_| rng.pick(WORDS)).collect();
            let caps: Vec<&str> = (0..1 + rng.below(3)).map(|_| rng.pick(CAPABILITIES)).collect();
            // Two years of pushes, sizes from 1 MB to about 2 GB (log-uniform).
            let created = 1_700_000_000 + rng.below(2 * 365 * 86_400) as i64;
            let size = (1e6 * 2f64.powf(rng.below(1100) as f64 / 100.0)) as u64;
            let annotations = json!({
                "org.opencontainers.image.description": description.join(" "),
                "org.opencontainers.image.authors": format!("author-{}", rng.below(300)),
                "org.opencontainers.image.created": agent_registry_oci::catalogue::format_rfc3339(created),
                "dev.agent-registry.capabilities": caps.join(","),
            });
            let downloads = rng.next() % 5_000;
            Ok((name.parse()?, annotations, size, downloads))
        })
        .collect::<anyhow::Result<_>>()?;

    let results = futures_util::stream::iter(agents.into_iter().map(|(repo, annotations, size, downloads)| {
        let registry = registry.clone();
        let meta = meta.clone();
        let (first, config_digest) = (first.clone(), config_digest.clone());
        async move {
            registry.mount_blob(&repo, &config_digest, Some(&first)).await?;
            // One non-distributable layer carries the size without bytes to store.
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                            "digest": Digest::of(Algorithm::Sha256, repo.as_str().as_bytes()).to_string(), "size": size}],
                "annotations": annotations,
            }))?;
            registry
                .put_manifest(&repo, &Reference::Tag("1.0.0".parse()?), None, manifest.into(), Some("seed"))
                .await?;
            meta.add_downloads(vec![(repo, downloads)]).await?;
            anyhow::Ok(())
        }
    }))
    .buffer_unordered(64)
    .collect::<Vec<_>>()
    .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        anyhow::bail!("{failed} of {count} agents failed; the first: {e:#}");
    }
    eprintln!(
        "seeded {count} agents in {:.1}s under {root}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
