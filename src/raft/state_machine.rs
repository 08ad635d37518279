//! The state machine as openraft sees it: applying entries to `state::StateData`, building,
//! saving and installing snapshots. The adapter between openraft and the pure `state`.
//!
//! Invariant: only apply and snapshot install write the applied state; readers (dispatcher,
//! API) get `StateHandle`, which only reads, and are woken through `changes()`. A snapshot file
//! is replaced whole (temp file, fsync, rename) and, on start, openraft re-applies the committed
//! log after it. It must not decide anything itself: what changes is `state`'s apply.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, RaftSnapshotBuilder, SnapshotMeta,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, RwLock};

use super::{storage_error, NodeId, StorageError, TypeConfig};
use crate::state::{CommandResult, StateData};

const SNAPSHOT_FILE: &str = "snapshot";

/// Why the state machine could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot {path} is unreadable: {source}")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("snapshot {path}: {source}")]
    Format {
        path: PathBuf,
        #[source]
        source: crate::formats::FormatError,
    },
}

/// The applied state and where it stands in the log.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Applied {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, openraft::BasicNode>,
    pub data: StateData,
}

/// The applied state as the store holds it: only the store's apply and snapshot install write.
type SharedState = Arc<RwLock<Applied>>;

/// Read-only access to the applied state, for the dispatcher, the API and metrics: no holder
/// can take the write lock, so replicated state changes only through the log.
#[derive(Clone, Debug)]
pub struct StateHandle(SharedState);

impl StateHandle {
    /// Waits for a read of the applied state.
    pub async fn read(&self) -> tokio::sync::RwLockReadGuard<'_, Applied> {
        self.0.read().await
    }

    /// A read now, if no write holds the state.
    pub fn try_read(
        &self,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, Applied>, tokio::sync::TryLockError> {
        self.0.try_read()
    }

    /// A read from a thread outside the runtime (it must not be called on the runtime).
    pub fn blocking_read(&self) -> tokio::sync::RwLockReadGuard<'_, Applied> {
        self.0.blocking_read()
    }
}

/// A snapshot on disk: one line of JSON metadata labelled with the snapshot format (see
/// `formats`), then the serialized `Applied` as is. An unlabelled first line is format 1.
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    data: Vec<u8>,
}

/// Why a snapshot file could not be read.
#[derive(Debug, thiserror::Error)]
enum SnapshotFileError {
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
}

impl SnapshotFile {
    fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        let meta = serde_json::to_vec(&self.meta).map_err(std::io::Error::other)?;
        let mut bytes = crate::formats::label(crate::formats::SNAPSHOT, &meta);
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.data);
        Ok(bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<SnapshotFile, SnapshotFileError> {
        let split = bytes
            .iter()
            .position(|b| *b == b'\n')
            .unwrap_or(bytes.len());
        crate::formats::check_label(&bytes[..split], crate::formats::SNAPSHOT, || {
            "the snapshot".into()
        })?;
        let meta = serde_json::from_slice(&bytes[..split])?;
        let data = bytes.get(split + 1..).unwrap_or_default().to_vec();
        Ok(SnapshotFile { meta, data })
    }
}

