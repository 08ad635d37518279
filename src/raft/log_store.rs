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

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Read;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogId, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{storage_error, Entry, NodeId, StorageError, TypeConfig};
use crate::formats;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";
/// Who the file belongs to (`LogIdentity`), written in the transaction that creates the tables.
const IDENTITY: &str = "identity";
/// The first bytes of every redb file (its header's signature): anything else is not a log.
const REDB_SIGNATURE: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// redb's page cache: the log is read back mostly for replication of recent entries, which
/// are still cached after their write (and an entry not yet on disk is served from memory); a
/// larger cache only keeps old entries resident. 4 MiB holds seconds of log at 20,000 fires/s;
/// 16 MiB added about 120 bytes to every schedule's share of a 100,000-schedule node.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// The most jobs the writer folds into one transaction.
const MAX_JOBS_PER_COMMIT: usize = 1024;

/// The node a log file belongs to: recorded when the file is created, checked on every open,
/// so a data directory moved to another node or cluster is refused rather than joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogIdentity {
    pub cluster: String,
    pub node_id: NodeId,
}

/// Why a log file could not be opened. Every case names the file; none is ever taken for a
/// new node.
#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    #[error("{path}: the file is empty (0 bytes). A log is never empty once created, so this is a damaged log, not a new node; if this node's data is really lost, move the data directory away to start it empty")]
    Empty { path: PathBuf },
    #[error("{path}: not a belfry Raft log ({reason})")]
    Foreign { path: PathBuf, reason: String },
    #[error("{path}: the Raft log is damaged: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: the Raft log belongs to node {found_node} of cluster {found_cluster:?}, not node {node} of cluster {cluster:?} (a backup of another node is made this node's with `belfry data adopt`)")]
    OtherOwner {
        path: PathBuf,
        found_cluster: String,
        found_node: NodeId,
        cluster: String,
        node: NodeId,
    },
    #[error("{path}: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: formats::FormatError,
    },
    #[error("{path}: the Raft log is in use by another process")]
    InUse { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An entry that could not be decoded: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log entry {index} cannot be decoded: {reason}")]
pub struct EntryError {
    pub index: u64,
    pub reason: String,
}

/// Why `LogStore::check_entries` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Undecodable(EntryError),
    #[error("reading the log: {0}")]
    Read(String),
}

/// The first undecodable entry this store met, shared with whatever reports the node's health.
pub type Fault = Arc<Mutex<Option<EntryError>>>;

/// An entry as stored: its JSON, labelled with the lowest entry format that carries it (its
/// command's), so that what an earlier build can read stays readable by it.
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, serde_json::Error> {
    let format = match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.format(),
        openraft::EntryPayload::Blank | openraft::EntryPayload::Membership(_) => 1,
    };
    Ok(formats::label(format, &serde_json::to_vec(entry)?))
}

/// The entry stored at `index`, refused if its format is newer than this build reads or if it
/// is not the entry of that index.
pub fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, EntryError> {
    let failed = |reason: String| EntryError { index, reason };
    formats::check_label(bytes, formats::LOG_ENTRY, || format!("log entry {index}"))
        .map_err(|e| failed(e.to_string()))?;
    let entry: Entry = serde_json::from_slice(bytes).map_err(|e| failed(e.to_string()))?;
    if entry.log_id.index != index {
        return Err(failed(format!(
            "it is stored at {index} but names index {}",
            entry.log_id.index
        )));
    }
    Ok(entry)
}

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
    fault: Fault,
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

fn io_failed(path: &Path) -> impl Fn(std::io::Error) -> LogOpenError + '_ {
    move |source| LogOpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a log at `path` with its tables and identity, under a temporary name first: a
/// crash part-way leaves no file at `path`, and so cannot leave a damaged file that a restart
/// would have to refuse.
fn create(path: &Path, identity: &LogIdentity) -> Result<(), LogOpenError> {
    let failed = io_failed(path);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".creating");
    let creating = path.with_file_name(name);
    match std::fs::remove_file(&creating) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
        _ => {}
    }
    let identity = serde_json::to_vec(identity)
        .map(|json| formats::label(formats::LOG_FILE, &json))
        .map_err(|e| failed(std::io::Error::other(e)))?;
    let redb = |e: redb::Error| failed(std::io::Error::other(e));
    {
        let db = Database::builder()
            .create(&creating)
            .map_err(|e| redb(e.into()))?;
        let txn = db.begin_write().map_err(|e| redb(e.into()))?;
        txn.open_table(LOGS).map_err(|e| redb(e.into()))?;
        txn.open_table(META)
            .map_err(|e| redb(e.into()))?
            .insert(IDENTITY, identity.as_slice())
            .map_err(|e| redb(e.into()))?;
        txn.commit().map_err(|e| redb(e.into()))?;
    }
    std::fs::rename(&creating, path).map_err(&failed)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

