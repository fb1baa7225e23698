//! The catalogue in SQLite: listings per manifest, one `agents` row per tagged repository,
//! FTS5 tables for words and partial names, downloads and ratings.
//!
//! A tag change only marks its repository pending, in the transaction that moves the tag;
//! the catalogue catches up ([`catch_up`]) in one write before any catalogue read, on any
//! node. Pushes stay as fast as before the catalogue existed, and every search still sees
//! every push acknowledged before it.
//!
//! Searches run over the in-memory [`CatalogueIndex`]; [`sync`] feeds it the `agents` rows
//! whose `changed` number (set by the triggers of migration 4) is past its version.

use agent_registry_oci::RepoName;
use agent_registry_oci::catalogue::{self, AgentInfo, SearchHit};
use rusqlite::{Connection, OptionalExtension, params};

use super::{bad_value, db_err, now, parse_digest, parse_repo};
use crate::catalogue_index::{CatalogueIndex, Change, Entry, TextMatch};
use crate::catalogue_rows::{
    TagRow, decode, display_tag, encode, hit_of, name_like, tag_names, terms, versions, words,
};
use crate::{AgentRecord, Listing, Result, Search, SearchPage, TagRecord};

pub(super) fn store_listing(
    tx: &Connection,
    repo: &RepoName,
    digest: &str,
    listing: &Listing,
) -> Result<()> {
    let info = encode(&listing.info)?;
    tx.prepare_cached(
        "INSERT INTO listings (repo, digest, info, created, size) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (repo, digest) DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            repo.as_str(),
            digest,
            info,
            listing.created,
            listing.size as i64
        ])
    })
    .map_err(db_err("storing a catalogue listing"))?;
    Ok(())
}

/// Marks `repo`'s catalogue row out of step with its tags; called in the transaction of every
/// tag change.
pub(super) fn mark(tx: &Connection, repo: &RepoName) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO catalogue_pending (repo) VALUES (?1)")
        .and_then(|mut s| s.execute(params![repo.as_str()]))
        .map_err(db_err("marking the catalogue"))?;
    Ok(())
}

/// Whether any repository waits for [`catch_up`].
pub(super) fn behind(c: &Connection) -> Result<bool> {
    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM catalogue_pending)")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err("checking the catalogue"))
}

/// Pending repositories one catch-up transaction refreshes, so a backlog (a bulk import)
/// never holds the writer long enough to stall pushes.
pub(super) const CATCH_UP_BATCH: i64 = 1000;

/// Refreshes up to [`CATCH_UP_BATCH`] pending repositories; returns how many.
pub(super) fn catch_up(tx: &Connection) -> Result<usize> {
    let err = || db_err("updating the catalogue");
    let pending: Vec<String> = tx
        .prepare_cached("SELECT repo FROM catalogue_pending LIMIT ?1")
        .and_then(|mut s| s.query_map([CATCH_UP_BATCH], |r| r.get(0))?.collect())
        .map_err(err())?;
    let mut done = tx
        .prepare_cached("DELETE FROM catalogue_pending WHERE repo = ?1")
        .map_err(err())?;
    for repo in &pending {
        if let Ok(name) = repo.parse::<RepoName>() {
            refresh(tx, &name)?;
        }
        done.execute([repo]).map_err(err())?;
    }
    Ok(pending.len())
}

/// An `agents` row as [`refresh`] finds it.
struct Row {
    id: i64,
    tag: Option<String>,
    digest: Option<String>,
    info: Option<String>,
    tags: Option<String>,
}

