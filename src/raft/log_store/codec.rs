//! The bytes of one log entry: its JSON with the format label in front.
//!
//! Invariant: an entry is decoded only if its format is one this build reads and it names the
//! index it is stored at. It must not touch the database.

use super::super::Entry;
use crate::formats;

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
