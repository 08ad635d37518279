//! Overlap policies (`skip`, `buffer_one`, one run at a time), held against the slow worker's
//! own record of when each run started and ended.
//!
//! Safety: no run of such a schedule starts while another is unfinished. A run's end is its
//! recorded end; a run that reached Redis (push receipt) but never ran counts as unfinished
//! until `max_runtime` after its instant (belfry dispatched it no earlier), when belfry must
//! call it lost. Liveness: an instant not sent is excused only while a run was unfinished when
//! belfry decided (its instant minus the lookahead), or as soon after as belfry could have
//! learned the end (`OUTCOME_LAG`), or across a fault. Must not read belfry's records.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{task_id, Owed, LOOKAHEAD, SLACK};
use crate::consumer::Arrival;
use crate::history::{FaultWindow, OverlapRule};

/// How long after a run ends belfry may still count it as running: its outcome reads of runs
/// that count for overlap come every 2 s, and a read result is then committed.
const OUTCOME_LAG: Duration = Duration::seconds(4);
/// Two timestamps of one machine's clock, taken by two processes.
const CLOCK_TOLERANCE: Duration = Duration::milliseconds(50);

/// One run that reached Redis: when it started and ended, if it did.
#[derive(Clone, Debug)]
struct Span {
    instant: DateTime<Utc>,
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
}

/// What the slow worker and Redis recorded of the runs.
pub(super) struct SlowEvidence<'e> {
    /// The slow worker's executions, by task id.
    pub(super) executions: &'e HashMap<String, Vec<&'e Arrival>>,
    /// Task ids whose push receipt Redis held.
    pub(super) receipts: &'e HashSet<String>,
    /// When each run ended, by task id.
    pub(super) ends: &'e HashMap<String, DateTime<Utc>>,
}

/// An incarnation's runs, for its overlap policy.
pub(super) struct OverlapCheck<'a> {
    name: String,
    rule: OverlapRule,
    spans: Vec<Span>,
    faults: &'a [FaultWindow],
    cutoff: DateTime<Utc>,
}

impl<'a> OverlapCheck<'a> {
    /// The runs of the instants in `owed` that ran or reached Redis, by the task id of each
    /// instant.
    pub(super) fn new(
        name: &str,
        rule: OverlapRule,
        (cluster, incarnation): (Uuid, Uuid),
        owed: &BTreeMap<DateTime<Utc>, Owed>,
        evidence: SlowEvidence<'_>,
        (faults, cutoff): (&'a [FaultWindow], DateTime<Utc>),
    ) -> OverlapCheck<'a> {
        let SlowEvidence {
            executions,
            receipts,
            ends,
        } = evidence;
        let mut spans = Vec::new();
        for t in owed.keys() {
            let tid = task_id(cluster, incarnation, *t).to_string();
            let started = executions
                .get(&tid)
                .and_then(|runs| runs.iter().map(|a| a.arrived_at).min());
            if started.is_none() && !receipts.contains(&tid) {
                continue;
            }
            spans.push(Span {
                instant: *t,
                started,
                ended: ends.get(&tid).copied(),
            });
        }
        spans.sort_by_key(|s| s.started.unwrap_or(s.instant));
        OverlapCheck {
            name: name.to_string(),
            rule,
            spans,
            faults,
            cutoff,
        }
    }

    /// Until when belfry may have counted `span` as unfinished.
    fn unfinished_until(&self, span: &Span) -> DateTime<Utc> {
        match (span.started, span.ended) {
            (_, Some(end)) => end,
            // Ran and never recorded an end: unknown, so nothing is held against it.
            (Some(_), None) => self.cutoff,
            (None, None) => span.instant + self.max_runtime(),
        }
    }

    fn max_runtime(&self) -> Duration {
        Duration::seconds(self.rule.max_runtime_secs.min(86_400) as i64)
    }

    /// Whether instant `t`, not sent, may have been skipped (or replaced while held) because a
    /// run was unfinished when belfry decided it.
    pub(super) fn excuses(&self, t: DateTime<Utc>) -> bool {
        let decided = t - LOOKAHEAD - SLACK;
        self.spans.iter().any(|s| {
            let opened = s.started.unwrap_or(s.instant) - SLACK;
            let closed = self.unfinished_until(s);
            opened <= t + SLACK
                && (closed + OUTCOME_LAG >= decided || self.fault_between(closed, t))
        })
    }

    fn fault_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self.faults
            .iter()
            .any(|f| f.start <= to + SLACK && f.end.is_none_or(|e| e + OUTCOME_LAG >= from - SLACK))
    }

    /// Every run that started while an earlier one was unfinished.
    pub(super) fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.spans {
            let Some(started) = b.started else {
                continue;
            };
            for a in self.spans.iter().filter(|a| a.instant != b.instant) {
                let known_end = match (a.started, a.ended) {
                    (_, Some(end)) => end,
                    (Some(_), None) => continue,
                    (None, None) => a.instant + self.max_runtime() - SLACK,
                };
                let a_started = a.started.unwrap_or(a.instant);
                let inside = a_started <= started && started + CLOCK_TOLERANCE < known_end;
                if inside {
                    out.push(format!(
                        "OVERLAP {} ({}): the run of {} started at {} while the run of {} was unfinished (until {})",
                        self.name,
                        if self.rule.buffer_one { "buffer_one" } else { "skip" },
                        b.instant.to_rfc3339(),
                        started.format("%H:%M:%S%.3f"),
                        a.instant.to_rfc3339(),
                        known_end.format("%H:%M:%S%.3f"),
                    ));
                }
            }
        }
        out
    }

    /// Whether runs may wait for the one before them (`buffer_one`).
    pub(super) fn holds_runs(&self) -> bool {
        self.rule.buffer_one
    }
}
