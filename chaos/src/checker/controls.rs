//! What run control's operations change in what an incarnation owed: `max_runs`, named skips,
//! timed pauses and backfills, laid over the instants the spec, the pauses and the policy gave.
//!
//! Invariant: as in `expectations`, every uncertainty is bounded from the outside: a named
//! skip is certain only when it was committed a lookahead before its instant, and the run that
//! finishes a schedule is counted from the instants that were certainly or possibly sent.
//! Backfilled runs do not count towards `max_runs`, and a named skip never touches a
//! backfilled run. Must not look at deliveries.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::expectations::{offset_around, spec_at, Incarnation};
use super::{Owed, Reason, Status, LOOKAHEAD, SLACK};
use crate::history::{FaultWindow, OpKind};

/// Lays `max_runs`, then each operation in order (named skips, timed pauses, backfills) over
/// `map`.
pub(super) fn apply(
    inc: &Incarnation,
    map: &mut BTreeMap<DateTime<Utc>, Owed>,
    faults: &[FaultWindow],
    cutoff: DateTime<Utc>,
) {
    if let Some(OpKind::Create {
        max_runs: Some(max),
        ..
    }) = inc.ops.first().map(|o| &o.kind)
    {
        finish_after(map, *max);
    }
    for op in &inc.ops {
        match &op.kind {
            OpKind::Skip { at } => {
                let planned_by =
                    op.end + LOOKAHEAD + offset_around(faults, op.start, op.end) + SLACK;
                for t in at {
                    skip_named(map, *t, planned_by);
                }
            }
            OpKind::PauseUntil { until } => {
                let held_from =
                    op.end + LOOKAHEAD + offset_around(faults, op.start, op.end) + SLACK;
                let ends = *until - offset_around(faults, *until, *until) - SLACK;
                if held_from >= *until {
                    continue;
                }
                for (_, owed) in map.range_mut(held_from..*until) {
                    owed.not_before = Some(owed.not_before.map_or(ends, |n| n.max(ends)));
                }
            }
            OpKind::Backfill { from, to } => {
                let Some(spec) = spec_at(inc, op) else {
                    continue;
                };
                let asked = op.start - offset_around(faults, op.start, op.end) - SLACK;
                let before_from = *from - Duration::milliseconds(1);
                for t in spec.occurrences(before_from, (*to).min(cutoff)) {
                    backfilled(map, t, asked);
                }
            }
            _ => {}
        }
    }
}

/// After `max` scheduled runs the schedule is finished: an instant after `max` certain runs is
/// forbidden, one after `max` possible runs may or may not have been the last.
fn finish_after(map: &mut BTreeMap<DateTime<Utc>, Owed>, max: u64) {
    let (mut certain, mut possible) = (0u64, 0u64);
    for owed in map.values_mut() {
        let status = owed.status;
        if certain >= max {
            owed.status = Status::Forbidden(Reason::Finished);
        } else if possible >= max && status == Status::Required {
            owed.status = Status::Optional(Reason::Finished);
        }
        match status {
            Status::Required => {
                certain += 1;
                possible += 1;
            }
            Status::Optional(_) => possible += 1,
            Status::Forbidden(_) => {}
        }
    }
}

/// A named occurrence asked to be skipped: forbidden when the request was committed before
/// the instant could have been planned, otherwise a race.
fn skip_named(
    map: &mut BTreeMap<DateTime<Utc>, Owed>,
    t: DateTime<Utc>,
    planned_by: DateTime<Utc>,
) {
    let Some(owed) = map.get_mut(&t) else {
        return;
    };
    owed.status = match owed.status {
        Status::Forbidden(reason) => Status::Forbidden(reason),
        _ if t > planned_by => Status::Forbidden(Reason::Requested),
        Status::Required => Status::Optional(Reason::RequestedLate),
        optional => optional,
    };
}

/// An instant in a backfill's range is owed once. One that nothing else would have sent (it
/// fell in a pause, or before anything was planned) may not arrive before the request.
fn backfilled(map: &mut BTreeMap<DateTime<Utc>, Owed>, t: DateTime<Utc>, asked: DateTime<Utc>) {
    let owed = map.entry(t).or_insert(Owed {
        status: Status::Forbidden(Reason::PauseTail),
        not_before: None,
    });
    if let Status::Forbidden(_) = owed.status {
        owed.not_before = Some(asked);
    }
    owed.status = Status::Required;
}
