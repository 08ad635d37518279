//! Run control under faults: the schedules that exercise `max_runs`, named skips, a timed
//! pause and a backfill, and the operations on them, each once at a fixed point of the fault
//! phase and recorded with the window in which it took effect.
//!
//! The checker knows what each allows: nothing after `max_runs` runs, nothing at a named
//! skip asked for ahead of the lookahead, nothing of a timed pause before it ends, and each
//! backfilled instant exactly once, not before it was asked for (a repeat sends nothing new).
//! Owns these definitions and their driver; must not read what was dispatched.

use belfry::api::pb;
use chrono::{DateTime, TimeDelta, Utc};
use tonic::Code;

use super::{aligned_after, record, Def, OP_DEADLINE};
use crate::api::{Api, ApiError};
use crate::expect::SpecDef;
use crate::history::{incident, Op, OpKind, Policy, SharedHistory};

/// Finishes after 20 runs (a minute), across the first faults.
pub const MAX_RUNS: &str = "every3-all-max20";
/// Skips three named occurrences.
pub const SKIPS: &str = "every1-all-skips";
/// Paused for 12 s, resuming by itself.
pub const TIMED_PAUSE: &str = "every1-all-pause-until";
/// Created paused; eight of its past occurrences are backfilled, twice.
pub const BACKFILL: &str = "every1-backfill";

/// The fixed schedules of run control, built with the workload's `every` constructor.
pub fn fixed(every: impl Fn(&str, i64, Policy, u64) -> Def) -> Vec<Def> {
    let mut max_runs = every(MAX_RUNS, 3, Policy::All, 3600);
    max_runs.max_runs = Some(20);
    let mut backfill = every(BACKFILL, 1, Policy::All, 3600);
    backfill.paused = true;
    vec![
        max_runs,
        every(SKIPS, 1, Policy::All, 3600),
        every(TIMED_PAUSE, 1, Policy::All, 3600),
        backfill,
    ]
}

/// Runs each operation once, at a fixed share of the time left until `until`.
pub async fn drive(api: Api, history: SharedHistory, until: tokio::time::Instant) {
    let phase = until.saturating_duration_since(tokio::time::Instant::now());
    let start = tokio::time::Instant::now();
    let at = |share: f64| start + phase.mul_f64(share);
    let Some(t0) = anchor_of(&history, BACKFILL) else {
        incident(&history, format!("{BACKFILL}: no create on record"));
        return;
    };

    tokio::time::sleep_until(at(0.15)).await;
    let skips: Vec<DateTime<Utc>> = [8, 9, 14]
        .iter()
        .map(|s| aligned_after(TimeDelta::seconds(*s)))
        .collect();
    skip_named(&api, &history, &skips).await;

    tokio::time::sleep_until(at(0.35)).await;
    pause_until(&api, &history, aligned_after(TimeDelta::seconds(12))).await;

    tokio::time::sleep_until(at(0.5)).await;
    let range = (t0 + TimeDelta::seconds(2), t0 + TimeDelta::seconds(9));
    backfill(&api, &history, range).await;

    tokio::time::sleep_until(at(0.75)).await;
    backfill(&api, &history, range).await;
}

/// The anchor `name` was created with.
fn anchor_of(history: &SharedHistory, name: &str) -> Option<DateTime<Utc>> {
    let h = history.lock().unwrap_or_else(|e| e.into_inner());
    h.ops.iter().find_map(|op| match &op.kind {
        OpKind::Create {
            spec: SpecDef::Every { anchor, .. },
            ..
        } if op.schedule == name => Some(*anchor),
        _ => None,
    })
}

async fn skip_named(api: &Api, history: &SharedHistory, at: &[DateTime<Utc>]) {
    let start = Utc::now();
    let occurrences: Vec<String> = at.iter().map(|t| t.to_rfc3339()).collect();
    // Asking twice to skip the same instants is the same request.
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let request = pb::SkipOccurrencesRequest {
                name: SKIPS.to_string(),
                next: 0,
                occurrences: occurrences.clone(),
            };
            async move { c.schedules.skip_occurrences(request).await }
        })
        .await
        .map(|(_, attempts)| attempts);
    let kind = OpKind::Skip { at: at.to_vec() };
    settle(history, SKIPS, kind, start, result);
}

async fn pause_until(api: &Api, history: &SharedHistory, until: DateTime<Utc>) {
    let start = Utc::now();
    // The same pause asked twice is the same pause.
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let request = pb::PauseUntilRequest {
                name: TIMED_PAUSE.to_string(),
                until: until.to_rfc3339(),
                note: "belfry-chaos: a timed pause".into(),
            };
            async move { c.schedules.pause_schedule_until(request).await }
        })
        .await
        .map(|(_, attempts)| attempts);
    settle(
        history,
        TIMED_PAUSE,
        OpKind::PauseUntil { until },
        start,
        result,
    );
}

async fn backfill(api: &Api, history: &SharedHistory, (from, to): (DateTime<Utc>, DateTime<Utc>)) {
    let start = Utc::now();
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let request = pb::BackfillRequest {
                name: BACKFILL.to_string(),
                from: from.to_rfc3339(),
                to: to.to_rfc3339(),
                dry_run: false,
                rate_per_second: 4,
                apply_overlap: false,
            };
            async move { c.schedules.backfill_schedule(request).await }
        })
        .await
        .map(|(_, attempts)| attempts)
        .or_else(|err| match err {
            // A retry of a start that had taken effect finds its own backfill running.
            ApiError::Refused {
                code: Code::InvalidArgument | Code::FailedPrecondition,
                message,
            } if message.contains("is running") => Ok(2),
            err => Err(err),
        });
    settle(
        history,
        BACKFILL,
        OpKind::Backfill { from, to },
        start,
        result,
    );
}

/// Records the operation, or an incident when it never took (the checker then owes nothing
/// new of it, and the run fails on the incident).
fn settle(
    history: &SharedHistory,
    name: &str,
    kind: OpKind,
    start: DateTime<Utc>,
    result: Result<u32, ApiError>,
) {
    match result {
        Ok(attempts) => record(
            history,
            Op {
                schedule: name.to_string(),
                kind,
                start,
                end: Utc::now(),
                attempts,
            },
        ),
        Err(err) => incident(history, format!("{name}: {kind:?}: {err}")),
    }
}
