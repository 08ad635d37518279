//! Pushes per second through the idempotent Lua script to a local `redis-server`, pipelined:
//! `cargo bench --bench redis_push`. Starts and stops its own server on a free port.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use belfry::celery::{Encoder, KombuLayout, Occurrence, TaskOptions};
use belfry::dispatch::{Push, RedisSink, SinkConfig};
use chrono::Utc;
use serde_json::{json, Map};
use uuid::Uuid;

const MESSAGES: usize = 200_000;

fn main() {
    // `cargo test --benches` runs bench targets in test mode; a full run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let server = support::RedisServer::start().expect("start redis-server");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let sink = RedisSink::new(&SinkConfig::new(server.url(0))).expect("sink");
    let encoder = Encoder {
        origin: "belfry-bench@host".into(),
        layout: KombuLayout::default(),
    };
    let args = vec![json!(1), json!("x")];
    let kwargs = Map::new();
    let now = Utc::now();
    let messages: Vec<Push> = (0..MESSAGES)
        .map(|i| {
            let task_id = Uuid::from_u128(i as u128 + 1);
            let occurrence = Occurrence {
                task: "tasks.tick",
                task_id,
                args: &args,
                kwargs: &kwargs,
                schedule: "bench",
                scheduled_at: now,
                trigger: belfry::celery::Trigger::Schedule,
            };
            let encoded = encoder
                .encode(&occurrence, &TaskOptions::default())
                .expect("encode");
            Push {
                task_id,
                list_key: encoded.list_key,
                payload: encoded.payload,
            }
        })
        .collect();
    for batch_size in [100usize, 1_000, 5_000] {
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut server.conn(0).expect("connect to the test redis-server"))
            .expect("flush");
        let started = Instant::now();
        for chunk in messages.chunks(batch_size) {
            runtime.block_on(sink.push_batch(chunk)).expect("push");
        }
        let elapsed = started.elapsed();
        let queued: usize = redis::cmd("LLEN")
            .arg("celery")
            .query(&mut server.conn(0).expect("connect to the test redis-server"))
            .expect("llen");
        assert_eq!(queued, MESSAGES);
        println!(
            "redis_push batch={batch_size:>5}: {MESSAGES} messages in {:.3} s = {:>9.0} pushes/s",
            elapsed.as_secs_f64(),
            MESSAGES as f64 / elapsed.as_secs_f64()
        );
    }
}
