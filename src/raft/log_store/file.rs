//! The log file itself: creating it atomically, opening it only after checking that it is a
//! redb database, intact and this node's, and changing its owner on the operator's word.
//!
//! Invariant: a file is never taken for a new node or another node's; every refusal names the
//! file. It must not read or write entries.

use std::io::Read;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableHandle};
use serde::{Deserialize, Serialize};

use super::super::NodeId;
use super::{IDENTITY, LOGS, META};
use crate::formats;

/// The first bytes of every redb file (its header's signature): anything else is not a log.
const REDB_SIGNATURE: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];
/// redb's page cache: the log is read back mostly for replication of recent entries, which
/// are still cached after their write (and an entry not yet on disk is served from memory); a
/// larger cache only keeps old entries resident. 4 MiB holds seconds of log at 20,000 fires/s;
/// 16 MiB added about 120 bytes to every schedule's share of a 100,000-schedule node.
const CACHE_BYTES: usize = 4 * 1024 * 1024;

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

pub(super) fn io_failed(path: &Path) -> impl Fn(std::io::Error) -> LogOpenError + '_ {
    move |source| LogOpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates a log at `path` with its tables and identity, under a temporary name first: a
/// crash part-way leaves no file at `path`, and so cannot leave a damaged file that a restart
/// would have to refuse.
pub(super) fn create(path: &Path, identity: &LogIdentity) -> Result<(), LogOpenError> {
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
pub(super) fn open_existing(path: &Path) -> Result<Database, LogOpenError> {
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
pub(super) fn check_identity(
    db: &Database,
    path: &Path,
    identity: &LogIdentity,
) -> Result<(), LogOpenError> {
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
