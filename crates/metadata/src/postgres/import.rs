//! Moving a single-node registry's metadata from its SQLite file into PostgreSQL
//! (`agent-registry migrate`): every table row for row, in one PostgreSQL transaction, so an
//! interrupted run leaves the database as it was and a finished one holds everything.
//!
//! The catalogue's derived rows (the `agents` search rows and their text index) are not
//! copied but rebuilt by PostgreSQL's own catch-up, except what only they hold: download
//! counts and rating totals.

use std::path::Path;

use rusqlite::types::Value;
use tokio_postgres::types::ToSql;

use super::{PostgresStore, begin, db_err, exec, lock_catalogue, row};
use crate::{MetadataError, Result, SqliteStore};

/// How a column is typed in PostgreSQL (SQLite holds all of these as integers, text or blobs).
#[derive(Clone, Copy)]
enum Kind {
    Text,
    BigInt,
    Int,
    SmallInt,
    Bool,
    Bytes,
}

use Kind::{BigInt, Bool, Bytes, Int, SmallInt, Text};

/// Every copied table, parents before the children whose keys reference them, with its
/// columns as both schemas name them.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "repositories",
        &[
            ("name", Text),
            ("created_at", BigInt),
            ("tags_version", BigInt),
        ],
    ),
    (
        "blobs",
        &[("digest", Text), ("size", BigInt), ("created_at", BigInt)],
    ),
    ("repo_blobs", &[("repo", Text), ("digest", Text)]),
    (
        "manifests",
        &[
            ("repo", Text),
            ("digest", Text),
            ("media_type", Text),
            ("artifact_type", Text),
            ("subject", Text),
            ("size", BigInt),
            ("content", Bytes),
            ("annotations", Text),
            ("created_at", BigInt),
        ],
    ),
    (
        "manifest_refs",
        &[
            ("repo", Text),
            ("digest", Text),
            ("child", Text),
            ("kind", SmallInt),
        ],
    ),
    (
        "tags",
        &[
            ("repo", Text),
            ("name", Text),
            ("digest", Text),
            ("updated_at", BigInt),
            ("pushed_by", Text),
        ],
    ),
    (
        "uploads",
        &[("id", Text), ("repo", Text), ("started_at", BigInt)],
    ),
    (
        "listings",
        &[
            ("repo", Text),
            ("digest", Text),
            ("info", Text),
            ("created", BigInt),
            ("size", BigInt),
        ],
    ),
    (
        "ratings",
        &[
            ("repo", Text),
            ("rater", Text),
            ("stars", Int),
            ("rated_at", BigInt),
        ],
    ),
    (
        "principals",
        &[
            ("name", Text),
            ("kind", Text),
            ("admin", Bool),
            ("groups", Text),
            ("password_hash", Text),
            ("created_at", BigInt),
        ],
    ),
    (
        "tokens",
        &[
            ("id", Text),
            ("owner", Text),
            ("kind", Text),
            ("name", Text),
            ("secret_hash", Bytes),
            ("scopes", Text),
            ("created_at", BigInt),
            ("expires_at", BigInt),
            ("revoked_at", BigInt),
        ],
    ),
    (
        "grants",
        &[
            ("subject", Text),
            ("pattern", Text),
            ("permission", Text),
            ("created_at", BigInt),
        ],
    ),
    ("visibility", &[("repo", Text), ("public", Bool)]),
    (
        "pull_policies",
        &[
            ("pattern", Text),
            ("signed_only", Bool),
            ("trusted_keys", Text),
            ("block_vulnerabilities", Text),
            ("allowed_advisories", Text),
            ("created_at", BigInt),
        ],
    ),
    (
        "access_log",
        &[
            ("at", BigInt),
            ("principal", Text),
            ("action", Text),
            ("repo", Text),
            ("target", Text),
            ("allowed", Bool),
            ("status", Int),
            ("client", Text),
        ],
    ),
    // The registry's identity and token key move with it (the bucket claim names the id).
    ("secrets", &[("name", Text), ("value", Bytes)]),
];

/// Rows copied per table, in copy order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub tables: Vec<(&'static str, u64)>,
}

impl Imported {
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|(t, _)| *t == table)
            .map_or(0, |(_, n)| *n)
    }
}