/// Brings `repo`'s catalogue row in step with its tags.
fn refresh(tx: &Connection, repo: &RepoName) -> Result<()> {
    let err = db_err("updating the catalogue");
    let tags: Vec<TagRow> = tx
        .prepare_cached("SELECT name, digest, updated_at FROM tags WHERE repo = ?1")
        .and_then(|mut s| {
            s.query_map(params![repo.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })
        .map_err(err)?;
    let current: Option<Row> = tx
        .prepare_cached("SELECT id, tag, digest, info, tags FROM agents WHERE repo = ?1")
        .and_then(|mut s| {
            s.query_row(params![repo.as_str()], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    tag: r.get(1)?,
                    digest: r.get(2)?,
                    info: r.get(3)?,
                    tags: r.get(4)?,
                })
            })
            .optional()
        })
        .map_err(db_err("updating the catalogue"))?;
    let listed = current.as_ref().filter(|c| c.tag.is_some());
    let Some((tag, digest, _)) = display_tag(&tags) else {
        if let Some(c) = listed {
            hide(tx, c.id)?;
        }
        return Ok(());
    };
    let names = tag_names(&tags);
    if let Some(c) =
        listed.filter(|c| c.tag.as_ref() == Some(tag) && c.digest.as_ref() == Some(digest))
    {
        // The shown tag stays; only the tag list (for searches by tag) may have moved.
        if c.tags.as_ref() != Some(&names) {
            tx.prepare_cached("UPDATE agents SET tags = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![c.id, names]))
                .map_err(db_err("updating the catalogue"))?;
        }
        return Ok(());
    }
    let listing = listing_of(tx, repo, digest)?;
    let info = encode(&listing.info)?;
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO agents (repo, tag, digest, info, author, created, size, tags) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (repo) DO UPDATE SET tag = excluded.tag, digest = excluded.digest, info = excluded.info,
                 author = excluded.author, created = excluded.created, size = excluded.size, tags = excluded.tags
             RETURNING id",
        )
        .and_then(|mut s| {
            s.query_row(
                params![
                    repo.as_str(),
                    tag,
                    digest,
                    info,
                    listing.info.author,
                    listing.created,
                    listing.size as i64,
                    names
                ],
                |r| r.get(0),
            )
        })
        .map_err(db_err("updating the catalogue"))?;
    // Most pushes of a new version keep the description: the text index stays as it is.
    if listed.and_then(|c| c.info.as_ref()) != Some(&info) {
        index_text(tx, id, repo, &listing.info)?;
    }
    if listed.is_none() {
        tx.prepare_cached("INSERT INTO agents_names (rowid, name) SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM agents_names WHERE rowid = ?1)")
            .and_then(|mut s| s.execute(params![id, repo.as_str()]))
            .map_err(db_err("indexing catalogue names"))?;
    }
    Ok(())
}

/// Replaces agent `id`'s capabilities and words.
fn index_text(tx: &Connection, id: i64, repo: &RepoName, info: &AgentInfo) -> Result<()> {
    let err = || db_err("indexing catalogue text");
    tx.prepare_cached("DELETE FROM agent_capabilities WHERE agent = ?1")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(err())?;
    let mut add = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO agent_capabilities (agent, capability) VALUES (?1, ?2)",
        )
        .map_err(err())?;
    for capability in &info.capabilities {
        add.execute(params![id, capability]).map_err(err())?;
    }
    tx.prepare_cached("DELETE FROM agents_text WHERE rowid = ?1")
        .and_then(|mut s| s.execute(params![id]))
        .map_err(err())?;
    tx.prepare_cached("INSERT INTO agents_text (rowid, words) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![id, words(repo, info)]))
        .map_err(err())?;
    Ok(())
}

/// Takes a repository without tags out of search, keeping its downloads and ratings.
fn hide(tx: &Connection, id: i64) -> Result<()> {
    let err = || db_err("updating the catalogue");
    tx.execute(
        "UPDATE agents SET tag = NULL, digest = NULL, tags = NULL WHERE id = ?1",
        params![id],
    )
    .map_err(err())?;
    tx.execute(
        "DELETE FROM agent_capabilities WHERE agent = ?1",
        params![id],
    )
    .map_err(err())?;
    tx.execute("DELETE FROM agents_text WHERE rowid = ?1", params![id])
        .map_err(err())?;
    Ok(())
}

