//! End to end with a real Celery worker: belfry renders and pushes occurrences, the worker
//! executes them, and the result backend proves exactly those task ids ran, with exactly those
//! arguments, once each; the expired one was revoked; a duplicate push was delivered once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use belfry::celery::{Encoder, Expires, KombuLayout, Occurrence, TaskOptions};
use belfry::dispatch::{occurrence_task_id, Push, PushOutcome, RedisSink, SinkConfig};
use chrono::{DateTime, Utc};
use redis::Commands;
use serde_json::{json, Map, Value};
use support::{wait_for, CeleryWorker, RedisServer};
use uuid::Uuid;

struct Planned {
    task: &'static str,
    schedule: &'static str,
    scheduled_at: DateTime<Utc>,
    args: Vec<Value>,
    kwargs: Map<String, Value>,
    options: TaskOptions,
    expect_revoked: bool,
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn big(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn plan() -> Vec<Planned> {
    let kwargs = |v: Value| v.as_object().unwrap().clone();
    let far_future = Expires::At(at("2099-01-01T00:00:00Z"));
    let mut planned = Vec::new();
    // A series of occurrences of one schedule on the default queue.
    for minute in 0..3 {
        planned.push(Planned {
            task: "belfry_test.record",
            schedule: "every-minute",
            scheduled_at: at("2025-06-01T12:00:00Z") + chrono::Duration::minutes(minute),
            args: vec![json!(minute), json!("ünïcödé ✓ 😀"), json!(18446744073709551615u64)],
            kwargs: kwargs(json!({"huge": big("123456789012345678901234567890"), "neg": -9223372036854775808i64})),
            options: TaskOptions::default(),
            expect_revoked: false,
        });
    }
    // Other queues and priority buckets.
    planned.push(Planned {
        task: "belfry_test.report",
        schedule: "reports",
        scheduled_at: at("2025-06-01T12:00:00Z"),
        args: vec![json!({"nested": [1, 2.5, null, true]})],
        kwargs: kwargs(json!({"ключ": "значение", "quote": "it's \"quoted\""})),
        options: TaskOptions {
            queue: Some("reports".into()),
            priority: Some(9),
            expires: Some(far_future.clone()),
            time_limit: Some(30.0),
            soft_time_limit: Some(20.0),
            ..Default::default()
        },
        expect_revoked: false,
    });
    planned.push(Planned {
        task: "belfry_test.record",
        schedule: "prioritised",
        scheduled_at: at("2025-06-01T12:00:00Z"),
        args: vec![],
        kwargs: Map::new(),
        options: TaskOptions {
            routing_key: Some("reports".into()),
            priority: Some(4),
            ..Default::default()
        },
        expect_revoked: false,
    });
    planned.push(Planned {
        task: "belfry_test.record",
        schedule: "high",
        scheduled_at: at("2025-06-01T12:00:00Z"),
        args: vec![json!(-1)],
        kwargs: Map::new(),
        options: TaskOptions {
            priority: Some(6),
            expires: Some(Expires::AfterSeconds(100.0 * 365.0 * 86400.0)),
            ..Default::default()
        },
        expect_revoked: false,
    });
    // Already expired when it reaches the worker: Celery must revoke it.
    planned.push(Planned {
        task: "belfry_test.record",
        schedule: "stale",
        scheduled_at: at("2025-06-01T12:00:00Z"),
        args: vec![json!("never runs")],
        kwargs: Map::new(),
        options: TaskOptions {
            expires: Some(Expires::AfterSeconds(60.0)),
            ..Default::default()
        },
        expect_revoked: true,
    });
    planned
}

#[test]
fn a_real_worker_runs_exactly_what_was_pushed_once() {
    let redis = RedisServer::start().expect("start redis-server");
    let cluster = Uuid::from_u128(0xbe1f);
    let encoder = Encoder {
        origin: "belfry-test@localhost".into(),
        layout: KombuLayout::default(),
    };
    let planned = plan();
    let mut pushes = Vec::new();
    let mut expected = BTreeMap::new();
    for (i, p) in planned.iter().enumerate() {
        p.options.validate().unwrap();
        let incarnation = Uuid::from_u128(1000 + i as u128);
        let task_id = occurrence_task_id(cluster, incarnation, p.scheduled_at);
        let occurrence = Occurrence {
            task: p.task,
            task_id,
            args: &p.args,
            kwargs: &p.kwargs,
            schedule: p.schedule,
            scheduled_at: p.scheduled_at,
            trigger: belfry::celery::Trigger::Schedule,
        };
        let encoded = encoder.encode(&occurrence, &p.options).unwrap();
        pushes.push(Push {
            task_id,
            list_key: encoded.list_key,
            payload: encoded.payload,
        });
        expected.insert(task_id.to_string(), p);
    }
    assert_eq!(expected.len(), planned.len(), "task ids must be distinct");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let sink = RedisSink::new(&SinkConfig::new(redis.url(0))).unwrap();
    let first = runtime.block_on(sink.push_batch(&pushes)).unwrap();
    assert!(first.iter().all(|o| *o == PushOutcome::Delivered));
    // The same task ids again, as a retry or a second leader would: nothing new is queued.
    let second = runtime.block_on(sink.push_batch(&pushes)).unwrap();
    assert!(second.iter().all(|o| *o == PushOutcome::AlreadySent));

    let mut worker = CeleryWorker::start(&redis.url(0), &redis.url(1), &["celery", "reports"]);
    let mut results = redis.conn(1).expect("connect to the test redis-server");
    let stored: BTreeMap<String, Value> =
        wait_for("every task's result", Duration::from_secs(90), || {
            let mut found = BTreeMap::new();
            for id in expected.keys() {
                let raw: Option<String> = results.get(format!("celery-task-meta-{id}")).ok()?;
                found.insert(id.clone(), serde_json::from_str(&raw?).ok()?);
            }
            Some(found)
        });
    // Drained: no message left in any list, none held unacknowledged by the worker.
    let mut broker = redis.conn(0).expect("connect to the test redis-server");
    wait_for("the queues to drain", Duration::from_secs(30), || {
        let keys: Vec<String> = broker.keys("*").ok()?;
        let busy = keys
            .iter()
            .any(|k| k.starts_with("celery") || k.starts_with("reports") || k == "unacked");
        (!busy).then_some(())
    });
    worker.stop();

    // No other task ran.
    let all_results: BTreeSet<String> = results
        .keys::<_, Vec<String>>("celery-task-meta-*")
        .unwrap()
        .into_iter()
        .map(|k| k.trim_start_matches("celery-task-meta-").to_string())
        .collect();
    assert_eq!(
        all_results,
        expected.keys().cloned().collect::<BTreeSet<_>>()
    );

    let log = worker.log_text();
    for (id, p) in &expected {
        let meta = &stored[id];
        if p.expect_revoked {
            assert_eq!(meta["status"], "REVOKED", "{id}: {meta}");
            assert_eq!(meta["result"]["exc_type"], "TaskRevokedError");
            assert_eq!(meta["result"]["exc_message"], json!(["expired"]));
            continue;
        }
        assert_eq!(meta["status"], "SUCCESS", "{id}: {meta}\n{log}");
        let got = &meta["result"];
        assert_eq!(got["task_id"], json!(id));
        assert_eq!(got["args"], Value::Array(p.args.clone()), "{id}");
        assert_eq!(got["kwargs"], Value::Object(p.kwargs.clone()), "{id}");
        assert_eq!(got["belfry_schedule"], p.schedule);
        assert_eq!(
            got["belfry_scheduled_at"],
            p.scheduled_at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        );
        assert_eq!(got["queue"], p.options.queue());
        assert_eq!(got["priority"], p.options.priority.unwrap_or(0));
        // Executed once: the worker logs one success per execution.
        let successes = log.matches(&format!("[{id}] succeeded")).count();
        assert_eq!(successes, 1, "{id} ran {successes} times\n{log}");
    }
}
