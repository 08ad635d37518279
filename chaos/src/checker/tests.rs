use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::*;
use crate::expect::SpecDef;
use crate::history::{FaultWindow, History, Op, OpKind, Policy};

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

const INCARNATION: &str = "6a0c9c2e-1b4e-4a57-9a35-1f0e6f0d2c11";

pub(super) fn history(policy: Policy, extra_ops: Vec<Op>) -> History {
    let t0 = at("2025-01-01T00:00:00Z");
    let mut h = History {
        cutoff: Some(t0 + Duration::seconds(20)),
        started: Some(t0),
        ..Default::default()
    };
    h.policies.insert("s".into(), (policy, 3600));
    h.ops.push(Op {
        schedule: "s".into(),
        kind: OpKind::Create {
            spec: SpecDef::Every {
                every_secs: 1,
                anchor: t0,
            },
            incarnation: INCARNATION.into(),
            jitter_ms: 0,
            paused: false,
            max_runs: None,
        },
        start: t0 - Duration::seconds(5),
        end: t0 - Duration::seconds(4),
        attempts: 1,
    });
    h.ops.extend(extra_ops);
    h
}

pub(super) fn arrival(t: DateTime<Utc>, late_ms: i64) -> Arrival {
    let id = task_id(
        cluster_id("belfry"),
        Uuid::parse_str(INCARNATION).unwrap(),
        t,
    );
    Arrival {
        task_id: id.to_string(),
        schedule: "s".into(),
        scheduled_at: t,
        arrived_at: t + Duration::milliseconds(late_ms),
        queue: "chaos".into(),
        origin: "belfry-1@test".into(),
        manual: false,
        backfill: false,
    }
}

pub(super) fn every_second(from: i64, to: i64) -> Vec<DateTime<Utc>> {
    (from..=to)
        .map(|k| at("2025-01-01T00:00:00Z") + Duration::seconds(k))
        .collect()
}

pub(super) fn run(h: &History, arrivals: &[Arrival], skipped: Option<u64>) -> Verdict {
    run_with_receipts(h, arrivals, skipped, &HashSet::new())
}

fn run_with_receipts(
    h: &History,
    arrivals: &[Arrival],
    skipped: Option<u64>,
    receipts: &HashSet<String>,
) -> Verdict {
    run_with_ends(h, arrivals, skipped, receipts, &HashMap::new())
}

/// A check with push receipts and the slow runs' ends.
pub(super) fn run_with_ends(
    h: &History,
    arrivals: &[Arrival],
    skipped: Option<u64>,
    receipts: &HashSet<String>,
    slow_finishes: &HashMap<String, DateTime<Utc>>,
) -> Verdict {
    let mut finals = BTreeMap::new();
    if let Some(skipped) = skipped {
        finals.insert(
            "s".to_string(),
            Final {
                incarnation: INCARNATION.into(),
                skipped,
                ..Default::default()
            },
        );
    }
    check(&Input {
        history: h,
        arrivals,
        finals: &finals,
        previews: &[],
        malformed: &[],
        cluster: cluster_id("belfry"),
        receipts,
        slow_finishes,
    })
}

#[test]
fn every_occurrence_once_passes() {
    let h = history(Policy::All, vec![]);
    let arrivals: Vec<Arrival> = every_second(0, 25)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &arrivals, Some(0));
    assert!(v.ok, "{:?}", v.failures);
    assert_eq!(v.totals.required, 21);
    assert_eq!(v.totals.lateness_ms_max, Some(3));
}

#[test]
fn a_duplicate_fails() {
    let h = history(Policy::All, vec![]);
    let mut arrivals: Vec<Arrival> = every_second(0, 25)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    arrivals.push(arrival(every_second(7, 7)[0], 900));
    let v = run(&h, &arrivals, Some(0));
    assert!(!v.ok);
    assert_eq!(v.totals.duplicated, 1);
    assert!(
        v.failures[0].starts_with("DUPLICATE s 2025-01-01T00:00:07"),
        "{:?}",
        v.failures
    );
}

#[test]
fn a_missing_required_occurrence_fails_even_if_belfry_counts_a_skip() {
    let h = history(Policy::All, vec![]);
    let arrivals: Vec<Arrival> = every_second(0, 25)
        .into_iter()
        .filter(|t| *t != every_second(9, 9)[0])
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &arrivals, Some(1));
    assert!(!v.ok);
    assert_eq!(v.totals.missing, 1);
}

