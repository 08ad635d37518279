//! Run control with real Celery workers and a real Redis result backend: the overlap policies
//! `skip` and `buffer_one` never let a schedule's runs overlap, `skip` with `max_concurrent = 2`
//! never lets more than two run at once, through a leader SIGKILL, and each accounts for every
//! occurrence; `pause_after_failures` counts failures across that SIGKILL, pauses a failing
//! schedule naming the failed task ids, and resume clears it.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use belfry::api::pb;
use belfry_kit::schedules::{self, Schedule};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::procs::{Clients, ADMIN_TOKEN};
use support::{block, wait_for, CeleryWorker, RedisServer};

type Schedules =
    belfry::api::pb::schedules_client::SchedulesClient<belfry::api::client::Intercepted>;

/// Every 2 s, a task that takes 5 s: 2.5 times the interval.
const INTERVAL_SECS: i64 = 2;
const TASK_SECS: f64 = 5.0;
/// Consecutive failures that pause the failing schedule.
const AUTO_PAUSE_AFTER: u32 = 5;

fn sleeper(name: &str, queue: &str, overlap: &str) -> Schedule {
    let schedule = Schedule::new(name, "belfry_test.sleep")
        .every(&format!("{INTERVAL_SECS}s"))
        .args(serde_json::json!([TASK_SECS]))
        .queue(queue)
        .raw(&format!("overlap = \"{overlap}\""));
    if overlap == "allow" {
        schedule
    } else {
        schedule.raw("max_runtime = \"2m\"")
    }
}

/// One execution, as the task itself reported it in the result backend.
#[derive(Debug)]
struct Execution {
    task_id: String,
    scheduled_at: String,
    started: f64,
    finished: f64,
}

/// Every finished execution of `schedule` in the result backend (database 1).
fn executions(redis_port: u16, schedule: &str) -> Vec<Execution> {
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/1"))
        .and_then(|c| c.get_connection())
        .expect("connect to the result backend");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("celery-task-meta-*")
        .query(&mut conn)
        .expect("keys");
    let mut runs = Vec::new();
    for key in keys {
        let text: String = redis::cmd("GET").arg(&key).query(&mut conn).expect("get");
        let meta: serde_json::Value = serde_json::from_str(&text).expect("json");
        let result = &meta["result"];
        if meta["status"] != "SUCCESS" || result["belfry_schedule"] != schedule {
            continue;
        }
        runs.push(Execution {
            task_id: meta["task_id"].as_str().unwrap_or_default().to_string(),
            scheduled_at: result["belfry_scheduled_at"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            started: result["started"].as_f64().unwrap_or_default(),
            finished: result["finished"].as_f64().unwrap_or_default(),
        });
    }
    runs.sort_by(|a, b| a.started.total_cmp(&b.started));
    runs
}

fn instant(ts: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let ts = ts.as_ref().expect("a timestamp");
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).expect("an instant")
}

fn runs(api: &mut Schedules, name: &str) -> Vec<pb::Run> {
    block(api.list_runs(pb::ListRunsRequest {
        name: name.to_string(),
    }))
    .expect("list runs")
    .runs
}

