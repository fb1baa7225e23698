//! The catalogue on PostgreSQL: listings per manifest, one `agents` row per tagged repository
//! with its words as a `tsvector` and its name under a `pg_trgm` index, downloads and ratings.
//!
//! As on SQLite, a tag change only marks its repository pending in the transaction that moves
//! the tag, and the catalogue catches up before any catalogue read, on any node. A catch-up
//! holds the catalogue lock ([`super::lock_catalogue`]), so nodes take turns; a repository
//! marked again while one works keeps its mark (`marked` moved) for the next.

use agent_registry_oci::RepoName;
use agent_registry_oci::catalogue::{self, AgentInfo, SearchHit};
use deadpool_postgres::{Client, GenericClient, Transaction};

use super::{db_err, exec, lock_catalogue, now, parse, row, rows, size, snapshot};
use crate::catalogue_index::{CatalogueIndex, Change, Entry, TextMatch};
use crate::catalogue_rows::{
    TagRow, decode, display_tag, encode, hit_of, name_like, tag_names, terms, versions, words,
};
use crate::{AgentRecord, Listing, MetadataError, Result, Search, SearchPage, TagRecord};

/// Pending repositories one catch-up transaction refreshes.
const CATCH_UP_BATCH: i64 = 1000;

pub(super) async fn store_listing(
    tx: &Transaction<'_>,
    repo: &RepoName,
    digest: &str,
    listing: &Listing,
) -> Result<()> {
    exec(
        tx,
        "storing a catalogue listing",
        "INSERT INTO listings (repo, digest, info, created, size) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT DO NOTHING",
        &[
            &repo.as_str(),
            &digest,
            &encode(&listing.info)?,
            &listing.created,
            &size(listing.size),
        ],
    )
    .await
    .map(drop)
}

/// Marks `repo`'s catalogue row out of step with its tags; called in the transaction of every
/// tag change.
pub(super) async fn mark(tx: &Transaction<'_>, repo: &RepoName) -> Result<()> {
    exec(
        tx,
        "marking the catalogue",
        "INSERT INTO catalogue_pending (repo, marked) VALUES ($1, nextval('catalogue_marks'))
         ON CONFLICT (repo) DO UPDATE SET marked = excluded.marked",
        &[&repo.as_str()],
    )
    .await
    .map(drop)
}

/// Whether any repository waits for [`catch_up`].
pub(super) async fn behind(c: &impl GenericClient) -> Result<bool> {
    let r = row(
        c,
        "checking the catalogue",
        "SELECT 1 FROM catalogue_pending LIMIT 1",
        &[],
    )
    .await?;
    Ok(r.is_some())
}

/// Refreshes up to [`CATCH_UP_BATCH`] pending repositories; returns how many.
pub(super) async fn catch_up(tx: &Transaction<'_>) -> Result<usize> {
    lock_catalogue(tx).await?;
    let pending = rows(
        tx,
        "updating the catalogue",
        "SELECT repo, marked FROM catalogue_pending LIMIT $1",
        &[&CATCH_UP_BATCH],
    )
    .await?;
    for r in &pending {
        let (repo, marked): (&str, i64) = (r.get(0), r.get(1));
        if let Ok(name) = repo.parse::<RepoName>() {
            refresh(tx, &name).await?;
        }
        exec(
            tx,
            "updating the catalogue",
            "DELETE FROM catalogue_pending WHERE repo = $1 AND marked = $2",
            &[&repo, &marked],
        )
        .await?;
    }
    Ok(pending.len())
}

