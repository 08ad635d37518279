//! The `[raft]` section and `--heartbeat-ms` / `--election-timeout-ms` /
//! `--max-clock-offset-ms`: Raft's timings and the bound on a node's clock offset.
//!
//! Invariant: heartbeat < election minimum < election maximum; the clock bound is positive.

use std::time::Duration;

use super::args::ServerArgs;
use super::file::FileRaft;
use super::{invalid, ConfigError};

/// Raft timings; the defaults give a failover under two seconds without flapping on a busy
/// two-core machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Build a snapshot (and purge the log before it) after this many entries.
    pub snapshot_every_logs: u64,
    /// Entries kept before the last snapshot, so a briefly lagging peer catches up from the log.
    pub keep_logs_after_snapshot: u64,
    /// The largest offset of a node's wall clock from the quorum's at which it dispatches
    /// and stands for election.
    pub max_clock_offset: Duration,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(500),
            election_max: Duration::from_millis(900),
            snapshot_every_logs: 20_000,
            keep_logs_after_snapshot: 1_000,
            max_clock_offset: Duration::from_millis(250),
        }
    }
}

fn parse_election(text: &str) -> Result<(u64, u64), ConfigError> {
    let (min, max) = text.split_once('-').ok_or_else(|| {
        invalid(
            "election_timeout_ms",
            format!("{text:?} is not min-max, e.g. 500-900"),
        )
    })?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| invalid("election_timeout_ms", format!("{v:?} is not a number")))
    };
    Ok((parse(min)?, parse(max)?))
}

/// The timings from the flags over the file over the defaults.
pub(super) fn resolve(args: &ServerArgs, file: &FileRaft) -> Result<RaftTimings, ConfigError> {
    let mut raft = RaftTimings::default();
    if let Some(ms) = args.heartbeat_ms.or(file.heartbeat_ms) {
        raft.heartbeat = Duration::from_millis(ms);
    }
    let (min, max) = match &args.election_timeout_ms {
        Some(text) => parse_election(text)?,
        None => (
            file.election_timeout_min_ms
                .unwrap_or(raft.election_min.as_millis() as u64),
            file.election_timeout_max_ms
                .unwrap_or(raft.election_max.as_millis() as u64),
        ),
    };
    raft.election_min = Duration::from_millis(min);
    raft.election_max = Duration::from_millis(max);
    if !(raft.heartbeat < raft.election_min && raft.election_min < raft.election_max) {
        return Err(invalid(
            "election_timeout_ms",
            "need heartbeat < election minimum < election maximum",
        ));
    }
    if let Some(n) = file.snapshot_every_logs {
        raft.snapshot_every_logs = n.max(1);
    }
    if let Some(n) = file.keep_logs_after_snapshot {
        raft.keep_logs_after_snapshot = n;
    }
    if let Some(ms) = args.max_clock_offset_ms.or(file.max_clock_offset_ms) {
        if ms == 0 {
            return Err(invalid("max_clock_offset_ms", "must be positive"));
        }
        raft.max_clock_offset = Duration::from_millis(ms);
    }
    Ok(raft)
}
