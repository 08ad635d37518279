//! The checker: what must have reached Redis, against what did.
//!
//! It owns its expectations. From the run's own record of operations (`history::Op`, with the
//! real-time window in which each took effect) and its own time arithmetic (`expect`), every
//! instant of every schedule incarnation up to the cutoff is classified:
//!
//! - **required**: must have been delivered exactly once;
//! - **optional**, with the reason a correct belfry may have left it out: a catch-up policy
//!   (`late`, `pause`) — belfry must have recorded those skips — or the edges of an operation
//!   (`create`, `edit`, `delete`, a pause never resumed) where whether an instant was planned
//!   before the operation committed is a race;
//! - **forbidden**: must not be delivered (a named skip asked for in time, after `max_runs`);
//! - anything else delivered is **unexpected**.
//!
//! Run control's rules (`controls`) lay `max_runs`, named skips, timed pauses and backfills over
//! what the spec and the pauses gave; a held or backfilled run has a `not_before`.
//!
//! Uncertainty is bounded from the outside, never from belfry's records: the *frontier* F(x),
//! the latest scheduled instant of any delivery that had arrived by real time x, proves that
//! every instant before F(x) had been planned (belfry plans all schedules in instant order) by
//! then. So an instant t < F(op start) was settled before an operation, and an instant counts
//! as possibly skipped-late only if no delivery of an instant ≥ t arrived within the policy's
//! threshold (minus any clock offset in force: a leader within the bound may be late by it).
//!
//! **Never early**: belfry pushes by the quorum's time, so a delivery that reached Redis
//! before its instant by more than `EARLY_TOLERANCE` fails the run, whatever clock offset was
//! in force. Each clock fault's effect (the lateness of what fell due during it) is reported.
//!
//! Deliveries are matched by task id, recomputed here from the documented scheme (UUIDv5 of
//! the cluster id, the incarnation and the instant), so a re-created schedule's instants are
//! told apart from its predecessor's. Must not do I/O.
//!
//! One loss is not belfry's: Celery's Redis transport takes a message with BRPOP and records
//! it as unacknowledged in a second command, so a Redis killed between the two loses a
//! message that had reached Redis. A required instant missing from everything read counts as
//! **lost by the worker** only when all of these hold: its schedule is served by the Celery
//! worker (the harness's own consumer moves messages atomically and loses none), Redis holds
//! belfry's push receipt for its task id (written by the same atomic script as the push), and
//! Redis was killed after the instant. Anything else missing fails the run.
//!
//! The parts live in submodules: `expectations` classifies every instant, `matching` holds
//! the deliveries and belfry's final view against them, `conclusion` sums the verdict.

mod conclusion;
mod controls;
mod expectations;
mod matching;
mod overlap;

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use expectations::incarnations;
use matching::Checking;

use crate::consumer::Arrival;
use crate::history::History;

/// belfry's documented planning constants: intents are committed up to the lookahead ahead,
/// and an occurrence first planned later than the grace counts as missed.
const LOOKAHEAD: Duration = Duration::seconds(1);
const GRACE: Duration = Duration::seconds(2);
/// Added to every uncertain edge: timestamps are taken a little before or after the event.
const SLACK: Duration = Duration::milliseconds(500);
/// How early a delivery may arrive: the error of the quorum's time on a loopback network and
/// the harness's own timestamps, nothing more (the clock offset in force does not count).
pub const EARLY_TOLERANCE: Duration = Duration::milliseconds(50);

/// The cluster id belfry derives from its cluster name.
pub fn cluster_id(cluster_name: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("belfry:{cluster_name}").as_bytes(),
    )
}

/// The task id of an occurrence.
pub fn task_id(cluster: Uuid, incarnation: Uuid, at: DateTime<Utc>) -> Uuid {
    let mut name = [0u8; 24];
    name[..16].copy_from_slice(incarnation.as_bytes());
    name[16..].copy_from_slice(&at.timestamp_millis().to_be_bytes());
    Uuid::new_v5(&cluster, &name)
}

/// Why an instant may be missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// First planned too late for its policy (missed grace, or outside the catch-up window).
    Late,
    /// Fell while the schedule was paused; resumed later under a policy that may skip it.
    Pause,
    /// Fell while the schedule was paused and it never resumed.
    PauseTail,
    Create,
    Edit,
    Delete,
    /// A named occurrence a person asked to skip.
    Requested,
    /// A named occurrence asked to be skipped so close to its instant that it may have been
    /// planned already.
    RequestedLate,
    /// After the schedule's `max_runs` scheduled runs.
    Finished,
    /// Skipped or replaced while held because a run was unfinished (an overlap policy).
    Overlap,
}

impl Reason {
    /// Skips belfry records in the schedule's counts and history.
    fn recorded(self) -> bool {
        matches!(self, Reason::Late | Reason::Pause | Reason::Requested)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Required,
    Optional(Reason),
    /// Must not be delivered, for this reason.
    Forbidden(Reason),
}

/// What an instant was owed: its status, and the earliest real time it may reach Redis when
/// that is later than the instant (the end of a timed pause, the request of a backfill).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Owed {
    status: Status,
    not_before: Option<DateTime<Utc>>,
}

