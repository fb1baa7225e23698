//! Vulnerability scans on an Agent Registry: `agent push --security-scan` and
//! `agent registry image scan-results`. The registry scans (it holds the vulnerability
//! database); these ask it and print what it found.

use agent_registry_client::ImageRef;
use serde_json::Value;

use crate::Context;
use crate::output::{self, Format};
use crate::target::RegistryArgs;

const SEVERITIES: [&str; 5] = ["critical", "high", "medium", "low", "unknown"];

/// `1 critical, 2 high (3 findings in 40 packages)`, or `none in 40 packages`.
pub fn summary(report: &Value) -> String {
    let packages = report["packages"].as_u64().unwrap_or(0);
    let counts: Vec<String> = SEVERITIES
        .iter()
        .filter_map(|s| {
            let n = report["counts"][*s].as_u64().filter(|n| *n > 0)?;
            Some(format!("{n} {s}"))
        })
        .collect();
    if counts.is_empty() {
        return format!("none in {packages} packages");
    }
    let findings = report["findings"].as_array().map_or(0, Vec::len);
    format!(
        "{} ({findings} findings in {packages} packages)",
        counts.join(", ")
    )
}

/// `agent registry image scan-results IMAGE`.
pub async fn results(ctx: &Context, image: &str, args: &RegistryArgs) -> anyhow::Result<()> {
    let wanted: ImageRef = image.parse()?;
    let target = ctx.env().target(&wanted, args)?;
    let report = target
        .client
        .scan_results(
            &target.image.api_repository(),
            &target.image.manifest_reference(),
        )
        .await?;
    if ctx.output == Format::Json {
        return output::json(&report);
    }
    let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
    output::fields(&[
        ("Image", target.image.to_string()),
        ("Digest", text(&report["digest"])),
        ("Scanned", text(&report["scanned_at"])),
        ("Vulnerabilities", summary(&report)),
    ])?;
    let findings = report["findings"].as_array().cloned().unwrap_or_default();
    if findings.is_empty() {
        return Ok(());
    }
    println!();
    output::table(
        &[
            "SEVERITY",
            "ADVISORY",
            "PACKAGE",
            "INSTALLED",
            "FIXED",
            "ALIASES",
        ],
        &findings
            .iter()
            .map(|f| {
                let aliases: Vec<String> = f["aliases"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect();
                vec![
                    text(&f["severity"]),
                    text(&f["advisory"]),
                    text(&f["package"]),
                    text(&f["installed"]),
                    text(&f["fixed"]),
                    aliases.join(","),
                ]
            })
            .collect::<Vec<_>>(),
    )
}
