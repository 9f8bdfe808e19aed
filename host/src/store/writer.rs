//! SQLite's single writer with group commit.
//!
//! SQLite has one write lock. Writers that each take it (`BEGIN IMMEDIATE` on a pooled
//! connection) queue in SQLite's busy handler, which *sleeps* and retries: under load the tail
//! latency is the sleep schedule, not the work. Here one task owns the write connection; a
//! write is a job sent to it. The task takes every job that is waiting (up to [`MAX_BATCH`]),
//! runs them one after the other in **one** transaction, each inside its own savepoint, commits
//! once, and only then answers each job. So:
//!
//! - an answer is sent only after its commit (a caller acknowledges nothing unrecorded);
//! - a job whose own statements fail is rolled back to its savepoint and gets its error; the
//!   others in the batch are unaffected;
//! - if the commit (or the transaction itself) fails, every job of the batch gets an error and
//!   nothing of the batch is applied;
//! - jobs run in arrival order on the same transaction, so two jobs on one order see each
//!   other's writes, exactly as if they had been two transactions.
//!
//! Batching is natural: while one batch commits, the next jobs queue and form the next batch;
//! a lone job waits for nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{BoxFuture, Result, StoreError, Tx};

/// Most jobs committed together (bounds the time one batch holds the lock).
pub const MAX_BATCH: usize = 128;
/// Jobs waiting for the writer before senders wait too (back-pressure).
const QUEUE: usize = 1024;

/// What a job hands back when its statements succeeded: called once the batch is committed
/// (`Ok`) or has failed (`Err` with the reason), to answer the caller.
type Deliver = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A job: runs on the batch transaction; `None` when it failed and already answered.
type Job = Box<dyn for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Option<Deliver>> + Send>;

/// The handle of the writer task. Cheap to clone; the task ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// The writer's connection pool, kept to close it with the store.
    pool: SqlitePool,
    stats: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    jobs: AtomicU64,
}

/// What the writer has done since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed or attempted.
    pub batches: u64,
    /// Jobs they carried.
    pub jobs: u64,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer task on `pool` (one connection: the writer's own).
    pub(super) fn spawn(pool: SqlitePool) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(Counters::default());
        tokio::spawn(run(pool.clone(), rx, stats.clone()));
        Self { jobs, pool, stats }
    }

    /// Batches and jobs so far.
    pub(super) fn stats(&self) -> WriterStats {
        WriterStats {
            batches: self.stats.batches.load(Ordering::Relaxed),
            jobs: self.stats.jobs.load(Ordering::Relaxed),
        }
    }

    /// The pool of the one write connection: [`super::Store::begin`] takes it too, so every
    /// SQLite write transaction waits its turn in this pool's fair queue instead of in SQLite's
    /// sleeping busy handler.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes the writer's connection (after the batch in progress): later writes fail.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `job` in the writer's next batch and returns its value once committed.
    pub(super) async fn write<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let wrapped: Job = Box::new(move |tx: &mut Tx| -> BoxFuture<'_, Option<Deliver>> {
            Box::pin(async move {
                match job(tx).await {
                    Ok(value) => Some(Box::new(move |committed: std::result::Result<(), String>| {
                        let _ = reply.send(committed.map(|()| value).map_err(StoreError::Batch));
                    }) as Deliver),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                        None
                    }
                }
            })
        });
        self.jobs
            .send(wrapped)
            .await
            .map_err(|_| StoreError::Batch("the SQLite writer has stopped".into()))?;
        answer.await.map_err(|_| {
            StoreError::Batch("the SQLite writer dropped the write (batch failed)".into())
        })?
    }
}

async fn run(pool: SqlitePool, mut rx: mpsc::Receiver<Job>, stats: Arc<Counters>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let size = batch.len();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.jobs.fetch_add(size as u64, Ordering::Relaxed);
        if let Err(e) = commit_batch(&pool, &mut batch).await {
            tracing::error!(error = %e, size, "SQLite write batch failed: nothing of it applied");
        }
        batch.clear();
    }
    pool.close().await;
}

/// One transaction for the whole batch. Jobs that succeeded are answered after the commit;
/// on any failure of the transaction every one of them gets the error.
async fn commit_batch(pool: &SqlitePool, batch: &mut Vec<Job>) -> Result<()> {
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(t) => Tx::sqlite(t),
        Err(e) => {
            // Dropping the jobs drops their reply channels: each caller gets a batch error.
            batch.clear();
            return Err(e.into());
        }
    };
    let mut done: Vec<Deliver> = Vec::with_capacity(batch.len());
    let mut failure: Option<StoreError> = None;
    for job in batch.drain(..) {
        if failure.is_some() {
            // The transaction is unusable: the rest are dropped (answered with an error).
            continue;
        }
        if let Err(e) = tx.savepoint().await {
            failure = Some(e);
            continue;
        }
        match job(&mut tx).await {
            Some(deliver) => match tx.release_savepoint().await {
                Ok(()) => done.push(deliver),
                Err(e) => {
                    deliver(Err(e.to_string()));
                    failure = Some(e);
                }
            },
            None => {
                if let Err(e) = tx.rollback_to_savepoint().await {
                    failure = Some(e);
                }
            }
        }
    }
    if let Some(e) = failure {
        let why = e.to_string();
        for d in done {
            d(Err(why.clone()));
        }
        return Err(e);
    }
    match tx.commit().await {
        Ok(()) => {
            for d in done {
                d(Ok(()));
            }
            Ok(())
        }
        Err(e) => {
            let why = e.to_string();
            for d in done {
                d(Err(why.clone()));
            }
            Err(e)
        }
    }
}
