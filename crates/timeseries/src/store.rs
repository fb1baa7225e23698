//! The samples, in one SQLite file of their own (not the registry's database: losing it
//! loses history, nothing else, and its writes never wait on the registry's).
//!
//! A series is a row of `series` (its labels as JSON, sorted); a scrape is one row of
//! `scrapes`: its time and every series' value packed as `(u32 id, f64 value)` little-endian
//! pairs. About 12 bytes per series per scrape, and a query reads one row per scrape in its
//! window, so a week of 60 series sampled every 15 s is about 30 MB and a week-long query
//! reads them in well under a second.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use promql_parser::parser::VectorSelector;
use rusqlite::{Connection, OptionalExtension, params};

use crate::query::{Source, selects};
use crate::{Labels, Result, Sample, Series};

/// One pair in a scrape's packed values.
const PAIR: usize = 12;

#[derive(Debug)]
pub struct SeriesStore {
    db: Mutex<Db>,
}

#[derive(Debug)]
struct Db {
    conn: Connection,
    /// Every series ever stored, by its labels' JSON; and the labels by id.
    ids: HashMap<String, u32>,
    labels: Vec<Option<Labels>>,
}

impl SeriesStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<SeriesStore> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS series (
                 id INTEGER PRIMARY KEY,
                 labels TEXT NOT NULL UNIQUE
             );
             CREATE TABLE IF NOT EXISTS scrapes (
                 t INTEGER PRIMARY KEY,
                 points BLOB NOT NULL
             );",
        )?;
        let mut db = Db {
            conn,
            ids: HashMap::new(),
            labels: Vec::new(),
        };
        let rows: Vec<(u32, String)> = db
            .conn
            .prepare("SELECT id, labels FROM series")?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, json) in rows {
            // A row this crate did not write is skipped rather than fatal: history is a
            // convenience, and the registry must start.
            if let Ok(labels) = serde_json::from_str(&json) {
                db.remember(id, json, labels);
            }
        }
        Ok(SeriesStore { db: Mutex::new(db) })
    }

    /// Stores one scrape's samples at `at` (milliseconds since the epoch); a second scrape at
    /// the same millisecond replaces the first.
    pub fn append(&self, at: i64, samples: &[Sample]) -> Result<()> {
        let mut db = self.lock();
        db.write(at, Vec::with_capacity(samples.len() * PAIR), samples)
    }

    /// Adds samples to the scrape taken at `at`, or makes one there of them alone.
    pub fn amend(&self, at: i64, samples: &[Sample]) -> Result<()> {
        let mut db = self.lock();
        let points: Vec<u8> = db
            .conn
            .query_row("SELECT points FROM scrapes WHERE t = ?1", [at], |row| {
                row.get(0)
            })
            .optional()?
            .unwrap_or_default();
        db.write(at, points, samples)
    }

    /// Drops the scrapes taken before `before`; returns how many went.
    pub fn prune(&self, before: i64) -> Result<usize> {
        let db = self.lock();
        Ok(db
            .conn
            .execute("DELETE FROM scrapes WHERE t < ?1", [before])?)
    }

    /// When the newest scrape was taken, if there is one.
    pub fn newest(&self) -> Result<Option<i64>> {
        let db = self.lock();
        Ok(db
            .conn
            .query_row("SELECT max(t) FROM scrapes", [], |row| row.get(0))
            .optional()?
            .flatten())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Db> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters (an id is remembered only after its row is written), so carry on.
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Db {
    /// Writes the scrape at `at`: `points` already packed, then `samples`.
    fn write(&mut self, at: i64, mut points: Vec<u8>, samples: &[Sample]) -> Result<()> {
        for sample in samples {
            // A new series' row is written before any scrape refers to it.
            let id = self.id_of(&sample.labels)?;
            points.extend_from_slice(&id.to_le_bytes());
            points.extend_from_slice(&sample.value.to_le_bytes());
        }
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO scrapes (t, points) VALUES (?1, ?2)")?
            .execute(params![at, points])?;
        Ok(())
    }

    fn id_of(&mut self, labels: &Labels) -> Result<u32> {
        let json = serde_json::to_string(labels).unwrap_or_default();
        if let Some(id) = self.ids.get(&json) {
            return Ok(*id);
        }
        self.conn
            .execute("INSERT INTO series (labels) VALUES (?1)", [&json])?;
        let id = u32::try_from(self.conn.last_insert_rowid()).unwrap_or(u32::MAX);
        self.remember(id, json, labels.clone());
        Ok(id)
    }

    fn remember(&mut self, id: u32, json: String, labels: Labels) {
        let at = id as usize;
        if self.labels.len() <= at {
            self.labels.resize(at + 1, None);
        }
        self.labels[at] = Some(labels);
        self.ids.insert(json, id);
    }
}

impl Source for SeriesStore {
    fn select(&self, selector: &VectorSelector, from: i64, to: i64) -> Result<Vec<Series>> {
        let db = self.lock();
        // Which series the selector takes, by id: an index into `found`.
        let mut slot: Vec<Option<usize>> = vec![None; db.labels.len()];
        let mut found = Vec::new();
        for (id, labels) in db.labels.iter().enumerate() {
            if let Some(labels) = labels.as_ref().filter(|l| selects(selector, l)) {
                slot[id] = Some(found.len());
                found.push(Series {
                    labels: labels.clone(),
                    points: Vec::new(),
                });
            }
        }
        if found.is_empty() {
            return Ok(found);
        }
        let mut statement = db
            .conn
            .prepare_cached("SELECT t, points FROM scrapes WHERE t >= ?1 AND t <= ?2 ORDER BY t")?;
        let mut rows = statement.query([from, to])?;
        while let Some(row) = rows.next()? {
            let t: i64 = row.get(0)?;
            let points = row.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?;
            for pair in points.chunks_exact(PAIR) {
                let (id, value) = pair.split_at(4);
                let id = u32::from_le_bytes(id.try_into().unwrap_or_default()) as usize;
                if let Some(Some(i)) = slot.get(id) {
                    let value = f64::from_le_bytes(value.try_into().unwrap_or_default());
                    found[*i].points.push((t, value));
                }
            }
        }
        found.retain(|s| !s.points.is_empty());
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query;

    fn sample(name: &str, result: &str, value: f64) -> Sample {
        Sample {
            labels: Labels::from([
                ("__name__".to_owned(), name.to_owned()),
                ("result".to_owned(), result.to_owned()),
            ]),
            value,
        }
    }

    fn selector(q: &str) -> VectorSelector {
        match promql_parser::parser::parse(q).expect("parse") {
            promql_parser::parser::Expr::VectorSelector(vs) => vs,
            other => panic!("not a selector: {other:?}"),
        }
    }

    #[test]
    fn samples_survive_reopening_and_old_scrapes_are_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metrics.db");
        {
            let store = SeriesStore::open(&path).expect("open");
            for (t, v) in [(1_000, 1.0), (2_000, 2.0), (3_000, 5.0)] {
                store
                    .append(
                        t,
                        &[
                            sample("pushes_total", "success", v),
                            sample("pushes_total", "error", 0.0),
                        ],
                    )
                    .expect("append");
            }
        }
        let store = SeriesStore::open(&path).expect("reopen");
        let success = store
            .select(&selector(r#"pushes_total{result="success"}"#), 0, 10_000)
            .expect("select");
        assert_eq!(success.len(), 1);
        assert_eq!(
            success[0].points,
            vec![(1_000, 1.0), (2_000, 2.0), (3_000, 5.0)]
        );
        // A new series after reopening gets its own id, not an old one's.
        store
            .append(4_000, &[sample("pushes_total", "denied", 7.0)])
            .expect("append");
        let all = store
            .select(&selector("pushes_total"), 2_000, 4_000)
            .expect("select");
        let values: Vec<(String, Vec<(i64, f64)>)> = all
            .into_iter()
            .map(|s| (s.labels["result"].clone(), s.points))
            .collect();
        assert_eq!(
            values,
            vec![
                ("success".to_owned(), vec![(2_000, 2.0), (3_000, 5.0)]),
                ("error".to_owned(), vec![(2_000, 0.0), (3_000, 0.0)]),
                ("denied".to_owned(), vec![(4_000, 7.0)]),
            ]
        );
        // A series added to an earlier scrape reads as if it had been in it.
        store
            .amend(3_000, &[sample("pushes_total", "denied", 0.0)])
            .expect("amend");
        let denied = store
            .select(&selector(r#"pushes_total{result="denied"}"#), 0, 10_000)
            .expect("select");
        assert_eq!(denied[0].points, vec![(3_000, 0.0), (4_000, 7.0)]);
        assert_eq!(store.prune(3_000).expect("prune"), 2);
        assert_eq!(store.newest().expect("newest"), Some(4_000));
        let left = store
            .select(&selector(r#"pushes_total{result=~"succ.*"}"#), 0, 10_000)
            .expect("select");
        assert_eq!(left[0].points, vec![(3_000, 5.0)]);
        assert!(
            store
                .select(&selector("nothing_total"), 0, 10_000)
                .expect("select")
                .is_empty()
        );
        // And a query reads the store like any source.
        let expr = query::parse("sum(pushes_total)").expect("parse");
        let value = query::instant(&store, &expr, 4_000).expect("eval");
        assert_eq!(
            value,
            query::Value::Vector(vec![Sample {
                labels: Labels::new(),
                value: 12.0
            }])
        );
    }
}
