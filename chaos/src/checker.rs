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
//! - anything else delivered is **unexpected**.
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

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::consumer::Arrival;
use crate::history::{FaultWindow, History, Op, OpKind, Policy};
use crate::nemesis::Nemesis;

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
}

impl Reason {
    /// Skips belfry records in the schedule's counts and history.
    fn recorded(self) -> bool {
        matches!(self, Reason::Late | Reason::Pause)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Required,
    Optional(Reason),
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
}

/// Lateness percentiles of a set of deliveries.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Lateness {
    pub deliveries: usize,
    pub p50_ms: Option<i64>,
    pub p99_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

impl Lateness {
    fn of(mut lateness: Vec<i64>) -> Lateness {
        lateness.sort_unstable();
        Lateness::of_sorted(&lateness)
    }

    fn of_sorted(sorted: &[i64]) -> Lateness {
        Lateness {
            deliveries: sorted.len(),
            p50_ms: percentile(sorted, 50),
            p99_ms: percentile(sorted, 99),
            max_ms: sorted.last().copied(),
        }
    }
}

/// How long after a fault ends its effects (an election, a backlog) still count as the
/// fault's: an instant this close after any fault is not steady state.
pub const FAULT_SETTLE: Duration = Duration::seconds(10);

/// True when Redis was killed after instant `t` could have been pushed (a leader whose clock
/// ran ahead pushes early): the only event in a run that can lose a message the Celery worker
/// had taken.
fn redis_killed_after(history: &History, t: DateTime<Utc>) -> bool {
    let earliest_push = t - Duration::milliseconds(history.max_clock_offset_ms.abs()) - SLACK;
    history
        .faults
        .iter()
        .any(|f| f.nemesis == Nemesis::RedisKill.name() && f.start >= earliest_push)
}

/// True when a fault was in force at `t` or ended less than `FAULT_SETTLE` before it.
fn under_fault(faults: &[FaultWindow], t: DateTime<Utc>, cutoff: DateTime<Utc>) -> bool {
    faults
        .iter()
        .any(|f| f.start <= t && f.end.unwrap_or(cutoff) + FAULT_SETTLE > t)
}

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

/// The effect of every clock fault on the deliveries around it.
fn clock_effects(
    faults: &[FaultWindow],
    points: &[Point],
    cutoff: DateTime<Utc>,
) -> Vec<ClockEffect> {
    faults
        .iter()
        .filter(|f| f.nemesis == Nemesis::Clock.name())
        .map(|f| {
            let until = f.end.unwrap_or(cutoff) + Duration::seconds(3);
            let lateness: Vec<i64> = points
                .iter()
                .filter(|p| p.scheduled_at >= f.start && p.scheduled_at <= until)
                .map(|p| p.lateness_ms)
                .collect();
            ClockEffect {
                detail: f.detail.clone(),
                offset_ms: f.offset_ms,
                start: f.start,
                deliveries: lateness.len(),
                max_lateness_ms: lateness.iter().copied().max(),
                earliest_ms: lateness.iter().copied().filter(|l| *l < 0).min(),
            }
        })
        .collect()
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
}

/// Latest scheduled instant of any delivery that had arrived by a given real time.
struct Frontier {
    /// (arrival, running max of scheduled instants), by arrival.
    steps: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Frontier {
    fn new(arrivals: &[Arrival]) -> Frontier {
        let mut sorted: Vec<(DateTime<Utc>, DateTime<Utc>)> = arrivals
            .iter()
            .filter(|a| !a.manual)
            .map(|a| (a.arrived_at, a.scheduled_at))
            .collect();
        sorted.sort();
        let mut max = DateTime::<Utc>::MIN_UTC;
        let steps = sorted
            .into_iter()
            .map(|(arrived, scheduled)| {
                max = max.max(scheduled);
                (arrived, max)
            })
            .collect();
        Frontier { steps }
    }

    fn at(&self, x: DateTime<Utc>) -> DateTime<Utc> {
        let n = self.steps.partition_point(|(arrived, _)| *arrived <= x);
        if n == 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            self.steps[n - 1].1
        }
    }
}

/// The largest clock offset in force around `[from, to]`.
fn offset_around(faults: &[FaultWindow], from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    let margin = Duration::seconds(5);
    faults
        .iter()
        .filter(|f| f.offset_ms != 0)
        .filter(|f| f.start <= to + margin && f.end.is_none_or(|e| e >= from - margin))
        .map(|f| Duration::milliseconds(f.offset_ms.abs()))
        .max()
        .unwrap_or_default()
}

/// A schedule from one create to its delete (or the end).
struct Incarnation<'a> {
    name: String,
    id: Option<Uuid>,
    id_text: String,
    ops: Vec<&'a Op>,
}

