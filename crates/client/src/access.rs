//! The access administration API (`/api/v1`) of an Agent Registry: who am I, users, API
//! tokens, permissions, repository visibility and the access log.

use agent_registry_oci::access::{
    Grant, GrantFilter, LogFilter, LogLine, NewToken, NewUser, PullPolicy, Repository,
    SetVisibility, Token, TokenFilter, User, WhoAmI,
};

use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::client::{Client, scope, server_message};
use crate::error::{Error, Result};

impl Client {
    /// Who the registry takes our credential to be.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.sign_in().await?;
        let url = self.url("/api/v1/auth/whoami")?;
        let response = self.send(&[], |http| http.get(url.clone())).await?;
        self.api_json("checking credentials", response).await
    }

    pub async fn users(&self) -> Result<Vec<User>> {
        let url = self.url("/api/v1/users")?;
        let response = self.send(&[], |http| http.get(url.clone())).await?;
        self.api_json("listing users", response).await
    }

    pub async fn add_user(&self, user: &NewUser) -> Result<User> {
        let url = self.url("/api/v1/users")?;
        let response = self
            .send_once(&[], |http| http.post(url.clone()).json(user))
            .await?;
        self.api_json(&format!("adding user {}", user.name), response)
            .await
    }

    pub async fn remove_user(&self, name: &str) -> Result<()> {
        let url = self.url(&format!("/api/v1/users/{name}"))?;
        let response = self.send(&[], |http| http.delete(url.clone())).await?;
        self.api_check(&format!("removing user {name}"), response)
            .await?;
        Ok(())
    }

    pub async fn tokens(&self, filter: &TokenFilter) -> Result<Vec<Token>> {
        let url = self.url("/api/v1/tokens")?;
        let response = self
            .send(&[], |http| http.get(url.clone()).query(filter))
            .await?;
        self.api_json("listing tokens", response).await
    }

    /// Creates an API token; the answer holds its secret, shown this once.
    pub async fn create_token(&self, token: &NewToken) -> Result<Token> {
        let url = self.url("/api/v1/tokens")?;
        let response = self
            .send_once(&[], |http| http.post(url.clone()).json(token))
            .await?;
        self.api_json(&format!("creating token {}", token.name), response)
            .await
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        let url = self.url(&format!("/api/v1/tokens/{id}"))?;
        let response = self.send(&[], |http| http.delete(url.clone())).await?;
        self.api_check(&format!("revoking token {id}"), response)
            .await?;
        Ok(())
    }

    pub async fn permissions(&self, filter: &GrantFilter) -> Result<Vec<Grant>> {
        let url = self.url("/api/v1/permissions")?;
        let response = self
            .send(&[], |http| http.get(url.clone()).query(filter))
            .await?;
        self.api_json("listing permissions", response).await
    }

    pub async fn add_permission(&self, grant: &Grant) -> Result<Grant> {
        let url = self.url("/api/v1/permissions")?;
        let response = self
            .send(&[], |http| http.post(url.clone()).json(grant))
            .await?;
        self.api_json(
            &format!("granting {} on {}", grant.permission, grant.repository),
            response,
        )
        .await
    }

    pub async fn remove_permission(&self, subject: &str, repository: &str) -> Result<()> {
        let url = self.url("/api/v1/permissions")?;
        let filter = GrantFilter {
            subject: Some(subject.to_owned()),
            repository: Some(repository.to_owned()),
        };
        let response = self
            .send(&[], |http| http.delete(url.clone()).query(&filter))
            .await?;
        self.api_check(
            &format!("removing the grant on {repository} from {subject}"),
            response,
        )
        .await?;
        Ok(())
    }

    pub async fn repository(&self, name: &str) -> Result<Repository> {
        let url = self.url(&format!("/api/v1/repositories/{name}"))?;
        let response = self
            .send(&[scope(name, "pull")], |http| http.get(url.clone()))
            .await?;
        self.api_json(&format!("repository {name}"), response).await
    }

    /// Makes a repository `public` or `private`.
    pub async fn set_visibility(&self, name: &str, visibility: &str) -> Result<Repository> {
        let url = self.url(&format!("/api/v1/repositories/{name}"))?;
        let body = SetVisibility {
            visibility: visibility.to_owned(),
        };
        let response = self
            .send(&[scope(name, "*")], |http| {
                http.put(url.clone()).json(&body)
            })
            .await?;
        self.api_json(&format!("setting the visibility of {name}"), response)
            .await
    }

    /// Pull policies; with `repository`, only the one for exactly that pattern.
    pub async fn pull_policies(&self, repository: Option<&str>) -> Result<Vec<PullPolicy>> {
        let url = self.url("/api/v1/policies")?;
        let query: Vec<(&str, &str)> = repository.map(|r| ("repository", r)).into_iter().collect();
        let response = self
            .send(&[], |http| http.get(url.clone()).query(&query))
            .await?;
        self.api_json("listing pull policies", response).await
    }

    pub async fn set_pull_policy(&self, policy: &PullPolicy) -> Result<PullPolicy> {
        let url = self.url("/api/v1/policies")?;
        let response = self
            .send(&[], |http| http.put(url.clone()).json(policy))
            .await?;
        self.api_json(
            &format!("setting the pull policy for {}", policy.repository),
            response,
        )
        .await
    }

    pub async fn remove_pull_policy(&self, repository: &str) -> Result<()> {
        let url = self.url("/api/v1/policies")?;
        let response = self
            .send(&[], |http| {
                http.delete(url.clone())
                    .query(&[("repository", repository)])
            })
            .await?;
        self.api_check(
            &format!("removing the pull policy for {repository}"),
            response,
        )
        .await?;
        Ok(())
    }

    /// Scans `repo:reference` now (Agent Registry with a vulnerability database); the report.
    pub async fn scan(&self, repo: &str, reference: &str) -> Result<serde_json::Value> {
        let url = self.url("/api/v1/scans")?;
        let body = serde_json::json!({"repository": repo, "reference": reference});
        let response = self
            .send(&[scope(repo, "pull,push")], |http| {
                http.post(url.clone()).json(&body)
            })
            .await?;
        self.api_json(&format!("scanning {repo}:{reference}"), response)
            .await
    }

    /// The newest vulnerability report of `repo:reference`.
    pub async fn scan_results(&self, repo: &str, reference: &str) -> Result<serde_json::Value> {
        let url = self.url("/api/v1/scans")?;
        let response = self
            .send(&[scope(repo, "pull")], |http| {
                http.get(url.clone())
                    .query(&[("repository", repo), ("reference", reference)])
            })
            .await?;
        self.api_json(&format!("scan results of {repo}:{reference}"), response)
            .await
    }

    pub async fn access_logs(&self, filter: &LogFilter) -> Result<Vec<LogLine>> {
        let url = self.url("/api/v1/access-logs")?;
        let response = self
            .send(&[], |http| http.get(url.clone()).query(filter))
            .await?;
        self.api_json("reading the access log", response).await
    }

    /// Like `check`, but a 404 here is a missing user, token or grant, not a missing image.
    async fn api_check(&self, what: &str, response: Response) -> Result<Response> {
        if response.status() != StatusCode::NOT_FOUND {
            return self.check(what, response).await;
        }
        let body = response.text().await.unwrap_or_default();
        Err(Error::Refused {
            registry: self.host().to_owned(),
            what: what.to_owned(),
            status: 404,
            detail: server_message(&body).unwrap_or_else(|| {
                "not found (is this an Agent Registry with access control?)".into()
            }),
        })
    }

    async fn api_json<T: DeserializeOwned>(&self, what: &str, response: Response) -> Result<T> {
        let response = self.api_check(what, response).await?;
        self.json(what, response).await
    }
}
