//! Resolution of matching local wall-clock minutes to UTC instants in an IANA zone, following
//! the daylight-saving rule below.
//!
//! Invariant: real-time expressions fire nothing in a gap and twice in a repeated hour;
//! wall-time ones fire a matching time once, even in a gap (at its end) or a repeated hour;
//! every search is bounded. Owns only the mapping between wall-clock time and instants (whole
//! Unix seconds): it must not parse expressions nor read a clock.
//!
//! - Real time (interval-like expressions): fire at every instant whose wall-clock time
//!   matches. Between two offset changes the wall clock is `instant + offset`, so the search
//!   walks constant-offset segments: nothing fires in a gap, a repeated hour fires twice.
//! - Wall time (fixed-time expressions): a matching wall time `w` fires once, at
//!   `min { i : wall(i) >= w }`. That one definition gives both halves of the rule: a time inside
//!   a gap fires at the first instant after the gap, a repeated time fires at its first pass.
//!   It is monotone in `w`, so the search walks matching wall times in order.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use super::cron_expr::CronExpr;

/// The widest possible distance between two UTC offsets (-12:00 to +14:00), in seconds. A
/// repeated hour can only revisit wall times within this reach of its transition.
const OFFSET_REACH: i64 = 26 * 3600;
/// Offset changes a single search may cross (a 400-year search meets at most ~800).
const MAX_SEGMENTS: usize = 4096;
/// Matching wall times a single search may pass over inside a repeated hour.
const MAX_REPEATED_MATCHES: usize = 26 * 60 + 1;

fn offset_at(tz: &Tz, secs: i64) -> Option<i64> {
    let utc = DateTime::from_timestamp(secs, 0)?.naive_utc();
    Some(i64::from(
        tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
    ))
}

fn naive_from_secs(secs: i64) -> Option<NaiveDateTime> {
    Some(DateTime::from_timestamp(secs, 0)?.naive_utc())
}

fn naive_secs(wall: NaiveDateTime) -> i64 {
    wall.and_utc().timestamp()
}

/// The first instant in `(lo, hi]` whose offset differs from `offset`, given that `lo` has
/// `offset` and `hi` does not.
fn first_offset_change(tz: &Tz, mut lo: i64, mut hi: i64, offset: i64) -> Option<i64> {
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if offset_at(tz, mid)? == offset {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(hi)
}

/// Real-time rule: the first instant after `after` whose local wall-clock time matches.
pub(super) fn next_real_time(expr: &CronExpr, tz: &Tz, after: i64) -> Option<i64> {
    let mut from = after.checked_add(1)?;
    for _ in 0..MAX_SEGMENTS {
        let offset = offset_at(tz, from)?;
        let wall = expr.next_match(naive_from_secs(from.checked_add(offset)?)?)?;
        let candidate = naive_secs(wall) - offset;
        // The candidate is right unless the offset changed on the way. An offset change that
        // could matter lies within reach of either end, so probing both ends and the candidate
        // itself is enough (changes far from both ends only revisit or skip wall times strictly
        // between them, where nothing matches).
        let mut probes = [
            from.saturating_add(OFFSET_REACH),
            candidate.saturating_sub(OFFSET_REACH),
            candidate,
        ];
        probes.sort_unstable();
        let mut last_same = from;
        let mut changed_at = None;
        for probe in probes {
            if probe <= last_same || probe > candidate {
                continue;
            }
            if offset_at(tz, probe)? != offset {
                changed_at = Some(probe);
                break;
            }
            last_same = probe;
        }
        match changed_at {
            None => return Some(candidate),
            Some(probe) => from = first_offset_change(tz, last_same, probe, offset)?,
        }
    }
    None
}

/// Wall-time rule: the first instant after `after` at which some matching wall time fires.
pub(super) fn next_wall_time(expr: &CronExpr, tz: &Tz, after: i64) -> Option<i64> {
    // Any wall time at or before wall(after) was reached by `after`, so it cannot fire later.
    let mut wall = naive_from_secs(after.checked_add(offset_at(tz, after)?)?.checked_add(1)?)?;
    for _ in 0..MAX_REPEATED_MATCHES {
        let matched = expr.next_match(wall)?;
        let instant = first_instant_reaching(tz, matched)?;
        if instant > after {
            return Some(instant);
        }
        // Inside the second pass of a repeated hour: this wall time already fired.
        wall = matched.checked_add_signed(Duration::minutes(1))?;
    }
    None
}

/// `min { i : wall(i) >= wall }`: the instant itself, the first of two, or the end of a gap.
fn first_instant_reaching(tz: &Tz, wall: NaiveDateTime) -> Option<i64> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(at) => Some(at.timestamp()),
        LocalResult::Ambiguous(first, second) => Some(first.timestamp().min(second.timestamp())),
        LocalResult::None => end_of_gap(tz, naive_secs(wall)),
    }
}

/// The first instant whose wall-clock time is at or past `wall_secs`, for a wall time that
/// falls in a gap. Every offset lies within -12:00..+14:00, which brackets the search.
fn end_of_gap(tz: &Tz, wall_secs: i64) -> Option<i64> {
    let reaches = |i: i64| -> Option<bool> { Some(i.checked_add(offset_at(tz, i)?)? >= wall_secs) };
    let mut lo = wall_secs.checked_sub(15 * 3600)?;
    let mut hi = wall_secs.checked_add(13 * 3600)?;
    if reaches(lo)? || !reaches(hi)? {
        return None;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reaches(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}
