//! Group commit: one thread owns the writer connection and commits every write transaction
//! that is waiting when it comes round in a single SQLite transaction, so concurrent pushes
//! share one fsync instead of queueing for one each.
//!
//! Each job runs inside its own SAVEPOINT: a job whose closure fails is rolled back alone and
//! gets its own error; the others still commit. No job hears back before the commit that holds
//! it is durable (for durable jobs) or done (for bookkeeping that a client can redo).

use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::db_err;
use super::recent::RecentReads;
use crate::{MetadataError, Result};

/// Jobs one commit may hold; more wait for the next.
const MAX_BATCH: usize = 128;
/// Jobs that may queue for the writer before callers wait for room.
const QUEUE: usize = 1024;

/// What the writer calls once the batch holding a job has committed (or failed to).
type Reply = Box<dyn FnOnce(Result<()>) + Send>;
/// A job's change: given the connection it runs (saying whether it succeeded); given none,
/// it gives up. Either way it returns how to answer its caller.
type Change = Box<dyn FnOnce(Option<&Connection>) -> (bool, Reply) + Send>;

struct Job {
    /// Whether this change must be on disk before the caller hears back.
    durable: bool,
    run: Change,
}

/// The handle the store keeps; dropping it ends the writer thread.
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`. `durable` is whether the store syncs at all;
    /// `recent` forgets what it holds after every commit.
    pub(super) fn spawn(
        conn: Connection,
        durable: bool,
        recent: Arc<RecentReads>,
    ) -> Result<Writer> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, durable, &recent, rx))
            .map_err(|e| MetadataError::backend("starting the writer thread", e))?;
        Ok(Writer { jobs })
    }

    /// Runs `f` in a write transaction and returns its result once that is committed.
    pub(super) async fn run<T, F>(&self, durable: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let run = Box::new(move |conn: Option<&Connection>| -> (bool, Reply) {
            let Some(conn) = conn else {
                // Not run: the reply carries the reason the batch could not start.
                return (
                    false,
                    Box::new(move |why: Result<()>| {
                        let _ = tx.send(why.and(Err(MetadataError::backend(
                            "writing",
                            "the write was not run",
                        ))));
                    }),
                );
            };
            match f(conn) {
                Ok(value) => (
                    true,
                    Box::new(move |committed: Result<()>| {
                        let _ = tx.send(committed.map(|()| value));
                    }),
                ),
                Err(e) => (
                    false,
                    Box::new(move |_| {
                        let _ = tx.send(Err(e));
                    }),
                ),
            }
        });
        self.jobs.send(Job { durable, run }).await.map_err(|_| {
            MetadataError::backend("queueing a write", "the writer thread has stopped")
        })?;
        rx.await.map_err(|_| {
            MetadataError::backend("waiting for a commit", "the writer thread has stopped")
        })?
    }
}

fn writer_loop(conn: Connection, durable: bool, recent: &RecentReads, mut rx: mpsc::Receiver<Job>) {
    let mut full_sync = durable;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let want_full = durable && batch.iter().any(|j| j.durable);
        if want_full != full_sync {
            let mode = if want_full { "FULL" } else { "NORMAL" };
            match conn.execute_batch(&format!("PRAGMA synchronous={mode}")) {
                Ok(()) => full_sync = want_full,
                Err(e) => {
                    fail_all(batch, &db_err("setting durability")(e));
                    continue;
                }
            }
        }
        commit_batch(&conn, recent, batch);
    }
}

fn commit_batch(conn: &Connection, recent: &RecentReads, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        fail_all(batch, &db_err("starting a transaction")(e));
        return;
    }
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = conn
            .execute_batch("SAVEPOINT job")
            .map_err(db_err("starting a savepoint"))
            .map(|()| (job.run)(Some(conn)));
        match outcome {
            Ok((true, reply)) => {
                replies.push((true, reply));
                if let Err(e) = conn.execute_batch("RELEASE job") {
                    return abort(conn, replies, &db_err("releasing a savepoint")(e));
                }
            }
            Ok((false, reply)) => {
                replies.push((false, reply));
                if let Err(e) = conn.execute_batch("ROLLBACK TO job; RELEASE job") {
                    return abort(conn, replies, &db_err("rolling back a savepoint")(e));
                }
            }
            Err(e) => return abort(conn, replies, &e),
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            recent.forget();
            for (_, reply) in replies {
                reply(Ok(()));
            }
        }
        Err(e) => abort(conn, replies, &db_err("committing")(e)),
    }
}

/// Rolls the whole batch back and tells every job that succeeded why it did not stick.
fn abort(conn: &Connection, replies: Vec<(bool, Reply)>, cause: &MetadataError) {
    let _ = conn.execute_batch("ROLLBACK");
    for (ok, reply) in replies {
        reply(if ok { Err(copy(cause)) } else { Ok(()) });
    }
}

/// Answers every job of a batch that could not start with `cause`.
fn fail_all(batch: Vec<Job>, cause: &MetadataError) {
    for job in batch {
        let (_, reply) = (job.run)(None);
        reply(Err(copy(cause)));
    }
}

fn copy(e: &MetadataError) -> MetadataError {
    match e {
        // Every job of the batch failed for the same reason; a full disk stays one.
        MetadataError::Full { doing, cause } => MetadataError::Full {
            doing,
            cause: cause.clone(),
        },
        other => MetadataError::backend("committing a group of writes", other),
    }
}
