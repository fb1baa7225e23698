//! Hashing beside writing: a [`HashPipe`] feeds chunks to a hasher on its own blocking thread,
//! so SHA-256 (the bound on upload speed) runs in parallel with the disk writes and the socket
//! reads. Small bodies are hashed inline, where a thread hand-off would cost more than it saves.

use agent_registry_oci::Hasher;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Error, Result};

/// Bodies at most this long are hashed on the calling task (and a last chunk this small is
/// held in memory until its upload is committed).
pub(crate) const INLINE_MAX: u64 = 256 << 10;

pub(crate) enum HashPipe {
    Inline(Box<Hasher>),
    Threaded {
        tx: mpsc::Sender<Bytes>,
        task: JoinHandle<Hasher>,
    },
}

impl HashPipe {
    /// `expected_len` is the body's declared length, if known.
    pub(crate) fn new(hasher: Hasher, expected_len: Option<u64>) -> HashPipe {
        if expected_len.is_some_and(|n| n <= INLINE_MAX) {
            return HashPipe::Inline(Box::new(hasher));
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(32);
        let task = tokio::task::spawn_blocking(move || {
            let mut hasher = hasher;
            while let Some(chunk) = rx.blocking_recv() {
                hasher.update(&chunk);
            }
            hasher
        });
        HashPipe::Threaded { tx, task }
    }

    pub(crate) async fn feed(&mut self, chunk: Bytes) -> Result<()> {
        match self {
            HashPipe::Inline(h) => {
                h.update(&chunk);
                Ok(())
            }
            HashPipe::Threaded { tx, .. } => tx
                .send(chunk)
                .await
                .map_err(|_| Error::Internal("hashing thread stopped".into())),
        }
    }

    /// Ends the input. The hash of everything fed may still be finishing on its thread: a
    /// chunked upload answers its PATCH without waiting, and the next request waits instead.
    pub(crate) fn close(self) -> PendingHash {
        match self {
            HashPipe::Inline(h) => PendingHash::Ready(h),
            HashPipe::Threaded { tx, task } => {
                drop(tx);
                PendingHash::Running(task)
            }
        }
    }

    pub(crate) async fn finish(self) -> Result<Hasher> {
        self.close().wait().await
    }
}

/// The hash of a closed [`HashPipe`], done or being finished.
pub(crate) enum PendingHash {
    Ready(Box<Hasher>),
    Running(JoinHandle<Hasher>),
}

impl PendingHash {
    pub(crate) async fn wait(self) -> Result<Hasher> {
        match self {
            PendingHash::Ready(h) => Ok(*h),
            PendingHash::Running(task) => task
                .await
                .map_err(|e| Error::Internal(format!("hashing thread failed: {e}"))),
        }
    }
}

/// Hashes everything `stream` yields (used to rebuild an upload's hash state from storage).
pub(crate) async fn hash_stream(
    hasher: Hasher,
    mut stream: agent_registry_storage::ByteStream,
) -> Result<Hasher> {
    let mut pipe = HashPipe::new(hasher, None);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::Internal(format!("reading an upload back: {e}")))?;
        pipe.feed(chunk).await?;
    }
    pipe.finish().await
}
