//! Metric queries: an Agent Registry's built-in history (`/api/v1/metrics/query_range`),
//! or an external Prometheus (`/api/v1/query_range`), which answer in the same shape.

use std::time::Duration;

use agent_registry_oci::metrics::{InstantQuery, QueryData, QueryResponse, RangeQuery};
use reqwest::{Response, Url};
use serde::Serialize;

use crate::client::{Client, error_chain, server_message};
use crate::error::{Error, Result};

impl Client {
    /// Evaluates a PromQL query at one time over the registry's metric history
    /// (administrators).
    pub async fn metric_instant(&self, query: &InstantQuery) -> Result<QueryData> {
        self.metric_query("/api/v1/metrics/query", query).await
    }

    /// Evaluates a PromQL query at every step of a window over the registry's metric
    /// history (administrators).
    pub async fn metric_range(&self, query: &RangeQuery) -> Result<QueryData> {
        self.metric_query("/api/v1/metrics/query_range", query)
            .await
    }

    async fn metric_query(&self, path: &str, query: &impl Serialize) -> Result<QueryData> {
        self.sign_in().await?;
        let url = self.url(path)?;
        let response = self
            .send(&[], |http| http.get(url.clone()).query(query))
            .await?;
        let response = self.check("querying metrics", response).await?;
        data(self.host(), response).await
    }
}

/// A Prometheus server's query API.
#[derive(Debug, Clone)]
pub struct Prometheus {
    http: reqwest::Client,
    base: Url,
}

impl Prometheus {
    /// A Prometheus at `url` (`http://prometheus:9090`, or a path prefix it is served under).
    pub fn new(url: &str, timeout: Duration) -> Result<Prometheus> {
        let mut base = Url::parse(url).map_err(|e| Error::Protocol {
            registry: url.to_owned(),
            what: "the Prometheus URL".to_owned(),
            detail: e.to_string(),
        })?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Connect {
                registry: url.to_owned(),
                detail: error_chain(&e),
            })?;
        Ok(Prometheus { http, base })
    }

    fn host(&self) -> &str {
        self.base.host_str().unwrap_or("prometheus")
    }

    /// Evaluates a PromQL query at one time.
    pub async fn instant(&self, query: &InstantQuery) -> Result<QueryData> {
        self.query("api/v1/query", query).await
    }

    /// Evaluates a PromQL query at every step of a window.
    pub async fn range(&self, query: &RangeQuery) -> Result<QueryData> {
        self.query("api/v1/query_range", query).await
    }

    async fn query(&self, path: &str, query: &impl Serialize) -> Result<QueryData> {
        let url = self.base.join(path).map_err(|e| Error::Protocol {
            registry: self.host().to_owned(),
            what: "the Prometheus URL".to_owned(),
            detail: e.to_string(),
        })?;
        let response =
            self.http
                .get(url)
                .query(query)
                .send()
                .await
                .map_err(|e| Error::Connect {
                    registry: self.host().to_owned(),
                    detail: error_chain(&e),
                })?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(Error::Refused {
                registry: self.host().to_owned(),
                what: "the query".to_owned(),
                status: status.as_u16(),
                detail: server_message(&body).unwrap_or(body),
            });
        }
        data(self.host(), response).await
    }
}

/// The `data` of a successful answer.
async fn data(host: &str, response: Response) -> Result<QueryData> {
    let protocol = |detail: String| Error::Protocol {
        registry: host.to_owned(),
        what: "querying metrics".to_owned(),
        detail,
    };
    let answer: QueryResponse = response.json().await.map_err(|e| protocol(e.to_string()))?;
    match answer.data {
        Some(data) if answer.status == "success" => Ok(data),
        _ => Err(protocol(answer.error.unwrap_or_else(|| {
            format!("status {:?} and no data", answer.status)
        }))),
    }
}