#[test]
fn latest_may_skip_what_an_outage_made_late_and_must_count_it() {
    // Nothing arrived for instants 5..=9 until 10 s later; `latest` sent only 9.
    let h = history(Policy::Latest, vec![]);
    let mut arrivals: Vec<Arrival> = every_second(0, 4)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    arrivals.push(arrival(every_second(9, 9)[0], 6_000));
    arrivals.extend(every_second(10, 25).into_iter().map(|t| arrival(t, 3)));
    let ok = run(&h, &arrivals, Some(4));
    assert!(ok.ok, "{:?}", ok.failures);
    assert_eq!(ok.totals.skipped_explained, 4);
    let uncounted = run(&h, &arrivals, Some(0));
    assert!(!uncounted.ok);
    assert!(
        uncounted.failures[0].starts_with("SKIP ACCOUNTING"),
        "{:?}",
        uncounted.failures
    );
}

#[test]
fn a_skip_is_not_explained_when_the_cluster_was_on_time() {
    let h = history(Policy::None, vec![]);
    let arrivals: Vec<Arrival> = every_second(0, 25)
        .into_iter()
        .filter(|t| *t != every_second(12, 12)[0])
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &arrivals, Some(1));
    assert!(!v.ok);
    assert_eq!(v.totals.missing, 1);
}

#[test]
fn a_delete_ends_what_is_required_and_forbids_what_follows() {
    let t0 = at("2025-01-01T00:00:00Z");
    let delete = Op {
        schedule: "s".into(),
        kind: OpKind::Delete,
        start: t0 + Duration::milliseconds(10_500),
        end: t0 + Duration::milliseconds(10_600),
        attempts: 1,
    };
    let h = history(Policy::All, vec![delete]);
    // 0..=10 delivered before the delete; 11 committed ahead of it, delivered too.
    let arrivals: Vec<Arrival> = every_second(0, 11)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &arrivals, None);
    assert!(v.ok, "{:?}", v.failures);
    let mut late = arrivals.clone();
    late.push(arrival(every_second(15, 15)[0], 3));
    let v = run(&h, &late, None);
    assert!(!v.ok);
    assert!(
        v.failures[0].starts_with("UNEXPECTED s 2025-01-01T00:00:15"),
        "{:?}",
        v.failures
    );
}

#[test]
fn an_early_push_fails_whatever_the_clock_offset() {
    let mut h = history(Policy::All, vec![]);
    let t0 = at("2025-01-01T00:00:00Z");
    h.faults.push(FaultWindow {
        nemesis: "clock".into(),
        detail: String::new(),
        start: t0 + Duration::seconds(5),
        end: Some(t0 + Duration::seconds(8)),
        offset_ms: 1_000,
    });
    let mut arrivals: Vec<Arrival> = every_second(0, 25)
        .into_iter()
        .filter(|t| *t != every_second(6, 6)[0] && *t != every_second(15, 15)[0])
        .map(|t| arrival(t, 3))
        .collect();
    arrivals.push(arrival(every_second(6, 6)[0], -900));
    arrivals.push(arrival(every_second(15, 15)[0], -900));
    arrivals.push(arrival(every_second(16, 16)[0], -30));
    arrivals.retain(|a| a.scheduled_at != every_second(16, 16)[0] || a.arrived_at < a.scheduled_at);
    let v = run(&h, &arrivals, Some(0));
    assert_eq!(v.totals.delivered, 21);
    assert_eq!(v.totals.early, 2, "{:?}", v.failures);
    assert_eq!(v.failures.len(), 2, "{:?}", v.failures);
    assert!(v.failures[0].starts_with("EARLY s 2025-01-01T00:00:06"));
    assert!(v.failures[1].starts_with("EARLY s 2025-01-01T00:00:15"));
    let effect = &v.clock_effects[0];
    assert_eq!((effect.offset_ms, effect.earliest_ms), (1_000, Some(-900)));
}

fn op(kind: OpKind, start_ms: i64, end_ms: i64) -> Op {
    let t0 = at("2025-01-01T00:00:00Z");
    Op {
        schedule: "s".into(),
        kind,
        start: t0 + Duration::milliseconds(start_ms),
        end: t0 + Duration::milliseconds(end_ms),
        attempts: 1,
    }
}