impl SnapshotFileError {
    fn at(self, path: &Path) -> StoreError {
        match self {
            SnapshotFileError::Json(source) => StoreError::Corrupt {
                path: path.to_path_buf(),
                source,
            },
            SnapshotFileError::Format(source) => StoreError::Format {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// The state a snapshot file holds, with its indexes rebuilt.
pub fn read_snapshot(path: &Path) -> Result<Applied, StoreError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let file = SnapshotFile::from_bytes(&bytes).map_err(|e| e.at(path))?;
    let mut applied: Applied =
        serde_json::from_slice(&file.data).map_err(|source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        })?;
    applied.data.rebuild_indexes();
    Ok(applied)
}

/// Where the snapshot of the state directory `dir` is kept.
pub fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

/// The openraft state machine.
pub struct StateMachineStore {
    state: SharedState,
    dir: PathBuf,
    snapshots_built: u64,
    changed: watch::Sender<u64>,
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl StateMachineStore {
    /// Opens (creating) `dir` and loads its last snapshot, if any.
    pub fn open(dir: &Path) -> Result<StateMachineStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let path = dir.join(SNAPSHOT_FILE);
        let applied = match std::fs::symlink_metadata(&path) {
            Ok(_) => read_snapshot(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Applied::default(),
            Err(e) => return Err(io_error(&path, e)),
        };
        let (changed, _) = watch::channel(0);
        Ok(StateMachineStore {
            state: Arc::new(RwLock::new(applied)),
            dir: dir.to_path_buf(),
            snapshots_built: 0,
            changed,
        })
    }

    /// The shared applied state.
    pub fn handle(&self) -> StateHandle {
        StateHandle(self.state.clone())
    }

    /// A receiver that sees a new value after every applied batch.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Writes `file` as the current snapshot: temp file, fsync, rename, fsync of the directory.
    fn persist(dir: &Path, file: &SnapshotFile) -> std::io::Result<()> {
        let bytes = file.to_bytes()?;
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Persists on a blocking thread, reporting failures as openraft storage errors.
    async fn persist_in_background(
        dir: PathBuf,
        file: SnapshotFile,
    ) -> Result<SnapshotFile, StorageError> {
        let subject = ErrorSubject::Snapshot(Some(file.meta.signature()));
        let written =
            tokio::task::spawn_blocking(move || Self::persist(&dir, &file).map(|_| file)).await;
        written
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(|e| storage_error(subject, ErrorVerb::Write, e))
    }
}

/// Builds a snapshot from the state at the time it runs.
pub struct SnapshotBuilder {
    state: SharedState,
    dir: PathBuf,
    id: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Only the copy is taken under the lock: serializing a large state takes long enough
        // (about half a second at 100,000 schedules) to hold up applies, and with them every
        // dispatch, if done under it.
        let started = std::time::Instant::now();
        let (meta, copy, copied_in) = {
            let applied = self.state.read().await;
            let snapshot_id = match applied.last_applied {
                Some(log_id) => format!("{}-{}-{}", log_id.leader_id, log_id.index, self.id),
                None => format!("--{}", self.id),
            };
            let meta = SnapshotMeta {
                last_log_id: applied.last_applied,
                last_membership: applied.membership.clone(),
                snapshot_id,
            };
            let copy = Applied {
                last_applied: applied.last_applied,
                membership: applied.membership.clone(),
                data: applied.data.snapshot_copy(),
            };
            (meta, copy, started.elapsed())
        };
        let data = tokio::task::spawn_blocking(move || serde_json::to_vec(&copy))
            .await
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        let file =
            StateMachineStore::persist_in_background(self.dir.clone(), SnapshotFile { meta, data })
                .await?;
        tracing::info!(
            snapshot = %file.meta.snapshot_id,
            bytes = file.data.len(),
            copied_ms = copied_in.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "built a snapshot"
        );
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(file.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError,
    > {
        let applied = self.state.read().await;
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = crate::raft::Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        {
            let mut applied = self.state.write().await;
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                let result = match entry.payload {
                    EntryPayload::Blank => CommandResult::Empty,
                    EntryPayload::Normal(ref command) => applied.data.apply(command),
                    EntryPayload::Membership(ref membership) => {
                        applied.membership =
                            StoredMembership::new(Some(entry.log_id), membership.clone());
                        CommandResult::Empty
                    }
                };
                results.push(result);
            }
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        SnapshotBuilder {
            state: self.state.clone(),
            dir: self.dir.clone(),
            id: self.snapshots_built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let read_err = |e: serde_json::Error| {
            StorageError::from(StorageIOError::read_snapshot(Some(meta.signature()), &e))
        };
        let mut applied: Applied = serde_json::from_slice(&data).map_err(read_err)?;
        applied.data.rebuild_indexes();
        // The snapshot's meta is authoritative for where it stands.
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        let file = SnapshotFile {
            meta: meta.clone(),
            data,
        };
        StateMachineStore::persist_in_background(self.dir.clone(), file).await?;
        *self.state.write().await = applied;
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        tracing::info!(snapshot = %meta.snapshot_id, "installed a snapshot from the leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Every snapshot, built or installed, is persisted before it counts: the file is the
        // current one.
        let path = self.dir.join(SNAPSHOT_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let file = SnapshotFile::from_bytes(&bytes).map_err(|e| {
                    storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Read, e.at(&path))
                })?;
                Ok(Some(Snapshot {
                    meta: file.meta,
                    snapshot: Box::new(Cursor::new(file.data)),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(storage_error(
                ErrorSubject::Snapshot(None),
                ErrorVerb::Read,
                e,
            )),
        }
    }
}
