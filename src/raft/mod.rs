//! Raft plumbing: openraft's type configuration, the durable log store, the state machine's
//! adapter (`state_machine`: applying entries, snapshots) and the peer network.
//!
//! Invariant: nothing is proposed that would not read back as itself from a `Batch`, the log
//! and a peer's AppendEntries (`check_round_trip`). Owns consensus only: it must not interpret
//! commands (that is `state`) nor talk to Redis.

pub(crate) mod clock;
pub mod log_store;
pub mod network;
pub(crate) mod state_machine;

pub use state_machine::{
    read_snapshot, snapshot_path, Applied, SnapshotBuilder, StateHandle, StateMachineStore,
    StoreError,
};
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

/// Why a command cannot be proposed: it would not read back as itself.
#[derive(Debug, thiserror::Error)]
pub enum RoundTripError {
    #[error("cannot be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("would not decode on a peer: {0}")]
    Decode(serde_json::Error),
    #[error("would not read back from the log: {0}")]
    Stored(String),
    #[error("reads back changed: a node would apply something else than what was proposed")]
    Changed,
}

/// Checks that `command` survives the encodings it travels in: inside a `Batch`, inside a log
/// entry as the log store writes it, and inside an AppendEntries request to a peer. The leader
/// proposes nothing that fails this: an entry that no node can read back would stop every
/// node's Raft core.
pub fn check_round_trip(command: &crate::state::Command) -> Result<(), RoundTripError> {
    use crate::state::Command;
    use openraft::raft::AppendEntriesRequest;
    use openraft::{EntryPayload, LogId, Vote};
    let request = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::default(),
        prev_log_id: None,
        entries: vec![Entry {
            log_id: LogId::default(),
            payload: EntryPayload::Normal(Command::Batch(vec![command.clone()])),
        }],
        leader_commit: None,
    };
    let stored = log_store::encode_entry(&request.entries[0]).map_err(RoundTripError::Encode)?;
    let read_back =
        log_store::decode_entry(0, &stored).map_err(|e| RoundTripError::Stored(e.to_string()))?;
    if read_back.payload != request.entries[0].payload {
        return Err(RoundTripError::Changed);
    }
    let bytes = serde_json::to_vec(&request).map_err(RoundTripError::Encode)?;
    let back: AppendEntriesRequest<TypeConfig> =
        serde_json::from_slice(&bytes).map_err(RoundTripError::Decode)?;
    match back.entries.into_iter().next().map(|entry| entry.payload) {
        Some(EntryPayload::Normal(Command::Batch(commands)))
            if commands.len() == 1 && commands[0] == *command =>
        {
            Ok(())
        }
        _ => Err(RoundTripError::Changed),
    }
}