#[test]
fn what_fell_in_a_pause_is_required_of_all_and_optional_for_none() {
    // Paused from 5.5 s to 12.5 s: instants 7..=12 fell in the pause.
    let ops = vec![
        op(OpKind::Pause, 5_500, 5_600),
        op(OpKind::Resume, 12_500, 12_600),
    ];
    let delivered_before: Vec<Arrival> = every_second(0, 6)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    let after: Vec<Arrival> = every_second(13, 25)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();

    // `none` skipped what fell in the pause and recorded it.
    let h = history(Policy::None, ops.clone());
    let mut arrivals = delivered_before.clone();
    arrivals.extend(after.clone());
    let v = run(&h, &arrivals, Some(6));
    assert!(v.ok, "{:?}", v.failures);

    // `all` must send them when it resumes.
    let h = history(Policy::All, ops);
    let v = run(&h, &arrivals, Some(0));
    assert!(!v.ok);
    assert_eq!(v.totals.missing, 6, "{:?}", v.failures);
    let mut caught_up = arrivals.clone();
    caught_up.extend(every_second(7, 12).into_iter().map(|t| {
        let mut a = arrival(t, 0);
        a.arrived_at = at("2025-01-01T00:00:12.700Z");
        a
    }));
    let v = run(&h, &caught_up, Some(0));
    assert!(v.ok, "{:?}", v.failures);
}

#[test]
fn nothing_may_arrive_long_after_a_pause_that_never_ended() {
    let h = history(Policy::All, vec![op(OpKind::Pause, 5_500, 5_600)]);
    let mut arrivals: Vec<Arrival> = every_second(0, 6)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    let v = run(&h, &arrivals, Some(0));
    assert!(v.ok, "{:?}", v.failures);
    arrivals.push(arrival(every_second(10, 10)[0], 3));
    let v = run(&h, &arrivals, Some(0));
    assert!(!v.ok);
    assert!(v.failures[0].starts_with("UNEXPECTED"), "{:?}", v.failures);
}

#[test]
fn an_edit_switches_specs_with_an_uncertain_edge() {
    let t0 = at("2025-01-01T00:00:00Z");
    // At 10.2 s the spec becomes every 2 s from 14 s.
    let edit = op(
        OpKind::Edit {
            spec: SpecDef::Every {
                every_secs: 2,
                anchor: t0 + Duration::seconds(14),
            },
        },
        10_200,
        10_300,
    );
    let h = history(Policy::All, vec![edit]);
    let mut arrivals: Vec<Arrival> = every_second(0, 11)
        .into_iter()
        .map(|t| arrival(t, 3))
        .collect();
    arrivals.extend(
        [14, 16, 18, 20]
            .into_iter()
            .map(|k| arrival(t0 + Duration::seconds(k), 3)),
    );
    let v = run(&h, &arrivals, Some(0));
    assert!(v.ok, "{:?}", v.failures);
    // The old spec's 13 s came after the edit had certainly taken effect.
    arrivals.push(arrival(t0 + Duration::seconds(13), 3));
    let v = run(&h, &arrivals, Some(0));
    assert!(!v.ok);
}

#[test]
fn lateness_is_split_between_steady_state_and_faults_with_their_settling_time() {
    let t0 = at("2025-01-01T00:00:00Z");
    let mut h = history(Policy::All, vec![]);
    h.faults.push(FaultWindow {
        nemesis: "kill-leader".into(),
        detail: String::new(),
        start: t0 + Duration::seconds(2),
        end: Some(t0 + Duration::seconds(4)),
        offset_ms: 0,
    });
    // Instants 2..=13 fall in the fault or its 10 s of settling: 1.5 s late; the rest 5 ms.
    let arrivals: Vec<Arrival> = every_second(0, 20)
        .into_iter()
        .map(|t| {
            let k = (t - t0).num_seconds();
            arrival(t, if (2..14).contains(&k) { 1_500 } else { 5 })
        })
        .collect();
    let v = run(&h, &arrivals, Some(0));
    assert!(v.ok, "{:?}", v.failures);
    assert_eq!(v.totals.under_faults.deliveries, 12);
    assert_eq!(v.totals.under_faults.p50_ms, Some(1_500));
    assert_eq!(v.totals.steady.deliveries, 9);
    assert_eq!(v.totals.steady.p99_ms, Some(5));
    assert_eq!(v.totals.steady.max_ms, Some(5));
}