/// Opens an existing file after checking that it is a redb database at all, with redb's
/// integrity check (every page's checksum). redb may panic on a damaged file it trusts; the
/// check is meant to prevent that, and a panic that still happens is caught and reported as
/// damage.
fn open_existing(path: &Path) -> Result<Database, LogOpenError> {
    check_signature(path)?;
    let opened = std::panic::catch_unwind(|| {
        Database::builder()
            .set_cache_size(CACHE_BYTES)
            .set_check_integrity_on_open(true)
            .open(path)
    });
    let corrupt = |reason: String| LogOpenError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(LogOpenError::InUse {
            path: path.to_path_buf(),
        }),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(source)))) => {
            Err(io_failed(path)(source))
        }
        Ok(Err(e)) => Err(corrupt(e.to_string())),
        Err(panic) => Err(corrupt(format!(
            "reading it failed inside the storage library: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

/// A file too short for redb's signature, or with another, is not a log.
fn check_signature(path: &Path) -> Result<(), LogOpenError> {
    let failed = io_failed(path);
    let mut head = Vec::with_capacity(REDB_SIGNATURE.len());
    std::fs::File::open(path)
        .map_err(&failed)?
        .take(REDB_SIGNATURE.len() as u64)
        .read_to_end(&mut head)
        .map_err(&failed)?;
    if head.is_empty() {
        return Err(LogOpenError::Empty {
            path: path.to_path_buf(),
        });
    }
    if head != REDB_SIGNATURE {
        return Err(LogOpenError::Foreign {
            path: path.to_path_buf(),
            reason: "it is not a redb database".into(),
        });
    }
    Ok(())
}

/// Checks that `db` holds belfry's tables and belongs to `identity`; a format-1 file from
/// before identities existed is stamped with it.
fn check_identity(db: &Database, path: &Path, identity: &LogIdentity) -> Result<(), LogOpenError> {
    let Some(found) = read_identity(db, path)? else {
        return stamp(db, path, identity);
    };
    if found != *identity {
        return Err(LogOpenError::OtherOwner {
            path: path.to_path_buf(),
            found_cluster: found.cluster,
            found_node: found.node_id,
            cluster: identity.cluster.clone(),
            node: identity.node_id,
        });
    }
    Ok(())
}

/// The identity recorded in `db` (none in a format-1 file from before identity records),
/// after checking that it holds belfry's tables in a format this build reads.
fn read_identity(db: &Database, path: &Path) -> Result<Option<LogIdentity>, LogOpenError> {
    let foreign = |reason: String| LogOpenError::Foreign {
        path: path.to_path_buf(),
        reason,
    };
    let corrupt = |e: redb::Error| LogOpenError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let txn = db.begin_read().map_err(|e| corrupt(e.into()))?;
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(|e| corrupt(e.into()))?
        .map(|t| t.name().to_string())
        .collect();
    for needed in [LOGS.name(), META.name()] {
        if !tables.iter().any(|t| t == needed) {
            return Err(foreign(format!(
                "a redb database without the table {needed:?}; its tables: {tables:?}"
            )));
        }
    }
    let meta = txn
        .open_table(META)
        .map_err(|e| foreign(format!("the table \"meta\" is not belfry's: {e}")))?;
    txn.open_table(LOGS)
        .map_err(|e| foreign(format!("the table \"logs\" is not belfry's: {e}")))?;
    let Some(bytes) = meta.get(IDENTITY).map_err(|e| corrupt(e.into()))? else {
        return Ok(None);
    };
    let bytes = bytes.value();
    formats::check_label(bytes, formats::LOG_FILE, || "the log file".into()).map_err(|source| {
        LogOpenError::Format {
            path: path.to_path_buf(),
            source,
        }
    })?;
    serde_json::from_slice(bytes)
        .map(Some)
        .map_err(|e| LogOpenError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("its identity record is unreadable: {e}"),
        })
}

/// Makes the existing log at `path` (checked as `LogStore::open` checks it) belong to
/// `identity`, and returns whom it belonged to before. For restoring one node's backup into
/// another node's data directory: every node holds the same replicated log, but a node opens
/// only its own, so the change of owner is an explicit act of the operator.
pub fn adopt(path: &Path, identity: &LogIdentity) -> Result<Option<LogIdentity>, LogOpenError> {
    let db = open_existing(path)?;
    let before = read_identity(&db, path)?;
    stamp(&db, path, identity)?;
    Ok(before)
}

/// Records `identity` as the log's owner (a format-1 log written before identity records, or
/// an adopted one).
fn stamp(db: &Database, path: &Path, identity: &LogIdentity) -> Result<(), LogOpenError> {
    let corrupt = |e: redb::Error| LogOpenError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let bytes = serde_json::to_vec(identity)
        .map(|json| formats::label(formats::LOG_FILE, &json))
        .map_err(|e| io_failed(path)(std::io::Error::other(e)))?;
    let txn = db.begin_write().map_err(|e| corrupt(e.into()))?;
    txn.open_table(META)
        .map_err(|e| corrupt(e.into()))?
        .insert(IDENTITY, bytes.as_slice())
        .map_err(|e| corrupt(e.into()))?;
    txn.commit().map_err(|e| corrupt(e.into()))?;
    tracing::info!(path = %path.display(), cluster = %identity.cluster, node = identity.node_id, "recorded this node's identity in the log");
    Ok(())
}
