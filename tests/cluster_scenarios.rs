//! The promise under failure, with real `belfry server` processes and a real `redis-server`:
//! every expected occurrence in the window reaches Redis exactly once, none extra, lateness
//! bounded. Expected occurrences are computed here, independently of belfry's time engine.

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use belfry_kit::schedules::{self, Schedule};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::procs::{check, Consumer, ProcCluster, Report, Signal};
use support::{wait_for, CeleryWorker, RedisServer};

/// Scenarios run one at a time: each runs three nodes, and two cores are shared.
static SERIAL: Mutex<()> = Mutex::new(());

const INTERVALS: &[(&str, i64)] = &[
    ("tick-1s-a", 1),
    ("tick-1s-b", 1),
    ("tick-1s-c", 1),
    ("tick-2s", 2),
];
const QUEUE: &str = "scenario";

/// Interval schedules anchored at `t0`, plus an every-minute cron, all on `QUEUE`.
fn schedules(t0: DateTime<Utc>) -> String {
    let mut entries: Vec<Schedule> = INTERVALS
        .iter()
        .map(|(name, secs)| {
            Schedule::new(name, "belfry_test.record")
                .every(&format!("{secs}s"))
                .start_at(t0)
                .args(serde_json::json!([name]))
                .queue(QUEUE)
        })
        .collect();
    entries.push(
        Schedule::new("every-minute", "belfry_test.record")
            .cron("* * * * *")
            .queue(QUEUE),
    );
    schedules::file(&entries)
}

/// What must have fired in `[t0, to]`, computed from first principles.
fn expected(t0: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<String, Vec<DateTime<Utc>>> {
    let mut out = BTreeMap::new();
    for (name, secs) in INTERVALS {
        let instants = (0..)
            .map(|k| t0 + TimeDelta::seconds(k * secs))
            .take_while(|t| *t <= to)
            .collect();
        out.insert(name.to_string(), instants);
    }
    // Every whole minute in [t0, to] (the schedules exist before t0).
    let floor = t0.duration_trunc(TimeDelta::minutes(1)).unwrap();
    let first_minute = if floor == t0 {
        t0
    } else {
        floor + TimeDelta::minutes(1)
    };
    let minutes = (0..)
        .map(|k| first_minute + TimeDelta::minutes(k))
        .take_while(|t| *t <= to)
        .collect();
    out.insert("every-minute".into(), minutes);
    out
}

struct Scenario {
    redis: RedisServer,
    cluster: ProcCluster,
    consumer: Consumer,
    t0: DateTime<Utc>,
}

const CONFIG: &str = "[raft]\nsnapshot_every_logs = 200\n";

fn start(redis_args: &[&str], config: &str) -> Scenario {
    let redis = RedisServer::start_with(redis_args).expect("start redis-server");
    // Whole seconds, a little ahead, so the cluster is up before the first occurrence.
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let cluster = support::procs::start(3, &redis.url(0), &schedules(t0), config);
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    Scenario {
        redis,
        cluster,
        consumer,
        t0,
    }
}

impl Scenario {
    fn wait_until(&self, at: DateTime<Utc>) {
        wait_for("the window to pass", Duration::from_secs(600), || {
            (Utc::now() >= at).then_some(())
        });
    }

    /// Waits until everything due by `to` arrived (or the deadline), then checks.
    fn settle_and_check(&mut self, to: DateTime<Utc>, max_lateness: TimeDelta) -> Report {
        self.wait_until(to);
        let expected = expected(self.t0, to);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let report = loop {
            let malformed = self.consumer.malformed();
            assert!(malformed.is_empty(), "malformed messages: {malformed:?}");
            let report = check(&self.consumer.arrivals(), &expected, self.t0, to);
            if report.missing.is_empty() || std::time::Instant::now() > deadline {
                break report;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let context = format!("window {} .. {}\n{}", self.t0, to, self.cluster.log_text());
        report.assert_exactly_once(&context);
        assert!(
            report.max_lateness <= max_lateness,
            "max lateness {} over {max_lateness}",
            report.max_lateness
        );
        report
    }
}

fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

#[test]
fn steady_state_delivers_every_occurrence_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start(&[], CONFIG);
    s.cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    let report = s.settle_and_check(s.t0 + secs(15), secs(1));
    eprintln!(
        "steady: {} occurrences, p99 lateness {} ms",
        report.expected,
        report.p99_lateness.num_milliseconds()
    );
}

#[test]
fn leader_sigkill_twice_in_a_row_loses_and_repeats_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start(&[], CONFIG);
    let first = s
        .cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    s.wait_until(s.t0 + secs(3));
    s.cluster.kill(first);
    let second = s
        .cluster
        .wait_for_new_leader(first, Duration::from_secs(20))
        .expect("a new leader");
    s.cluster.spawn(first).expect("start a node");
    s.wait_until(Utc::now() + secs(3));
    s.cluster.kill(second);
    s.cluster
        .wait_for_new_leader(second, Duration::from_secs(20))
        .expect("a new leader");
    s.cluster.spawn(second).expect("start a node");
    let report = s.settle_and_check(Utc::now() + secs(4), secs(10));
    eprintln!(
        "two leader kills: {} occurrences, max lateness {} ms",
        report.expected,
        report.max_lateness.num_milliseconds()
    );
}

#[test]
fn a_frozen_leader_pushes_nothing_new_after_it_thaws() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start(&[], CONFIG);
    let frozen = s
        .cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    s.wait_until(s.t0 + secs(3));
    s.cluster.signal(frozen, Signal::Stop);
    s.cluster
        .wait_for_new_leader(frozen, Duration::from_secs(20))
        .expect("a new leader");
    s.wait_until(Utc::now() + secs(3));
    let thawed_at = Utc::now();
    s.cluster.signal(frozen, Signal::Cont);
    s.settle_and_check(Utc::now() + secs(5), secs(10));
    // Judged by what reached Redis, not by the node's log: a push the node made just before it
    // froze is logged (and timed) only once it runs again.
    let origin = format!("belfry-{}@", s.cluster.nodes[frozen].id);
    let late: Vec<_> = s
        .consumer
        .arrivals()
        .into_iter()
        .filter(|a| a.origin.starts_with(&origin) && a.arrived_at > thawed_at)
        .collect();
    assert!(
        late.is_empty(),
        "the thawed leader pushed after it thawed: {late:?}"
    );
}