fn redis_kill(start_ms: i64) -> FaultWindow {
    let t0 = at("2025-01-01T00:00:00Z");
    FaultWindow {
        nemesis: "redis-kill".into(),
        detail: "SIGKILL redis-server".into(),
        start: t0 + Duration::milliseconds(start_ms),
        end: Some(t0 + Duration::milliseconds(start_ms + 3_000)),
        offset_ms: 0,
    }
}

/// Every instant of 0..=20 s but the one at 5 s, which has a push receipt.
fn all_but_five_with_a_receipt() -> (Vec<Arrival>, HashSet<String>) {
    let five = at("2025-01-01T00:00:05Z");
    let arrivals = every_second(0, 25)
        .into_iter()
        .filter(|t| *t != five)
        .map(|t| arrival(t, 3))
        .collect();
    let receipt = task_id(
        cluster_id("belfry"),
        Uuid::parse_str(INCARNATION).unwrap(),
        five,
    );
    (arrivals, HashSet::from([receipt.to_string()]))
}

/// seed 5054 (5 nodes, 30 min): Redis was SIGKILLed 8 ms after the instant of a schedule
/// served by the Celery worker; the worker's BRPOP had taken the message and the kill came
/// before kombu recorded it as unacknowledged.
#[test]
fn a_message_the_worker_took_as_redis_was_killed_is_lost_by_the_worker_not_missing() {
    let mut h = history(Policy::All, vec![]);
    h.worker_schedules.insert("s".into());
    h.faults.push(redis_kill(5_008));
    let (arrivals, receipts) = all_but_five_with_a_receipt();
    let v = run_with_receipts(&h, &arrivals, Some(0), &receipts);
    assert!(v.ok, "{:?}", v.failures);
    assert_eq!(v.totals.worker_lost, 1);
    assert_eq!(v.totals.missing, 0);
    assert_eq!(v.worker_losses.len(), 1, "{:?}", v.worker_losses);
}

#[test]
fn a_receipt_excuses_nothing_without_the_worker_a_later_redis_kill_or_the_receipt_itself() {
    let (arrivals, receipts) = all_but_five_with_a_receipt();
    let empty = HashSet::new();
    // (case, served by the worker, Redis killed at this many ms, receipt held)
    let cases = [
        ("the harness's own consumer", false, Some(5_008), true),
        ("no Redis kill", true, None, true),
        (
            "Redis killed long before the instant",
            true,
            Some(2_000),
            true,
        ),
        ("no receipt", true, Some(5_008), false),
    ];
    for (case, served, kill_at_ms, with_receipt) in cases {
        let mut h = history(Policy::All, vec![]);
        if served {
            h.worker_schedules.insert("s".into());
        }
        h.faults.extend(kill_at_ms.map(redis_kill));
        let held = if with_receipt { &receipts } else { &empty };
        let v = run_with_receipts(&h, &arrivals, Some(0), held);
        assert!(!v.ok, "{case}: passed");
        assert_eq!(v.totals.missing, 1, "{case}");
        assert_eq!(v.totals.worker_lost, 0, "{case}");
    }
}

#[test]
fn a_jittered_run_is_due_at_its_offset() {
    let mut h = history(Policy::All, vec![]);
    if let OpKind::Create { jitter_ms, .. } = &mut h.ops[0].kind {
        *jitter_ms = 2_000;
    }
    let offset = |t| super::matching::jitter_offset(&arrival(t, 0).task_id, 2_000);
    // Every run at its own offset plus 3 ms, but one 500 ms before its offset.
    let times = every_second(0, 25);
    // The check's cutoff is at 20 s: the early run is before it.
    let early = every_second(0, 19)
        .into_iter()
        .find(|t| offset(*t).num_milliseconds() > 800)
        .expect("a run with an offset above 800 ms");
    let arrivals: Vec<Arrival> = times
        .iter()
        .map(|t| {
            let late = offset(*t).num_milliseconds() + if *t == early { -500 } else { 3 };
            arrival(*t, late)
        })
        .collect();
    let v = run(&h, &arrivals, Some(0));
    assert_eq!(v.totals.delivered, 21);
    assert_eq!(v.totals.early, 1, "{:?}", v.failures);
    assert!(
        v.failures[0].starts_with(&format!("EARLY s {}", early.to_rfc3339())),
        "{:?}",
        v.failures
    );
    // Lateness is counted from the offset.
    assert!(
        v.totals.lateness_ms_max <= Some(3),
        "{:?}",
        v.totals.lateness_ms_max
    );
}
