//! The SQLite schema, as migrations applied in order; `PRAGMA user_version` records how many
//! have run, so opening an existing database applies only the new ones.

use rusqlite::Connection;

use super::db_err;
use crate::Result;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    name         TEXT PRIMARY KEY,
    created_at   INTEGER NOT NULL,
    -- Bumped by the triggers below on every tag change, so readers can cache tag lists.
    tags_version INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE repo_blobs (
    repo   TEXT NOT NULL REFERENCES repositories(name),
    digest TEXT NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (repo, digest)
) WITHOUT ROWID;
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE manifests (
    repo          TEXT NOT NULL REFERENCES repositories(name),
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    artifact_type TEXT,
    subject       TEXT,
    size          INTEGER NOT NULL,
    content       BLOB NOT NULL,
    annotations   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;
-- What each manifest references: blobs (kind 0) and child manifests (kind 1).
CREATE TABLE manifest_refs (
    repo   TEXT NOT NULL,
    digest TEXT NOT NULL,
    child  TEXT NOT NULL,
    kind   INTEGER NOT NULL,
    PRIMARY KEY (repo, digest, child),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX manifest_refs_child ON manifest_refs(repo, child);
CREATE TABLE tags (
    repo       TEXT NOT NULL,
    name       TEXT NOT NULL,
    digest     TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, name),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX tags_digest ON tags(repo, digest);
CREATE TRIGGER tags_inserted AFTER INSERT ON tags BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE name = NEW.repo;
END;
CREATE TRIGGER tags_updated AFTER UPDATE ON tags BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE name = NEW.repo;
END;
CREATE TRIGGER tags_deleted AFTER DELETE ON tags BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE name = OLD.repo;
END;
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repo       TEXT NOT NULL,
    started_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- The agent catalogue. Every manifest gets a listing (agent metadata, created, size); each
-- repository with a tag gets one row in agents, mirroring the listing of the tag search shows.
ALTER TABLE tags ADD COLUMN pushed_by TEXT;
CREATE TABLE listings (
    repo    TEXT NOT NULL,
    digest  TEXT NOT NULL,
    info    TEXT NOT NULL,      -- AgentInfo as JSON
    created INTEGER NOT NULL,
    size    INTEGER NOT NULL,
    PRIMARY KEY (repo, digest),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
) WITHOUT ROWID;
-- One row per repository that has ever had a tag; tag is NULL while it has none, so downloads
-- and ratings outlive a retag.
CREATE TABLE agents (
    id           INTEGER PRIMARY KEY,
    repo         TEXT NOT NULL UNIQUE,
    tag          TEXT,
    digest       TEXT,
    info         TEXT,
    author       TEXT,
    created      INTEGER,
    size         INTEGER,
    downloads    INTEGER NOT NULL DEFAULT 0,
    rating_sum   INTEGER NOT NULL DEFAULT 0,
    rating_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX agents_created ON agents(created DESC) WHERE tag IS NOT NULL;
CREATE INDEX agents_downloads ON agents(downloads DESC) WHERE tag IS NOT NULL;
CREATE INDEX agents_size ON agents(size) WHERE tag IS NOT NULL;
CREATE INDEX agents_rating ON agents((rating_sum * 1.0 / rating_count) DESC) WHERE tag IS NOT NULL AND rating_count > 0;
CREATE TABLE agent_capabilities (
    agent      INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    capability TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (agent, capability)
) WITHOUT ROWID;
CREATE INDEX agent_capabilities_capability ON agent_capabilities(capability, agent);
-- Words of the name, title, description, keywords, capabilities and author (rowid = agents.id).
CREATE VIRTUAL TABLE agents_text USING fts5(words, tokenize = 'unicode61 remove_diacritics 2');
-- Names by trigram, for partial names (rowid = agents.id).
CREATE VIRTUAL TABLE agents_names USING fts5(name, tokenize = 'trigram');
-- Repositories whose tags changed since the catalogue last caught up (see catalogue.rs).
CREATE TABLE catalogue_pending (repo TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE ratings (
    repo     TEXT NOT NULL,
    rater    TEXT NOT NULL,
    stars    INTEGER NOT NULL CHECK (stars BETWEEN 1 AND 5),
    rated_at INTEGER NOT NULL,
    PRIMARY KEY (repo, rater)
) WITHOUT ROWID;
"#,
    r#"
-- Access control (see access.rs). Users and robots are principals; groups is a
-- comma-separated list of group names.
CREATE TABLE principals (
    name          TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('user', 'robot')),
    admin         INTEGER NOT NULL DEFAULT 0,
    groups        TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;
-- API tokens and refresh tokens: only a SHA-256 of the secret is kept.
CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
    kind         TEXT NOT NULL CHECK (kind IN ('api', 'refresh')),
    name         TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    scopes       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER
) WITHOUT ROWID;
CREATE INDEX tokens_owner ON tokens(owner);
CREATE TABLE grants (
    subject    TEXT NOT NULL,
    pattern    TEXT NOT NULL,
    permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'delete', 'admin')),
    created_at INTEGER NOT NULL,
    PRIMARY KEY (subject, pattern)
) WITHOUT ROWID;
CREATE TABLE visibility (
    repo   TEXT PRIMARY KEY,
    public INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE access_log (
    id        INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    principal TEXT,
    action    TEXT NOT NULL,
    repo      TEXT,
    target    TEXT,
    allowed   INTEGER NOT NULL,
    status    INTEGER NOT NULL,
    client    TEXT
);
CREATE INDEX access_log_at ON access_log(at);
-- Registry-wide secrets shared by every node (the token signing key).
CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;
-- One number that moves whenever who may do what changes, so nodes can cache the policy.
CREATE TABLE access_version (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL);
INSERT INTO access_version VALUES (0, 0);
CREATE TRIGGER principals_changed_i AFTER INSERT ON principals BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER principals_changed_u AFTER UPDATE ON principals BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER principals_changed_d AFTER DELETE ON principals BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER tokens_changed_u AFTER UPDATE ON tokens BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER tokens_changed_d AFTER DELETE ON tokens BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER grants_changed_i AFTER INSERT ON grants BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER grants_changed_u AFTER UPDATE ON grants BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER grants_changed_d AFTER DELETE ON grants BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER visibility_changed_i AFTER INSERT ON visibility BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER visibility_changed_u AFTER UPDATE ON visibility BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER visibility_changed_d AFTER DELETE ON visibility BEGIN UPDATE access_version SET version = version + 1; END;
"#,
    r#"
-- Search runs over an in-memory index of the agents rows (catalogue_index.rs), kept in step
-- by a change sequence: every change to a row's searchable columns gives it the next number
-- in `changed`, and a node reloads the rows changed since the number its index is at. The
-- SQL sort indexes are no longer read.
ALTER TABLE agents ADD COLUMN tags TEXT;           -- every tag name, sorted, one per line
ALTER TABLE agents ADD COLUMN public INTEGER;      -- visibility, NULL for the default
ALTER TABLE agents ADD COLUMN changed INTEGER NOT NULL DEFAULT 0;
UPDATE agents SET public = (SELECT public FROM visibility v WHERE v.repo = agents.repo);
UPDATE agents SET tags = (SELECT group_concat(name, char(10)) FROM
    (SELECT name FROM tags t WHERE t.repo = agents.repo ORDER BY name)) WHERE tag IS NOT NULL;
DROP INDEX agents_created;
DROP INDEX agents_downloads;
DROP INDEX agents_size;
DROP INDEX agents_rating;
CREATE INDEX agents_changed ON agents(changed);
CREATE TABLE catalogue_version (id INTEGER PRIMARY KEY CHECK (id = 0), version INTEGER NOT NULL);
INSERT INTO catalogue_version VALUES (0, 0);
CREATE TRIGGER agents_added AFTER INSERT ON agents BEGIN
    UPDATE catalogue_version SET version = version + 1;
    UPDATE agents SET changed = (SELECT version FROM catalogue_version),
        public = (SELECT public FROM visibility v WHERE v.repo = NEW.repo)
        WHERE id = NEW.id;
END;
CREATE TRIGGER agents_updated AFTER UPDATE OF tag, digest, info, tags, author, created, size,
    downloads, rating_sum, rating_count, public ON agents BEGIN
    UPDATE catalogue_version SET version = version + 1;
    UPDATE agents SET changed = (SELECT version FROM catalogue_version) WHERE id = NEW.id;
END;
CREATE TRIGGER visibility_agents_i AFTER INSERT ON visibility BEGIN
    UPDATE agents SET public = NEW.public WHERE repo = NEW.repo;
END;
CREATE TRIGGER visibility_agents_u AFTER UPDATE ON visibility BEGIN
    UPDATE agents SET public = NEW.public WHERE repo = NEW.repo;
END;
CREATE TRIGGER visibility_agents_d AFTER DELETE ON visibility BEGIN
    UPDATE agents SET public = NULL WHERE repo = OLD.repo;
END;
"#,
    r#"
-- Pull policies: what must hold of a manifest before it is served from the repositories a
-- pattern matches. Part of the access policy, so changes move access_version.
CREATE TABLE pull_policies (
    pattern      TEXT PRIMARY KEY,
    signed_only  INTEGER NOT NULL,
    trusted_keys TEXT NOT NULL,    -- PEM public keys; empty: the registry's own list
    block_vulnerabilities TEXT,    -- a severity, or NULL
    allowed_advisories    TEXT NOT NULL,  -- advisory ids, one per line
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER pull_policies_changed_i AFTER INSERT ON pull_policies BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER pull_policies_changed_u AFTER UPDATE ON pull_policies BEGIN UPDATE access_version SET version = version + 1; END;
CREATE TRIGGER pull_policies_changed_d AFTER DELETE ON pull_policies BEGIN UPDATE access_version SET version = version + 1; END;
"#,
];

pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Applies the migrations not yet run, up to the first `last`.
pub(super) fn migrate_to(conn: &mut Connection, last: usize) -> Result<()> {
    let done: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err("reading the schema version"))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().take(last).skip(done) {
        let tx = conn.transaction().map_err(db_err("migrating"))?;
        tx.execute_batch(sql).map_err(db_err("migrating"))?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(db_err("migrating"))?;
        tx.commit().map_err(db_err("migrating"))?;
    }
    Ok(())
}
