//! The catalogue's search index, in memory: one narrow entry per listed agent (name, tags,
//! author, capabilities, created, size, downloads, rating, visibility), so a search filters,
//! counts, sorts and pages over memory instead of visiting every matching database row.
//!
//! Backends keep it in step with a change sequence: every change to an agent's catalogue row
//! gives the row the next number, and [`CatalogueIndex::apply`] takes the rows changed since
//! [`CatalogueIndex::version`]. So every node sharing a database converges on the same index,
//! and a search sees every change committed before it started. Words stay in the database's
//! text index; a search passes the ids it matched.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound::{Excluded, Included, Unbounded};

use agent_registry_oci::RepoName;
use agent_registry_oci::catalogue::SortKey;
use smallvec::SmallVec;

use crate::Search;
use crate::access::Readable;

/// One agent as search filters and sorts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub id: i64,
    pub repo: RepoName,
    /// Every tag of the repository.
    pub tags: Vec<String>,
    /// Lower-cased.
    pub author: String,
    /// Lower-cased.
    pub capabilities: Vec<String>,
    pub created: i64,
    pub size: u64,
    pub downloads: u64,
    pub rating_sum: u64,
    pub rating_count: u64,
    /// Set public or private; `None` follows the registry's default.
    pub public: Option<bool>,
}

/// A changed catalogue row: listed (with a tag) or not (every tag gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Listed(Entry),
    Unlisted(i64),
}

#[derive(Debug, Default)]
pub(crate) struct CatalogueIndex {
    version: Option<i64>,
    rows: Vec<Row>,
    /// Agent id to its place in `rows`.
    slots: HashMap<i64, usize>,
    names: NameOrder,
    authors: Symbols,
    capabilities: Symbols,
    tags: Symbols,
}

/// An [`Entry`] as the index keeps it: numbers only, except the name, so a search scans a
/// contiguous array without following pointers.
#[derive(Debug)]
struct Row {
    id: i64,
    created: i64,
    size: u64,
    downloads: u64,
    rating_sum: u64,
    rating_count: u64,
    /// Sorts like the name (see [`NameOrder`]).
    name_key: u64,
    author: u32,
    public: Option<bool>,
    capabilities: SmallVec<[u32; 4]>,
    tags: SmallVec<[u32; 4]>,
    repo: RepoName,
}

/// What matched a search's text: agent ids from the backend's text index, and the text
/// lower-cased when it could be (part of) a name, which relevance ranks by.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextMatch<'a> {
    pub ids: Option<&'a [i64]>,
    pub name: Option<&'a str>,
}

/// One page of agent ids, best first, and how many matched in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub ids: Vec<i64>,
    pub total: u64,
}

impl CatalogueIndex {
    /// The change number the index is at; `None` before the first load.
    pub fn version(&self) -> Option<i64> {
        self.version
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Applies the changes up to `version`, as the backend reads them; returns how many.
    /// When reading fails, the version stays, so the next call reads the same changes again
    /// (applying a change twice is harmless).
    pub fn apply<E>(
        &mut self,
        version: i64,
        changes: impl IntoIterator<Item = Result<Change, E>>,
    ) -> Result<usize, E> {
        let mut renumber = false;
        let mut applied = 0;
        let mut outcome = Ok(());
        for change in changes {
            let change = match change {
                Ok(change) => change,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            applied += 1;
            match change {
                Change::Listed(entry) => {
                    let (name_key, fits) = self.names.insert(entry.repo.as_str());
                    renumber |= !fits;
                    let row = Row {
                        id: entry.id,
                        created: entry.created,
                        size: entry.size,
                        downloads: entry.downloads,
                        rating_sum: entry.rating_sum,
                        rating_count: entry.rating_count,
                        name_key,
                        author: self.authors.intern(&entry.author),
                        public: entry.public,
                        capabilities: entry
                            .capabilities
                            .iter()
                            .map(|c| self.capabilities.intern(c))
                            .collect(),
                        tags: entry.tags.iter().map(|t| self.tags.intern(t)).collect(),
                        repo: entry.repo,
                    };
                    match self.slots.get(&row.id) {
                        Some(&slot) => self.rows[slot] = row,
                        None => {
                            self.slots.insert(row.id, self.rows.len());
                            self.rows.push(row);
                        }
                    }
                }
                Change::Unlisted(id) => {
                    if let Some(slot) = self.slots.remove(&id) {
                        let row = self.rows.swap_remove(slot);
                        self.names.remove(row.repo.as_str());
                        if let Some(moved) = self.rows.get(slot) {
                            self.slots.insert(moved.id, slot);
                        }
                    }
                }
            }
        }
        if renumber {
            self.names.renumber();
            for row in &mut self.rows {
                row.name_key = self.names.get(row.repo.as_str()).unwrap_or_default();
            }
        }
        outcome?;
        self.version = Some(version);
        Ok(applied)
    }

    /// The page `search` asks for. Only `text.ids` are candidates when given.
    pub fn search(&self, search: &Search, text: &TextMatch<'_>) -> Found {
        let Some(filter) = Filter::new(self, search) else {
            return Found {
                ids: Vec::new(),
                total: 0,
            };
        };
        let ranking = Ranking::new(search.sort, text.name);
        let keyed = |row: &Row| (ranking.key(row), row.id);
        let mut matches: Vec<([u64; 4], i64)> = match text.ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| self.slots.get(id).map(|&slot| &self.rows[slot]))
                .filter(|row| filter.keeps(row))
                .map(keyed)
                .collect(),
            None => self
                .rows
                .iter()
                .filter(|row| filter.keeps(row))
                .map(keyed)
                .collect(),
        };
        let total = matches.len() as u64;
        let offset = usize::try_from(search.offset).unwrap_or(usize::MAX);
        let end = offset.saturating_add(search.limit as usize);
        if end < matches.len() {
            // Only the matches up to the page's end need to be in order.
            matches.select_nth_unstable(end);
            matches.truncate(end);
        }
        matches.sort_unstable();
        Found {
            ids: matches.iter().skip(offset).map(|(_, id)| *id).collect(),
            total,
        }
    }
}

