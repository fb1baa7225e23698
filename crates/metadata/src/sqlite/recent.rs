//! The answers to the two reads every pull repeats (a blob's size in a repository, a manifest
//! by tag or digest), kept until the next write commits.
//!
//! The writer thread calls [`RecentReads::forget`] after every commit, so nothing here is ever
//! older than the last write: any commit at all empties the cache. That is coarse, but it
//! needs no knowledge of which write touches which answer, and pulls, the reads that repeat,
//! come in runs without writes between them. A SQLite registry is one process (see
//! `blob_lifecycle`), so every write to these tables goes through this process's writer. The
//! one thing another process writes while the server runs is the access tables (the `user`,
//! `token` and `permission` commands), and no answer here comes from those.
//!
//! A read that misses notes the generation before it asks the database and keeps its answer
//! only if no commit came in between: an answer read from a snapshot older than the last
//! commit is never kept.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use agent_registry_oci::{Digest, Reference, RepoName};

use crate::{Result, StoredManifest};

/// Answers kept of each kind before the cache starts over.
const ENTRIES: usize = 4096;
/// Manifest bytes kept before the cache starts over (a manifest may be 4 MiB).
const MANIFEST_BYTES: usize = 32 << 20;

#[derive(Default)]
pub(super) struct RecentReads {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Commits seen so far.
    generation: u64,
    blob_sizes: HashMap<(RepoName, Digest), Option<u64>>,
    manifests: HashMap<(RepoName, Reference), Option<StoredManifest>>,
    manifest_bytes: usize,
}

impl State {
    fn clear(&mut self) {
        self.blob_sizes.clear();
        self.manifests.clear();
        self.manifest_bytes = 0;
    }
}

impl RecentReads {
    /// Drops every answer; called once a commit is durable, before its writers hear back.
    pub(super) fn forget(&self) {
        let mut state = self.lock();
        state.generation += 1;
        state.clear();
    }

    /// The state, even if a thread panicked holding it: every change to it is complete
    /// before anything that could panic.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
        read: impl FnOnce() -> Result<Option<u64>>,
    ) -> Result<Option<u64>> {
        self.answer(
            |s| &mut s.blob_sizes,
            (repo.clone(), digest.clone()),
            |_| 0,
            read,
        )
    }

    pub(super) fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        read: impl FnOnce() -> Result<Option<StoredManifest>>,
    ) -> Result<Option<StoredManifest>> {
        self.answer(
            |s| &mut s.manifests,
            (repo.clone(), reference.clone()),
            |m| m.as_ref().map_or(0, |m| m.content.len()),
            read,
        )
    }

    /// The kept answer for `key` in the map `pick` selects, or `read`'s, kept if no commit
    /// came while it ran. `bytes` is what an answer adds to the manifest bytes.
    fn answer<K: Hash + Eq, V: Clone>(
        &self,
        pick: fn(&mut State) -> &mut HashMap<K, V>,
        key: K,
        bytes: fn(&V) -> usize,
        read: impl FnOnce() -> Result<V>,
    ) -> Result<V> {
        let generation = {
            let mut state = self.lock();
            if let Some(value) = pick(&mut state).get(&key) {
                return Ok(value.clone());
            }
            state.generation
        };
        let value = read()?;
        let mut state = self.lock();
        if state.generation == generation {
            let size = bytes(&value);
            if pick(&mut state).len() >= ENTRIES || state.manifest_bytes + size > MANIFEST_BYTES {
                state.clear();
            }
            state.manifest_bytes += size;
            pick(&mut state).insert(key, value.clone());
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use agent_registry_oci::Algorithm;

    use super::*;

    #[test]
    fn an_answer_read_across_a_commit_is_not_kept() {
        let recent = RecentReads::default();
        let repo: RepoName = "a/b".parse().expect("repo");
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let reads = Cell::new(0);
        let read = |size| {
            reads.set(reads.get() + 1);
            Ok(Some(size))
        };

        // A commit lands while the database is read: that answer may be stale.
        let got = recent.blob_size(&repo, &digest, || {
            recent.forget();
            read(1)
        });
        assert_eq!(got.expect("read"), Some(1));
        assert_eq!(
            recent.blob_size(&repo, &digest, || read(2)).expect("read"),
            Some(2)
        );
        assert_eq!(reads.get(), 2, "the first answer was not kept");

        // No commit since: the second answer is.
        assert_eq!(
            recent.blob_size(&repo, &digest, || read(3)).expect("read"),
            Some(2)
        );
        assert_eq!(reads.get(), 2);
        recent.forget();
        assert_eq!(
            recent.blob_size(&repo, &digest, || read(4)).expect("read"),
            Some(4)
        );
    }

    #[test]
    fn manifests_are_kept_up_to_a_byte_budget() {
        let recent = RecentReads::default();
        let repo: RepoName = "a/b".parse().expect("repo");
        let big = |n: u8| StoredManifest {
            digest: Digest::of(Algorithm::Sha256, &[n]),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            content: vec![n; 4 << 20].into(),
        };
        for n in 0..20 {
            let reference = Reference::Digest(big(n).digest);
            recent
                .manifest(&repo, &reference, || Ok(Some(big(n))))
                .expect("read");
            assert!(recent.lock().manifest_bytes <= MANIFEST_BYTES);
        }
        assert!(!recent.lock().manifests.is_empty());
    }
}