/// The listing of a manifest; manifests stored before the catalogue existed get their
/// creation time and manifest size.
fn listing_of(c: &Connection, repo: &RepoName, digest: &str) -> Result<Listing> {
    c.prepare_cached(
        "SELECT l.info, COALESCE(l.created, m.created_at), COALESCE(l.size, m.size)
         FROM manifests m LEFT JOIN listings l ON l.repo = m.repo AND l.digest = m.digest
         WHERE m.repo = ?1 AND m.digest = ?2",
    )
    .and_then(|mut s| {
        s.query_row(params![repo.as_str(), digest], |r| {
            Ok(Listing {
                info: decode(r.get::<_, Option<String>>(0)?.as_deref()),
                created: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
            })
        })
        .optional()
    })
    .map(Option::unwrap_or_default)
    .map_err(db_err("reading a catalogue listing"))
}

/// An FTS5 query: every term of `text`, quoted, long ones as prefixes.
fn fts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = terms(text)
        .into_iter()
        .map(|t| format!("\"{}\"{}", t.word, if t.prefix { "*" } else { "" }))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" AND "))
}

/// The catalogue version: the change number of the last changed `agents` row.
pub(super) fn version(c: &Connection) -> Result<i64> {
    c.prepare_cached("SELECT version FROM catalogue_version")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db_err("reading the catalogue version"))
}

/// Brings `index` up to the catalogue version, reading only the `agents` rows changed since
/// the version it is at (every row on the first call) from one snapshot; returns how many.
pub(super) fn sync(c: &Connection, index: &mut CatalogueIndex) -> Result<usize> {
    let err = || db_err("loading the catalogue index");
    let snapshot = c.unchecked_transaction().map_err(err())?;
    let version = version(&snapshot)?;
    if index.version() >= Some(version) {
        return Ok(0);
    }
    let mut changed = snapshot
        .prepare_cached(
            "SELECT a.id, a.repo, a.tag IS NOT NULL, a.tags, a.author, a.created, a.size, a.downloads,
                 a.rating_sum, a.rating_count, a.public,
                 (SELECT json_group_array(capability) FROM agent_capabilities WHERE agent = a.id)
             FROM agents a WHERE a.changed > ?1",
        )
        .map_err(err())?;
    let rows = changed
        .query_map([index.version().unwrap_or(-1)], change)
        .map_err(err())?;
    index.apply(version, rows).map_err(err())
}

/// An `agents` row as the index takes it.
fn change(r: &rusqlite::Row<'_>) -> rusqlite::Result<Change> {
    let id = r.get(0)?;
    if !r.get::<_, bool>(2)? {
        return Ok(Change::Unlisted(id));
    }
    let tags: Option<String> = r.get(3)?;
    let capabilities: String = r.get(11)?;
    Ok(Change::Listed(Entry {
        id,
        repo: parse_repo(r.get(1)?)?,
        tags: tags
            .as_deref()
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect(),
        author: r
            .get::<_, Option<String>>(4)?
            .unwrap_or_default()
            .to_lowercase(),
        capabilities: serde_json::from_str::<Vec<String>>(&capabilities)
            .map_err(bad_value)?
            .iter()
            .map(|c| c.to_lowercase())
            .collect(),
        created: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
        size: r.get::<_, Option<i64>>(6)?.unwrap_or(0) as u64,
        downloads: r.get::<_, i64>(7)? as u64,
        rating_sum: r.get::<_, i64>(8)? as u64,
        rating_count: r.get::<_, i64>(9)? as u64,
        public: r.get(10)?,
    }))
}

/// Agents whose words match every word of `text` (the FTS5 word index).
fn word_matches(c: &Connection, text: &str) -> Result<Vec<i64>> {
    let Some(query) = fts_query(text) else {
        return Ok(Vec::new());
    };
    ids(
        c,
        "SELECT rowid FROM agents_text WHERE agents_text MATCH ?1",
        query,
    )
}