/// A search's bounds, resolved against the index once: names and symbols to numbers.
struct Filter<'a> {
    search: &'a Search,
    name: Option<u64>,
    capability: Option<u32>,
    tag: Option<u32>,
    /// Per author symbol, whether it contains the searched author.
    authors: Option<Vec<bool>>,
}

impl<'a> Filter<'a> {
    /// `None` when nothing can match (a name, capability or tag the index has never seen).
    fn new(index: &CatalogueIndex, search: &'a Search) -> Option<Filter<'a>> {
        let author = search.author.as_deref().map(str::to_lowercase);
        Some(Filter {
            search,
            name: match &search.name {
                Some(n) => Some(index.names.get(n)?),
                None => None,
            },
            capability: match &search.capability {
                Some(c) => Some(index.capabilities.get(&c.to_lowercase())?),
                None => None,
            },
            tag: match &search.tag {
                Some(t) => Some(index.tags.get(t)?),
                None => None,
            },
            authors: author.map(|a| index.authors.matching(|x| x.contains(a.as_str()))),
        })
    }

    fn keeps(&self, row: &Row) -> bool {
        let s = self.search;
        self.name.is_none_or(|k| row.name_key == k)
            && s.created_after.is_none_or(|t| row.created >= t)
            && s.created_before.is_none_or(|t| row.created < t)
            && s.size_min.is_none_or(|n| row.size >= n)
            && s.size_max.is_none_or(|n| row.size <= n)
            && self
                .capability
                .is_none_or(|c| row.capabilities.contains(&c))
            && self.tag.is_none_or(|t| row.tags.contains(&t))
            && self
                .authors
                .as_ref()
                .is_none_or(|ok| ok[row.author as usize])
            && readable(&s.readable, row)
    }
}

fn readable(readable: &Readable, row: &Row) -> bool {
    match readable {
        Readable::All => true,
        Readable::Some {
            public_by_default,
            patterns,
        } => {
            row.public.unwrap_or(*public_by_default)
                || patterns.iter().any(|p| p.matches(&row.repo))
        }
    }
}

/// A search's order as one integer key per row, compared as a whole; the name's key comes
/// last, so ties never remain and pages never overlap.
struct Ranking<'a> {
    sort: SortKey,
    /// The searched text when relevance ranks names by it, and `/text`.
    name: Option<(&'a str, String)>,
}

impl<'a> Ranking<'a> {
    fn new(sort: SortKey, name: Option<&'a str>) -> Ranking<'a> {
        Ranking {
            sort,
            name: name.map(|n| (n, format!("/{n}"))),
        }
    }

    fn key(&self, row: &Row) -> [u64; 4] {
        let most = |n: u64| u64::MAX - n;
        match self.sort {
            SortKey::Relevance => match &self.name {
                Some((n, part)) => [
                    name_tier(row.repo.as_str(), n, part),
                    most(row.downloads),
                    row.name_key,
                    0,
                ],
                None => [most(row.downloads), row.name_key, 0, 0],
            },
            SortKey::Downloads => [most(row.downloads), row.name_key, 0, 0],
            SortKey::Rating => match row.rating_count {
                0 => [1, 0, 0, row.name_key],
                count => {
                    // Equal fractions divide to the same float; non-negative floats order
                    // like their bits.
                    let average = row.rating_sum as f64 / count as f64;
                    [0, most(average.to_bits()), most(count), row.name_key]
                }
            },
            // Flipping the sign bit orders signed times as unsigned numbers.
            SortKey::Created => [most(row.created as u64 ^ (1 << 63)), row.name_key, 0, 0],
            SortKey::Name => [row.name_key, 0, 0, 0],
        }
    }
}

/// How well `repo` matches the searched text `n` (`part` is `/n`): 0 for the name itself or
/// its last part, 1 when the name or one of its parts starts with it, 2 when it contains
/// it, else 3.
fn name_tier(repo: &str, n: &str, part: &str) -> u64 {
    if repo == n || repo.ends_with(part) {
        0
    } else if repo.starts_with(n) || repo.contains(part) {
        1
    } else if repo.contains(n) {
        2
    } else {
        3
    }
}

/// Strings stored once and named by number.
#[derive(Debug, Default)]
struct Symbols {
    ids: HashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Symbols {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct values");
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    fn get(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    /// Whether each symbol, by number, satisfies `f`.
    fn matching(&self, f: impl Fn(&str) -> bool) -> Vec<bool> {
        self.names.iter().map(|n| f(n)).collect()
    }
}

/// Numbers that sort like the names they stand for, so sorting and tie-breaks compare
/// integers. A new name takes a number between its neighbours'; when none is free, every
/// name is renumbered with wide gaps again (rare: after about 32 names in one gap).
#[derive(Debug, Default)]
struct NameOrder {
    keys: BTreeMap<Box<str>, u64>,
}

/// The space between neighbouring keys after a renumbering.
const GAP: u64 = 1 << 32;

impl NameOrder {
    /// The key of `name`, adding it if new; `false` when it had to share its neighbour's key
    /// and [`NameOrder::renumber`] must run before the keys are compared.
    fn insert(&mut self, name: &str) -> (u64, bool) {
        if let Some(&key) = self.keys.get(name) {
            return (key, true);
        }
        let below = self
            .keys
            .range::<str, _>((Unbounded, Excluded(name)))
            .next_back()
            .map(|(_, &k)| k);
        let above = self
            .keys
            .range::<str, _>((Included(name), Unbounded))
            .next()
            .map(|(_, &k)| k);
        let (key, fits) = match (below, above) {
            (None, None) => (GAP, true),
            // The last name: one gap on, so names added in order rarely renumber.
            (Some(lo), None) => (lo.saturating_add(GAP), lo < u64::MAX - GAP),
            (lo, Some(hi)) => {
                let lo = lo.unwrap_or(0);
                (lo + (hi - lo) / 2, hi - lo >= 2)
            }
        };
        self.keys.insert(name.into(), key);
        (key, fits)
    }

    fn remove(&mut self, name: &str) {
        self.keys.remove(name);
    }

    fn get(&self, name: &str) -> Option<u64> {
        self.keys.get(name).copied()
    }

    fn renumber(&mut self) {
        for (i, key) in self.keys.values_mut().enumerate() {
            *key = (i as u64 + 1) * GAP;
        }
    }
}

#[cfg(test)]
mod tests {
    use agent_registry_oci::RepoPattern;

    use super::*;

    fn entry(id: i64, repo: &str) -> Entry {
        Entry {
            id,
            repo: repo.parse().expect("name"),
            tags: vec!["latest".to_owned()],
            author: String::new(),
            capabilities: Vec::new(),
            created: id,
            size: 0,
            downloads: 0,
            rating_sum: 0,
            rating_count: 0,
            public: None,
        }
    }

    fn load(index: &mut CatalogueIndex, version: i64, changes: impl IntoIterator<Item = Change>) {
        let loaded = index.apply(version, changes.into_iter().map(Ok::<_, ()>));
        assert!(loaded.is_ok());
    }

    fn names(index: &CatalogueIndex, found: &Found) -> Vec<String> {
        found
            .ids
            .iter()
            .map(|id| index.rows[index.slots[id]].repo.to_string())
            .collect()
    }

    fn search(sort: SortKey, offset: u64, limit: u32) -> Search {
        Search {
            sort,
            offset,
            limit,
            ..Search::default()
        }
    }

    #[test]
    fn unlisting_keeps_every_other_entry_findable() {
        let mut index = CatalogueIndex::default();
        load(
            &mut index,
            3,
            (1..=3).map(|i| Change::Listed(entry(i, &format!("a/{i}")))),
        );
        load(&mut index, 4, [Change::Unlisted(1), Change::Unlisted(9)]);
        assert_eq!(index.version(), Some(4));
        let found = index.search(&search(SortKey::Name, 0, 10), &TextMatch::default());
        assert_eq!(names(&index, &found), ["a/2", "a/3"]);
        load(&mut index, 5, [Change::Listed(entry(1, "a/1"))]);
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn pages_of_a_partial_sort_join_up_to_the_full_order() {
        let mut index = CatalogueIndex::default();
        load(
            &mut index,
            1,
            (0..50).map(|i| {
                Change::Listed(Entry {
                    downloads: (i * 7 % 11) as u64,
                    ..entry(i, &format!("n/{i:02}"))
                })
            }),
        );
        let all = index.search(&search(SortKey::Downloads, 0, 100), &TextMatch::default());
        assert_eq!(all.total, 50);
        let mut paged = Vec::new();
        for page in 0..7 {
            let found = index.search(
                &search(SortKey::Downloads, page * 8, 8),
                &TextMatch::default(),
            );
            assert_eq!(found.total, 50);
            paged.extend(found.ids);
        }
        assert_eq!(paged, all.ids);
    }

    #[test]
    fn name_keys_sort_like_names_through_renumbering() {
        let mut index = CatalogueIndex::default();
        // Each name falls just after "a", halving one gap until it must renumber, and again.
        let mut added: Vec<String> = vec!["a".into(), "b".into()];
        added.extend((1..100).map(|n| format!("a{}", "0".repeat(100 - n))));
        added.extend((0..100).map(|n| format!("z{n:03}")));
        for (i, name) in added.iter().enumerate() {
            load(
                &mut index,
                i as i64,
                [Change::Listed(entry(i as i64, name))],
            );
        }
        let found = index.search(&search(SortKey::Name, 0, 1000), &TextMatch::default());
        added.sort();
        assert_eq!(names(&index, &found), added);
    }

    #[test]
    fn ratings_sort_by_exact_average_then_count_and_unrated_last() {
        let mut index = CatalogueIndex::default();
        let rated = |id, repo: &str, sum, count| {
            Change::Listed(Entry {
                rating_sum: sum,
                rating_count: count,
                ..entry(id, repo)
            })
        };
        load(
            &mut index,
            1,
            [
                rated(1, "a", 0, 0),
                rated(2, "b", 9, 2),
                rated(3, "c", 5, 1),
                rated(4, "d", 10, 2),
                rated(5, "e", 14, 3),
            ],
        );
        let found = index.search(&search(SortKey::Rating, 0, 10), &TextMatch::default());
        assert_eq!(names(&index, &found), ["d", "c", "e", "b", "a"]);
    }

    #[test]
    fn relevance_ranks_the_name_then_parts_then_substrings() {
        let mut index = CatalogueIndex::default();
        load(
            &mut index,
            1,
            [
                Change::Listed(entry(1, "x/my-summ")),
                Change::Listed(entry(2, "summ")),
                Change::Listed(entry(3, "team/summarizer")),
                Change::Listed(entry(4, "other")),
                Change::Listed(entry(5, "team/summ")),
            ],
        );
        let ids = [1, 2, 3, 4, 5];
        let text = TextMatch {
            ids: Some(&ids),
            name: Some("summ"),
        };
        let found = index.search(&search(SortKey::Relevance, 0, 10), &text);
        assert_eq!(
            names(&index, &found),
            ["summ", "team/summ", "team/summarizer", "x/my-summ", "other"]
        );
    }

    #[test]
    fn visibility_follows_the_entry_then_the_default_then_grants() {
        let mut index = CatalogueIndex::default();
        load(
            &mut index,
            1,
            [
                Change::Listed(Entry {
                    public: Some(true),
                    ..entry(1, "open/a")
                }),
                Change::Listed(Entry {
                    public: Some(false),
                    ..entry(2, "team/b")
                }),
                Change::Listed(entry(3, "unset/c")),
            ],
        );
        let visible = |public_by_default, patterns: &[&str]| {
            let s = Search {
                readable: Readable::Some {
                    public_by_default,
                    patterns: patterns
                        .iter()
                        .map(|p| p.parse::<RepoPattern>().expect("pattern"))
                        .collect(),
                },
                ..search(SortKey::Name, 0, 10)
            };
            names(&index, &index.search(&s, &TextMatch::default()))
        };
        assert_eq!(visible(false, &[]), ["open/a"]);
        assert_eq!(visible(true, &[]), ["open/a", "unset/c"]);
        assert_eq!(visible(false, &["team/*"]), ["open/a", "team/b"]);
    }
}