/// The most runs that were going at one moment (a run's end and the next one's start within
/// 50 ms count as one after the other).
fn most_at_once(ran: &[Execution]) -> usize {
    ran.iter()
        .map(|run| {
            ran.iter()
                .filter(|other| other.started <= run.started && other.finished - 0.05 > run.started)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Every 4 s, a task that fails: slow enough that the leader is killed between its second
/// failure and its fifth. Created through the API (a schedules file would be reconciled again
/// by the new leader).
fn failing_schedule() -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: "auto-pause".into(),
        task: "belfry_test.fail".into(),
        spec: Some(pb::Spec {
            every: "4s".into(),
            ..Default::default()
        }),
        args_json: "[]".into(),
        kwargs_json: "{}".into(),
        options: Some(pb::TaskOptions {
            queue: Some("fail".into()),
            ..Default::default()
        }),
        enabled: Some(true),
        control: Some(pb::RunControl {
            pause_after_failures: Some(AUTO_PAUSE_AFTER),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The policy's promises over what ran and what the history says: at most `max_concurrent`
/// runs at once.
fn check_overlap_policy(
    redis_port: u16,
    runs: &[pb::Run],
    (name, max_concurrent): (&str, usize),
    worker_log: &str,
) {
    let ran = executions(redis_port, name);
    assert!(
        ran.len() >= 3,
        "{name}: at least three runs finished: {ran:?}"
    );
    assert!(
        most_at_once(&ran) <= max_concurrent,
        "{name}: more than {max_concurrent} runs at once: {ran:?}"
    );
    // Each task id received once by the worker, and each occurrence sent under one task id.
    let mut by_instant: BTreeMap<&str, usize> = BTreeMap::new();
    for run in &ran {
        let received = format!("Task belfry_test.sleep[{}] received", run.task_id);
        assert_eq!(
            worker_log.matches(&received).count(),
            1,
            "{name}: {} received once",
            run.task_id
        );
        *by_instant.entry(run.scheduled_at.as_str()).or_default() += 1;
    }
    assert!(
        by_instant.values().all(|n| *n == 1),
        "{name}: {by_instant:?}"
    );
    // No unexplained gap: the history's occurrences are consecutive, each sent, held or
    // skipped because the previous run was still going.
    let mut instants: Vec<DateTime<Utc>> = runs.iter().map(|r| instant(&r.scheduled_at)).collect();
    instants.sort();
    for pair in instants.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            INTERVAL_SECS,
            "{name}: consecutive occurrences in {runs:?}"
        );
    }
    for run in runs {
        let skipped = run.outcome == pb::RunOutcome::Skipped as i32;
        assert!(
            !skipped || run.skip_reason == "previous_running",
            "{name}: a skip for another reason: {run:?}"
        );
    }
    assert!(
        runs.iter().any(|r| r.skip_reason == "previous_running"),
        "{name}: occurrences skipped while a run was going: {runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.task_state == "SUCCESS" && r.duration_seconds.is_some()),
        "{name}: outcomes with durations: {runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_policies_and_auto_pause_with_a_real_worker_through_a_leader_kill() {
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(4);
    let entries = [
        sleeper("overlap-skip", "skip", "skip").start_at(t0),
        sleeper("overlap-buffer", "buffer", "buffer_one").start_at(t0),
        // Two runs at a time, served by two workers.
        sleeper("overlap-skip2", "skip2", "skip")
            .raw("max_concurrent = 2")
            .start_at(t0),
        // No worker takes this queue: under `allow`, every occurrence is sent all the same.
        sleeper("overlap-allow", "allow", "allow").start_at(t0),
    ];
    let backend = format!("redis://127.0.0.1:{}/1", redis.port);
    let config = format!("[results]\nbackend = \"{backend}\"\n");
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules::file(&entries), &config);
    let workers: Vec<CeleryWorker> = ["skip", "buffer", "skip2", "skip2", "fail"]
        .iter()
        .map(|queue| CeleryWorker::start(&redis.url(0), &backend, &[queue]))
        .collect();
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let mut api = cluster
        .client((leader + 1) % 3, Some(ADMIN_TOKEN))
        .schedules;

    // Let two runs of each overlap schedule finish, then start the failing schedule and let
    // it count two failures (its fifth comes 12 s later), then kill the leader.
    let finished = |name: &str, n: usize| executions(redis.port, name).len() >= n;
    wait_for("runs before the kill", Duration::from_secs(90), || {
        ["overlap-skip", "overlap-buffer", "overlap-skip2"]
            .iter()
            .all(|name| finished(name, 2))
            .then_some(())
    });
    block(api.create_schedule(pb::CreateScheduleRequest {
        schedule: Some(failing_schedule()),
    }))
    .expect("create the failing schedule");
    wait_for(
        "two failures before the kill",
        Duration::from_secs(60),
        || {
            let schedule = block(api.get_schedule(pb::GetScheduleRequest {
                name: "auto-pause".into(),
            }))?;
            assert!(
                schedule.paused_reason.is_empty(),
                "paused before the kill: {schedule:?}"
            );
            (schedule.consecutive_failures >= 2).then_some(())
        },
    );
    let failed_before: Vec<String> = runs(&mut api, "auto-pause")
        .into_iter()
        .filter(|r| r.task_state == "FAILURE")
        .map(|r| r.task_id)
        .collect();
    cluster.kill(leader);
    let new_leader = cluster
        .wait_for_new_leader(leader, Duration::from_secs(30))
        .expect("a new leader");
    let mut api = cluster.client(new_leader, Some(ADMIN_TOKEN)).schedules;

    // Auto-pause: the failures counted before the kill count after it; the reason names the
    // failed runs, those before the kill among them.
    let paused = belfry_kit::wait::poll("auto-pause", Duration::from_secs(90), || {
        let schedule = block(api.get_schedule(pb::GetScheduleRequest {
            name: "auto-pause".into(),
        }))?;
        (!schedule.paused_reason.is_empty()).then_some(schedule)
    })
    .unwrap_or_else(|err| {
        panic!(
            "{err}: {:?} {:?}",
            block(api.get_schedule(pb::GetScheduleRequest {
                name: "auto-pause".into(),
            })),
            runs(&mut api, "auto-pause")
        )
    });
    assert_eq!(
        paused.definition.as_ref().and_then(|d| d.enabled),
        Some(false)
    );
    assert!(
        paused.consecutive_failures >= AUTO_PAUSE_AFTER,
        "{paused:?}"
    );
    let failed: Vec<pb::Run> = runs(&mut api, "auto-pause")
        .into_iter()
        .filter(|r| r.task_state == "FAILURE")
        .collect();
    assert!(failed.len() >= AUTO_PAUSE_AFTER as usize, "{failed:?}");
    for run in &failed[failed.len() - AUTO_PAUSE_AFTER as usize..] {
        assert!(
            paused.paused_reason.contains(&run.task_id),
            "{} named in {:?}",
            run.task_id,
            paused.paused_reason
        );
    }
    assert!(
        failed_before
            .iter()
            .any(|id| paused.paused_reason.contains(id.as_str())),
        "a failure counted before the kill is among the reasons: before {failed_before:?}, {:?}",
        paused.paused_reason
    );
    let resumed = block(api.resume_schedule(pb::ScheduleName {
        name: "auto-pause".into(),
    }))
    .expect("resume");
    assert_eq!(
        (resumed.paused_reason.as_str(), resumed.consecutive_failures),
        ("", 0)
    );
    block(api.pause_schedule(pb::ScheduleName {
        name: "auto-pause".into(),
    }))
    .expect("pause again: the rest of the test needs its worker quiet");

    // Meanwhile, note the occurrences buffer_one holds: each is sent once its predecessor ends.
    let mut held = std::collections::BTreeSet::new();
    wait_for("runs after the kill", Duration::from_secs(120), || {
        let now_held = runs(&mut api, "overlap-buffer")
            .into_iter()
            .filter(|r| r.outcome == pb::RunOutcome::Held as i32)
            .map(|r| r.task_id);
        held.extend(now_held);
        let names = ["overlap-skip", "overlap-buffer", "overlap-skip2"];
        let ran: Vec<String> = executions(redis.port, "overlap-buffer")
            .into_iter()
            .map(|e| e.task_id)
            .collect();
        // buffer_one sends an occurrence it held once its predecessor ends.
        let released = held.iter().any(|id| ran.contains(id));
        (released && names.iter().all(|name| finished(name, 4))).then_some(())
    });
    let log: String = workers.iter().map(CeleryWorker::log_text).collect();
    for (name, max_concurrent) in [
        ("overlap-skip", 1),
        ("overlap-buffer", 1),
        ("overlap-skip2", 2),
    ] {
        check_overlap_policy(
            redis.port,
            &runs(&mut api, name),
            (name, max_concurrent),
            &log,
        );
    }
    // Two at a time did happen: the policy allowed it and two workers were there.
    assert_eq!(most_at_once(&executions(redis.port, "overlap-skip2")), 2);
    let schedule = block(api.get_schedule(pb::GetScheduleRequest {
        name: "overlap-buffer".into(),
    }))
    .expect("get");
    assert!(schedule.open_runs <= 1, "{schedule:?}");
    // allow: every occurrence sent although none finished, consecutive, none skipped.
    let allowed = runs(&mut api, "overlap-allow");
    assert!(allowed.len() >= 5, "{allowed:?}");
    let mut instants: Vec<DateTime<Utc>> =
        allowed.iter().map(|r| instant(&r.scheduled_at)).collect();
    instants.sort();
    for pair in instants.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            INTERVAL_SECS,
            "{allowed:?}"
        );
    }
    assert!(
        allowed
            .iter()
            .all(|r| r.outcome != pb::RunOutcome::Skipped as i32
                && r.outcome != pb::RunOutcome::Held as i32),
        "{allowed:?}"
    );
}

/// The offset the README documents: the task id's last eight bytes, big-endian, modulo the
/// jitter in milliseconds plus one.
fn documented_offset(task_id: &str, jitter_ms: u64) -> TimeDelta {
    let id = uuid::Uuid::parse_str(task_id).expect("a task id");
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&id.as_bytes()[8..]);
    TimeDelta::milliseconds((u64::from_be_bytes(tail) % (jitter_ms + 1)) as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_is_the_same_on_every_leader_and_never_early() {
    const JITTER_MS: u64 = 2_000;
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(3);
    let entries = [Schedule::new("jittered", "tasks.tick")
        .every("1s")
        .start_at(t0)
        .queue("jitter")
        .raw("jitter = \"2s\"")];
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules::file(&entries), "");
    let consumer = support::procs::Consumer::start(&redis.url(0), "jitter");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    wait_for("arrivals before the kill", Duration::from_secs(60), || {
        (consumer.arrivals().len() >= 8).then_some(())
    });
    cluster.kill(leader);
    cluster
        .wait_for_new_leader(leader, Duration::from_secs(30))
        .expect("a new leader");
    let killed_at = Utc::now();
    let arrivals = wait_for("arrivals after the kill", Duration::from_secs(60), || {
        let arrivals = consumer.arrivals();
        let after = arrivals
            .iter()
            .filter(|a| a.scheduled_at > killed_at + TimeDelta::seconds(3))
            .count();
        (after >= 8).then_some(arrivals)
    });
    let mut seen = std::collections::BTreeSet::new();
    let mut delayed = 0;
    for a in &arrivals {
        assert!(
            seen.insert(a.scheduled_at),
            "{} arrived twice",
            a.scheduled_at
        );
        let offset = documented_offset(&a.task_id, JITTER_MS);
        assert!(
            a.arrived_at >= a.scheduled_at + offset,
            "{} (offset {offset}) arrived early at {}",
            a.scheduled_at,
            a.arrived_at
        );
        delayed += usize::from(offset > TimeDelta::milliseconds(100));
    }
    assert!(
        delayed > arrivals.len() / 2,
        "most runs are delayed: {delayed} of {}",
        arrivals.len()
    );
    // No gap: every second from the first arrival to the last whose jitter has surely passed
    // (later ones may still be on their way: jittered runs arrive out of order).
    let first = *seen.first().expect("arrivals");
    let settled =
        *seen.last().expect("arrivals") - TimeDelta::milliseconds(JITTER_MS as i64 + 1_000);
    let mut t = first;
    while t <= settled {
        assert!(seen.contains(&t), "{t} missing from {seen:?}");
        t += TimeDelta::seconds(1);
    }
}
