//! [`AccessStore`] on PostgreSQL: principals, tokens, grants, visibility, the access log and
//! shared secrets. Triggers in the schema move `access_version` on every policy change.

use agent_registry_oci::{RepoName, RepoPattern};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, begin, db_err, exec, lock_catalogue, now, parse, row, rows, snapshot};
use crate::access::{
    AccessEvent, AccessLogQuery, AccessStore, GrantRecord, PolicyRecords, PrincipalKind,
    PrincipalRecord, PullPolicyRecord, TokenKind, TokenRecord,
};
use crate::{MetadataError, Result};

const PRINCIPAL_COLUMNS: &str = "name, kind, admin, groups, password_hash, created_at";
const TOKEN_COLUMNS: &str =
    "id, owner, kind, name, secret_hash, scopes, created_at, expires_at, revoked_at";

fn unknown(what: &'static str, value: &str) -> MetadataError {
    MetadataError::backend(
        "reading access records",
        format!("unknown {what} {value:?}"),
    )
}

fn principal_of(r: &Row) -> Result<PrincipalRecord> {
    let kind = match r.get::<_, &str>(1) {
        "user" => PrincipalKind::User,
        "robot" => PrincipalKind::Robot,
        other => return Err(unknown("principal kind", other)),
    };
    Ok(PrincipalRecord {
        name: r.get(0),
        kind,
        admin: r.get(2),
        groups: split_list(r.get(3)),
        password_hash: r.get(4),
        created_at: r.get(5),
    })
}

