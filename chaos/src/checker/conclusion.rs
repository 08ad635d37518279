//! The verdict's remaining evidence and its sums: belfry's previews against the checker's
//! instants, the run's incidents, the totals over all rows, lateness in steady state and
//! under faults, and each clock fault's effect.
//!
//! Invariant: the run passes only when no failure of any kind was found and at least one
//! instant was required. Must not match deliveries; it only sums what matching found.

use chrono::{DateTime, Duration, Utc};

use super::matching::Checking;
use super::{ClockEffect, Lateness, Point, PreviewCheck, Row, Totals, Verdict, FAULT_SETTLE};
use crate::history::FaultWindow;
use crate::nemesis::Nemesis;

impl Lateness {
    fn of(mut lateness: Vec<i64>) -> Lateness {
        lateness.sort_unstable();
        Lateness::of_sorted(&lateness)
    }

    pub(super) fn of_sorted(sorted: &[i64]) -> Lateness {
        Lateness {
            deliveries: sorted.len(),
            p50_ms: percentile(sorted, 50),
            p99_ms: percentile(sorted, 99),
            max_ms: sorted.last().copied(),
        }
    }
}

fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    Some(sorted[(sorted.len() * p / 100).min(sorted.len() - 1)])
}

/// True when a fault was in force at `t` or ended less than `FAULT_SETTLE` before it.
fn under_fault(faults: &[FaultWindow], t: DateTime<Utc>, cutoff: DateTime<Utc>) -> bool {
    faults
        .iter()
        .any(|f| f.start <= t && f.end.unwrap_or(cutoff) + FAULT_SETTLE > t)
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

/// The counts of every row, summed.
fn sum_rows(rows: &[Row]) -> Totals {
    let mut t = Totals::default();
    for row in rows {
        t.required += row.required;
        t.optional += row.optional;
        t.delivered += row.delivered;
        t.duplicated += row.duplicated;
        t.missing += row.missing;
        t.worker_lost += row.worker_lost;
        t.unexpected += row.unexpected;
        t.skipped_explained += row.skipped_explained.values().sum::<usize>();
        t.early += row.early;
        t.forbidden += row.forbidden;
        t.too_soon += row.too_soon;
    }
    t
}

fn preview_mismatch(p: &PreviewCheck) -> Option<String> {
    (p.ours != p.theirs).then(|| {
        format!(
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
        )
    })
}

impl Checking<'_> {
    /// belfry's preview of every spec must list the instants the checker computes.
    pub(super) fn previews(&mut self) {
        let mismatches = self.input.previews.iter().filter_map(preview_mismatch);
        self.failures.extend(mismatches);
    }

    /// Anything the run itself saw go wrong fails it.
    pub(super) fn incidents(&mut self) {
        let incidents = self.input.history.incidents.iter();
        self.failures
            .extend(incidents.map(|incident| format!("INCIDENT {incident}")));
    }

    /// Sums the rows and lateness, and decides.
    pub(super) fn finish(self) -> Verdict {
        let Checking {
            input,
            cutoff,
            mut verdict,
            mut failures,
            all_lateness,
            ..
        } = self;
        let faults = &input.history.faults;
        let mut t = sum_rows(&verdict.rows);
        verdict.clock_effects = clock_effects(faults, &verdict.points, cutoff);
        let l = Lateness::of(all_lateness);
        (t.lateness_ms_p50, t.lateness_ms_p99, t.lateness_ms_max) = (l.p50_ms, l.p99_ms, l.max_ms);
        let (faulted, steady): (Vec<&Point>, Vec<&Point>) = verdict
            .points
            .iter()
            .partition(|p| under_fault(faults, p.scheduled_at, cutoff));
        t.steady = Lateness::of(steady.iter().map(|p| p.lateness_ms).collect());
        t.under_faults = Lateness::of(faulted.iter().map(|p| p.lateness_ms).collect());
        if t.required == 0 {
            failures.push("NOTHING CHECKED: no required occurrence".into());
        }
        verdict.totals = t;
        verdict.ok = failures.is_empty();
        verdict.failures = failures;
        verdict
    }
}
