//! Registry tokens for the token endpoint: the permitted subset of what was asked, and
//! refresh tokens for offline access.

use agent_registry_metadata::access::TokenKind;
use agent_registry_oci::RepoName;

use crate::{Access, AccessError, Actions, Caller, CallerKind, Issued, ResourceScope, Result, jwt};

impl Access {
    /// A registry token for `caller` holding the subset of `scopes` the caller may have
    /// (possibly none, as the token specification asks), and a refresh token if `offline`.
    pub async fn issue(
        &self,
        caller: &Caller,
        scopes: &[ResourceScope],
        offline: bool,
    ) -> Result<Issued> {
        let mut policy = self.policy().await;
        // Less than asked is only given by the store's latest policy (see `Access::allows`).
        if self.enabled()
            && scopes
                .iter()
                .any(|s| policy.actions(caller, &s.repo).intersect(s.actions) != s.actions)
        {
            policy = self.fresh_policy().await;
        }
        let mut access: Vec<(RepoName, Actions)> = Vec::new();
        for s in scopes {
            let granted = if self.enabled() {
                policy.actions(caller, &s.repo).intersect(s.actions)
            } else {
                s.actions
            };
            if granted.is_empty() {
                continue;
            }
            match access.iter_mut().find(|(r, _)| r == &s.repo) {
                Some((_, a)) => *a = a.union(granted),
                None => access.push((s.repo.clone(), granted)),
            }
        }
        let entries = access
            .iter()
            .map(|(repo, actions)| jwt::AccessEntry {
                kind: "repository".into(),
                name: repo.to_string(),
                actions: actions.to_docker(),
            })
            .collect();
        let ttl = self.0.settings.token_ttl;
        let token = self
            .0
            .signer
            .sign(caller, entries, ttl)
            .map_err(|e| AccessError::Internal(format!("signing a token: {e}")))?;
        // Refresh tokens belong to accounts; a workload asks its issuer for a fresh token.
        let account = matches!(caller.kind, CallerKind::User | CallerKind::Robot);
        let refresh_token = match (&caller.name, offline && account) {
            (Some(name), true) => {
                let created = self
                    .new_token(
                        name,
                        TokenKind::Refresh,
                        "refresh token",
                        Vec::new(),
                        Some(self.0.settings.refresh_ttl),
                    )
                    .await?;
                Some(created.secret)
            }
            _ => None,
        };
        Ok(Issued {
            token,
            expires_in: ttl.as_secs(),
            refresh_token,
            access,
        })
    }

    /// Who a refresh token (from an earlier `issue`) belongs to.
    pub async fn refresh(&self, token: &str) -> Result<Caller> {
        self.api_token(token, TokenKind::Refresh).await
    }
}