impl Owed {
    fn new(status: Status) -> Owed {
        Owed {
            status,
            not_before: None,
        }
    }
}

/// belfry's final view of a live schedule, read after the run.
#[derive(Clone, Debug, Default)]
pub struct Final {
    pub incarnation: String,
    pub skipped: u64,
    /// (instant, outcome name, manual) of its recent runs.
    pub runs: Vec<(DateTime<Utc>, String, bool)>,
}

/// belfry's preview of a spec against the checker's own instants.
#[derive(Clone, Debug, Serialize)]
pub struct PreviewCheck {
    pub schedule: String,
    pub spec: String,
    pub ours: Vec<DateTime<Utc>>,
    pub theirs: Vec<DateTime<Utc>>,
}

/// One row of the report: one incarnation of a schedule.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub schedule: String,
    pub incarnation: String,
    pub policy: String,
    pub specs: Vec<String>,
    pub required: usize,
    pub optional: usize,
    /// Instants that must not be delivered (asked to be skipped, after `max_runs`).
    pub forbidden: usize,
    pub delivered: usize,
    pub duplicated: usize,
    pub missing: usize,
    /// Required instants that reached Redis and were lost by the Celery worker.
    pub worker_lost: usize,
    pub unexpected: usize,
    /// Optional instants not delivered, by reason.
    pub skipped_explained: BTreeMap<String, usize>,
    /// Skips belfry recorded (live schedules only).
    pub belfry_skipped: Option<u64>,
    pub skip_accounting_ok: Option<bool>,
    pub lateness_ms_p50: Option<i64>,
    pub lateness_ms_p99: Option<i64>,
    pub lateness_ms_max: Option<i64>,
    pub early: usize,
    /// Delivered before the end of its timed pause or its backfill's request.
    pub too_soon: usize,
}

/// A delivery placed on the timeline, for the plot.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub scheduled_at: DateTime<Utc>,
    pub lateness_ms: i64,
    pub schedule: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub required: usize,
    pub optional: usize,
    pub forbidden: usize,
    pub delivered: usize,
    pub duplicated: usize,
    pub missing: usize,
    pub worker_lost: usize,
    pub unexpected: usize,
    pub skipped_explained: usize,
    pub lateness_ms_p50: Option<i64>,
    pub lateness_ms_p99: Option<i64>,
    pub lateness_ms_max: Option<i64>,
    /// Deliveries whose instant fell while no fault was in force or settling.
    pub steady: Lateness,
    /// Deliveries whose instant fell during a fault or within `FAULT_SETTLE` after one.
    pub under_faults: Lateness,
    /// Deliveries that reached Redis before their instant (beyond `EARLY_TOLERANCE`).
    pub early: usize,
    /// Deliveries that reached Redis before the end of their timed pause or their backfill's
    /// request.
    pub too_soon: usize,
}

/// Lateness percentiles of a set of deliveries.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lateness {
    pub deliveries: usize,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

/// How long after a fault ends its effects (an election, a backlog) still count as the
/// fault's: an instant this close after any fault is not steady state.
pub const FAULT_SETTLE: Duration = Duration::seconds(10);

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verdict {
    pub ok: bool,
    pub totals: Totals,
    pub rows: Vec<Row>,
    /// Every reason the run failed, one line each.
    pub failures: Vec<String>,
    /// Required instants that reached Redis and were lost by the Celery worker, one line each.
    pub worker_losses: Vec<String>,
    /// What each clock fault did to dispatch.
    pub clock_effects: Vec<ClockEffect>,
    #[serde(skip)]
    pub points: Vec<Point>,
}

/// One clock fault and the deliveries whose instant fell in it (or in the settling after it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClockEffect {
    pub detail: String,
    pub offset_ms: i64,
    pub start: DateTime<Utc>,
    pub deliveries: usize,
    /// The longest a delivery waited past its instant: the dispatch pause the fault caused
    /// (a leader beyond the bound hands over; within it, it waits by up to its offset).
    pub max_lateness_ms: Option<i64>,
    /// The earliest a delivery arrived before its instant (negative lateness), if any did.
    pub earliest_ms: Option<i64>,
}

/// The input of a check.
pub struct Input<'a> {
    pub history: &'a History,
    pub arrivals: &'a [Arrival],
    pub finals: &'a BTreeMap<String, Final>,
    pub previews: &'a [PreviewCheck],
    pub malformed: &'a [String],
    pub cluster: Uuid,
    /// Task ids whose push receipt (`belfry:sent:<id>`) Redis held after the run.
    pub receipts: &'a HashSet<String>,
    /// When each run of the slow worker ended, by task id.
    pub slow_finishes: &'a HashMap<String, DateTime<Utc>>,
}

/// Runs the check.
pub fn check(input: &Input) -> Verdict {
    let mut checking = Checking::new(input);
    for inc in incarnations(input.history) {
        checking.incarnation(&inc);
    }
    checking.unexpected_leftovers();
    checking.previews();
    checking.incidents();
    checking.finish()
}

#[cfg(test)]
mod controls_tests;
#[cfg(test)]
mod tests;