fn incarnations(history: &History) -> Vec<Incarnation<'_>> {
    let mut out: Vec<Incarnation> = Vec::new();
    let mut current: HashMap<&str, usize> = HashMap::new();
    for op in &history.ops {
        match &op.kind {
            OpKind::Create { incarnation, .. } => {
                current.insert(&op.schedule, out.len());
                out.push(Incarnation {
                    name: op.schedule.clone(),
                    id: Uuid::parse_str(incarnation).ok(),
                    id_text: incarnation.clone(),
                    ops: vec![op],
                });
            }
            _ => {
                if let Some(i) = current.get(op.schedule.as_str()) {
                    out[*i].ops.push(op);
                }
                if matches!(op.kind, OpKind::Delete) {
                    current.remove(op.schedule.as_str());
                }
            }
        }
    }
    out
}

fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[(sorted.len() * p / 100).min(sorted.len() - 1)])
}

/// Classifies every instant of one incarnation up to `cutoff`.
fn expectations(
    inc: &Incarnation,
    policy: (Policy, u64),
    frontier: &Frontier,
    faults: &[FaultWindow],
    cutoff: DateTime<Utc>,
) -> BTreeMap<DateTime<Utc>, Status> {
    let mut map: BTreeMap<DateTime<Utc>, Status> = BTreeMap::new();
    let window = Duration::seconds(policy.1.min(100 * 365 * 86_400) as i64);
    let late_after = match policy.0 {
        Policy::All => window,
        _ => GRACE.min(window),
    };
    let delete = inc.ops.iter().find(|o| matches!(o.kind, OpKind::Delete));
    // Pause windows: (pause op, the resume that ended it, if any).
    let mut pauses: Vec<(&Op, Option<&Op>)> = Vec::new();
    for (i, op) in inc.ops.iter().enumerate() {
        if matches!(op.kind, OpKind::Pause) {
            let resume = inc.ops[i + 1..]
                .iter()
                .take_while(|o| !matches!(o.kind, OpKind::Pause | OpKind::Delete))
                .find(|o| matches!(o.kind, OpKind::Resume))
                .copied();
            pauses.push((op, resume));
        }
    }
    let versions: Vec<usize> = inc
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.kind, OpKind::Create { .. } | OpKind::Edit { .. }))
        .map(|(i, _)| i)
        .collect();
    for (k, &begin_index) in versions.iter().enumerate() {
        let begin = inc.ops[begin_index];
        let (spec, created) = match &begin.kind {
            OpKind::Create { spec, .. } => (spec, true),
            OpKind::Edit { spec } => (spec, false),
            _ => continue,
        };
        let end: Option<&Op> = versions.get(k + 1).map(|i| inc.ops[*i]).or(delete.copied());
        let begin_offset = offset_around(faults, begin.start, begin.end);
        let lo = if created {
            DateTime::<Utc>::MIN_UTC
        } else {
            // An edit's spec counts from its commit: instants before the request are not its.
            begin.start - begin_offset - SLACK
        };
        let hi = end
            .map(|e| e.end + LOOKAHEAD + offset_around(faults, e.start, e.end) + SLACK)
            .unwrap_or(cutoff)
            .min(cutoff);
        let settled_before_end = end.map(|e| frontier.at(e.start));
        for t in spec.occurrences(lo, hi) {
            let mut status = Status::Required;
            let edge = begin.end + begin_offset + SLACK;
            if !created && t <= edge + LOOKAHEAD {
                status = Status::Optional(Reason::Edit);
            } else if created && t <= edge {
                status = Status::Optional(Reason::Create);
            }
            if let (Some(e), Some(settled)) = (end, settled_before_end) {
                if t >= settled {
                    status = Status::Optional(if matches!(e.kind, OpKind::Delete) {
                        Reason::Delete
                    } else {
                        Reason::Edit
                    });
                }
            }
            let mut forbidden = false;
            for (pause, resume) in &pauses {
                if t < frontier.at(pause.start) {
                    continue;
                }
                match resume {
                    Some(resume) => {
                        let resumed =
                            resume.end + offset_around(faults, resume.start, resume.end) + SLACK;
                        if t > resumed {
                            continue;
                        }
                        // `all` fires what fell in the pause when it resumes, if the window
                        // still covers it.
                        let covered =
                            policy.0 == Policy::All && resumed - t + Duration::seconds(60) < window;
                        if !covered && status == Status::Required {
                            status = Status::Optional(Reason::Pause);
                        }
                    }
                    None => {
                        let paused = pause.end
                            + LOOKAHEAD
                            + offset_around(faults, pause.start, pause.end)
                            + SLACK;
                        if t <= paused {
                            if status == Status::Required {
                                status = Status::Optional(Reason::PauseTail);
                            }
                        } else {
                            forbidden = true;
                        }
                    }
                }
            }
            if forbidden {
                continue;
            }
            if status == Status::Required {
                let offset = offset_around(faults, t - LOOKAHEAD, t + late_after);
                if frontier.at(t + late_after - offset - SLACK) < t {
                    status = Status::Optional(Reason::Late);
                }
            }
            map.entry(t)
                .and_modify(|s| {
                    if status == Status::Required {
                        *s = status;
                    }
                })
                .or_insert(status);
        }
    }
    map
}

