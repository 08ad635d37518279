//! The version of every persisted and inter-node format, and the label that carries it.
//!
//! Invariant: a reader refuses a version above the one it knows, naming the value, and never
//! guesses at it; an unlabelled value is format 1. It must not encode or decode the values
//! themselves: each format's owner does that and asks here first. ARCHITECTURE.md ("Formats")
//! lists every format.
//!
//! A JSON object is labelled by a leading `"format":N` key: `{"format":1,"log_id":…}`. The
//! label is the first key, so a reader finds it without parsing the rest, and serde's structs
//! (openraft's entries, votes and snapshot metadata included) ignore a key they do not know,
//! so a build that predates the label still reads a labelled value. An unlabelled object is
//! everything written before labels existed.

/// Log entries (a stored row: openraft's `Entry` with a `state::Command` payload). Format 2: a
/// `Put` may carry a solar spec and `last_run_at`; format 3: run control in a `Put`, and
/// `Outcomes` (`Command::format`).
pub const LOG_ENTRY: u32 = 3;
/// The log file as a whole: its tables and the encoding of its metadata (vote, committed index,
/// purge point, identity).
pub const LOG_FILE: u32 = 1;
/// The stored vote.
pub const VOTE: u32 = 1;
/// The snapshot file (a metadata line, then the applied state).
pub const SNAPSHOT: u32 = 1;
/// A request forwarded from a follower to the leader (`api::control::Forwarded`). Format 2: a
/// backfill (`Forwarded::format_of`); every other request is still forwarded as 1.
pub const FORWARDED: u32 = 2;
/// The payload of a peer call (`belfry.raft.v1.PeerRequest.payload`: openraft's RPCs as JSON).
pub const PEER: u32 = 1;

/// The highest format of every kind this build reads, advertised to peers: a command or
/// message of a newer format is only sent once every member advertises it.
pub const HIGHEST: u32 = 3;

const LABEL: &[u8] = b"{\"format\":";

/// A value in a format this build cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("{what} is in format {found}, newer than this build reads (up to {known}); upgrade this node")]
    Newer {
        what: String,
        found: u32,
        known: u32,
    },
    #[error("{what} has a malformed format label")]
    Malformed { what: String },
}

/// `json` (a serialized JSON object) with `"format":version` as its first key.
pub fn label(version: u32, json: &[u8]) -> Vec<u8> {
    let Some(rest) = json.strip_prefix(b"{") else {
        // Not an object: nothing to label (never the case for the formats above).
        return json.to_vec();
    };
    let mut labelled = Vec::with_capacity(json.len() + LABEL.len() + 12);
    labelled.extend_from_slice(LABEL);
    labelled.extend_from_slice(version.to_string().as_bytes());
    if rest != b"}" {
        labelled.push(b',');
    }
    labelled.extend_from_slice(rest);
    labelled
}

/// The format `json` is labelled with (1 when unlabelled).
pub fn version_of(json: &[u8], what: impl Fn() -> String) -> Result<u32, FormatError> {
    let Some(rest) = json.strip_prefix(LABEL) else {
        return Ok(1);
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|d| d.parse().ok())
        .filter(|_| matches!(rest.get(digits), Some(b',' | b'}')))
        .ok_or_else(|| FormatError::Malformed { what: what() })
}

/// Refuses a version above `known`, naming the value (`what`) in the error.
pub fn check(found: u32, known: u32, what: impl Fn() -> String) -> Result<(), FormatError> {
    if found > known {
        return Err(FormatError::Newer {
            what: what(),
            found,
            known,
        });
    }
    Ok(())
}

/// The label of `json`, refused if above `known`.
pub fn check_label(json: &[u8], known: u32, what: impl Fn() -> String) -> Result<u32, FormatError> {
    let found = version_of(json, &what)?;
    check(found, known, what)?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_the_first_key_and_reads_back() {
        let labelled = label(7, br#"{"a":1}"#);
        assert_eq!(labelled, br#"{"format":7,"a":1}"#);
        assert_eq!(version_of(&labelled, String::new), Ok(7));
        assert_eq!(label(2, b"{}"), br#"{"format":2}"#);
        assert_eq!(version_of(br#"{"format":2}"#, String::new), Ok(2));
    }

    #[test]
    fn unlabelled_is_format_1() {
        assert_eq!(version_of(br#"{"a":{"format":9}}"#, String::new), Ok(1));
        assert_eq!(version_of(b"", String::new), Ok(1));
    }

    #[test]
    fn newer_or_malformed_labels_are_refused() {
        let err = check_label(br#"{"format":3,"a":1}"#, 2, || "entry 5".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry 5 is in format 3, newer than this build reads (up to 2); upgrade this node"
        );
        for bad in [
            &br#"{"format":x}"#[..],
            br#"{"format":1x}"#,
            br#"{"format":99999999999}"#,
        ] {
            assert!(matches!(
                version_of(bad, || "v".into()),
                Err(FormatError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn serde_structs_read_a_labelled_value() {
        let vote = openraft::Vote::<u64>::new_committed(3, 1);
        let bytes = label(1, &serde_json::to_vec(&vote).expect("vote"));
        let read: openraft::Vote<u64> = serde_json::from_slice(&bytes).expect("labelled vote");
        assert_eq!(read, vote);
    }
}
