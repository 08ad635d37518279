//! The checker's rules for run control: `max_runs`, named skips, timed pauses, backfills and
//! overlap policies.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use super::tests::{arrival, at, every_second, history, run, run_with_ends};
use crate::consumer::Arrival;
use crate::history::{History, Op, OpKind, OverlapRule, Policy};
use crate::workload::SLOW_QUEUE;

fn op(kind: OpKind, start_s: f64) -> Op {
    let t0 = at("2025-01-01T00:00:00Z");
    let start = t0 + Duration::milliseconds((start_s * 1000.0) as i64);
    Op {
        schedule: "s".into(),
        kind,
        start,
        end: start + Duration::milliseconds(100),
        attempts: 1,
    }
}

#[test]
fn nothing_is_sent_after_max_runs() {
    let mut h = history(Policy::All, vec![]);
    if let OpKind::Create { max_runs, .. } = &mut h.ops[0].kind {
        *max_runs = Some(5);
    }
    let first_five: Vec<_> = every_second(0, 4)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &first_five, Some(0));
    assert!(v.ok, "{:?}", v.failures);
    assert_eq!((v.totals.required, v.totals.forbidden), (5, 16));

    let mut one_more = first_five.clone();
    one_more.push(arrival(every_second(5, 5)[0], 3));
    let v = run(&h, &one_more, Some(0));
    assert!(!v.ok);
    assert!(
        v.failures[0].starts_with("FORBIDDEN s 2025-01-01T00:00:05"),
        "{:?}",
        v.failures
    );
}

#[test]
fn a_named_skip_asked_ahead_is_forbidden_and_one_asked_late_is_a_race() {
    let skip = OpKind::Skip {
        at: vec![every_second(10, 10)[0], every_second(3, 3)[0]],
    };
    let h = history(Policy::All, vec![op(skip, 2.0)]);
    let all_but_ten: Vec<_> = every_second(0, 25)
        .into_iter()
        .filter(|t| *t != every_second(10, 10)[0])
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &all_but_ten, Some(1));
    assert!(v.ok, "{:?}", v.failures);
    assert_eq!(v.totals.forbidden, 1);
    // The instant asked late may have been skipped as well: belfry may count two.
    let without_three: Vec<_> = all_but_ten
        .iter()
        .filter(|a| a.scheduled_at != every_second(3, 3)[0])
        .cloned()
        .collect();
    assert!(run(&h, &without_three, Some(2)).ok);
    // belfry must have counted the skip it was asked for.
    let v = run(&h, &all_but_ten, Some(0));
    assert!(
        v.failures.iter().any(|f| f.starts_with("SKIP ACCOUNTING")),
        "{:?}",
        v.failures
    );

    let every: Vec<_> = every_second(0, 25)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &every, Some(0));
    assert!(
        v.failures[0].starts_with("FORBIDDEN s 2025-01-01T00:00:10"),
        "{:?}",
        v.failures
    );
}

#[test]
fn a_timed_pause_holds_its_runs_until_it_ends() {
    let until = every_second(10, 10)[0];
    let h = history(Policy::All, vec![op(OpKind::PauseUntil { until }, 2.0)]);
    // `all` sends what fell in the pause once it ends.
    let held = |t: chrono::DateTime<chrono::Utc>| t > every_second(3, 3)[0] && t < until;
    let arrive = |t| {
        if held(t) {
            arrival(t, (until - t).num_milliseconds() + 200)
        } else {
            arrival(t, 3)
        }
    };
    let arrivals: Vec<_> = every_second(0, 25).into_iter().map(arrive).collect();
    let v = run(&h, &arrivals, Some(0));
    assert!(v.ok, "{:?}", v.failures);

    let mut sent_in_pause = arrivals.clone();
    sent_in_pause[6] = arrival(every_second(6, 6)[0], 3);
    let v = run(&h, &sent_in_pause, Some(0));
    assert_eq!(v.totals.too_soon, 1);
    assert!(
        v.failures[0].starts_with("TOO SOON s 2025-01-01T00:00:06"),
        "{:?}",
        v.failures
    );
}

#[test]
fn a_backfill_owes_its_range_once_and_not_before_it_was_asked() {
    let backfill = OpKind::Backfill {
        from: every_second(2, 2)[0],
        to: every_second(6, 6)[0],
    };
    let mut h = history(Policy::All, vec![op(backfill, 12.0)]);
    if let OpKind::Create { paused, .. } = &mut h.ops[0].kind {
        *paused = true;
    }
    let asked = every_second(12, 12)[0];
    let sent_after = |t: chrono::DateTime<chrono::Utc>| {
        let mut a = arrival(t, (asked - t).num_milliseconds() + 300);
        a.backfill = true;
        a
    };
    let range: Vec<_> = every_second(2, 6).into_iter().map(sent_after).collect();
    let v = run(&h, &range, Some(0));
    assert!(v.ok, "{:?}", v.failures);
    assert_eq!(v.totals.required, 5);

    let mut twice = range.clone();
    twice.push(sent_after(every_second(4, 4)[0]));
    assert_eq!(run(&h, &twice, Some(0)).totals.duplicated, 1);

    let mut outside = range.clone();
    outside.push(sent_after(every_second(7, 7)[0]));
    let v = run(&h, &outside, Some(0));
    assert!(
        v.failures[0].starts_with("UNEXPECTED s 2025-01-01T00:00:07"),
        "{:?}",
        v.failures
    );

    let mut early = range.clone();
    early[0] = arrival(every_second(2, 2)[0], 3);
    let v = run(&h, &early, Some(0));
    assert_eq!(v.totals.too_soon, 1, "{:?}", v.failures);
}

