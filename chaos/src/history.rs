//! The run's own record of what it did: fault windows and schedule operations, each with the
//! real-time window in which it happened, as seen from the runner.
//!
//! The checker reads this, never belfry's account of the same events. Owns the data types and
//! a shared, append-only log; must not act on anything.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::expect::SpecDef;

/// One injected fault, from the moment it started to the moment it was healed.
#[derive(Clone, Debug, Serialize)]
pub struct FaultWindow {
    pub nemesis: String,
    pub detail: String,
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
    /// For a clock fault: the offset given to the node, in milliseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// What an operation did to a schedule.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpKind {
    Create {
        spec: SpecDef,
        incarnation: String,
        /// The schedule's jitter (0: none).
        jitter_ms: u64,
        /// Created paused: nothing is owed until a resume (or a backfill).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        paused: bool,
        /// Run control's `max_runs`: the schedule finishes after this many scheduled runs.
        #[serde(skip_serializing_if = "Option::is_none")]
        max_runs: Option<u64>,
    },
    Edit {
        spec: SpecDef,
    },
    Pause,
    Resume,
    Delete,
    /// Skip these named occurrences.
    Skip {
        at: Vec<DateTime<Utc>>,
    },
    /// Pause until `until`, when the schedule resumes by itself.
    PauseUntil {
        until: DateTime<Utc>,
    },
    /// Send the occurrences in `[from, to]` (both ends included).
    Backfill {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// One schedule operation: sent first at `start`, known to have taken effect by `end`
/// (retries in between, while there was no leader or the node asked was cut off).
#[derive(Clone, Debug, Serialize)]
pub struct Op {
    pub schedule: String,
    pub kind: OpKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub attempts: u32,
}

/// A schedule's catch-up policy as the workload defined it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    All,
    Latest,
    None,
}

/// A schedule's overlap policy as the workload defined it (`skip` or `buffer_one`, one run
/// at a time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct OverlapRule {
    pub buffer_one: bool,
    /// After this long unfinished, a run counts as lost and no longer blocks the next.
    pub max_runtime_secs: u64,
}

/// Everything the run did, in order.
#[derive(Debug, Default, Serialize)]
pub struct History {
    pub seed: u64,
    pub nodes: u64,
    pub faults: Vec<FaultWindow>,
    pub ops: Vec<Op>,
    /// Policies and windows of every schedule name (fixed for a name's whole life).
    pub policies: std::collections::BTreeMap<String, (Policy, u64)>,
    /// Names whose messages go to the Celery worker's queue (fixed for a name's whole life).
    pub worker_schedules: std::collections::BTreeSet<String>,
    /// Overlap policies of the names that have one (fixed for a name's whole life).
    pub overlap: std::collections::BTreeMap<String, OverlapRule>,
    /// The largest clock offset any node had at any time, in milliseconds.
    pub max_clock_offset_ms: i64,
    pub started: Option<DateTime<Utc>>,
    pub healed: Option<DateTime<Utc>>,
    /// Occurrences at or before this instant are checked.
    pub cutoff: Option<DateTime<Utc>>,
    /// Things that went wrong in the harness or the cluster outside the checker's scope
    /// (a node that would not stop, an operation that never succeeded, a hang).
    pub incidents: Vec<String>,
}

pub type SharedHistory = Arc<Mutex<History>>;

/// Appends a fault window and returns its index, to close later.
pub fn open_fault(history: &SharedHistory, nemesis: &str, detail: String) -> usize {
    let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
    eprintln!(
        "{}  fault  {nemesis}: {detail}",
        Utc::now().format("%H:%M:%S%.3f")
    );
    h.faults.push(FaultWindow {
        nemesis: nemesis.to_string(),
        detail,
        start: Utc::now(),
        end: None,
        offset_ms: 0,
    });
    h.faults.len() - 1
}

pub fn close_fault(history: &SharedHistory, index: usize) {
    let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = h.faults.get_mut(index) {
        f.end = Some(Utc::now());
        eprintln!(
            "{}  healed {}",
            Utc::now().format("%H:%M:%S%.3f"),
            f.nemesis
        );
    }
}

pub fn incident(history: &SharedHistory, text: String) {
    eprintln!("{}  INCIDENT {text}", Utc::now().format("%H:%M:%S%.3f"));
    history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .incidents
        .push(text);
}
