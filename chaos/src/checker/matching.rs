//! Matching deliveries to what each incarnation owed: every expected instant is looked up by
//! its task id, counted as delivered, duplicated, early, missing, lost by the worker or
//! skipped for a reason, and held against belfry's own final view of the schedule.
//!
//! Invariant: a delivery is matched to at most one instant (it is taken out of the unmatched
//! set when matched), so whatever remains at the end was expected of no incarnation. Must not
//! decide which instants are owed; that is `expectations`'.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::expectations::{expectations, offset_around, Frontier, Incarnation};
use super::overlap::{OverlapCheck, SlowEvidence};
use super::{
    task_id, Final, Input, Lateness, Owed, Point, Reason, Row, Status, Verdict, EARLY_TOLERANCE,
    LOOKAHEAD, SLACK,
};
use crate::consumer::Arrival;
use crate::history::{History, OpKind, Policy};
use crate::nemesis::Nemesis;
use crate::workload::SLOW_QUEUE;

/// A check under way: the input, what is left to match, and what has been found so far.
pub(super) struct Checking<'a> {
    pub(super) input: &'a Input<'a>,
    pub(super) cutoff: DateTime<Utc>,
    frontier: Frontier,
    /// Deliveries (manual runs aside) not yet matched to an expected instant, by task id.
    unmatched: HashMap<String, Vec<&'a Arrival>>,
    /// The slow worker's executions, by task id.
    slow_runs: HashMap<String, Vec<&'a Arrival>>,
    pub(super) verdict: Verdict,
    pub(super) failures: Vec<String>,
    /// Lateness of every matched delivery, over all incarnations.
    pub(super) all_lateness: Vec<i64>,
}

/// One incarnation's counts while its instants are matched.
#[derive(Default)]
struct Tally<'a> {
    /// The runs of a schedule with an overlap policy.
    overlap: Option<OverlapCheck<'a>>,
    row: Row,
    /// Required instants that reached Redis and were lost by the Celery worker.
    lost_by_worker: HashSet<DateTime<Utc>>,
    lateness: Vec<i64>,
    /// Optional instants not delivered for a reason belfry records as a skip.
    missing_recorded: u64,
    /// Optional instants not delivered at an operation's edge (belfry may or may not count
    /// them).
    missing_unrecorded: u64,
}

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

/// An incarnation's row before any instant is counted.
fn empty_row(inc: &Incarnation, policy: (Policy, u64)) -> Row {
    Row {
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
    }
}

