//! The Raft log, vote, committed index and purge point, kept durably in a redb file.
//!
//! Owns the bytes of the log and nothing else: it must not interpret commands. Every write that
//! openraft relies on for safety (appended entries, the vote) is fsynced before it is reported
//! done, on a blocking thread so the Raft core task never waits on the disk.

// openraft's storage traits return its `StorageError`, a large type; the helpers here return
// what those traits need.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

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
/// redb's page cache: the log is read back mostly for replication of recent entries.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The durable log store (cheap to clone: clones share the database).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
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
        Ok(LogStore { db: Arc::new(db) })
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

    /// Runs a write transaction on a blocking thread and commits it durably (fsync).
    async fn write<F>(&self, subject: ErrorSubject<NodeId>, work: F) -> Result<(), StorageError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), String> + Send + 'static,
    {
        let db = self.db.clone();
        let fail = err(subject, ErrorVerb::Write);
        let outcome = tokio::task::spawn_blocking(move || -> Result<(), String> {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            work(&txn)?;
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        outcome.map_err(fail)
    }

    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| err(ErrorSubject::Store, ErrorVerb::Write)(e.to_string()))?;
        self.write(ErrorSubject::Store, move |txn| {
            let mut table = txn.open_table(META).map_err(|e| e.to_string())?;
            table
                .insert(key, bytes.as_slice())
                .map_err(|e| e.to_string())?;
            Ok(())
        })
        .await
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
        let txn = self.db.begin_read().map_err(|e| fail(e.to_string()))?;
        let table = txn.open_table(LOGS).map_err(|e| fail(e.to_string()))?;
        let mut entries = Vec::new();
        for item in table
            .range::<u64>((Bound::Included(start), end))
            .map_err(|e| fail(e.to_string()))?
        {
            let (_, value) = item.map_err(|e| fail(e.to_string()))?;
            entries.push(serde_json::from_slice(value.value()).map_err(|e| fail(e.to_string()))?);
        }
        Ok(entries)
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
        self.put_meta(VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError> {
        self.put_meta(COMMITTED, &committed).await
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
        let mut rows = Vec::new();
        for entry in entries {
            let bytes = serde_json::to_vec(&entry)
                .map_err(|e| err(ErrorSubject::Logs, ErrorVerb::Write)(e.to_string()))?;
            rows.push((entry.get_log_id().index, bytes));
        }
        let written = self
            .write(ErrorSubject::Logs, move |txn| {
                let mut table = txn.open_table(LOGS).map_err(|e| e.to_string())?;
                for (index, bytes) in &rows {
                    table
                        .insert(*index, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Ok(())
            })
            .await;
        // The entries are on disk (or the write failed) before openraft hears of it.
        match &written {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        written
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError> {
        let from = log_id.index;
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
