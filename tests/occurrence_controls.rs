//! Occurrence controls against a real three-node cluster and Redis: skipping the next
//! occurrences and a named one, a pause that ends by itself (its catch-up policy sending what
//! fell in it), and `max_runs` finishing a schedule.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use belfry::api::pb;
use belfry_kit::schedules::{self, Schedule};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::procs::{Clients, Consumer, ADMIN_TOKEN};
use support::{block, wait_for, RedisServer};

type Api = pb::schedules_client::SchedulesClient<belfry::api::client::Intercepted>;

fn get(api: &mut Api, name: &str) -> Option<pb::Schedule> {
    block(api.get_schedule(pb::GetScheduleRequest {
        name: name.to_string(),
    }))
}

fn instant(ts: &prost_types::Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).expect("an instant")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skips_timed_pauses_and_max_runs() {
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(3);
    let entries = [
        Schedule::new("ticks", "tasks.tick")
            .every("1s")
            .start_at(t0)
            .queue("ticks"),
        Schedule::new("limited", "tasks.tick")
            .every("1s")
            .start_at(t0)
            .queue("limited")
            .raw("max_runs = 3"),
    ];
    let cluster = support::procs::start(3, &redis.url(0), &schedules::file(&entries), "");
    let ticks = Consumer::start(&redis.url(0), "ticks");
    let limited = Consumer::start(&redis.url(0), "limited");
    let mut api = cluster.client(1, Some(ADMIN_TOKEN)).schedules;
    wait_for("the first ticks", Duration::from_secs(60), || {
        (ticks.arrivals().len() >= 3).then_some(())
    });

    // Skip the next two, and one named a few seconds ahead.
    let named = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(6);
    let skipped = block(api.skip_occurrences(pb::SkipOccurrencesRequest {
        name: "ticks".into(),
        next: 2,
        occurrences: vec![named.to_rfc3339()],
    }))
    .expect("skip");
    assert_eq!(skipped.skip_next, 2);
    wait_for("the skips to be taken", Duration::from_secs(30), || {
        let s = get(&mut api, "ticks")?;
        (s.skip_next == 0 && s.skip_occurrences.is_empty()).then_some(())
    });

    // Pause for three seconds; it resumes by itself and catches up (policy `all`).
    let until = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let paused = block(api.pause_schedule_until(pb::PauseUntilRequest {
        name: "ticks".into(),
        until: until.to_rfc3339(),
        note: "deploying the workers".into(),
    }))
    .expect("pause until");
    assert_eq!(paused.pause_note, "deploying the workers");
    assert_eq!(paused.paused_until.as_ref().map(instant), Some(until));
    let resumed = wait_for(
        "the pause to end by itself",
        Duration::from_secs(30),
        || {
            let s = get(&mut api, "ticks")?;
            let enabled = s.definition.as_ref()?.enabled == Some(true);
            (enabled && s.paused_until.is_none()).then_some(s)
        },
    );
    assert!(resumed.pause_note.is_empty());
    let end = Utc::now() + TimeDelta::seconds(2);
    let arrivals = wait_for("ticks after the pause", Duration::from_secs(30), || {
        let arrivals = ticks.arrivals();
        arrivals
            .iter()
            .any(|a| a.scheduled_at >= end)
            .then_some(arrivals)
    });

    // Every second from t0 on arrived once, except the three skipped as asked, which are in
    // the history with their reason.
    let mut counts: BTreeMap<DateTime<Utc>, usize> = BTreeMap::new();
    for a in &arrivals {
        *counts.entry(a.scheduled_at).or_default() += 1;
    }
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let last = *counts.keys().last().expect("arrivals");
    let missing: Vec<DateTime<Utc>> = (0..=(last - t0).num_seconds())
        .map(|k| t0 + TimeDelta::seconds(k))
        .filter(|at| !counts.contains_key(at))
        .collect();
    let runs = block(api.list_runs(pb::ListRunsRequest {
        name: "ticks".into(),
    }))
    .expect("runs");
    assert_eq!(missing.len(), 3, "two next and one named: {missing:?}");
    assert!(missing.contains(&named), "{named} in {missing:?}");
    let requested: Vec<DateTime<Utc>> = runs
        .runs
        .iter()
        .filter(|r| r.skip_reason == "requested")
        .filter_map(|r| r.scheduled_at.as_ref().map(instant))
        .collect();
    for at in &requested {
        assert!(
            missing.contains(at),
            "{at} recorded as requested but it arrived"
        );
    }
    // What fell in the pause arrived late, after the resume.
    let late = arrivals
        .iter()
        .filter(|a| a.scheduled_at < until && a.arrived_at >= until)
        .count();
    assert!(late >= 1, "the pause's occurrences were caught up after it");

    // max_runs = 3: three runs, then finished.
    let finished = wait_for(
        "the limited schedule to finish",
        Duration::from_secs(30),
        || {
            let s = get(&mut api, "limited")?;
            (s.remaining_runs == Some(0)).then_some(s)
        },
    );
    assert!(finished.next_run.is_none(), "{finished:?}");
    assert_eq!(limited.arrivals().len(), 3);
}
