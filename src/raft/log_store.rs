//! The Raft log, vote, committed index and purge point, kept durably in a redb file.
//!
//! Owns the bytes of the log and nothing else: it must not interpret commands. Every write that
//! openraft relies on for safety (appended entries, the vote) is fsynced before it is reported
//! done. Writes go to one writer thread that gathers whatever has queued up into a single
//! transaction, so many appends share one fsync, and an append returns at once: the Raft core
//! keeps replicating and applying while the disk works, and hears of the flush through
//! openraft's callback. Entries appended but not yet on disk are served to readers from memory.

// openraft's storage traits return its `StorageError`, a large type; the helpers here return
// what those traits need.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{storage_error, Entry, NodeId, StorageError, TypeConfig};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// redb's page cache: the log is read back mostly for replication of recent entries, which
/// are still cached after their write (and an entry not yet on disk is served from memory); a
/// larger cache only keeps old entries resident. 4 MiB holds seconds of log at 20,000 fires/s;
/// 16 MiB added about 120 bytes to every schedule's share of a 100,000-schedule node.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The most jobs the writer folds into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 1024;

/// Entries handed to the writer and not yet committed, by index.
type Pending = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// A write other than an append, run inside the writer's transaction.
type WriteWork = Box<dyn FnOnce(&redb::WriteTransaction) -> Result<(), String> + Send>;

