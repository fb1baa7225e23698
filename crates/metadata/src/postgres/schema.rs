//! The PostgreSQL schema, as migrations applied in order. `schema_version` records how many
//! have run; nodes starting at once take an advisory lock, so exactly one applies each.
//!
//! The tables are SQLite's (see `sqlite/schema.rs`) with PostgreSQL types, and two changes
//! for many writers: every transaction that changes an `agents` row first locks the one
//! `catalogue_version` row (see [`super::lock_catalogue`]), so change numbers commit in
//! order; and text search is a `tsvector` column with a GIN index plus a `pg_trgm` index on
//! names, where SQLite has FTS5 tables. Text compares byte by byte (`COLLATE "C"`), as in
//! SQLite: tags and repositories page in the spec's lexical order whatever the database's
//! locale.

use deadpool_postgres::Client;

use super::db_err;
use crate::Result;

/// The advisory lock key migrations run under ("agentreg" in ASCII).
const MIGRATION_LOCK: i64 = 0x6167_656e_7472_6567;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE TABLE repositories (
    name         TEXT COLLATE "C" PRIMARY KEY,
    created_at   BIGINT NOT NULL,
    tags_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE blobs (
    digest     TEXT COLLATE "C" PRIMARY KEY,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE repo_blobs (
    repo   TEXT COLLATE "C" NOT NULL REFERENCES repositories(name),
    digest TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (repo, digest)
);
CREATE INDEX repo_blobs_digest ON repo_blobs(digest);
CREATE TABLE manifests (
    repo          TEXT COLLATE "C" NOT NULL REFERENCES repositories(name),
    digest        TEXT COLLATE "C" NOT NULL,
    media_type    TEXT COLLATE "C" NOT NULL,
    artifact_type TEXT COLLATE "C",
    subject       TEXT COLLATE "C",
    size          BIGINT NOT NULL,
    content       BYTEA NOT NULL,
    annotations   TEXT COLLATE "C" NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX manifests_subject ON manifests(repo, subject) WHERE subject IS NOT NULL;
-- What each manifest references: blobs (kind 0) and child manifests (kind 1).
CREATE TABLE manifest_refs (
    repo   TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    child  TEXT COLLATE "C" NOT NULL,
    kind   SMALLINT NOT NULL,
    PRIMARY KEY (repo, digest, child),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX manifest_refs_child ON manifest_refs(repo, child);
CREATE TABLE tags (
    repo       TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    digest     TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    pushed_by  TEXT COLLATE "C",
    PRIMARY KEY (repo, name),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
CREATE INDEX tags_digest ON tags(repo, digest);
CREATE FUNCTION tags_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE repositories SET tags_version = tags_version + 1
        WHERE name = CASE WHEN TG_OP = 'DELETE' THEN OLD.repo ELSE NEW.repo END;
    RETURN NULL;
END $$;
CREATE TRIGGER tags_changed AFTER INSERT OR UPDATE OR DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION tags_changed();
CREATE TABLE uploads (
    id         TEXT COLLATE "C" PRIMARY KEY,
    repo       TEXT COLLATE "C" NOT NULL,
    started_at BIGINT NOT NULL
);

CREATE TABLE listings (
    repo    TEXT COLLATE "C" NOT NULL,
    digest  TEXT COLLATE "C" NOT NULL,
    info    TEXT COLLATE "C" NOT NULL,
    created BIGINT NOT NULL,
    size    BIGINT NOT NULL,
    PRIMARY KEY (repo, digest),
    FOREIGN KEY (repo, digest) REFERENCES manifests(repo, digest) ON DELETE CASCADE
);
-- One row per repository that has ever had a tag (tag is NULL while it has none, so
-- downloads and ratings outlive a retag). `changed` is the catalogue version of the row's
-- last change; `words` and `capabilities` are what text and capability search match.
CREATE TABLE agents (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repo         TEXT COLLATE "C" NOT NULL UNIQUE,
    tag          TEXT COLLATE "C",
    digest       TEXT COLLATE "C",
    info         TEXT COLLATE "C",
    author       TEXT COLLATE "C",
    created      BIGINT,
    size         BIGINT,
    tags         TEXT COLLATE "C",
    capabilities TEXT[] NOT NULL DEFAULT '{}',
    words        TSVECTOR,
    downloads    BIGINT NOT NULL DEFAULT 0,
    rating_sum   BIGINT NOT NULL DEFAULT 0,
    rating_count BIGINT NOT NULL DEFAULT 0,
    public       BOOLEAN,
    changed      BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX agents_changed ON agents(changed);
CREATE INDEX agents_words ON agents USING GIN (words);
CREATE INDEX agents_names ON agents USING GIN (repo gin_trgm_ops);
-- Repositories whose tags changed since the catalogue last caught up; `marked` tells a
-- catch-up whether the repository was marked again while it worked.
CREATE SEQUENCE catalogue_marks;
CREATE TABLE catalogue_pending (repo TEXT COLLATE "C" PRIMARY KEY, marked BIGINT NOT NULL);
CREATE TABLE catalogue_version (id INT PRIMARY KEY CHECK (id = 0), version BIGINT NOT NULL);
INSERT INTO catalogue_version VALUES (0, 0);
CREATE TABLE ratings (
    repo     TEXT COLLATE "C" NOT NULL,
    rater    TEXT COLLATE "C" NOT NULL,
    stars    INT NOT NULL CHECK (stars BETWEEN 1 AND 5),
    rated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, rater)
);

CREATE TABLE principals (
    name          TEXT COLLATE "C" PRIMARY KEY,
    kind          TEXT COLLATE "C" NOT NULL CHECK (kind IN ('user', 'robot')),
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    groups        TEXT COLLATE "C" NOT NULL DEFAULT '',
    password_hash TEXT COLLATE "C",
    created_at    BIGINT NOT NULL
);
CREATE TABLE tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    owner       TEXT COLLATE "C" NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
    kind        TEXT COLLATE "C" NOT NULL CHECK (kind IN ('api', 'refresh')),
    name        TEXT COLLATE "C" NOT NULL,
    secret_hash BYTEA NOT NULL,
    scopes      TEXT COLLATE "C" NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX tokens_owner ON tokens(owner);
CREATE TABLE grants (
    subject    TEXT COLLATE "C" NOT NULL,
    pattern    TEXT COLLATE "C" NOT NULL,
    permission TEXT COLLATE "C" NOT NULL CHECK (permission IN ('read', 'write', 'delete', 'admin')),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (subject, pattern)
);
CREATE TABLE visibility (
    repo   TEXT COLLATE "C" PRIMARY KEY,
    public BOOLEAN NOT NULL
);
CREATE TABLE access_log (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    principal TEXT COLLATE "C",
    action    TEXT COLLATE "C" NOT NULL,
    repo      TEXT COLLATE "C",
    target    TEXT COLLATE "C",
    allowed   BOOLEAN NOT NULL,
    status    INT NOT NULL,
    client    TEXT COLLATE "C"
);
CREATE INDEX access_log_at ON access_log(at);
CREATE TABLE secrets (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE access_version (id INT PRIMARY KEY CHECK (id = 0), version BIGINT NOT NULL);
INSERT INTO access_version VALUES (0, 0);
CREATE FUNCTION access_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE access_version SET version = version + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER principals_changed AFTER INSERT OR UPDATE OR DELETE ON principals
    FOR EACH ROW EXECUTE FUNCTION access_changed();
CREATE TRIGGER tokens_changed AFTER UPDATE OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION access_changed();
CREATE TRIGGER grants_changed AFTER INSERT OR UPDATE OR DELETE ON grants
    FOR EACH ROW EXECUTE FUNCTION access_changed();
CREATE TRIGGER visibility_changed AFTER INSERT OR UPDATE OR DELETE ON visibility
    FOR EACH ROW EXECUTE FUNCTION access_changed();

-- Every change to what search reads gives the row the next catalogue version.
CREATE FUNCTION agents_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE catalogue_version SET version = version + 1 RETURNING version INTO NEW.changed;
    IF TG_OP = 'INSERT' THEN
        NEW.public := (SELECT v.public FROM visibility v WHERE v.repo = NEW.repo);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER agents_added BEFORE INSERT ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_changed();
CREATE TRIGGER agents_updated BEFORE UPDATE OF tag, digest, info, tags, author, created, size,
    capabilities, downloads, rating_sum, rating_count, public ON agents
    FOR EACH ROW EXECUTE FUNCTION agents_changed();
CREATE FUNCTION visibility_to_agents() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE agents SET public = NULL WHERE repo = OLD.repo;
    ELSE
        UPDATE agents SET public = NEW.public WHERE repo = NEW.repo;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER visibility_to_agents AFTER INSERT OR UPDATE OR DELETE ON visibility
    FOR EACH ROW EXECUTE FUNCTION visibility_to_agents();
"#,
    r#"
-- Pull policies: what must hold of a manifest before it is served from the repositories a
-- pattern matches. Part of the access policy, so changes move access_version.
CREATE TABLE pull_policies (
    pattern      TEXT COLLATE "C" PRIMARY KEY,
    signed_only  BOOLEAN NOT NULL,
    trusted_keys TEXT NOT NULL,
    block_vulnerabilities TEXT,
    allowed_advisories    TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);
CREATE TRIGGER pull_policies_changed AFTER INSERT OR UPDATE OR DELETE ON pull_policies
    FOR EACH ROW EXECUTE FUNCTION access_changed();
"#,
];

/// Applies the migrations not yet run.
pub(super) async fn migrate(client: &mut Client) -> Result<()> {
    let err = || db_err("migrating the database");
    let tx = client.transaction().await.map_err(err())?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err())?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL)")
        .await
        .map_err(err())?;
    let done: i64 = tx
        .query_one("SELECT count(*) FROM schema_version", &[])
        .await
        .map_err(err())?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        tx.batch_execute(sql).await.map_err(err())?;
        let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("INSERT INTO schema_version VALUES ($1)", &[&version])
            .await
            .map_err(err())?;
    }
    tx.commit().await.map_err(err())
}
