//! Time integrity with real processes: three `belfry server` nodes under libfaketime (each
//! node's wall clock offset through a file it re-reads every second; monotonic clocks stay
//! real), a real `redis-server`, and the held checker. A leader whose wall clock steps an
//! hour forward, and then a leader whose clock steps an hour back, hands over and is not
//! elected while it is off; nothing reaches Redis before its instant, nothing twice, nothing
//! lost; each step is logged and counted. A single node, its own quorum, follows its stepped
//! clock: the catch-up policy applies to what a step forward skipped, and a step back repeats
//! nothing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::metrics::{http_get, value};
use support::procs::{check, Consumer, ProcCluster};
use support::{wait_for, RedisServer};

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const QUEUE: &str = "clock";
const SCHEDULES: &[(&str, i64)] = &[("every-1s", 1), ("every-2s", 2)];

fn schedules(t0: DateTime<Utc>) -> String {
    SCHEDULES
        .iter()
        .map(|(name, secs)| {
            format!(
                "[[schedule]]\nname = \"{name}\"\ntask = \"belfry_test.record\"\nevery = \"{secs}s\"\nstart_at = \"{}\"\noptions = {{ queue = \"{QUEUE}\" }}\n\n",
                t0.to_rfc3339()
            )
        })
        .collect()
}

fn expected(t0: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    SCHEDULES
        .iter()
        .map(|(name, secs)| {
            let instants = (0..)
                .map(|k| t0 + TimeDelta::seconds(k * secs))
                .take_while(|t| *t <= to)
                .collect();
            (name.to_string(), instants)
        })
        .collect()
}

/// Starts `n` nodes under libfaketime, each with its clock at offset 0 (the kit's clock files).
fn faketime_cluster(n: u64, redis: &RedisServer, schedules_toml: &str) -> ProcCluster {
    let mut options = support::procs::options(n, &redis.url(0), schedules_toml, "");
    options.faketime = Some(FAKETIME.into());
    ProcCluster::start(options).expect("start a cluster under libfaketime")
}

/// Sets node `i`'s wall clock to real time plus `offset_secs`.
fn set_clock(cluster: &mut ProcCluster, i: usize, offset_secs: i64) {
    cluster
        .set_clock(i, offset_secs * 1_000)
        .expect("write the clock file");
}

/// Waits until node `i` stopped leading and another node leads; checks that `i` is not elected
/// again for a while, that it is not ready and says why, and that it counted the step.
fn steps_down_and_stays_down(cluster: &mut ProcCluster, i: usize, direction: &str) -> usize {
    let next = cluster
        .wait_for_new_leader(i, Duration::from_secs(20))
        .expect("a new leader");
    let addr = cluster.nodes[i].metrics_addr.clone();
    wait_for(
        "the node off the clock to report not ready",
        Duration::from_secs(10),
        || {
            http_get(&addr, "/readyz")
                .filter(|(status, body)| *status == 503 && body.contains("max_clock_offset"))
        },
    );
    let series = format!("belfry_clock_steps_total{{direction=\"{direction}\"}}");
    wait_for("the step to be counted", Duration::from_secs(10), || {
        (value(cluster, i, &series) >= 1.0).then_some(())
    });
    let offset = value(cluster, i, "belfry_clock_offset_from_quorum_seconds");
    assert!(offset.abs() > 3_000.0, "offset from the quorum: {offset}");
    // It hears from the new leader and never stands for election while its clock is off.
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        assert_ne!(cluster.leader(), Some(i), "re-elected while off the clock");
        std::thread::sleep(Duration::from_millis(100));
    }
    next
}