/// A SQLite value as the PostgreSQL column of `kind` takes it.
fn convert(
    value: Value,
    kind: Kind,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync + Send>> {
    let mismatch = |v: &Value| {
        MetadataError::backend(
            "reading the SQLite database",
            format!("{table}.{column} holds {v:?}, not what the column should"),
        )
    };
    Ok(match (kind, value) {
        (Text, Value::Null) => Box::new(None::<String>),
        (Text, Value::Text(s)) => Box::new(s),
        (BigInt, Value::Null) => Box::new(None::<i64>),
        (BigInt, Value::Integer(i)) => Box::new(i),
        (Int, Value::Integer(i)) => {
            Box::new(i32::try_from(i).map_err(|_| mismatch(&Value::Integer(i)))?)
        }
        (SmallInt, Value::Integer(i)) => {
            Box::new(i16::try_from(i).map_err(|_| mismatch(&Value::Integer(i)))?)
        }
        (Bool, Value::Integer(i)) => Box::new(i != 0),
        (Bytes, Value::Blob(b)) => Box::new(b),
        (Bytes, Value::Text(s)) => Box::new(s.into_bytes()),
        (_, v) => return Err(mismatch(&v)),
    })
}

/// Reads every row of `table`'s `columns` (in insertion order for tables with a rowid).
fn read_table(
    conn: &rusqlite::Connection,
    table: &'static str,
    columns: &[(&str, Kind)],
) -> Result<Vec<Vec<Value>>> {
    let err = |e: rusqlite::Error| MetadataError::backend("reading the SQLite database", e);
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let order = if table == "access_log" {
        " ORDER BY id"
    } else {
        ""
    };
    let sql = format!("SELECT {} FROM {table}{order}", names.join(", "));
    let mut statement = conn.prepare(&sql).map_err(err)?;
    let rows = statement
        .query_map([], |r| {
            (0..names.len()).map(|i| r.get::<_, Value>(i)).collect()
        })
        .map_err(err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(err)
}

impl PostgresStore {
    /// Copies the metadata of the SQLite database at `sqlite` into this (empty) database.
    /// Refuses a database that already holds repositories or accounts: two registries'
    /// metadata cannot be merged.
    pub async fn import_sqlite(&self, sqlite: &Path) -> Result<Imported> {
        // Opening brings an older file up to the current schema first.
        drop(SqliteStore::open(sqlite, false)?);
        let conn = rusqlite::Connection::open_with_flags(
            sqlite,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|e| MetadataError::backend("opening the SQLite database", e))?;
        let mut client = self.client().await?;
        let tx = begin(&mut client, true).await?;
        let held = row(
            &tx,
            "checking the destination",
            "SELECT EXISTS (SELECT 1 FROM repositories) OR EXISTS (SELECT 1 FROM principals)",
            &[],
        )
        .await?
        .is_some_and(|r| r.get::<_, bool>(0));
        if held {
            return Err(MetadataError::backend(
                "checking the destination",
                "the PostgreSQL database already holds a registry's repositories or accounts; \
                 migrate into an empty database",
            ));
        }
        // The catalogue lock first, as every writer of `agents` takes it (visibility rows
        // are copied into them by a trigger).
        lock_catalogue(&tx).await?;
        let mut imported = Imported::default();
        for (table, columns) in TABLES {
            let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let conflict = if *table == "secrets" {
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value"
            } else {
                "ON CONFLICT DO NOTHING"
            };
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}) {conflict}",
                names.join(", "),
                placeholders.join(", ")
            );
            let rows = read_table(&conn, table, columns)?;
            let copied = rows.len() as u64;
            // Each row's values move into its parameters: manifests are not copied twice.
            for values in rows {
                let params = values
                    .into_iter()
                    .zip(columns.iter())
                    .map(|(v, (column, kind))| convert(v, *kind, table, column))
                    .collect::<Result<Vec<_>>>()?;
                let params: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                exec(&tx, "copying metadata", &sql, &params).await?;
            }
            imported.tables.push((table, copied));
        }
        let counts = read_table(
            &conn,
            "agents",
            &[
                ("repo", Text),
                ("downloads", BigInt),
                ("rating_sum", BigInt),
                ("rating_count", BigInt),
            ],
        )?;
        for values in counts {
            let [
                Value::Text(repo),
                Value::Integer(downloads),
                Value::Integer(sum),
                Value::Integer(count),
            ] = <[Value; 4]>::try_from(values)
                .map_err(|_| MetadataError::backend("copying metadata", "agents row"))?
            else {
                continue;
            };
            exec(
                &tx,
                "copying downloads and ratings",
                "INSERT INTO agents (repo, downloads, rating_sum, rating_count) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo) DO UPDATE SET downloads = excluded.downloads,
                     rating_sum = excluded.rating_sum, rating_count = excluded.rating_count",
                &[&repo, &downloads, &sum, &count],
            )
            .await?;
        }
        // Every tagged repository gets its search row built by the catch-up below.
        exec(
            &tx,
            "copying metadata",
            "INSERT INTO catalogue_pending (repo, marked)
             SELECT repo, nextval('catalogue_marks') FROM (SELECT DISTINCT repo FROM tags) tagged",
            &[],
        )
        .await?;
        tx.commit().await.map_err(db_err("copying metadata"))?;
        drop(client);
        self.catch_up().await?;
        Ok(imported)
    }
}