/// Agents whose name contains `name` (the trigram index; three characters or more).
fn name_matches(c: &Connection, name: &str) -> Result<Vec<i64>> {
    if name.len() < 3 {
        return Ok(Vec::new());
    }
    ids(
        c,
        "SELECT rowid FROM agents_names WHERE name GLOB ?1",
        format!("*{name}*"),
    )
}

fn ids(c: &Connection, sql: &str, param: String) -> Result<Vec<i64>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_map([param], |r| r.get(0))?.collect())
        .map_err(db_err("searching the catalogue"))
}

/// Searches the catalogue: words through the text index, everything else over `index`. Text
/// that matches no agent's words but could be part of a name matches names containing it.
pub(super) fn search(
    c: &Connection,
    index: &CatalogueIndex,
    search: &Search,
) -> Result<SearchPage> {
    let text = search
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let found = match text {
        None => index.search(search, &TextMatch::default()),
        Some(text) => {
            let name = name_like(text);
            let words = word_matches(c, text)?;
            let ids = match &name {
                Some(n) if words.is_empty() => name_matches(c, n)?,
                _ => words,
            };
            let text = TextMatch {
                ids: Some(&ids),
                name: name.as_deref(),
            };
            index.search(search, &text)
        }
    };
    let mut hits = Vec::with_capacity(found.ids.len());
    for id in found.ids {
        // A row unlisted since the index was read is left out of its page.
        if let Some(hit) = hit(c, id)? {
            hits.push(hit);
        }
    }
    if let Some(tag) = &search.tag {
        for hit in &mut hits {
            show_tag(c, hit, tag)?;
        }
    }
    Ok(SearchPage {
        hits,
        total: found.total,
    })
}

/// Agent `id` as a search hit, showing its display tag.
fn hit(c: &Connection, id: i64) -> Result<Option<SearchHit>> {
    c.prepare_cached(
        "SELECT repo, tag, digest, info, created, size, downloads, rating_sum, rating_count
         FROM agents WHERE id = ?1 AND tag IS NOT NULL",
    )
    .and_then(|mut s| {
        s.query_row([id], |r| {
            let listing = Listing {
                info: decode(r.get::<_, Option<String>>(3)?.as_deref()),
                created: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                size: r.get::<_, Option<i64>>(5)?.unwrap_or(0) as u64,
            };
            let (sum, count) = (r.get::<_, i64>(7)? as u64, r.get::<_, i64>(8)? as u64);
            Ok(SearchHit {
                downloads: r.get::<_, i64>(6)? as u64,
                rating: catalogue::average(sum, count),
                rating_count: count,
                ..hit_of(r.get(0)?, r.get(1)?, r.get(2)?, listing)
            })
        })
        .optional()
    })
    .map_err(db_err("searching the catalogue"))
}

/// Makes a hit show `tag` (which its repository has) instead of the tag search shows.
fn show_tag(c: &Connection, hit: &mut SearchHit, tag: &str) -> Result<()> {
    let Ok(repo) = hit.name.parse::<RepoName>() else {
        return Ok(());
    };
    let digest: Option<String> = c
        .prepare_cached("SELECT digest FROM tags WHERE repo = ?1 AND name = ?2")
        .and_then(|mut s| {
            s.query_row(params![repo.as_str(), tag], |r| r.get(0))
                .optional()
        })
        .map_err(db_err("searching the catalogue"))?;
    if let Some(digest) = digest {
        let listing = listing_of(c, &repo, &digest)?;
        *hit = SearchHit {
            downloads: hit.downloads,
            rating: hit.rating,
            rating_count: hit.rating_count,
            ..hit_of(hit.name.clone(), tag.to_owned(), digest, listing)
        };
    }
    Ok(())
}