#[test]
fn a_redis_outage_delays_but_loses_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Redis persists every write, as a broker should; belfry's markers survive its restart.
    let mut s = start(&["--appendonly", "yes", "--appendfsync", "always"], CONFIG);
    s.cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    s.wait_until(s.t0 + secs(3));
    s.redis.kill();
    std::thread::sleep(Duration::from_secs(10)); // the outage itself
    s.redis.restart().expect("restart redis-server");
    s.settle_and_check(Utc::now() + secs(4), secs(20));
}

#[test]
fn a_full_cluster_restart_resumes_from_disk() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = start(&[], CONFIG);
    s.cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    s.wait_until(s.t0 + secs(3));
    for i in 0..3 {
        let status = s.cluster.terminate(i, Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "node {} did not exit cleanly after SIGTERM: {status:?}",
            s.cluster.nodes[i].id
        );
    }
    std::thread::sleep(Duration::from_secs(3)); // the whole cluster is down
    for i in 0..3 {
        s.cluster.spawn(i).expect("start a node");
    }
    s.cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    s.settle_and_check(Utc::now() + secs(4), secs(20));
}

#[test]
fn a_wiped_follower_resyncs_by_snapshot() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Snapshots every 20 entries and no log kept behind them: a wiped node can only catch up
    // by installing a snapshot.
    let mut s = start(
        &[],
        "[raft]\nsnapshot_every_logs = 20\nkeep_logs_after_snapshot = 0\n",
    );
    let leader = s
        .cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    let follower = (leader + 1) % 3;
    s.wait_until(s.t0 + secs(2));
    // Once the leader has taken a snapshot, the log before it is gone.
    let leader_snapshot = s.cluster.data_dir(leader).join("state/snapshot");
    wait_for(
        "the leader's first snapshot",
        Duration::from_secs(60),
        || leader_snapshot.exists().then_some(()),
    );
    s.cluster.wipe(follower).expect("wipe a node");
    s.cluster.spawn(follower).expect("start a node");
    let installed = |s: &Scenario| {
        s.cluster
            .log_lines(follower)
            .iter()
            .any(|l| l["fields"]["message"] == "installed a snapshot from the leader")
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !installed(&s) {
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot installed on node {}:\n{}",
            follower + 1,
            s.cluster.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // What it installed carries the schedules and their run state.
    let snapshot =
        std::fs::read_to_string(s.cluster.data_dir(follower).join("state/snapshot")).unwrap();
    let (_meta, data) = snapshot.split_once('\n').unwrap();
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    for (name, _) in INTERVALS {
        assert!(
            data["data"]["schedules"][*name]["fired"].as_u64() > Some(0),
            "{name} missing from the snapshot"
        );
    }
    // The resynced node carries the schedules: if it now leads, nothing repeats.
    s.cluster.kill(leader);
    s.cluster
        .wait_for_new_leader(leader, Duration::from_secs(20))
        .expect("a new leader");
    s.settle_and_check(Utc::now() + secs(4), secs(10));
}

/// A real Celery worker executes what the cluster dispatches across a leader failure.
#[test]
fn a_celery_worker_runs_each_occurrence_once_across_a_failover() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let schedule = Schedule::new("celery-1s", "belfry_test.record")
        .every("1s")
        .start_at(t0)
        .args(serde_json::json!(["ü", 1]))
        // Too big for a JSON number without arbitrary precision.
        .raw("kwargs = { big = 123456789012345678901234567890 }")
        .to_toml();
    let mut cluster = support::procs::start(3, &redis.url(0), &schedule, CONFIG);
    let mut worker = CeleryWorker::start(&redis.url(0), &redis.url(1), &["celery"]);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    wait_for("the first occurrences", Duration::from_secs(30), || {
        (Utc::now() > t0 + secs(3)).then_some(())
    });
    cluster.kill(leader);
    cluster
        .wait_for_new_leader(leader, Duration::from_secs(20))
        .expect("a new leader");
    let to = Utc::now() + secs(3);
    let expected: Vec<DateTime<Utc>> = (0..)
        .map(|k| t0 + secs(k))
        .take_while(|t| *t <= to)
        .collect();
    let mut results = redis.conn(1).expect("connect to the test redis-server");
    let stored: Vec<serde_json::Value> =
        wait_for("every occurrence to run", Duration::from_secs(60), || {
            use redis::Commands;
            let keys: Vec<String> = results.keys("celery-task-meta-*").ok()?;
            let values: Vec<serde_json::Value> = keys
                .iter()
                .filter_map(|k| results.get::<_, String>(k).ok())
                .filter_map(|v| serde_json::from_str(&v).ok())
                .collect();
            let ran: std::collections::BTreeSet<String> = values
                .iter()
                .filter_map(|v| {
                    v["result"]["belfry_scheduled_at"]
                        .as_str()
                        .map(String::from)
                })
                .collect();
            expected
                .iter()
                .all(|t| ran.contains(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
                .then_some(values)
        });
    worker.stop();
    let log = worker.log_text();
    for at in &expected {
        let at = at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let runs: Vec<&serde_json::Value> = stored
            .iter()
            .filter(|v| v["result"]["belfry_scheduled_at"] == at.as_str())
            .collect();
        assert_eq!(runs.len(), 1, "{at} has {} results", runs.len());
        let result = &runs[0]["result"];
        assert_eq!(result["args"], serde_json::json!(["ü", 1]));
        assert_eq!(
            result["kwargs"]["big"].to_string(),
            "123456789012345678901234567890"
        );
        let id = runs[0]["task_id"].as_str().unwrap();
        assert_eq!(
            log.matches(&format!("[{id}] succeeded")).count(),
            1,
            "{id} ran more than once"
        );
    }
}

/// SIGHUP reloads the schedules file: an invalid file is refused and the running schedules go
/// on; a valid one is reconciled (a new schedule starts, a removed one stops).
#[test]
fn sighup_reloads_the_schedules_file_and_refuses_a_bad_one() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(3);
    let entry = |name: &str| {
        Schedule::new(name, "belfry_test.record")
            .every("1s")
            .start_at(t0)
            .queue(QUEUE)
            .to_toml()
    };
    let mut cluster = support::procs::start(1, &redis.url(0), &entry("first"), CONFIG);
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    let count = |name: &str| {
        consumer
            .arrivals()
            .iter()
            .filter(|a| a.schedule == name)
            .count()
    };
    wait_for(
        "the first schedule to fire",
        Duration::from_secs(20),
        || (count("first") >= 2).then_some(()),
    );

    std::fs::write(
        &cluster.schedules,
        "[[schedule]]\nname = \"broken\"\ntask = \"t\"\ncron = \"0 0 30 2 *\"\n",
    )
    .unwrap();
    cluster.signal(0, Signal::Hup);
    wait_for("the refusal to be logged", Duration::from_secs(20), || {
        cluster
            .log_lines(0)
            .iter()
            .any(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("invalid"))
                    && l.to_string().contains("broken")
            })
            .then_some(())
    });
    let before = count("first");
    wait_for(
        "the running schedule to go on",
        Duration::from_secs(20),
        || (count("first") >= before + 2).then_some(()),
    );

    std::fs::write(&cluster.schedules, entry("second")).unwrap();
    cluster.signal(0, Signal::Hup);
    wait_for("the new schedule to fire", Duration::from_secs(20), || {
        (count("second") >= 2).then_some(())
    });
    let stopped = count("first");
    let second = count("second");
    wait_for("two more of the new one", Duration::from_secs(20), || {
        (count("second") >= second + 2).then_some(())
    });
    // An occurrence already committed when the schedule was deleted still goes out (committed
    // intents are never recalled); nothing after it does.
    assert!(
        count("first") <= stopped + 2,
        "the removed schedule kept firing"
    );
    assert_eq!(
        consumer
            .arrivals()
            .iter()
            .filter(|a| a.schedule == "broken")
            .count(),
        0
    );
}
