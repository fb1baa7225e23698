//! The agent catalogue API (`/api/v1`) of an Agent Registry: search, an agent's versions,
//! ratings. Other registries answer these with 404.

use agent_registry_oci::catalogue::{
    AgentDetail, RatingRequest, RatingSummary, SearchQuery, SearchResponse,
};
use reqwest::Response;
use serde::de::DeserializeOwned;

use crate::client::{Client, scope};
use crate::error::{Error, Result};

impl Client {
    /// Searches the registry's catalogue.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResponse> {
        self.sign_in().await?;
        let url = self.url("/api/v1/search")?;
        let response = self
            .send(&[], |http| http.get(url.clone()).query(query))
            .await?;
        self.json("searching the catalogue", response).await
    }

    /// An agent and its versions.
    pub async fn agent(&self, name: &str) -> Result<AgentDetail> {
        let url = self.url(&format!("/api/v1/agents/{name}"))?;
        let response = self
            .send(&[scope(name, "pull")], |http| http.get(url.clone()))
            .await?;
        self.json(&format!("agent {name}"), response).await
    }

    /// Rates an agent 1 to 5 stars; returns its new average.
    pub async fn rate(&self, name: &str, stars: u8) -> Result<RatingSummary> {
        let url = self.url(&format!("/api/v1/agents/{name}/ratings"))?;
        let body = RatingRequest { stars };
        let response = self
            .send(&[scope(name, "pull")], |http| {
                http.post(url.clone()).json(&body)
            })
            .await?;
        self.json(&format!("rating {name}"), response).await
    }

    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        what: &str,
        response: Response,
    ) -> Result<T> {
        let response = self.check(what, response).await?;
        response.json().await.map_err(|e| Error::Protocol {
            registry: self.host().to_owned(),
            what: what.to_owned(),
            detail: e.to_string(),
        })
    }
}