pub(super) fn agent(c: &Connection, repo: &RepoName) -> Result<Option<AgentRecord>> {
    let err = || db_err("reading an agent");
    let row: Option<(Option<String>, i64, i64, i64)> = c
        .prepare_cached(
            "SELECT tag, downloads, rating_sum, rating_count FROM agents WHERE repo = ?1",
        )
        .and_then(|mut s| {
            s.query_row(params![repo.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(err())?;
    let Some((Some(tag), downloads, rating_sum, rating_count)) = row else {
        return Ok(None);
    };
    let tags = c
        .prepare_cached(
            "SELECT t.name, t.digest, COALESCE(l.size, m.size), t.updated_at, t.pushed_by FROM tags t
             JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
             LEFT JOIN listings l ON l.repo = t.repo AND l.digest = t.digest
             WHERE t.repo = ?1",
        )
        .and_then(|mut s| {
            s.query_map(params![repo.as_str()], |r| {
                Ok(TagRecord {
                    tag: r.get(0)?,
                    digest: parse_digest(r.get(1)?)?,
                    size: r.get::<_, i64>(2)? as u64,
                    pushed_at: r.get(3)?,
                    pushed_by: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(err())?;
    let (tags, digest) = versions(tags, &tag);
    Ok(Some(AgentRecord {
        name: repo.clone(),
        listing: listing_of(c, repo, &digest)?,
        tag,
        tags,
        downloads: downloads as u64,
        rating_sum: rating_sum as u64,
        rating_count: rating_count as u64,
    }))
}

pub(super) fn add_downloads(tx: &Connection, counts: &[(RepoName, u64)]) -> Result<()> {
    let mut add = tx
        .prepare_cached(
            "INSERT INTO agents (repo, downloads) VALUES (?1, ?2)
             ON CONFLICT (repo) DO UPDATE SET downloads = downloads + excluded.downloads",
        )
        .map_err(db_err("counting downloads"))?;
    for (repo, n) in counts {
        add.execute(params![
            repo.as_str(),
            i64::try_from(*n).unwrap_or(i64::MAX)
        ])
        .map_err(db_err("counting downloads"))?;
    }
    Ok(())
}

pub(super) fn rate(
    tx: &Connection,
    repo: &RepoName,
    rater: &str,
    stars: u8,
) -> Result<Option<(u64, u64)>> {
    let err = || db_err("recording a rating");
    let listed: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM agents WHERE repo = ?1 AND tag IS NOT NULL)")
        .and_then(|mut s| s.query_row(params![repo.as_str()], |r| r.get(0)))
        .map_err(err())?;
    if !listed {
        return Ok(None);
    }
    let previous: Option<i64> = tx
        .prepare_cached("SELECT stars FROM ratings WHERE repo = ?1 AND rater = ?2")
        .and_then(|mut s| {
            s.query_row(params![repo.as_str(), rater], |r| r.get(0))
                .optional()
        })
        .map_err(err())?;
    tx.execute(
        "INSERT INTO ratings (repo, rater, stars, rated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (repo, rater) DO UPDATE SET stars = excluded.stars, rated_at = excluded.rated_at",
        params![repo.as_str(), rater, stars, now()],
    )
    .map_err(err())?;
    let (sum_delta, count_delta) = match previous {
        Some(p) => (i64::from(stars) - p, 0),
        None => (i64::from(stars), 1),
    };
    tx.query_row(
        "UPDATE agents SET rating_sum = rating_sum + ?2, rating_count = rating_count + ?3 WHERE repo = ?1
         RETURNING rating_sum, rating_count",
        params![repo.as_str(), sum_delta, count_delta],
        |r| Ok(Some((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))),
    )
    .map_err(err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fts_queries_quote_every_word_as_a_prefix() {
        assert_eq!(
            fts_query("Chat bot, v2!").as_deref(),
            Some("\"chat\"* AND \"bot\"* AND \"v2\"")
        );
        assert_eq!(fts_query("\"*)(").as_deref(), None);
    }
}
