//! Raft plumbing: openraft's type configuration, the durable log store and the peer network.
//!
//! Owns consensus only. It must not interpret commands (that is `state`) nor talk to Redis.

pub mod log_store;
pub mod network;
pub mod peer_auth;

use std::io::Cursor;

openraft::declare_raft_types!(
    /// belfry's Raft types: commands and results from `state`, numeric node ids, peers known by
    /// their advertised gRPC address.
    pub TypeConfig:
        D = crate::state::Command,
        R = crate::state::CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A node's id.
pub type NodeId = u64;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<NodeId>;

/// Wraps any error as an openraft storage error on `subject` (read/write of logs, vote, …).
pub fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    err: impl std::error::Error + 'static,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&err)).into()
}
