//! A Redis outage longer than the outbox holds, with real `belfry server` processes and a real
//! `redis-server`: planning pauses at `max_outbox`, and once Redis is back each schedule's
//! catch-up policy decides what of the pause is still sent. Nothing is sent twice, and every
//! occurrence is either delivered once or recorded as skipped with the cause
//! `broker_unavailable`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use belfry::api::pb;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::metrics::value;
use support::procs::{Clients, Consumer, READONLY_TOKEN};
use support::{block, wait_for, RedisServer};

const QUEUE: &str = "bounded";
const MAX_OUTBOX: usize = 6;
const SCHEDULES: &[&str] = &["bounded-a", "bounded-b", "bounded-c"];

fn schedules(t0: DateTime<Utc>) -> String {
    SCHEDULES
        .iter()
        .map(|name| {
            format!(
                "[[schedule]]\nname = \"{name}\"\ntask = \"belfry_test.record\"\nevery = \"1s\"\nstart_at = \"{}\"\ncatchup = {{ policy = \"latest\" }}\noptions = {{ queue = \"{QUEUE}\" }}\n\n",
                t0.to_rfc3339()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_redis_outage_pauses_planning_at_the_bound_and_the_policy_decides_the_rest() {
    // Markers must survive Redis's restart, as a broker's data does.
    let mut redis = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
        .expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let config = format!("[redis]\nmax_outbox = {MAX_OUTBOX}\n");
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules(t0), &config);
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    wait_for("the first occurrences", Duration::from_secs(30), || {
        (consumer.arrivals().len() >= SCHEDULES.len()).then_some(())
    });

    redis.kill();
    wait_for(
        "planning to pause on a full outbox",
        Duration::from_secs(30),
        || (value(&cluster, leader, "belfry_planning_paused") == 1.0).then_some(()),
    );
    let outbox = value(&cluster, leader, "belfry_outbox_depth");
    assert!(
        outbox <= (MAX_OUTBOX + SCHEDULES.len()) as f64,
        "the outbox holds {outbox}, beyond its bound"
    );
    // Stay down long enough for several occurrences of each schedule to fall in the pause.
    let resume_after = Utc::now() + TimeDelta::seconds(5);
    wait_for("the pause to last", Duration::from_secs(30), || {
        (Utc::now() >= resume_after).then_some(())
    });
    redis.restart().expect("restart redis-server");
    wait_for("planning to resume", Duration::from_secs(30), || {
        (value(&cluster, leader, "belfry_planning_paused") == 0.0).then_some(())
    });
    let skipped = value(
        &cluster,
        leader,
        "belfry_skipped_occurrences_total{reason=\"broker_unavailable\"}",
    );
    assert!(
        skipped > 0.0,
        "the pause's occurrences were skipped with their cause"
    );
    let mut api = cluster.client(leader, Some(READONLY_TOKEN)).schedules;
    for name in SCHEDULES {
        let runs = block(api.list_runs(pb::ListRunsRequest {
            name: name.to_string(),
        }))
        .expect("list runs");
        assert!(
            runs.runs
                .iter()
                .any(|r| r.skip_reason == "broker_unavailable"),
            "{name}: a skip recorded as broker_unavailable in {:?}",
            runs.runs
        );
    }

    // Every occurrence up to a schedule's last committed one: delivered once, or counted as
    // skipped. (The last may be planned ahead of its instant: wait until it is due and pushed.)
    for name in SCHEDULES {
        let schedule = block(api.get_schedule(pb::GetScheduleRequest {
            name: name.to_string(),
        }))
        .expect("get the schedule");
        let last = schedule.last_run.expect("a last run");
        let last = DateTime::from_timestamp(last.seconds, last.nanos as u32).expect("instant");
        let occurrences = (last - t0).num_seconds() as u64 + 1;
        assert_eq!(
            schedule.fired_count + schedule.skipped_count,
            occurrences,
            "{name}: every occurrence up to {last} was fired or skipped"
        );
        let arrived = wait_for(
            "the fired occurrences to arrive",
            Duration::from_secs(30),
            || {
                let arrived = delivered(&consumer, name, last);
                (arrived.len() as u64 >= schedule.fired_count).then_some(arrived)
            },
        );
        assert_eq!(
            arrived.len() as u64,
            schedule.fired_count,
            "{name}: fired and arrived"
        );
        for (at, n) in arrived {
            assert_eq!(n, 1, "{name} at {at} arrived {n} times");
        }
    }
}

/// How many times each occurrence of `name` up to `last` reached Redis.
fn delivered(
    consumer: &Consumer,
    name: &str,
    last: DateTime<Utc>,
) -> BTreeMap<DateTime<Utc>, usize> {
    let mut seen = BTreeMap::new();
    for a in consumer.arrivals() {
        if a.schedule == name && a.scheduled_at <= last {
            *seen.entry(a.scheduled_at).or_default() += 1;
        }
    }
    seen
}
