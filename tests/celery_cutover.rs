//! Moving from Celery beat without a burst or a gap: a real `celery beat` sends two intervals
//! and a crontab to a real Redis, is stopped, `belfry-celery export --apply` carries its
//! schedule and last runs (from beat's own schedule file) into a real three-node cluster, and
//! every occurrence across the switch reaches Redis exactly once: belfry's first run of each
//! schedule is the one beat would have sent next (one that fell due between beat's stop and
//! the apply is caught up), none is sent twice, and none is missing.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde_json::Value;
use support::procs::ADMIN_TOKEN;
use support::{repo_root, test_python, wait_for, RedisServer};

/// One message in the `celery` list: its task and the instant it stands for.
#[derive(Debug, Clone)]
struct Sent {
    task: String,
    /// belfry's `belfry_scheduled_at`, or for beat's the instant it was published.
    at: DateTime<Utc>,
    by_belfry: bool,
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .to_utc()
}

fn messages(redis: &RedisServer) -> Vec<Sent> {
    let payloads: Vec<String> = redis::cmd("LRANGE")
        .arg("celery")
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn(0).expect("connect to the test redis-server"))
        .expect("LRANGE celery");
    let mut out: Vec<Sent> = payloads
        .iter()
        .map(|payload| {
            let envelope: Value = serde_json::from_str(payload).expect("JSON message");
            let h = &envelope["headers"];
            let _ = base64::engine::general_purpose::STANDARD
                .decode(envelope["body"].as_str().expect("body"))
                .expect("base64 body");
            let task = h["task"].as_str().expect("task header").to_string();
            match h["belfry_scheduled_at"].as_str() {
                Some(at) => Sent {
                    task,
                    at: instant(at),
                    by_belfry: true,
                },
                None => Sent {
                    task,
                    at: instant(h["beat_sent_at"].as_str().expect("beat's stamp")),
                    by_belfry: false,
                },
            }
        })
        .collect();
    out.sort_by_key(|m| m.at);
    out
}

fn of(all: &[Sent], task: &str, by_belfry: bool) -> Vec<DateTime<Utc>> {
    all.iter()
        .filter(|m| m.task == task && m.by_belfry == by_belfry)
        .map(|m| m.at)
        .collect()
}

fn start_beat(dir: &Path, broker: &str) -> Child {
    std::fs::copy(
        repo_root().join("tests/cutover_app/cutover_app.py"),
        dir.join("cutover_app.py"),
    )
    .expect("copy the app");
    let log = std::fs::File::create(dir.join("beat.log")).expect("beat log");
    Command::new(test_python())
        .args([
            "-m",
            "celery",
            "-A",
            "cutover_app",
            "beat",
            "--loglevel",
            "INFO",
        ])
        .args(["-s", "beat-schedule"])
        .current_dir(dir)
        .env("CUTOVER_BROKER", broker)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start celery beat")
}

/// Interval runs: beat's drift by their lateness, belfry's are exactly `every` apart, and the
/// first of belfry's is the one beat would have sent next (last beat run + every).
fn check_interval(all: &[Sent], task: &str, every: i64) {
    let beat = of(all, task, false);
    let ours = of(all, task, true);
    assert!(
        beat.len() >= 2 && ours.len() >= 2,
        "{task}: beat {beat:?}, belfry {ours:?}"
    );
    let every = TimeDelta::seconds(every);
    let slack = TimeDelta::milliseconds(1500);
    for pair in beat.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap > every - slack && gap < every + slack,
            "{task}: beat gap {gap}"
        );
    }
    let handover = ours[0] - *beat.last().expect("a beat run");
    assert!(
        handover > every - slack && handover < every + slack,
        "{task}: belfry's first run {} is not beat's next after {:?} (gap {handover})",
        ours[0],
        beat.last()
    );
    for pair in ours.windows(2) {
        assert_eq!(pair[1] - pair[0], every, "{task}: belfry {ours:?}");
    }
}

