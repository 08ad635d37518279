//! The log's writer thread: every write to the database goes through its queue, and whatever
//! has queued up is committed in one transaction, so many appends share one fsync.
//!
//! Invariant: jobs commit in the order they were queued, an append is reported done only after
//! its transaction is durable, and an entry leaves the in-memory pending set only once it is on
//! disk. It must not decide what is written.

use std::collections::BTreeMap;
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::LogFlushed;
use openraft::LogId;
use redb::Database;

use super::super::{Entry, NodeId, TypeConfig};
use super::LOGS;

/// The most jobs the writer folds into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 1024;

/// Entries handed to the writer and not yet committed, by index.
pub(super) type Pending = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// A write other than an append, run inside the writer's transaction.
pub(super) type WriteWork = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), String> + Send>;

/// Work for the writer thread, applied in the order it was queued.
pub(super) enum Job {
    Append {
        rows: Vec<(LogId<NodeId>, Vec<u8>)>,
        callback: LogFlushed<TypeConfig>,
    },
    /// Any other write; `done` hears once it is committed (durably if `durable`).
    Write {
        work: WriteWork,
        durable: bool,
        done: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
    },
}

/// The writer thread's queue; the last store clone to go stops the thread and waits for it,
/// so the database file is closed when the store is (a node reopens it on restart).
pub(super) struct Writer {
    pub(super) queue: Option<mpsc::Sender<Job>>,
    pub(super) thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    pub(super) fn send(&self, job: Job) -> Result<(), ()> {
        match &self.queue {
            Some(queue) => queue.send(job).map_err(|_| ()),
            None => Err(()),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writer thread: one transaction (and at most one fsync) per batch of queued jobs.
pub(super) fn run_writer(db: Arc<Database>, jobs: mpsc::Receiver<Job>, pending: Pending) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_JOBS_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|job| match job {
            Job::Append { .. } => true,
            Job::Write { durable, .. } => *durable,
        });
        let mut works = Vec::new();
        let mut appended = Vec::new();
        let mut callbacks = Vec::new();
        let mut dones = Vec::new();
        for job in batch {
            match job {
                Job::Append { rows, callback } => {
                    appended.extend(rows.iter().map(|(id, _)| *id));
                    works.push(Box::new(move |txn: &redb::WriteTransaction| {
                        let mut table = txn.open_table(LOGS).map_err(|e| e.to_string())?;
                        for (id, bytes) in &rows {
                            table
                                .insert(id.index, bytes.as_slice())
                                .map_err(|e| e.to_string())?;
                        }
                        Ok(())
                    })
                        as Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), String>>);
                    callbacks.push(callback);
                }
                Job::Write { work, done, .. } => {
                    works.push(work);
                    dones.extend(done);
                }
            }
        }
        let outcome = (|| -> Result<(), String> {
            let mut txn = db.begin_write().map_err(|e| e.to_string())?;
            if !durable {
                txn.set_durability(redb::Durability::None)
                    .map_err(|e| e.to_string())?;
            }
            for work in works {
                work(&txn)?;
            }
            txn.commit().map_err(|e| e.to_string())
        })();
        if outcome.is_ok() {
            // On disk now: readers find them there.
            let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
            for id in appended {
                if pending.get(&id.index).is_some_and(|e| e.log_id == id) {
                    pending.remove(&id.index);
                }
            }
        }
        for callback in callbacks {
            callback.log_io_completed(outcome.clone().map_err(std::io::Error::other));
        }
        for done in dones {
            let _ = done.send(outcome.clone());
        }
    }
}