/// Work for the writer thread, applied in the order it was queued.
enum Job {
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
struct Writer {
    queue: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn send(&self, job: Job) -> Result<(), ()> {
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

/// The durable log store (cheap to clone: clones share the database and the writer).
#[derive(Clone)]
pub struct LogStore {
    writer: Arc<Writer>,
    db: Arc<Database>,
    pending: Pending,
    committed: Arc<AtomicU64>,
}

/// The writer thread: one transaction (and at most one fsync) per batch of queued jobs.
fn run_writer(db: Arc<Database>, jobs: mpsc::Receiver<Job>, pending: Pending) {
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

fn err(subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> impl Fn(String) -> StorageError {
    move |message| storage_error(subject.clone(), verb, std::io::Error::other(message))
}

impl LogStore {
    /// Opens or creates the log database at `path`.
    pub fn open(path: &Path) -> Result<LogStore, StorageError> {
        let fail = err(ErrorSubject::Store, ErrorVerb::Read);
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| fail(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(|e| fail(e.to_string()))?;
        {
            txn.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
            txn.open_table(META).map_err(|e| fail(e.to_string()))?;
        }
        txn.commit().map_err(|e| fail(e.to_string()))?;
        let db = Arc::new(db);
        let pending: Pending = Arc::default();
        let (queue, jobs) = mpsc::channel();
        let (thread_db, thread_pending) = (db.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(thread_db, jobs, thread_pending))
            .map_err(|e| fail(format!("starting the log writer: {e}")))?;
        Ok(LogStore {
            writer: Arc::new(Writer {
                queue: Some(queue),
                thread: Some(thread),
            }),
            db,
            pending,
            committed: Arc::default(),
        })
    }

    /// The highest log index openraft has reported committed (for metrics; not persisted
    /// on every change).
    pub fn committed_index(&self) -> Arc<AtomicU64> {
        self.committed.clone()
    }

    /// Makes a leader that restarts stand for election in a new term instead of resuming its
    /// old one. openraft restores a node whose stored vote is its own committed vote as leader
    /// of that same term, and this store hands entries to replication before they are fsynced:
    /// an entry a crashed leader sent to followers but never synced would be written again,
    /// differently, under the same log id, and the followers would keep theirs. Stored as an
    /// uncommitted vote of the same term, it still refuses every other candidate of that term,
    /// and the next leader's entries carry a higher term than anything sent before the crash.
    /// Returns the term it gave up.
    pub async fn forget_own_leadership(&self, me: NodeId) -> Result<Option<u64>, StorageError> {
        let Some(vote) = self.get_meta::<Vote<NodeId>>(VOTE)? else {
            return Ok(None);
        };
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(me) {
            return Ok(None);
        }
        let term = vote.leader_id().get_term();
        self.write(
            ErrorSubject::Vote,
            Self::meta_write(VOTE, &Vote::new(term, me))?,
        )
        .await?;
        Ok(Some(term))
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let fail = err(ErrorSubject::Store, ErrorVerb::Read);
        let txn = self.db.begin_read().map_err(|e| fail(e.to_string()))?;
        let table = txn.open_table(META).map_err(|e| fail(e.to_string()))?;
        let Some(value) = table.get(key).map_err(|e| fail(e.to_string()))? else {
            return Ok(None);
        };
        serde_json::from_slice(value.value())
            .map(Some)
            .map_err(|e| fail(format!("{key}: {e}")))
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StorageError> {
        let newest_pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .last_key_value()
            .map(|(_, e)| e.log_id);
        if newest_pending.is_some() {
            return Ok(newest_pending);
        }
        let fail = err(ErrorSubject::Logs, ErrorVerb::Read);
        let txn = self.db.begin_read().map_err(|e| fail(e.to_string()))?;
        let table = txn.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
        let Some((_, value)) = table.last().map_err(|e| fail(e.to_string()))? else {
            return Ok(None);
        };
        let entry: Entry =
            serde_json::from_slice(value.value()).map_err(|e| fail(e.to_string()))?;
        Ok(Some(*entry.get_log_id()))
    }

    /// Queues a write after every earlier one and waits until it is committed durably (fsync).
    async fn write<F>(&self, subject: ErrorSubject<NodeId>, work: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), String> + Send + 'static,
    {
        let fail = err(subject, ErrorVerb::Write);
        let (done, committed) = tokio::sync::oneshot::channel();
        self.writer
            .send(Job::Write {
                work: Box::new(work),
                durable: true,
                done: Some(done),
            })
            .map_err(|_| fail("the log writer has stopped".into()))?;
        committed
            .await
            .map_err(|_| fail("the log writer has stopped".into()))?
            .map_err(fail)
    }

    fn meta_write<T: Serialize>(
        key: &'static str,
        value: &T,
    ) -> Result<impl FnOnce(&redb::WriteTransaction) -> Result<(), String>, StorageError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| err(ErrorSubject::Store, ErrorVerb::Write)(e.to_string()))?;
        Ok(move |txn: &redb::WriteTransaction| {
            let mut table = txn.open_table(META).map_err(|e| e.to_string())?;
            table
                .insert(key, bytes.as_slice())
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let fail = err(ErrorSubject::Logs, ErrorVerb::Read);
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Bound::Included(*i),
            Bound::Excluded(i) => Bound::Excluded(*i),
            Bound::Unbounded => Bound::Unbounded,
        };
        // Pending first: an entry that reaches the disk meanwhile is then found there.
        let mut entries: BTreeMap<u64, Entry> = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .range((Bound::Included(start), end))
            .map(|(i, e)| (*i, e.clone()))
            .collect();
        let txn = self.db.begin_read().map_err(|e| fail(e.to_string()))?;
        let table = txn.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
        for item in table
            .range::<u64>((Bound::Included(start), end))
            .map_err(|e| fail(e.to_string()))?
        {
            let (index, value) = item.map_err(|e| fail(e.to_string()))?;
            if let std::collections::btree_map::Entry::Vacant(slot) = entries.entry(index.value()) {
                slot.insert(
                    serde_json::from_slice(value.value()).map_err(|e| fail(e.to_string()))?,
                );
            }
        }
        Ok(entries.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.get_meta(LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write(ErrorSubject::Vote, Self::meta_write(VOTE, vote)?)
            .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        if let Some(id) = committed {
            self.committed.fetch_max(id.index, Ordering::Relaxed);
        }
        // Only a hint for a faster restart: written with the next batch, not waited for.
        let _ = self.writer.send(Job::Write {
            work: Box::new(Self::meta_write(COMMITTED, &committed)?),
            durable: false,
            done: None,
        });
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let fail = err(ErrorSubject::Logs, ErrorVerb::Write);
        let mut rows = Vec::new();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            let bytes = serde_json::to_vec(&entry).map_err(|e| fail(e.to_string()))?;
            rows.push((entry.log_id, bytes));
            pending.insert(entry.log_id.index, entry);
        }
        drop(pending);
        // Returns at once; openraft hears through the callback once the entries are on disk.
        self.writer
            .send(Job::Append { rows, callback })
            .map_err(|_| fail("the log writer has stopped".into()))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let from = log_id.index;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|index, _| *index < from);
        self.write(ErrorSubject::Logs, move |txn| {
            let mut table = txn.open_table(LOGS).map_err(|e| e.to_string())?;
            table
                .retain_in::<u64, _>(from.., |_, _| false)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id)
            .map_err(|e| err(ErrorSubject::Logs, ErrorVerb::Delete)(e.to_string()))?;
        let upto = log_id.index;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|index, _| *index > upto);
        // The purge point is recorded in the same transaction that removes the entries.
        self.write(ErrorSubject::Logs, move |txn| {
            txn.open_table(META)
                .map_err(|e| e.to_string())?
                .insert(LAST_PURGED, bytes.as_slice())
                .map_err(|e| e.to_string())?;
            let mut table = txn.open_table(LOGS).map_err(|e| e.to_string())?;
            table
                .retain_in::<u64, _>(..=upto, |_, _| false)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
    }
}