fn token_of(r: &Row) -> Result<TokenRecord> {
    let kind = match r.get::<_, &str>(2) {
        "api" => TokenKind::Api,
        "refresh" => TokenKind::Refresh,
        other => return Err(unknown("token kind", other)),
    };
    Ok(TokenRecord {
        id: r.get(0),
        owner: r.get(1),
        kind,
        name: r.get(3),
        secret_hash: r.get(4),
        scopes: split_list(r.get(5)),
        created_at: r.get(6),
        expires_at: r.get(7),
        revoked_at: r.get(8),
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn event_of(r: &Row) -> AccessEvent {
    AccessEvent {
        at: r.get(0),
        principal: r.get(1),
        action: r.get(2),
        repo: r.get(3),
        target: r.get(4),
        allowed: r.get(5),
        status: u16::try_from(r.get::<_, i32>(6)).unwrap_or(0),
        client: r.get(7),
    }
}

#[async_trait::async_trait]
impl AccessStore for PostgresStore {
    async fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>> {
        let c = self.client().await?;
        row(
            &c,
            "looking up a principal",
            &format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = $1"),
            &[&name],
        )
        .await?
        .as_ref()
        .map(principal_of)
        .transpose()
    }

    async fn principals(&self) -> Result<Vec<PrincipalRecord>> {
        let c = self.client().await?;
        rows(
            &c,
            "listing principals",
            &format!("SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"),
            &[],
        )
        .await?
        .iter()
        .map(principal_of)
        .collect()
    }

    async fn put_principal(&self, p: PrincipalRecord) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "saving a principal",
            "INSERT INTO principals (name, kind, admin, groups, password_hash, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, admin = excluded.admin,
               groups = excluded.groups, password_hash = excluded.password_hash",
            &[
                &p.name,
                &p.kind.as_str(),
                &p.admin,
                &p.groups.join(","),
                &p.password_hash,
                &p.created_at,
            ],
        )
        .await
        .map(drop)
    }

    async fn delete_principal(&self, name: &str) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        let doing = "deleting a principal";
        exec(
            &tx,
            doing,
            "DELETE FROM grants WHERE subject = $1",
            &[&name],
        )
        .await?;
        let n = exec(
            &tx,
            doing,
            "DELETE FROM principals WHERE name = $1",
            &[&name],
        )
        .await?;
        tx.commit().await.map_err(db_err(doing))?;
        Ok(n > 0)
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let c = self.client().await?;
        row(
            &c,
            "looking up a token",
            &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(token_of)
        .transpose()
    }

    async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>> {
        let c = self.client().await?;
        rows(
            &c,
            "listing tokens",
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'api' AND ($1::text IS NULL OR owner = $1)
                 ORDER BY owner, created_at, id"
            ),
            &[&owner],
        )
        .await?
        .iter()
        .map(token_of)
        .collect()
    }

    async fn put_token(&self, t: TokenRecord) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "saving a token",
            &format!(
                "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            ),
            &[
                &t.id,
                &t.owner,
                &t.kind.as_str(),
                &t.name,
                &t.secret_hash,
                &t.scopes.join(","),
                &t.created_at,
                &t.expires_at,
                &t.revoked_at,
            ],
        )
        .await
        .map(drop)
    }

    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "revoking a token",
            "UPDATE tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
            &[&id, &at],
        )
        .await?;
        Ok(n > 0)
    }

    async fn access_version(&self) -> Result<i64> {
        let c = self.client().await?;
        let r = row(
            &c,
            "reading the access version",
            "SELECT version FROM access_version",
            &[],
        )
        .await?;
        Ok(r.map_or(0, |r| r.get(0)))
    }

    async fn policy(&self) -> Result<PolicyRecords> {
        let doing = "reading the access policy";
        let mut c = self.client().await?;
        // One snapshot, so the version belongs to the rows read with it.
        let tx = snapshot(&mut c, doing).await?;
        let version = row(&tx, doing, "SELECT version FROM access_version", &[])
            .await?
            .map_or(0, |r| r.get(0));
        let grants = rows(
            &tx,
            doing,
            "SELECT subject, pattern, permission FROM grants ORDER BY subject, pattern",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(GrantRecord {
                subject: r.get(0),
                pattern: parse::<RepoPattern>(doing, r.get(1))?,
                permission: r.get(2),
            })
        })
        .collect::<Result<_>>()?;
        let visibility = rows(&tx, doing, "SELECT repo, public FROM visibility", &[])
            .await?
            .iter()
            .map(|r| Ok((parse::<RepoName>(doing, r.get(0))?, r.get(1))))
            .collect::<Result<_>>()?;
        let pull_policies = rows(
            &tx,
            doing,
            "SELECT pattern, signed_only, trusted_keys, block_vulnerabilities, allowed_advisories
             FROM pull_policies ORDER BY pattern",
            &[],
        )
        .await?
        .iter()
        .map(|r| {
            Ok(PullPolicyRecord {
                pattern: parse::<RepoPattern>(doing, r.get(0))?,
                signed_only: r.get(1),
                trusted_keys: r.get(2),
                block_vulnerabilities: r.get(3),
                allowed_advisories: crate::access::lines(r.get(4)),
            })
        })
        .collect::<Result<_>>()?;
        tx.commit().await.map_err(db_err(doing))?;
        Ok(PolicyRecords {
            version,
            grants,
            visibility,
            pull_policies,
        })
    }

    async fn put_grant(&self, g: GrantRecord) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "saving a grant",
            "INSERT INTO grants (subject, pattern, permission, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (subject, pattern) DO UPDATE SET permission = excluded.permission",
            &[&g.subject, &g.pattern.as_str(), &g.permission, &now()],
        )
        .await
        .map(drop)
    }

    async fn delete_grant(&self, subject: &str, pattern: &RepoPattern) -> Result<bool> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "deleting a grant",
            "DELETE FROM grants WHERE subject = $1 AND pattern = $2",
            &[&subject, &pattern.as_str()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn put_pull_policy(&self, p: PullPolicyRecord) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "saving a pull policy",
            "INSERT INTO pull_policies (pattern, signed_only, trusted_keys,
                 block_vulnerabilities, allowed_advisories, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (pattern) DO UPDATE SET signed_only = excluded.signed_only,
                 trusted_keys = excluded.trusted_keys,
                 block_vulnerabilities = excluded.block_vulnerabilities,
                 allowed_advisories = excluded.allowed_advisories",
            &[
                &p.pattern.as_str(),
                &p.signed_only,
                &p.trusted_keys,
                &p.block_vulnerabilities,
                &p.allowed_advisories.join("\n"),
                &now(),
            ],
        )
        .await
        .map(drop)
    }

    async fn delete_pull_policy(&self, pattern: &RepoPattern) -> Result<bool> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "deleting a pull policy",
            "DELETE FROM pull_policies WHERE pattern = $1",
            &[&pattern.as_str()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn set_visibility(&self, repo: &RepoName, public: bool) -> Result<()> {
        let doing = "setting visibility";
        let mut c = self.client().await?;
        let tx = begin(&mut c, true).await?;
        // A trigger copies visibility into the repository's `agents` row.
        lock_catalogue(&tx).await?;
        exec(
            &tx,
            doing,
            "INSERT INTO visibility (repo, public) VALUES ($1, $2)
             ON CONFLICT (repo) DO UPDATE SET public = excluded.public",
            &[&repo.as_str(), &public],
        )
        .await?;
        tx.commit().await.map_err(db_err(doing))
    }

    async fn record_access(&self, events: Vec<AccessEvent>) -> Result<()> {
        let doing = "writing the access log";
        let mut c = self.client().await?;
        let tx = begin(&mut c, false).await?;
        for e in &events {
            exec(
                &tx,
                doing,
                "INSERT INTO access_log (at, principal, action, repo, target, allowed, status, client)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &e.at,
                    &e.principal,
                    &e.action,
                    &e.repo,
                    &e.target,
                    &e.allowed,
                    &i32::from(e.status),
                    &e.client,
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(db_err(doing))
    }

    async fn access_log(&self, q: &AccessLogQuery) -> Result<Vec<AccessEvent>> {
        let mut sql = String::from(
            "SELECT at, principal, action, repo, target, allowed, status, client FROM access_log WHERE TRUE",
        );
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut and = |clause: &str, v: Box<dyn ToSql + Sync + Send>| {
            values.push(v);
            sql.push_str(&format!(" AND {clause} ${}", values.len()));
        };
        if let Some(p) = &q.principal {
            and("principal =", Box::new(p.clone()));
        }
        if let Some(a) = &q.action {
            and("action =", Box::new(a.clone()));
        }
        if let Some(r) = &q.repo {
            and("repo =", Box::new(r.clone()));
        }
        if let Some(t) = q.since {
            and("at >=", Box::new(t));
        }
        if q.denied_only {
            sql.push_str(" AND NOT allowed");
        }
        values.push(Box::new(i64::from(q.limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len()));
        let params: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect();
        let c = self.client().await?;
        Ok(rows(&c, "reading the access log", &sql, &params)
            .await?
            .iter()
            .map(event_of)
            .collect())
    }

    async fn prune_access_log(&self, before: i64) -> Result<u64> {
        let mut c = self.client().await?;
        let tx = begin(&mut c, false).await?;
        let n = exec(
            &tx,
            "pruning the access log",
            "DELETE FROM access_log WHERE at < $1",
            &[&before],
        )
        .await?;
        tx.commit()
            .await
            .map_err(db_err("pruning the access log"))?;
        Ok(n)
    }

    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
        let doing = "storing a shared secret";
        let c = self.client().await?;
        // Insert if absent and read back in one statement: the first node's candidate wins.
        let sql = "WITH added AS (INSERT INTO secrets (name, value) VALUES ($1, $2)
                                  ON CONFLICT DO NOTHING RETURNING value)
                   SELECT value FROM added UNION ALL SELECT value FROM secrets WHERE name = $1";
        if let Some(r) = row(&c, doing, sql, &[&name, &candidate]).await? {
            return Ok(r.get(0));
        }
        // Another node's insert committed while this statement waited on it, after this
        // statement's snapshot: a new statement sees it.
        row(
            &c,
            doing,
            "SELECT value FROM secrets WHERE name = $1",
            &[&name],
        )
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| MetadataError::backend(doing, "no secret row"))
    }
}