#[test]
fn a_leader_whose_clock_steps_an_hour_either_way_hands_over_and_nothing_is_early() {
    if !Path::new(FAKETIME).exists() {
        eprintln!("skipped: libfaketime is not installed at {FAKETIME}");
        return;
    }
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let mut cluster = faketime_cluster(3, &redis, &schedules(t0));
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    let first = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    wait_for("occurrences to flow", Duration::from_secs(30), || {
        (consumer.arrivals().len() >= 3).then_some(())
    });

    // An hour forward (an NTP step, a VM resumed after an hour).
    set_clock(&mut cluster, first, 3_600);
    let second = steps_down_and_stays_down(&mut cluster, first, "forward");
    set_clock(&mut cluster, first, 0);

    // An hour back (`date -s`), on the new leader.
    set_clock(&mut cluster, second, -3_600);
    steps_down_and_stays_down(&mut cluster, second, "backward");
    set_clock(&mut cluster, second, 0);

    // Every occurrence of the window once, none early, none lost.
    let to = Utc::now() + TimeDelta::seconds(3);
    wait_for("the window to pass", Duration::from_secs(30), || {
        (Utc::now() >= to).then_some(())
    });
    let expected = expected(t0, to);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let report = loop {
        let report = check(&consumer.arrivals(), &expected, t0, to);
        if report.missing.is_empty() || std::time::Instant::now() > deadline {
            break report;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    report.assert_exactly_once(&format!("window {t0} .. {to}\n{}", cluster.log_text()));
    eprintln!(
        "two clock steps: {} occurrences, none early, max lateness {} ms",
        report.expected,
        report.max_lateness.num_milliseconds()
    );
}

#[test]
fn a_single_node_follows_its_stepped_clock_by_the_catch_up_policy_and_repeats_nothing() {
    if !Path::new(FAKETIME).exists() {
        eprintln!("skipped: libfaketime is not installed at {FAKETIME}");
        return;
    }
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(3);
    let toml = format!(
        "[[schedule]]\nname = \"latest\"\ntask = \"belfry_test.record\"\nevery = \"2s\"\nstart_at = \"{}\"\ncatchup = {{ policy = \"latest\" }}\noptions = {{ queue = \"{QUEUE}\" }}\n",
        t0.to_rfc3339()
    );
    let mut cluster = faketime_cluster(1, &redis, &toml);
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    wait_for("occurrences to flow", Duration::from_secs(30), || {
        (consumer.arrivals().len() >= 2).then_some(())
    });

    // An hour forward: the node is its own quorum, so its time moves, and the hour it skipped
    // goes by the catch-up policy: only the newest missed occurrence is sent.
    let stepped_at = Utc::now();
    set_clock(&mut cluster, 0, 3_600);
    let skipped = "belfry_skipped_occurrences_total{reason=\"superseded_by_latest\"}";
    wait_for(
        "the skipped hour to be recorded",
        Duration::from_secs(20),
        || (value(&cluster, 0, skipped) >= 1_000.0).then_some(()),
    );
    wait_for("an occurrence an hour on", Duration::from_secs(20), || {
        consumer
            .arrivals()
            .iter()
            .any(|a| a.scheduled_at > stepped_at + TimeDelta::minutes(59))
            .then_some(())
    });
    let series = "belfry_clock_steps_total{direction=\"forward\"}";
    wait_for("the step to be counted", Duration::from_secs(20), || {
        (value(&cluster, 0, series) >= 1.0).then_some(())
    });

    // An hour back: everything up to the newest sent occurrence was sent; nothing again.
    set_clock(&mut cluster, 0, 0);
    let series = "belfry_clock_steps_total{direction=\"backward\"}";
    wait_for(
        "the step back to be counted",
        Duration::from_secs(20),
        || (value(&cluster, 0, series) >= 1.0).then_some(()),
    );
    let before = consumer.arrivals().len();
    std::thread::sleep(Duration::from_secs(4));
    let arrivals = consumer.arrivals();
    assert_eq!(
        arrivals.len(),
        before,
        "nothing fires again after the step back"
    );
    let mut ids: Vec<&str> = arrivals.iter().map(|a| a.task_id.as_str()).collect();
    ids.sort_unstable();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), total, "no occurrence twice: {arrivals:?}");
    // The hour ahead: at most the one newest catch-up and what fell due since, 2 s apart.
    let ahead = arrivals
        .iter()
        .filter(|a| a.scheduled_at > stepped_at + TimeDelta::minutes(1))
        .count();
    assert!((1..=10).contains(&ahead), "{ahead} occurrences an hour on");
}
