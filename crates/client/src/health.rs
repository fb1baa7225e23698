//! Is the registry there, and is it well: a round trip to `/v2/`, and an Agent Registry's
//! `/api/v1/health`, `/api/v1/config` and `/api/v1/logs`.

use std::time::{Duration, Instant};

use agent_registry_oci::health::Health;
use agent_registry_oci::logs::{LogQuery, LogRecord};
use reqwest::StatusCode;

use crate::client::Client;
use crate::error::{Error, Result};

/// One round trip to `/v2/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundTrip {
    pub round_trip: Duration,
    /// What the registry says it speaks (`registry/2.0`), from
    /// `Docker-Distribution-API-Version`.
    pub api_version: Option<String>,
    /// Whether `/v2/` wants credentials (401): the registry answered either way.
    pub needs_auth: bool,
}

impl Client {
    /// Times one `GET /v2/` without credentials (unlike [`Client::ping`]). A 401 counts as
    /// an answer.
    pub async fn round_trip(&self) -> Result<RoundTrip> {
        let url = self.url("/v2/")?;
        let started = Instant::now();
        let response = self
            .http()
            .get(url)
            .send()
            .await
            .map_err(|e| self.connect_error(&e))?;
        let round_trip = started.elapsed();
        let status = response.status();
        if !status.is_success() && status != StatusCode::UNAUTHORIZED {
            return Err(self.status_error("pinging the registry", response).await);
        }
        Ok(RoundTrip {
            round_trip,
            api_version: response
                .headers()
                .get("docker-distribution-api-version")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            needs_auth: status == StatusCode::UNAUTHORIZED,
        })
    }

    /// The registry's health, failing (503) or not; with `detailed`, each check. Asked once:
    /// a failing registry is the answer, not a reason to retry.
    pub async fn health(&self, detailed: bool) -> Result<Health> {
        let url = self.url("/api/v1/health")?;
        let response = self
            .send_once(&[], |http| {
                http.get(url.clone()).query(&[("detailed", detailed)])
            })
            .await?;
        let response = match response.status() {
            StatusCode::SERVICE_UNAVAILABLE => response,
            _ => self.check("checking health", response).await?,
        };
        response.json().await.map_err(|e| Error::Protocol {
            registry: self.host().to_owned(),
            what: "checking health".to_owned(),
            detail: e.to_string(),
        })
    }

    /// The configuration an Agent Registry runs with (administrators), as it sends it.
    pub async fn server_config(&self) -> Result<serde_json::Value> {
        self.sign_in().await?;
        let url = self.url("/api/v1/config")?;
        let response = self.send(&[], |http| http.get(url.clone())).await?;
        self.json("reading the configuration", response).await
    }

    /// An Agent Registry's recent log lines (administrators), oldest first.
    pub async fn server_logs(&self, query: &LogQuery) -> Result<Vec<LogRecord>> {
        self.sign_in().await?;
        let url = self.url("/api/v1/logs")?;
        let response = self
            .send(&[], |http| http.get(url.clone()).query(query))
            .await?;
        self.json("reading the log", response).await
    }
}