/// Brings `repo`'s catalogue row in step with its tags.
async fn refresh(tx: &Transaction<'_>, repo: &RepoName) -> Result<()> {
    let doing = "updating the catalogue";
    let tags: Vec<TagRow> = rows(
        tx,
        doing,
        "SELECT name, digest, updated_at FROM tags WHERE repo = $1",
        &[&repo.as_str()],
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect();
    let current = row(
        tx,
        doing,
        "SELECT id, tag, digest, info, tags FROM agents WHERE repo = $1",
        &[&repo.as_str()],
    )
    .await?;
    let listed = current
        .as_ref()
        .filter(|c| c.get::<_, Option<&str>>(1).is_some());
    let Some((tag, digest, _)) = display_tag(&tags) else {
        if let Some(c) = listed {
            exec(
                tx,
                doing,
                "UPDATE agents SET tag = NULL, digest = NULL, tags = NULL, capabilities = '{}', words = NULL
                 WHERE id = $1",
                &[&c.get::<_, i64>(0)],
            )
            .await?;
        }
        return Ok(());
    };
    let names = tag_names(&tags);
    if let Some(c) = listed.filter(|c| {
        c.get::<_, Option<&str>>(1) == Some(tag) && c.get::<_, Option<&str>>(2) == Some(digest)
    }) {
        // The shown tag stays; only the tag list (for searches by tag) may have moved.
        if c.get::<_, Option<&str>>(4) != Some(&names) {
            exec(
                tx,
                doing,
                "UPDATE agents SET tags = $2 WHERE id = $1",
                &[&c.get::<_, i64>(0), &names],
            )
            .await?;
        }
        return Ok(());
    }
    let listing = listing_of(tx, repo, digest).await?;
    let info = encode(&listing.info)?;
    let id: i64 = row(
        tx,
        doing,
        "INSERT INTO agents (repo, tag, digest, info, author, created, size, tags) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (repo) DO UPDATE SET tag = excluded.tag, digest = excluded.digest, info = excluded.info,
             author = excluded.author, created = excluded.created, size = excluded.size, tags = excluded.tags
         RETURNING id",
        &[
            &repo.as_str(),
            tag,
            digest,
            &info,
            &listing.info.author,
            &listing.created,
            &size(listing.size),
            &names,
        ],
    )
    .await?
    .map(|r| r.get(0))
    .ok_or_else(|| MetadataError::backend(doing, "no agent row returned"))?;
    // Most pushes of a new version keep the description: the text index stays as it is.
    if listed.and_then(|c| c.get::<_, Option<&str>>(3)) != Some(&info) {
        index_text(tx, id, repo, &listing.info).await?;
    }
    Ok(())
}

/// Replaces agent `id`'s capabilities and words.
async fn index_text(
    tx: &Transaction<'_>,
    id: i64,
    repo: &RepoName,
    info: &AgentInfo,
) -> Result<()> {
    let mut capabilities: Vec<String> = Vec::new();
    for c in &info.capabilities {
        if !capabilities.iter().any(|k| k.eq_ignore_ascii_case(c)) {
            capabilities.push(c.clone());
        }
    }
    exec(
        tx,
        "indexing catalogue text",
        "UPDATE agents SET capabilities = $2, words = to_tsvector('simple', $3) WHERE id = $1",
        &[&id, &capabilities, &searchable(&words(repo, info))],
    )
    .await
    .map(drop)
}

/// Text as the `simple` parser should see it: runs of letters and digits split by spaces, so
/// it finds the words [`terms`] makes of a query (it would otherwise keep `a@b.c` or `x-y`
/// whole).
fn searchable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect()
}

/// A `tsquery`: every term of `text`, long ones as prefixes.
fn ts_query(text: &str) -> Option<String> {
    let terms: Vec<String> = terms(text)
        .into_iter()
        .map(|t| format!("'{}'{}", t.word, if t.prefix { ":*" } else { "" }))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" & "))
}

/// The listing of a manifest.
async fn listing_of(c: &impl GenericClient, repo: &RepoName, digest: &str) -> Result<Listing> {
    let r = row(
        c,
        "reading a catalogue listing",
        "SELECT l.info, COALESCE(l.created, m.created_at), COALESCE(l.size, m.size)
         FROM manifests m LEFT JOIN listings l ON l.repo = m.repo AND l.digest = m.digest
         WHERE m.repo = $1 AND m.digest = $2",
        &[&repo.as_str(), &digest],
    )
    .await?;
    Ok(r.map(|r| Listing {
        info: decode(r.get(0)),
        created: r.get(1),
        size: r.get::<_, i64>(2) as u64,
    })
    .unwrap_or_default())
}

/// The catalogue version: the change number of the last changed `agents` row.
pub(super) async fn version(c: &impl GenericClient) -> Result<i64> {
    let r = row(
        c,
        "reading the catalogue version",
        "SELECT version FROM catalogue_version",
        &[],
    )
    .await?;
    Ok(r.map_or(0, |r| r.get(0)))
}

/// The catalogue version and the `agents` rows changed after `from` (every row when `None`),
/// read from one snapshot.
pub(super) async fn changes(client: &mut Client, from: Option<i64>) -> Result<(i64, Vec<Change>)> {
    let doing = "loading the catalogue index";
    let tx = snapshot(client, doing).await?;
    let version = version(&tx).await?;
    let changed = rows(
        &tx,
        doing,
        "SELECT id, repo, tag IS NOT NULL, tags, author, created, size, downloads,
             rating_sum, rating_count, public, capabilities
         FROM agents WHERE changed > $1",
        &[&from.unwrap_or(-1)],
    )
    .await?;
    tx.commit().await.map_err(db_err(doing))?;
    let changes = changed
        .iter()
        .map(|r| {
            let id = r.get(0);
            if !r.get::<_, bool>(2) {
                return Ok(Change::Unlisted(id));
            }
            Ok(Change::Listed(Entry {
                id,
                repo: parse(doing, r.get(1))?,
                tags: r
                    .get::<_, Option<&str>>(3)
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect(),
                author: r
                    .get::<_, Option<&str>>(4)
                    .unwrap_or_default()
                    .to_lowercase(),
                capabilities: r
                    .get::<_, Vec<String>>(11)
                    .iter()
                    .map(|c| c.to_lowercase())
                    .collect(),
                created: r.get::<_, Option<i64>>(5).unwrap_or(0),
                size: r.get::<_, Option<i64>>(6).unwrap_or(0) as u64,
                downloads: r.get::<_, i64>(7) as u64,
                rating_sum: r.get::<_, i64>(8) as u64,
                rating_count: r.get::<_, i64>(9) as u64,
                public: r.get(10),
            }))
        })
        .collect::<Result<_>>()?;
    Ok((version, changes))
}