/// Runs the check.
pub fn check(input: &Input) -> Verdict {
    let history = input.history;
    let cutoff = history.cutoff.unwrap_or_else(Utc::now);
    let frontier = Frontier::new(input.arrivals);
    let mut verdict = Verdict::default();
    let mut failures: Vec<String> = Vec::new();
    for m in input.malformed {
        failures.push(format!("malformed message in Redis: {m}"));
    }

    let mut by_id: HashMap<String, Vec<&Arrival>> = HashMap::new();
    for a in input.arrivals.iter().filter(|a| !a.manual) {
        by_id.entry(a.task_id.clone()).or_default().push(a);
    }
    let mut all_lateness: Vec<i64> = Vec::new();

    for inc in incarnations(history) {
        let policy = history
            .policies
            .get(&inc.name)
            .copied()
            .unwrap_or((Policy::All, 3600));
        let mut row = Row {
            schedule: inc.name.clone(),
            incarnation: inc.id_text.clone(),
            policy: format!("{:?}/{}s", policy.0, policy.1).to_lowercase(),
            specs: inc
                .ops
                .iter()
                .filter_map(|o| match &o.kind {
                    OpKind::Create { spec, .. } | OpKind::Edit { spec } => Some(spec.describe()),
                    _ => None,
                })
                .collect(),
            ..Default::default()
        };
        let Some(id) = inc.id else {
            failures.push(format!(
                "{}: incarnation id {:?} is not a UUID",
                inc.name, inc.id_text
            ));
            continue;
        };
        let map = expectations(&inc, policy, &frontier, &history.faults, cutoff);
        let served_by_worker = history.worker_schedules.contains(&inc.name);
        let mut lost_by_worker: HashSet<DateTime<Utc>> = HashSet::new();
        let mut lateness: Vec<i64> = Vec::new();
        let mut missing_recorded = 0u64;
        let mut missing_unrecorded = 0u64;
        for (t, status) in &map {
            let tid = task_id(input.cluster, id, *t).to_string();
            let got = by_id.remove(&tid).unwrap_or_default();
            match status {
                Status::Required => row.required += 1,
                Status::Optional(_) => row.optional += 1,
            }
            if got.is_empty() {
                match status {
                    Status::Required
                        if served_by_worker
                            && input.receipts.contains(&tid)
                            && redis_killed_after(history, *t) =>
                    {
                        row.worker_lost += 1;
                        lost_by_worker.insert(*t);
                        verdict.worker_losses.push(format!(
                            "{} {} (task {tid}): reached Redis (push receipt held), never executed; Redis was killed after it",
                            inc.name,
                            t.to_rfc3339()
                        ));
                    }
                    Status::Required => {
                        row.missing += 1;
                        failures.push(format!(
                            "MISSING {} {} (task {tid}): required and never delivered",
                            inc.name,
                            t.to_rfc3339()
                        ));
                    }
                    Status::Optional(reason) => {
                        *row.skipped_explained
                            .entry(format!("{reason:?}").to_lowercase())
                            .or_default() += 1;
                        if reason.recorded() {
                            missing_recorded += 1;
                        } else {
                            missing_unrecorded += 1;
                        }
                    }
                }
                continue;
            }
            row.delivered += 1;
            if got.len() > 1 {
                row.duplicated += 1;
                failures.push(format!(
                    "DUPLICATE {} {} (task {tid}) delivered {} times, by {:?} at {:?}",
                    inc.name,
                    t.to_rfc3339(),
                    got.len(),
                    got.iter().map(|a| a.origin.as_str()).collect::<Vec<_>>(),
                    got.iter()
                        .map(|a| a.arrived_at.format("%H:%M:%S%.3f").to_string())
                        .collect::<Vec<_>>()
                ));
            }
            for a in &got {
                if a.schedule != inc.name || a.scheduled_at != *t {
                    failures.push(format!(
                        "WRONG HEADERS task {tid}: belfry_schedule {:?} belfry_scheduled_at {} (expected {} {})",
                        a.schedule,
                        a.scheduled_at.to_rfc3339(),
                        inc.name,
                        t.to_rfc3339()
                    ));
                }
            }
            let first = got.iter().map(|a| a.arrived_at).min().unwrap_or(*t);
            let late = (first - *t).num_milliseconds();
            if first - *t < -EARLY_TOLERANCE {
                row.early += 1;
                let offset = offset_around(&history.faults, *t - LOOKAHEAD, *t);
                failures.push(format!(
                    "EARLY {} {}: reached Redis {} ms before its instant (clock offset in force: {} ms)",
                    inc.name,
                    t.to_rfc3339(),
                    -late,
                    offset.num_milliseconds()
                ));
            }
            lateness.push(late);
            verdict.points.push(Point {
                scheduled_at: *t,
                lateness_ms: late,
                schedule: inc.name.clone(),
            });
        }
        lateness.sort_unstable();
        let l = Lateness::of_sorted(&lateness);
        (
            row.lateness_ms_p50,
            row.lateness_ms_p99,
            row.lateness_ms_max,
        ) = (l.p50_ms, l.p99_ms, l.max_ms);
        all_lateness.extend(lateness);

        if let Some(fin) = input
            .finals
            .get(&inc.name)
            .filter(|f| f.incarnation == inc.id_text)
        {
            row.belfry_skipped = Some(fin.skipped);
            let ok = missing_recorded <= fin.skipped
                && fin.skipped <= missing_recorded + missing_unrecorded;
            row.skip_accounting_ok = Some(ok);
            if !ok {
                failures.push(format!(
                    "SKIP ACCOUNTING {}: belfry recorded {} skipped, the checker found {} missing by policy and {} more at operation edges",
                    inc.name, fin.skipped, missing_recorded, missing_unrecorded
                ));
            }
            for (t, outcome, manual) in &fin.runs {
                if *manual || *t > cutoff {
                    continue;
                }
                let delivered = lost_by_worker.contains(t)
                    || input
                        .arrivals
                        .iter()
                        .any(|a| a.task_id == task_id(input.cluster, id, *t).to_string());
                let consistent = match outcome.as_str() {
                    "sent" | "already_sent" => delivered,
                    "skipped" => !delivered,
                    _ => false,
                };
                if !consistent {
                    failures.push(format!(
                        "HISTORY {}: belfry's run record for {} says {outcome}, Redis {}",
                        inc.name,
                        t.to_rfc3339(),
                        if delivered { "had it" } else { "never had it" }
                    ));
                }
            }
        }
        verdict.rows.push(row);
    }

    // Whatever is left was not expected of any incarnation.
    let mut leftovers: Vec<(&String, &Vec<&Arrival>)> = by_id.iter().collect();
    leftovers.sort_by_key(|(_, v)| v[0].scheduled_at);
    for (tid, got) in leftovers {
        let a = got[0];
        if got.len() > 1 {
            failures.push(format!(
                "DUPLICATE {} {} (task {tid}) delivered {} times",
                a.schedule,
                a.scheduled_at.to_rfc3339(),
                got.len()
            ));
        }
        if a.scheduled_at <= cutoff {
            failures.push(format!(
                "UNEXPECTED {} {} (task {tid}) reached Redis at {}: no incarnation of the schedule had that instant then",
                a.schedule,
                a.scheduled_at.to_rfc3339(),
                a.arrived_at.format("%H:%M:%S%.3f")
            ));
            if let Some(row) = verdict
                .rows
                .iter_mut()
                .rev()
                .find(|r| r.schedule == a.schedule)
            {
                row.unexpected += 1;
            }
        }
    }

    for p in input.previews {
        if p.ours != p.theirs {
            failures.push(format!(
                "PREVIEW {} [{}]: belfry previews {:?}, the checker computes {:?}",
                p.schedule,
                p.spec,
                p.theirs
                    .iter()
                    .take(5)
                    .map(|t| t.to_rfc3339())
                    .collect::<Vec<_>>(),
                p.ours
                    .iter()
                    .take(5)
                    .map(|t| t.to_rfc3339())
                    .collect::<Vec<_>>()
            ));
        }
    }
    for incident in &history.incidents {
        failures.push(format!("INCIDENT {incident}"));
    }

    let t = &mut verdict.totals;
    for row in &verdict.rows {
        t.required += row.required;
        t.optional += row.optional;
        t.delivered += row.delivered;
        t.duplicated += row.duplicated;
        t.missing += row.missing;
        t.worker_lost += row.worker_lost;
        t.unexpected += row.unexpected;
        t.skipped_explained += row.skipped_explained.values().sum::<usize>();
        t.early += row.early;
    }
    verdict.clock_effects = clock_effects(&history.faults, &verdict.points, cutoff);
    let l = Lateness::of(all_lateness);
    (t.lateness_ms_p50, t.lateness_ms_p99, t.lateness_ms_max) = (l.p50_ms, l.p99_ms, l.max_ms);
    let (faulted, steady): (Vec<&Point>, Vec<&Point>) = verdict
        .points
        .iter()
        .partition(|p| under_fault(&history.faults, p.scheduled_at, cutoff));
    t.steady = Lateness::of(steady.iter().map(|p| p.lateness_ms).collect());
    t.under_faults = Lateness::of(faulted.iter().map(|p| p.lateness_ms).collect());
    if t.required == 0 {
        failures.push("NOTHING CHECKED: no required occurrence".into());
    }
    verdict.ok = failures.is_empty();
    verdict.failures = failures;
    verdict
}

#[cfg(test)]
mod tests;