/// Crontab runs: every minute from beat's first to belfry's last, each exactly once.
fn check_minutes(all: &[Sent]) {
    let minute = TimeDelta::minutes(1);
    let beat: Vec<_> = of(all, "cutover.minute", false)
        .into_iter()
        .map(|t| t.duration_trunc(minute).expect("truncate"))
        .collect();
    let ours = of(all, "cutover.minute", true);
    assert!(
        !beat.is_empty() && !ours.is_empty(),
        "beat {beat:?}, belfry {ours:?}"
    );
    let mut every: Vec<_> = beat.iter().chain(&ours).copied().collect();
    every.sort();
    for pair in every.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            minute,
            "minutes must follow each other once: beat {beat:?}, belfry {ours:?}"
        );
    }
}

#[test]
fn a_cut_over_from_celery_beat_sends_every_occurrence_once() {
    let redis = RedisServer::start().expect("start redis-server");
    let broker = redis.url(0);
    let mut cluster = support::procs::start(3, &broker, "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let dir = tempfile::tempdir().expect("beat dir");
    let mut beat = start_beat(dir.path(), &broker);

    // Beat runs until it has sent the crontab once and each interval a few times.
    wait_for("beat's runs", Duration::from_secs(100), || {
        let all = messages(&redis);
        (!of(&all, "cutover.minute", false).is_empty() && of(&all, "cutover.ten", false).len() >= 3)
            .then_some(())
    });
    let _ = Command::new("kill")
        .args(["-TERM", &beat.id().to_string()])
        .status();
    beat.wait().expect("beat exits");
    let beat_count = messages(&redis).len();
    // Nobody sends for a while: at least one every-5s occurrence falls due in the gap.
    let last_five = *of(&messages(&redis), "cutover.five", false)
        .last()
        .expect("beat sent every-5s");
    wait_for(
        "an occurrence due in the gap",
        Duration::from_secs(10),
        || (Utc::now() > last_five + TimeDelta::seconds(6)).then_some(()),
    );
    let applied_at = Utc::now();

    // Export beat's schedule with its last runs and apply it to the cluster.
    let out = Command::new(test_python())
        .args([
            "-m",
            "belfry.celery_export.cli",
            "export",
            "--app",
            "cutover_app:app",
        ])
        .args(["-s", "beat-schedule", "--apply", "--endpoint"])
        .arg(&cluster.nodes[leader].addr)
        .args(["--token", ADMIN_TOKEN])
        .current_dir(dir.path())
        .env("PYTHONPATH", dir.path())
        .env("CUTOVER_BROKER", &broker)
        .output()
        .expect("run belfry-celery");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "export failed: {stderr}");
    assert!(
        stderr.contains("applied 3 schedule(s): 3 created"),
        "{stderr}"
    );

    // belfry goes on until it too has sent the crontab and each interval a few times.
    wait_for("belfry's runs", Duration::from_secs(100), || {
        let all = messages(&redis);
        (!of(&all, "cutover.minute", true).is_empty() && of(&all, "cutover.ten", true).len() >= 3)
            .then_some(())
    });
    let all = messages(&redis);
    assert_eq!(
        all.iter().filter(|m| !m.by_belfry).count(),
        beat_count,
        "beat sent nothing after it stopped"
    );
    check_interval(&all, "cutover.five", 5);
    assert!(
        of(&all, "cutover.five", true)[0] < applied_at,
        "the occurrence due in the gap was caught up"
    );
    check_interval(&all, "cutover.ten", 10);
    check_minutes(&all);
    let by_task: BTreeMap<&str, usize> = all.iter().fold(BTreeMap::new(), |mut m, s| {
        *m.entry(s.task.as_str()).or_default() += 1;
        m
    });
    eprintln!("messages across the switch: {by_task:?}, {beat_count} from beat");
}
