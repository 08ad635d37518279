//! The Raft log, vote, committed index and purge point, kept durably in a redb file.
//!
//! Invariant: every write openraft relies on for safety (appended entries, the vote) is fsynced
//! before it is reported done, and a log file is never taken for another node's or a new one's:
//! every open checks its signature, every page and its identity (format, cluster, node). Owns
//! the bytes of the log and nothing else: it must not interpret commands.
//!
//! Writes go to one writer thread that gathers whatever has queued up into a single
//! transaction, so many appends share one fsync, and an append returns at once: the Raft core
//! keeps replicating and applying while the disk works, and hears of the flush through
//! openraft's callback. Entries appended but not yet on disk are served to readers from memory.
//!
//! A new file is created under a temporary name and renamed into place once complete. A missing
//! file is the only sign of a new node; an empty, foreign, damaged or other node's file is an
//! error naming the file. An entry that cannot be decoded is an error naming its index, and is
//! remembered (`fault`) so that the node can report it while it stays up for diagnosis.

// openraft's storage traits return its `StorageError`, a large type; the helpers here return
// what those traits need.
#![allow(clippy::result_large_err)]

mod codec;
mod file;
mod writer;

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
use crate::formats;
pub use codec::{decode_entry, encode_entry, CheckError, EntryError};
pub use file::{adopt, LogIdentity, LogOpenError};
use file::{check_identity, create, io_failed, open_existing};
use writer::{run_writer, Job, Pending, Writer};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// Who the file belongs to (`LogIdentity`), written in the transaction that creates the tables.
const IDENTITY: &str = "identity";

/// The first undecodable entry this store met, shared with whatever reports the node's health.
pub type Fault = Arc<Mutex<Option<EntryError>>>;

/// The durable log store (cheap to clone: clones share the database and the writer).
#[derive(Clone)]
pub struct LogStore {
    writer: Arc<Writer>,
    db: Arc<Database>,
    pending: Pending,
    committed: Arc<AtomicU64>,
    fault: Fault,
}

fn err(subject: ErrorSubject<NodeId>, verb: ErrorVerb) -> impl Fn(String) -> StorageError {
    move |message| storage_error(subject.clone(), verb, std::io::Error::other(message))
}

impl LogStore {
    /// Opens the log at `path` for `identity`, creating it if (and only if) there is no file
    /// at all. A file written before identities existed (format 1, with belfry's tables) is
    /// stamped with `identity`.
    pub fn open(path: &Path, identity: &LogIdentity) -> Result<LogStore, LogOpenError> {
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path, identity)?,
            Err(source) => return Err(io_failed(path)(source)),
            Ok(_) => {}
        }
        let db = open_existing(path)?;
        check_identity(&db, path, identity)?;
        Self::start(db).map_err(io_failed(path))
    }

    fn start(db: Database) -> std::io::Result<LogStore> {
        let db = Arc::new(db);
        let pending: Pending = Arc::default();
        let (queue, jobs) = mpsc::channel();
        let (thread_db, thread_pending) = (db.clone(), pending.clone());
        let thread = std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(thread_db, jobs, thread_pending))?;
        Ok(LogStore {
            writer: Arc::new(Writer {
                queue: Some(queue),
                thread: Some(thread),
            }),
            db,
            pending,
            committed: Arc::default(),
            fault: Arc::default(),
        })
    }

    /// Decodes every stored entry, in index order, and returns how many there are, or the
    /// first that cannot be decoded (also recorded as the store's fault). Run before Raft
    /// starts: a Raft core that meets such an entry stops, and a node that restarts to try
    /// again would stop the same way, over and over.
    pub fn check_entries(&self) -> Result<u64, CheckError> {
        let failed = |e: redb::Error| CheckError::Read(e.to_string());
        let txn = self.db.begin_read().map_err(|e| failed(e.into()))?;
        let table = txn.open_table(LOGS).map_err(|e| failed(e.into()))?;
        let mut count = 0;
        for item in table.iter().map_err(|e| failed(e.into()))? {
            let (index, value) = item.map_err(|e| failed(e.into()))?;
            if let Err(e) = decode_entry(index.value(), value.value()) {
                self.record_fault(&e);
                return Err(CheckError::Undecodable(e));
            }
            count += 1;
        }
        Ok(count)
    }

    fn record_fault(&self, e: &EntryError) {
        let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        if fault.is_none() {
            tracing::error!(index = e.index, reason = %e.reason, "a log entry cannot be decoded");
            *fault = Some(e.clone());
        }
    }

    /// Where this store records the first undecodable entry it meets.
    pub fn fault(&self) -> Fault {
        self.fault.clone()
    }

    /// `decode_entry`, remembering a failure for the node's health reports.
    fn decode(&self, index: u64, bytes: &[u8]) -> Result<Entry, StorageError> {
        decode_entry(index, bytes).map_err(|e| {
            self.record_fault(&e);
            storage_error(
                ErrorSubject::Log(LogId::new(Default::default(), index)),
                ErrorVerb::Read,
                e,
            )
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
        let known = if key == VOTE {
            formats::VOTE
        } else {
            formats::LOG_FILE
        };
        formats::check_label(value.value(), known, || format!("the stored {key}"))
            .map_err(|e| fail(e.to_string()))?;
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
        let Some((index, value)) = table.last().map_err(|e| fail(e.to_string()))? else {
            return Ok(None);
        };
        let entry = self.decode(index.value(), value.value())?;
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
        let mut bytes = serde_json::to_vec(value)
            .map_err(|e| err(ErrorSubject::Store, ErrorVerb::Write)(e.to_string()))?;
        if key == VOTE {
            bytes = formats::label(formats::VOTE, &bytes);
        }
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
                slot.insert(self.decode(index.value(), value.value())?);
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
            let bytes = encode_entry(&entry).map_err(|e| fail(e.to_string()))?;
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
