//! The Python client example (`examples/python`, built on the `belfry` package in `python/`)
//! against a real three-node cluster and a real `redis-server`: it creates a schedule through a
//! follower and prints the runs it waited for; the test then checks that schedule through the
//! Rust client and those runs against the Celery messages in Redis. A wrong token must fail
//! with UNAUTHENTICATED.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use base64::Engine as _;
use belfry::api::pb;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use support::procs::{Clients, ADMIN_TOKEN};
use support::{repo_root, test_python, RedisServer};
use tonic::Code;

const TASK: &str = "belfry_test.record";

/// Fails with the way out when the test virtualenv lacks the `belfry` package.
fn require_package() {
    let found = Command::new(test_python())
        .args(["-c", "import belfry.client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "the test virtualenv has no `belfry` package: scripts/test.sh installs it, or run \
         `$BELFRY_TEST_PYTHON -m pip install ./python`"
    );
}

/// Runs the example with `args`; the environment carries no endpoint or token of its own.
fn example(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(test_python())
        .arg(repo_root().join("examples/python/belfry_client_example.py"))
        .args(args)
        .env_remove("BELFRY_ENDPOINT")
        .env_remove("BELFRY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("run the example with the test virtualenv's Python")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
        .to_utc()
}

fn from_pb(ts: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    let ts = ts.expect("timestamp set");
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32).expect("timestamp in range")
}

/// One run as the example printed it.
#[derive(Debug)]
struct Printed {
    scheduled_at: DateTime<Utc>,
    task_id: String,
    outcome: String,
}

/// The table after the `SCHEDULED AT` header.
fn printed_runs(stdout: &str) -> Vec<Printed> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("SCHEDULED AT"))
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "not a run line: {line:?}");
            Printed {
                scheduled_at: instant(fields[0]),
                task_id: fields[1].to_string(),
                outcome: fields[2].to_string(),
            }
        })
        .collect()
}

/// A Celery message in the `celery` list, decoded.
struct Message {
    task: String,
    schedule: String,
    scheduled_at: DateTime<Utc>,
    args: Value,
    kwargs: Value,
}

fn queued_messages(redis: &RedisServer) -> BTreeMap<String, Message> {
    let payloads: Vec<String> = redis::cmd("LRANGE")
        .arg("celery")
        .arg(0)
        .arg(-1)
        .query(&mut redis.conn(0).expect("connect to the test redis-server"))
        .expect("LRANGE celery");
    payloads
        .iter()
        .map(|payload| {
            let envelope: Value = serde_json::from_str(payload).expect("message is JSON");
            let headers = &envelope["headers"];
            let body = base64::engine::general_purpose::STANDARD
                .decode(envelope["body"].as_str().expect("body"))
                .expect("body is base64");
            let body: Value = serde_json::from_slice(&body).expect("body is JSON");
            let header = |name: &str| headers[name].as_str().unwrap_or_default().to_string();
            (
                header("id"),
                Message {
                    task: header("task"),
                    schedule: header("belfry_schedule"),
                    scheduled_at: instant(&header("belfry_scheduled_at")),
                    args: body[0].clone(),
                    kwargs: body[1].clone(),
                },
            )
        })
        .collect()
}

#[test]
fn the_python_example_creates_a_schedule_and_sees_its_runs() {
    require_package();
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = cluster.nodes[(leader + 1) % 3].addr.clone();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut api = {
        let _guard = runtime.enter();
        cluster
            .client((leader + 2) % 3, Some(ADMIN_TOKEN))
            .schedules
    };

    // Through a follower, so the create is forwarded to the leader.
    let out = example(
        &[
            "--endpoint",
            &follower,
            "--name",
            "py-example",
            "--task",
            TASK,
            "--every",
            "1s",
            "--runs",
            "3",
            "--timeout",
            "60",
        ],
        &[("BELFRY_TOKEN", ADMIN_TOKEN)],
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "example failed ({}):\n{stdout}\n{}\n{}",
        out.status,
        text(&out.stderr),
        cluster.log_text()
    );
    let printed = printed_runs(&stdout);
    assert!(printed.len() >= 3, "fewer than 3 runs printed:\n{stdout}");
    for pair in printed.windows(2) {
        let step = pair[1].scheduled_at - pair[0].scheduled_at;
        assert!(
            step >= chrono::Duration::seconds(1) && step.subsec_nanos() == 0,
            "runs of a 1s interval are whole seconds apart, oldest first:\n{stdout}"
        );
    }

    // The schedule as the API stores it.
    let stored = runtime
        .block_on(api.get_schedule(pb::GetScheduleRequest {
            name: "py-example".into(),
        }))
        .expect("the example's schedule exists")
        .into_inner();
    let def = stored.definition.expect("definition");
    assert_eq!(def.task, TASK);
    assert_eq!(def.spec.expect("spec").every, "1s");
    assert_eq!(
        def.labels.get("example").map(String::as_str),
        Some("python")
    );
    assert_eq!(def.enabled, Some(true));

    // Every printed run is in the history with the same instant and outcome.
    let history = runtime
        .block_on(api.list_runs(pb::ListRunsRequest {
            name: "py-example".into(),
        }))
        .expect("list runs")
        .into_inner()
        .runs;
    for run in &printed {
        let recorded = history
            .iter()
            .find(|r| r.task_id == run.task_id)
            .unwrap_or_else(|| panic!("{run:?} is not in the history {history:?}"));
        assert_eq!(from_pb(recorded.scheduled_at.as_ref()), run.scheduled_at);
        assert_eq!(
            pb::RunOutcome::try_from(recorded.outcome)
                .expect("outcome")
                .as_str_name(),
            format!("RUN_OUTCOME_{}", run.outcome)
        );
        assert!(
            ["SENT", "ALREADY_SENT"].contains(&run.outcome.as_str()),
            "{run:?}"
        );
    }

    // And each one is a Celery message in Redis, once, for this schedule.
    let queued = queued_messages(&redis);
    for run in &printed {
        let message = queued
            .get(&run.task_id)
            .unwrap_or_else(|| panic!("{run:?} is not in the celery queue"));
        assert_eq!(message.task, TASK);
        assert_eq!(message.schedule, "py-example");
        assert_eq!(message.scheduled_at, run.scheduled_at);
        assert_eq!(message.args, json!(["py-example"]));
        assert_eq!(message.kwargs, json!({"source": "python-example"}));
    }

    // A wrong token: a one-line UNAUTHENTICATED error, a failure status, nothing created.
    let out = example(
        &[
            "--endpoint",
            &follower,
            "--token",
            "not-a-token",
            "--name",
            "py-denied",
        ],
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "a wrong token succeeded: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: UNAUTHENTICATED: "), "{stderr}");
    let denied = runtime
        .block_on(api.get_schedule(pb::GetScheduleRequest {
            name: "py-denied".into(),
        }))
        .expect_err("no schedule from a rejected call");
    assert_eq!(denied.code(), Code::NotFound);

    // `--cleanup` deletes what it created (the endpoint from the environment this time).
    let out = example(
        &["--name", "py-cleanup", "--runs", "1", "--cleanup"],
        &[
            ("BELFRY_ENDPOINT", &follower),
            ("BELFRY_TOKEN", ADMIN_TOKEN),
        ],
    );
    assert!(
        out.status.success(),
        "cleanup run failed: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("deleted 'py-cleanup'"));
    let gone = runtime
        .block_on(api.get_schedule(pb::GetScheduleRequest {
            name: "py-cleanup".into(),
        }))
        .expect_err("the schedule was deleted");
    assert_eq!(gone.code(), Code::NotFound);
}
