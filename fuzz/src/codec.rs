//! The encodings of belfry's persisted and replicated formats, called the way the node calls
//! them: log entries and meta values as `raft::log_store` writes and reads them, peer payloads
//! as `raft::network` sends and opens them, forwarded calls as `api::control` sends them and
//! `api::forward_handler` reads them. Snapshots go through the state store itself
//! (`StateMachineStore`), so they need nothing here.
//!
//! Kept in one place so that the harness and the tests follow the node when a format changes:
//! where the crate has encode and decode functions of its own (log entries, forwarded calls),
//! these call them.

use belfry::api::control::Forwarded;
use belfry::raft::{Entry, NodeId, TypeConfig};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{LogId, Vote};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Any encoding or decoding failure (the harness only reports it).
pub type CodecError = Box<dyn std::error::Error + Send + Sync>;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(serde_json::to_vec(value)?)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    Ok(serde_json::from_slice(bytes)?)
}

/// A log entry as the log store writes it to disk (`raft::log_store::encode_entry`).
pub fn encode_entry(entry: &Entry) -> Result<Vec<u8>, CodecError> {
    Ok(belfry::raft::log_store::encode_entry(entry)?)
}

/// A log entry read back from disk (`raft::log_store::decode_entry`), stored at the index it
/// names.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    #[derive(serde::Deserialize)]
    struct Named {
        log_id: LogId<NodeId>,
    }
    let index = decode::<Named>(bytes)?.log_id.index;
    Ok(belfry::raft::log_store::decode_entry(index, bytes)?)
}

/// The stored vote (meta key `vote`).
pub fn decode_vote(bytes: &[u8]) -> Result<Vote<NodeId>, CodecError> {
    decode(bytes)
}

/// The stored committed index or purge point (meta keys `committed`, `last_purged`).
pub fn decode_log_id(bytes: &[u8]) -> Result<Option<LogId<NodeId>>, CodecError> {
    decode(bytes)
}

/// Any peer payload as the sending side encodes it.
pub fn encode_peer<T: Serialize>(request: &T) -> Result<Vec<u8>, CodecError> {
    encode(request)
}

pub fn decode_append_entries(bytes: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, CodecError> {
    decode(bytes)
}

pub fn decode_vote_request(bytes: &[u8]) -> Result<VoteRequest<NodeId>, CodecError> {
    decode(bytes)
}

pub fn decode_install_snapshot(
    bytes: &[u8],
) -> Result<InstallSnapshotRequest<TypeConfig>, CodecError> {
    decode(bytes)
}

/// A forwarded call as the follower sends it.
pub fn encode_forwarded(forwarded: &Forwarded) -> Result<Vec<u8>, CodecError> {
    encode(forwarded)
}

/// A forwarded call as the leader's forward handler reads it (`Forwarded::decode`).
pub fn decode_forwarded(bytes: &[u8]) -> Result<Forwarded, CodecError> {
    Ok(Forwarded::decode(bytes)?)
}