impl<'a> Checking<'a> {
    pub(super) fn new(input: &'a Input<'a>) -> Checking<'a> {
        let mut unmatched: HashMap<String, Vec<&Arrival>> = HashMap::new();
        let mut slow_runs: HashMap<String, Vec<&Arrival>> = HashMap::new();
        for a in input.arrivals.iter().filter(|a| !a.manual) {
            unmatched.entry(a.task_id.clone()).or_default().push(a);
            if a.queue == SLOW_QUEUE {
                slow_runs.entry(a.task_id.clone()).or_default().push(a);
            }
        }
        Checking {
            input,
            cutoff: input.history.cutoff.unwrap_or_else(Utc::now),
            frontier: Frontier::new(input.arrivals),
            unmatched,
            slow_runs,
            verdict: Verdict::default(),
            failures: input
                .malformed
                .iter()
                .map(|m| format!("malformed message in Redis: {m}"))
                .collect(),
            all_lateness: Vec::new(),
        }
    }

    /// Matches every instant one incarnation owed and adds its row.
    pub(super) fn incarnation(&mut self, inc: &Incarnation) {
        let history = self.input.history;
        let policy = history
            .policies
            .get(&inc.name)
            .copied()
            .unwrap_or((Policy::All, 3600));
        let row = empty_row(inc, policy);
        let Some(id) = inc.id else {
            self.failures.push(format!(
                "{}: incarnation id {:?} is not a UUID",
                inc.name, inc.id_text
            ));
            return;
        };
        let map = expectations(inc, policy, &self.frontier, &history.faults, self.cutoff);
        let overlap = history.overlap.get(&inc.name).map(|rule| {
            OverlapCheck::new(
                &inc.name,
                *rule,
                (self.input.cluster, id),
                &map,
                SlowEvidence {
                    executions: &self.slow_runs,
                    receipts: self.input.receipts,
                    ends: self.input.slow_finishes,
                },
                (&history.faults, self.cutoff),
            )
        });
        let mut tally = Tally {
            row,
            overlap,
            ..Default::default()
        };
        for (t, owed) in &map {
            self.instant(inc, id, *t, *owed, &mut tally);
        }
        if let Some(overlap) = &tally.overlap {
            self.failures.extend(overlap.violations());
        }
        tally.lateness.sort_unstable();
        let l = Lateness::of_sorted(&tally.lateness);
        let row = &mut tally.row;
        (
            row.lateness_ms_p50,
            row.lateness_ms_p99,
            row.lateness_ms_max,
        ) = (l.p50_ms, l.p99_ms, l.max_ms);
        self.all_lateness.append(&mut tally.lateness);
        self.against_final(inc, id, &mut tally);
        self.verdict.rows.push(tally.row);
    }

    /// Matches one expected instant against the deliveries of its task id.
    fn instant(
        &mut self,
        inc: &Incarnation,
        id: Uuid,
        t: DateTime<Utc>,
        owed: Owed,
        tally: &mut Tally,
    ) {
        let tid = task_id(self.input.cluster, id, t).to_string();
        let got = self.unmatched.remove(&tid).unwrap_or_default();
        let mut owed = owed;
        let running = || tally.overlap.as_ref().is_some_and(|o| o.excuses(t));
        if got.is_empty() && owed.status == Status::Required && running() {
            owed.status = Status::Optional(Reason::Overlap);
        }
        match owed.status {
            Status::Required => tally.row.required += 1,
            Status::Optional(_) => tally.row.optional += 1,
            Status::Forbidden(_) => tally.row.forbidden += 1,
        }
        if got.is_empty() {
            self.undelivered(inc, &tid, t, owed.status, tally);
            return;
        }
        if let Status::Forbidden(reason) = owed.status {
            tally.row.unexpected += 1;
            self.failures.push(format!(
                "FORBIDDEN {} {} (task {tid}) reached Redis at {}: {}",
                inc.name,
                t.to_rfc3339(),
                got[0].arrived_at.format("%H:%M:%S%.3f"),
                match reason {
                    Reason::Requested => "it was asked to be skipped",
                    Reason::Finished => "the schedule had finished its max_runs",
                    _ => "its schedule was paused",
                }
            ));
        }
        // A run held by design (a timed pause, a backfill, `buffer_one`) is not late by its
        // delay.
        let held =
            owed.not_before.is_some() || tally.overlap.as_ref().is_some_and(|o| o.holds_runs());
        self.delivered(inc, &tid, t, &got, held, tally);
        self.not_too_soon(inc, t, owed, &got, tally);
    }

    /// A run held back by a timed pause or sent by a backfill must not arrive before the
    /// pause ended or the backfill was asked for.
    fn not_too_soon(
        &mut self,
        inc: &Incarnation,
        t: DateTime<Utc>,
        owed: Owed,
        got: &[&Arrival],
        tally: &mut Tally,
    ) {
        let Some(not_before) = owed.not_before else {
            return;
        };
        let first = got.iter().map(|a| a.arrived_at).min().unwrap_or(t);
        if first < not_before {
            tally.row.too_soon += 1;
            self.failures.push(format!(
                "TOO SOON {} {}: reached Redis at {}, before {} (the end of its timed pause, or its backfill's request)",
                inc.name,
                t.to_rfc3339(),
                first.format("%H:%M:%S%.3f"),
                not_before.format("%H:%M:%S%.3f")
            ));
        }
    }

    /// An instant nobody received: excused, lost by the worker, or missing.
    fn undelivered(
        &mut self,
        inc: &Incarnation,
        tid: &str,
        t: DateTime<Utc>,
        status: Status,
        tally: &mut Tally,
    ) {
        let input = self.input;
        let served_by_worker = input.history.worker_schedules.contains(&inc.name);
        match status {
            Status::Required
                if served_by_worker
                    && input.receipts.contains(tid)
                    && redis_killed_after(input.history, t) =>
            {
                tally.row.worker_lost += 1;
                tally.lost_by_worker.insert(t);
                self.verdict.worker_losses.push(format!(
                    "{} {} (task {tid}): reached Redis (push receipt held), never executed; Redis was killed after it",
                    inc.name,
                    t.to_rfc3339()
                ));
            }
            Status::Required => {
                tally.row.missing += 1;
                self.failures.push(format!(
                    "MISSING {} {} (task {tid}): required and never delivered",
                    inc.name,
                    t.to_rfc3339()
                ));
            }
            Status::Optional(reason) | Status::Forbidden(reason) => {
                *tally
                    .row
                    .skipped_explained
                    .entry(format!("{reason:?}").to_lowercase())
                    .or_default() += 1;
                if reason.recorded() {
                    tally.missing_recorded += 1;
                } else {
                    tally.missing_unrecorded += 1;
                }
            }
        }
    }

    /// An instant received at least once: duplicates, wrong headers and early arrival fail
    /// the run; the first arrival's lateness is recorded unless the run was `held`.
    fn delivered(
        &mut self,
        inc: &Incarnation,
        tid: &str,
        t: DateTime<Utc>,
        got: &[&Arrival],
        held: bool,
        tally: &mut Tally,
    ) {
        tally.row.delivered += 1;
        if got.len() > 1 {
            tally.row.duplicated += 1;
            self.failures.push(format!(
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
        for a in got {
            if a.schedule != inc.name || a.scheduled_at != t {
                self.failures.push(format!(
                    "WRONG HEADERS task {tid}: belfry_schedule {:?} belfry_scheduled_at {} (expected {} {})",
                    a.schedule,
                    a.scheduled_at.to_rfc3339(),
                    inc.name,
                    t.to_rfc3339()
                ));
            }
        }
        let first = got.iter().map(|a| a.arrived_at).min().unwrap_or(t);
        // With jitter, the run is due at its instant plus its offset.
        let due = t + jitter_offset(tid, inc.jitter_ms);
        let late = (first - due).num_milliseconds();
        if first - due < -EARLY_TOLERANCE {
            tally.row.early += 1;
            let offset = offset_around(&self.input.history.faults, t - LOOKAHEAD, t);
            self.failures.push(format!(
                "EARLY {} {}: reached Redis {} ms before its instant (with its jitter offset; clock offset in force: {} ms)",
                inc.name,
                t.to_rfc3339(),
                -late,
                offset.num_milliseconds()
            ));
        }
        if held {
            return;
        }
        tally.lateness.push(late);
        self.verdict.points.push(Point {
            scheduled_at: t,
            lateness_ms: late,
            schedule: inc.name.clone(),
        });
    }

    /// Holds belfry's final view of a live incarnation (its skip count and run records)
    /// against what the checker found.
    fn against_final(&mut self, inc: &Incarnation, id: Uuid, tally: &mut Tally) {
        let input = self.input;
        let Some(fin) = input
            .finals
            .get(&inc.name)
            .filter(|f| f.incarnation == inc.id_text)
        else {
            return;
        };
        tally.row.belfry_skipped = Some(fin.skipped);
        // With an overlap policy, belfry also skips between the cutoff and the final pause,
        // where the checker does not look: only the lower bound holds.
        let bounded = tally.overlap.is_none();
        let ok = tally.missing_recorded <= fin.skipped
            && (!bounded || fin.skipped <= tally.missing_recorded + tally.missing_unrecorded);
        tally.row.skip_accounting_ok = Some(ok);
        if !ok {
            self.failures.push(format!(
                "SKIP ACCOUNTING {}: belfry recorded {} skipped, the checker found {} missing by policy and {} more at operation edges",
                inc.name, fin.skipped, tally.missing_recorded, tally.missing_unrecorded
            ));
        }
        self.run_records(inc, id, fin, &tally.lost_by_worker);
    }

    /// Each of belfry's run records up to the cutoff must agree with what Redis had.
    fn run_records(
        &mut self,
        inc: &Incarnation,
        id: Uuid,
        fin: &Final,
        lost_by_worker: &HashSet<DateTime<Utc>>,
    ) {
        let input = self.input;
        for (t, outcome, manual) in &fin.runs {
            if *manual || *t > self.cutoff {
                continue;
            }
            let delivered = lost_by_worker.contains(t)
                || input
                    .arrivals
                    .iter()
                    .any(|a| a.task_id == task_id(input.cluster, id, *t).to_string());
            let consistent = match outcome.as_str() {
                "sent" | "already_sent" => delivered,
                // Held by `buffer_one` and never released: not sent.
                "skipped" | "held" => !delivered,
                _ => false,
            };
            if !consistent {
                self.failures.push(format!(
                    "HISTORY {}: belfry's run record for {} says {outcome}, Redis {}",
                    inc.name,
                    t.to_rfc3339(),
                    if delivered { "had it" } else { "never had it" }
                ));
            }
        }
    }

    /// Whatever is left was not expected of any incarnation.
    pub(super) fn unexpected_leftovers(&mut self) {
        let mut leftovers: Vec<(&String, &Vec<&Arrival>)> = self.unmatched.iter().collect();
        leftovers.sort_by_key(|(_, v)| v[0].scheduled_at);
        for (tid, got) in leftovers {
            let a = got[0];
            if got.len() > 1 {
                self.failures.push(format!(
                    "DUPLICATE {} {} (task {tid}) delivered {} times",
                    a.schedule,
                    a.scheduled_at.to_rfc3339(),
                    got.len()
                ));
            }
            if a.scheduled_at <= self.cutoff {
                self.failures.push(format!(
                    "UNEXPECTED {} {} (task {tid}) reached Redis at {}: no incarnation of the schedule had that instant then",
                    a.schedule,
                    a.scheduled_at.to_rfc3339(),
                    a.arrived_at.format("%H:%M:%S%.3f")
                ));
                if let Some(row) = self
                    .verdict
                    .rows
                    .iter_mut()
                    .rev()
                    .find(|r| r.schedule == a.schedule)
                {
                    row.unexpected += 1;
                }
            }
        }
    }
}

/// The offset belfry documents for a jittered run: the task id's last eight bytes, big-endian,
/// modulo the jitter in milliseconds plus one (0 without jitter or for an unreadable id).
pub(super) fn jitter_offset(task_id: &str, jitter_ms: u64) -> chrono::TimeDelta {
    if jitter_ms == 0 {
        return chrono::TimeDelta::zero();
    }
    let Ok(id) = Uuid::parse_str(task_id) else {
        return chrono::TimeDelta::zero();
    };
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&id.as_bytes()[8..]);
    chrono::TimeDelta::milliseconds((u64::from_be_bytes(tail) % (jitter_ms + 1)) as i64)
}