/// Agents whose words match every word of `text`.
async fn word_matches(c: &impl GenericClient, text: &str) -> Result<Vec<i64>> {
    let Some(query) = ts_query(text) else {
        return Ok(Vec::new());
    };
    ids(
        c,
        "SELECT id FROM agents WHERE words @@ to_tsquery('simple', $1)",
        query,
    )
    .await
}

/// Agents whose name contains `name` (the trigram index; three characters or more).
async fn name_matches(c: &impl GenericClient, name: &str) -> Result<Vec<i64>> {
    if name.len() < 3 {
        return Ok(Vec::new());
    }
    // `name_like` allows `_`, which LIKE would take for any character.
    let pattern = format!("%{}%", name.replace('_', "\\_"));
    ids(c, "SELECT id FROM agents WHERE repo LIKE $1", pattern).await
}

async fn ids(c: &impl GenericClient, sql: &str, param: String) -> Result<Vec<i64>> {
    Ok(rows(c, "searching the catalogue", sql, &[&param])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Searches the catalogue: words through the text index, everything else over `index`. Text
/// that matches no agent's words but could be part of a name matches names containing it.
pub(super) async fn search(
    c: &impl GenericClient,
    index: &std::sync::RwLock<CatalogueIndex>,
    search: &Search,
) -> Result<SearchPage> {
    let text = search
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let (name, ids) = match text {
        None => (None, None),
        Some(text) => {
            let name = name_like(text);
            let words = word_matches(c, text).await?;
            let ids = match &name {
                Some(n) if words.is_empty() => name_matches(c, n).await?,
                _ => words,
            };
            (name, Some(ids))
        }
    };
    let found = {
        let index = index.read().map_err(|_| super::poisoned())?;
        index.search(
            search,
            &TextMatch {
                ids: ids.as_deref(),
                name: name.as_deref(),
            },
        )
    };
    let mut hits = hits(c, &found.ids).await?;
    if let Some(tag) = &search.tag {
        for hit in &mut hits {
            show_tag(c, hit, tag).await?;
        }
    }
    Ok(SearchPage {
        hits,
        total: found.total,
    })
}

/// Agents `ids` as search hits, in that order, each showing its display tag. A row unlisted
/// since the index was read is left out.
async fn hits(c: &impl GenericClient, ids: &[i64]) -> Result<Vec<SearchHit>> {
    let found = rows(
        c,
        "searching the catalogue",
        "SELECT id, repo, tag, digest, info, created, size, downloads, rating_sum, rating_count
         FROM agents WHERE id = ANY($1) AND tag IS NOT NULL",
        &[&ids],
    )
    .await?;
    let mut hits: Vec<(usize, SearchHit)> = found
        .iter()
        .map(|r| {
            let place = ids.iter().position(|id| *id == r.get::<_, i64>(0));
            let listing = Listing {
                info: decode(r.get(4)),
                created: r.get::<_, Option<i64>>(5).unwrap_or(0),
                size: r.get::<_, Option<i64>>(6).unwrap_or(0) as u64,
            };
            let (sum, count) = (r.get::<_, i64>(8) as u64, r.get::<_, i64>(9) as u64);
            let hit = SearchHit {
                downloads: r.get::<_, i64>(7) as u64,
                rating: catalogue::average(sum, count),
                rating_count: count,
                ..hit_of(r.get(1), r.get(2), r.get(3), listing)
            };
            (place.unwrap_or(usize::MAX), hit)
        })
        .collect();
    hits.sort_by_key(|(place, _)| *place);
    Ok(hits.into_iter().map(|(_, hit)| hit).collect())
}

/// Makes a hit show `tag` (which its repository has) instead of the tag search shows.
async fn show_tag(c: &impl GenericClient, hit: &mut SearchHit, tag: &str) -> Result<()> {
    let Ok(repo) = hit.name.parse::<RepoName>() else {
        return Ok(());
    };
    let digest = row(
        c,
        "searching the catalogue",
        "SELECT digest FROM tags WHERE repo = $1 AND name = $2",
        &[&repo.as_str(), &tag],
    )
    .await?;
    if let Some(digest) = digest.map(|r| r.get::<_, String>(0)) {
        let listing = listing_of(c, &repo, &digest).await?;
        *hit = SearchHit {
            downloads: hit.downloads,
            rating: hit.rating,
            rating_count: hit.rating_count,
            ..hit_of(hit.name.clone(), tag.to_owned(), digest, listing)
        };
    }
    Ok(())
}

pub(super) async fn agent(c: &impl GenericClient, repo: &RepoName) -> Result<Option<AgentRecord>> {
    let doing = "reading an agent";
    let r = row(
        c,
        doing,
        "SELECT tag, downloads, rating_sum, rating_count FROM agents WHERE repo = $1",
        &[&repo.as_str()],
    )
    .await?;
    let Some(r) = r else { return Ok(None) };
    let Some(tag) = r.get::<_, Option<String>>(0) else {
        return Ok(None);
    };
    let tags = rows(
        c,
        doing,
        "SELECT t.name, t.digest, COALESCE(l.size, m.size), t.updated_at, t.pushed_by FROM tags t
         JOIN manifests m ON m.repo = t.repo AND m.digest = t.digest
         LEFT JOIN listings l ON l.repo = t.repo AND l.digest = t.digest
         WHERE t.repo = $1",
        &[&repo.as_str()],
    )
    .await?
    .iter()
    .map(|t| {
        Ok(TagRecord {
            tag: t.get(0),
            digest: parse(doing, t.get(1))?,
            size: t.get::<_, i64>(2) as u64,
            pushed_at: t.get(3),
            pushed_by: t.get(4),
        })
    })
    .collect::<Result<Vec<_>>>()?;
    let (tags, digest) = versions(tags, &tag);
    Ok(Some(AgentRecord {
        name: repo.clone(),
        listing: listing_of(c, repo, &digest).await?,
        tag,
        tags,
        downloads: r.get::<_, i64>(1) as u64,
        rating_sum: r.get::<_, i64>(2) as u64,
        rating_count: r.get::<_, i64>(3) as u64,
    }))
}

pub(super) async fn add_downloads(tx: &Transaction<'_>, counts: &[(RepoName, u64)]) -> Result<()> {
    lock_catalogue(tx).await?;
    for (repo, n) in counts {
        exec(
            tx,
            "counting downloads",
            "INSERT INTO agents (repo, downloads) VALUES ($1, $2)
             ON CONFLICT (repo) DO UPDATE SET downloads = agents.downloads + excluded.downloads",
            &[&repo.as_str(), &size(*n)],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn rate(
    tx: &Transaction<'_>,
    repo: &RepoName,
    rater: &str,
    stars: u8,
) -> Result<Option<(u64, u64)>> {
    let doing = "recording a rating";
    lock_catalogue(tx).await?;
    let listed = row(
        tx,
        doing,
        "SELECT 1 FROM agents WHERE repo = $1 AND tag IS NOT NULL",
        &[&repo.as_str()],
    )
    .await?;
    if listed.is_none() {
        return Ok(None);
    }
    let previous: Option<i32> = row(
        tx,
        doing,
        "SELECT stars FROM ratings WHERE repo = $1 AND rater = $2",
        &[&repo.as_str(), &rater],
    )
    .await?
    .map(|r| r.get(0));
    let stars = i32::from(stars);
    exec(
        tx,
        doing,
        "INSERT INTO ratings (repo, rater, stars, rated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (repo, rater) DO UPDATE SET stars = excluded.stars, rated_at = excluded.rated_at",
        &[&repo.as_str(), &rater, &stars, &now()],
    )
    .await?;
    let (sum_delta, count_delta) = match previous {
        Some(p) => (i64::from(stars - p), 0_i64),
        None => (i64::from(stars), 1),
    };
    let r = row(
        tx,
        doing,
        "UPDATE agents SET rating_sum = rating_sum + $2, rating_count = rating_count + $3 WHERE repo = $1
         RETURNING rating_sum, rating_count",
        &[&repo.as_str(), &sum_delta, &count_delta],
    )
    .await?;
    Ok(r.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_queries_keep_every_word_long_ones_as_prefixes() {
        assert_eq!(
            ts_query("Chat bot, v2!").as_deref(),
            Some("'chat':* & 'bot':* & 'v2'")
        );
        assert_eq!(ts_query("\"*)(").as_deref(), None);
        assert_eq!(searchable("a@b.c x-y"), "a b c x y");
    }
}