/// A slow schedule `s` (one run at a time, lost after 20 s) and its runs: (instant in seconds,
/// start and end in seconds after the instant's base).
fn slow_runs(
    buffer_one: bool,
    runs: &[(i64, f64, f64)],
) -> (History, Vec<Arrival>, HashMap<String, DateTime<Utc>>) {
    let mut h = history(Policy::All, vec![]);
    h.worker_schedules.insert("s".into());
    h.overlap.insert(
        "s".into(),
        OverlapRule {
            buffer_one,
            max_runtime_secs: 20,
        },
    );
    let base = at("2025-01-01T00:00:00Z");
    let secs = |s: f64| base + Duration::milliseconds((s * 1000.0) as i64);
    let mut arrivals = Vec::new();
    let mut ends = HashMap::new();
    for (instant, start, end) in runs {
        let t = every_second(*instant, *instant)[0];
        let mut a = arrival(t, 0);
        a.arrived_at = secs(*start);
        a.queue = SLOW_QUEUE.into();
        ends.insert(a.task_id.clone(), secs(*end));
        arrivals.push(a);
    }
    (h, arrivals, ends)
}

#[test]
fn runs_that_skip_while_one_is_unfinished_pass() {
    // Runs of 2.5 s every second: 0, then 3 (1 and 2 skipped), then 6, and so on.
    let runs: Vec<(i64, f64, f64)> = (0..=20)
        .step_by(3)
        .map(|k| (k, k as f64 + 0.01, k as f64 + 2.51))
        .collect();
    let (h, arrivals, ends) = slow_runs(false, &runs);
    let v = run_with_ends(&h, &arrivals, None, &HashSet::new(), &ends);
    assert!(v.ok, "{:?}", v.failures);
    // 14 left out, but 19 and 20 come after the last delivery: the checker cannot tell them
    // from late ones.
    assert_eq!(v.rows[0].skipped_explained.get("overlap"), Some(&12));
    assert_eq!(v.rows[0].skipped_explained.get("late"), Some(&2));
}

#[test]
fn a_run_started_while_another_is_unfinished_fails() {
    let mut runs: Vec<(i64, f64, f64)> = (0..=20)
        .step_by(3)
        .map(|k| (k, k as f64 + 0.01, k as f64 + 2.51))
        .collect();
    runs.push((4, 4.01, 6.51));
    let (h, arrivals, ends) = slow_runs(false, &runs);
    let v = run_with_ends(&h, &arrivals, None, &HashSet::new(), &ends);
    assert!(
        v.failures
            .iter()
            .any(|f| f.starts_with("OVERLAP s (skip): the run of 2025-01-01T00:00:04")),
        "{:?}",
        v.failures
    );
}

#[test]
fn an_instant_left_out_long_after_the_run_ended_is_missing() {
    // After the run of 6 ends at 8.5 s, nothing until 18: what belfry decided more than the
    // outcome lag after that end (from 15 on) is not excused.
    let runs = [
        (0, 0.01, 2.51),
        (3, 3.01, 5.51),
        (6, 6.01, 8.51),
        (18, 18.01, 20.51),
    ];
    let (h, arrivals, ends) = slow_runs(true, &runs);
    let v = run_with_ends(&h, &arrivals, None, &HashSet::new(), &ends);
    let missing: Vec<&String> = v
        .failures
        .iter()
        .filter(|f| f.starts_with("MISSING"))
        .collect();
    assert_eq!(missing.len(), 3, "{:?}", v.failures);
    assert!(
        missing[0].starts_with("MISSING s 2025-01-01T00:00:15"),
        "{missing:?}"
    );
}

#[test]
fn a_run_that_reached_redis_and_never_ran_blocks_until_its_max_runtime() {
    let runs = [(0, 0.01, 2.51), (25, 25.01, 27.51)];
    let (mut h, arrivals, ends) = slow_runs(false, &runs);
    h.cutoff = Some(at("2025-01-01T00:00:30Z"));
    // The run of 3 reached Redis (its receipt) but no worker ran it: lost after 20 s.
    let lost = arrival(every_second(3, 3)[0], 0).task_id;
    let receipts: HashSet<String> = [lost].into_iter().collect();
    let v = run_with_ends(&h, &arrivals, None, &receipts, &ends);
    assert!(
        v.failures.iter().all(|f| !f.starts_with("OVERLAP")),
        "{:?}",
        v.failures
    );
    let early = [(0, 0.01, 2.51), (10, 10.01, 12.51)];
    let (mut h, arrivals, ends) = slow_runs(false, &early);
    h.cutoff = Some(at("2025-01-01T00:00:30Z"));
    let v = run_with_ends(&h, &arrivals, None, &receipts, &ends);
    assert!(
        v.failures
            .iter()
            .any(|f| f.starts_with("OVERLAP s (skip): the run of 2025-01-01T00:00:10")),
        "{:?}",
        v.failures
    );
}
