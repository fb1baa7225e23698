//! [`AccessStore`] on SQLite: principals, tokens, grants, visibility, the access log and
//! shared secrets. Triggers in the schema move `access_version` on every policy change.

use agent_registry_oci::{RepoName, RepoPattern};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::{SqliteStore, bad_value, db_err, parse_repo};
use crate::Result;
use crate::access::{
    AccessEvent, AccessLogQuery, AccessStore, GrantRecord, PolicyRecords, PrincipalKind,
    PrincipalRecord, PullPolicyRecord, TokenKind, TokenRecord,
};

const PRINCIPAL_COLUMNS: &str = "name, kind, admin, groups, password_hash, created_at";
const TOKEN_COLUMNS: &str =
    "id, owner, kind, name, secret_hash, scopes, created_at, expires_at, revoked_at";

#[derive(Debug, thiserror::Error)]
#[error("unknown {0}")]
struct Unknown(&'static str);

fn principal_of(r: &Row) -> rusqlite::Result<PrincipalRecord> {
    let kind = match r.get_ref(1)?.as_str()? {
        "user" => PrincipalKind::User,
        "robot" => PrincipalKind::Robot,
        _ => return Err(bad_value(Unknown("principal kind"))),
    };
    let groups: String = r.get(3)?;
    Ok(PrincipalRecord {
        name: r.get(0)?,
        kind,
        admin: r.get(2)?,
        groups: split_list(&groups),
        password_hash: r.get(4)?,
        created_at: r.get(5)?,
    })
}

fn token_of(r: &Row) -> rusqlite::Result<TokenRecord> {
    let kind = match r.get_ref(2)?.as_str()? {
        "api" => TokenKind::Api,
        "refresh" => TokenKind::Refresh,
        _ => return Err(bad_value(Unknown("token kind"))),
    };
    let scopes: String = r.get(5)?;
    Ok(TokenRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        kind,
        name: r.get(3)?,
        secret_hash: r.get(4)?,
        scopes: split_list(&scopes),
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn event_of(r: &Row) -> rusqlite::Result<AccessEvent> {
    Ok(AccessEvent {
        at: r.get(0)?,
        principal: r.get(1)?,
        action: r.get(2)?,
        repo: r.get(3)?,
        target: r.get(4)?,
        allowed: r.get(5)?,
        status: r.get(6)?,
        client: r.get(7)?,
    })
}

fn policy(c: &Connection) -> Result<PolicyRecords> {
    let err = || db_err("reading the access policy");
    // One read transaction, so the version belongs to the rows read with it.
    c.execute_batch("BEGIN").map_err(err())?;
    let read = || -> rusqlite::Result<PolicyRecords> {
        let version = c.query_row("SELECT version FROM access_version", [], |r| r.get(0))?;
        let grants = c
            .prepare_cached(
                "SELECT subject, pattern, permission FROM grants ORDER BY subject, pattern",
            )?
            .query_map([], |r| {
                let pattern: String = r.get(1)?;
                Ok(GrantRecord {
                    subject: r.get(0)?,
                    pattern: pattern.parse::<RepoPattern>().map_err(bad_value)?,
                    permission: r.get(2)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let visibility = c
            .prepare_cached("SELECT repo, public FROM visibility")?
            .query_map([], |r| Ok((parse_repo(r.get(0)?)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let pull_policies = c
            .prepare_cached(
                "SELECT pattern, signed_only, trusted_keys, block_vulnerabilities, allowed_advisories
                 FROM pull_policies ORDER BY pattern",
            )?
            .query_map([], |r| {
                let pattern: String = r.get(0)?;
                Ok(PullPolicyRecord {
                    pattern: pattern.parse::<RepoPattern>().map_err(bad_value)?,
                    signed_only: r.get(1)?,
                    trusted_keys: r.get(2)?,
                    block_vulnerabilities: r.get(3)?,
                    allowed_advisories: crate::access::lines(&r.get::<_, String>(4)?),
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(PolicyRecords {
            version,
            grants,
            visibility,
            pull_policies,
        })
    };
    let result = read();
    let _ = c.execute_batch("COMMIT");
    result.map_err(err())
}

#[async_trait::async_trait]
impl AccessStore for SqliteStore {
    async fn principal(&self, name: &str) -> Result<Option<PrincipalRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE name = ?1"
            ))
            .and_then(|mut s| s.query_row(params![name], principal_of).optional())
            .map_err(db_err("looking up a principal"))
        })
    }

    async fn principals(&self) -> Result<Vec<PrincipalRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {PRINCIPAL_COLUMNS} FROM principals ORDER BY name"
            ))
            .and_then(|mut s| s.query_map([], principal_of)?.collect())
            .map_err(db_err("listing principals"))
        })
    }

    async fn put_principal(&self, p: PrincipalRecord) -> Result<()> {
        self.writer
            .run(true, move |tx| {
                tx.execute(
                    "INSERT INTO principals (name, kind, admin, groups, password_hash, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (name) DO UPDATE SET kind = excluded.kind, admin = excluded.admin,
                       groups = excluded.groups, password_hash = excluded.password_hash",
                    params![
                        p.name,
                        p.kind.as_str(),
                        p.admin,
                        p.groups.join(","),
                        p.password_hash,
                        p.created_at
                    ],
                )
                .map_err(db_err("saving a principal"))?;
                Ok(())
            })
            .await
    }

    async fn delete_principal(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.writer
            .run(true, move |tx| {
                let err = || db_err("deleting a principal");
                tx.execute("DELETE FROM grants WHERE subject = ?1", params![name])
                    .map_err(err())?;
                let n = tx
                    .execute("DELETE FROM principals WHERE name = ?1", params![name])
                    .map_err(err())?;
                Ok(n > 0)
            })
            .await
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1"))
                .and_then(|mut s| s.query_row(params![id], token_of).optional())
                .map_err(db_err("looking up a token"))
        })
    }

    async fn tokens(&self, owner: Option<&str>) -> Result<Vec<TokenRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE kind = 'api' AND (?1 IS NULL OR owner = ?1) ORDER BY owner, created_at, id"
            ))
            .and_then(|mut s| s.query_map(params![owner], token_of)?.collect())
            .map_err(db_err("listing tokens"))
        })
    }

    async fn put_token(&self, t: TokenRecord) -> Result<()> {
        self.writer
            .run(true, move |tx| {
                tx.execute(
                    &format!("INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                    params![
                        t.id,
                        t.owner,
                        t.kind.as_str(),
                        t.name,
                        t.secret_hash,
                        t.scopes.join(","),
                        t.created_at,
                        t.expires_at,
                        t.revoked_at
                    ],
                )
                .map_err(db_err("saving a token"))?;
                Ok(())
            })
            .await
    }

    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool> {
        let id = id.to_owned();
        self.writer
            .run(true, move |tx| {
                let n = tx
                    .execute(
                        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                        params![id, at],
                    )
                    .map_err(db_err("revoking a token"))?;
                Ok(n > 0)
            })
            .await
    }

    async fn access_version(&self) -> Result<i64> {
        self.read(|c| {
            c.prepare_cached("SELECT version FROM access_version")
                .and_then(|mut s| s.query_row([], |r| r.get(0)))
                .map_err(db_err("reading the access version"))
        })
    }

    async fn policy(&self) -> Result<PolicyRecords> {
        self.read(policy)
    }

    async fn put_grant(&self, g: GrantRecord) -> Result<()> {
        self.writer
            .run(true, move |tx| {
                tx.execute(
                    "INSERT INTO grants (subject, pattern, permission, created_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (subject, pattern) DO UPDATE SET permission = excluded.permission",
                    params![g.subject, g.pattern.as_str(), g.permission, super::now()],
                )
                .map_err(db_err("saving a grant"))?;
                Ok(())
            })
            .await
    }

    async fn delete_grant(&self, subject: &str, pattern: &RepoPattern) -> Result<bool> {
        let (subject, pattern) = (subject.to_owned(), pattern.as_str().to_owned());
        self.writer
            .run(true, move |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM grants WHERE subject = ?1 AND pattern = ?2",
                        params![subject, pattern],
                    )
                    .map_err(db_err("deleting a grant"))?;
                Ok(n > 0)
            })
            .await
    }

    async fn set_visibility(&self, repo: &RepoName, public: bool) -> Result<()> {
        let repo = repo.clone();
        self.writer
            .run(true, move |tx| {
                tx.execute(
                    "INSERT INTO visibility (repo, public) VALUES (?1, ?2)
                     ON CONFLICT (repo) DO UPDATE SET public = excluded.public",
                    params![repo.as_str(), public],
                )
                .map_err(db_err("setting visibility"))?;
                Ok(())
            })
            .await
    }

    async fn put_pull_policy(&self, p: PullPolicyRecord) -> Result<()> {
        self.writer
            .run(true, move |tx| {
                tx.execute(
                    "INSERT INTO pull_policies (pattern, signed_only, trusted_keys,
                         block_vulnerabilities, allowed_advisories, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (pattern) DO UPDATE SET signed_only = excluded.signed_only,
                         trusted_keys = excluded.trusted_keys,
                         block_vulnerabilities = excluded.block_vulnerabilities,
                         allowed_advisories = excluded.allowed_advisories",
                    params![
                        p.pattern.as_str(),
                        p.signed_only,
                        p.trusted_keys,
                        p.block_vulnerabilities,
                        p.allowed_advisories.join("\n"),
                        super::now()
                    ],
                )
                .map_err(db_err("saving a pull policy"))?;
                Ok(())
            })
            .await
    }

    async fn delete_pull_policy(&self, pattern: &RepoPattern) -> Result<bool> {
        let pattern = pattern.as_str().to_owned();
        self.writer
            .run(true, move |tx| {
                let n = tx
                    .execute(
                        "DELETE FROM pull_policies WHERE pattern = ?1",
                        params![pattern],
                    )
                    .map_err(db_err("deleting a pull policy"))?;
                Ok(n > 0)
            })
            .await
    }

    async fn record_access(&self, events: Vec<AccessEvent>) -> Result<()> {
        self.writer
            .run(false, move |tx| {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO access_log (at, principal, action, repo, target, allowed, status, client)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )
                    .map_err(db_err("writing the access log"))?;
                for e in &events {
                    insert
                        .execute(params![
                            e.at, e.principal, e.action, e.repo, e.target, e.allowed, e.status,
                            e.client
                        ])
                        .map_err(db_err("writing the access log"))?;
                }
                Ok(())
            })
            .await
    }

    async fn access_log(&self, q: &AccessLogQuery) -> Result<Vec<AccessEvent>> {
        let mut sql = String::from(
            "SELECT at, principal, action, repo, target, allowed, status, client FROM access_log WHERE 1",
        );
        let mut values = Vec::new();
        let mut and = |clause: &str, v: Value| {
            values.push(v);
            sql.push_str(&format!(" AND {clause} ?{}", values.len()));
        };
        if let Some(p) = &q.principal {
            and("principal =", Value::Text(p.clone()));
        }
        if let Some(a) = &q.action {
            and("action =", Value::Text(a.clone()));
        }
        if let Some(r) = &q.repo {
            and("repo =", Value::Text(r.clone()));
        }
        if let Some(t) = q.since {
            and("at >=", Value::Integer(t));
        }
        if q.denied_only {
            sql.push_str(" AND allowed = 0");
        }
        values.push(Value::Integer(i64::from(q.limit)));
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", values.len()));
        self.read(|c| {
            c.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map(params_from_iter(values.iter()), event_of)?
                        .collect()
                })
                .map_err(db_err("reading the access log"))
        })
    }

    async fn prune_access_log(&self, before: i64) -> Result<u64> {
        self.writer
            .run(false, move |tx| {
                let n = tx
                    .execute("DELETE FROM access_log WHERE at < ?1", params![before])
                    .map_err(db_err("pruning the access log"))?;
                Ok(n as u64)
            })
            .await
    }

    async fn shared_secret(&self, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
        let name = name.to_owned();
        self.writer
            .run(true, move |tx| {
                let err = || db_err("storing a shared secret");
                tx.execute(
                    "INSERT OR IGNORE INTO secrets (name, value) VALUES (?1, ?2)",
                    params![name, candidate],
                )
                .map_err(err())?;
                tx.query_row(
                    "SELECT value FROM secrets WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .map_err(err())
            })
            .await
    }
}
