//! API measurements against a real three-node cluster of `belfry server` processes (fsync on,
//! as in production):
//!
//! - `cargo bench --bench api -- creates [CLIENTS] [SECONDS] [all|leader] [cron|every]`:
//!   schedule creates per second through `CreateSchedule`, CLIENTS concurrent callers spread
//!   over the three nodes (two thirds of the writes forwarded by a follower) or all calling the
//!   leader, with latency percentiles. `cron` schedules (daily at 03:00) are only stored during
//!   the run; `every` schedules (hourly, anchored at creation) also fire once each as they are
//!   created, so the cluster dispatches as many messages as it stores schedules.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belfry::api::pb;
use support::procs::{Clients, ADMIN_TOKEN};
use support::RedisServer;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn schedule(name: String, kind: &str) -> pb::ScheduleSpec {
    let spec = if kind == "every" {
        pb::Spec {
            every: "1h".into(),
            ..Default::default()
        }
    } else {
        pb::Spec {
            cron: "0 3 * * *".into(),
            ..Default::default()
        }
    };
    pb::ScheduleSpec {
        name,
        task: "bench.tick".into(),
        spec: Some(spec),
        args_json: "[1, 2]".into(),
        ..Default::default()
    }
}

fn creates(clients: usize, seconds: u64, target: &str, kind: &'static str) {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    // `leader`: every client calls the leader; otherwise they are spread over all nodes.
    let only_leader = target == "leader";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let counter = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (latencies, errors) = runtime.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..clients {
            let node = if only_leader { leader } else { c % 3 };
            let mut api = cluster.client(node, Some(ADMIN_TOKEN)).schedules;
            let counter = counter.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let outcome = api
                        .create_schedule(pb::CreateScheduleRequest {
                            schedule: Some(schedule(format!("bench-{n}"), kind)),
                        })
                        .await;
                    match outcome {
                        Ok(_) => latencies.push(started.elapsed().as_secs_f64() * 1000.0),
                        Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            if let Ok((l, e)) = task.await {
                all.extend(l);
                errors += e;
            }
        }
        (all, errors)
    });
    let mut sorted = latencies;
    sorted.sort_by(f64::total_cmp);
    println!(
        "creates: {clients} clients ({target}, {kind}), {seconds} s: {} created ({:.0}/s), {errors} errors; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        sorted.len(),
        sorted.len() as f64 / seconds as f64,
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
        sorted.last().copied().unwrap_or(f64::NAN),
    );
}

fn main() {
    let Some(args) = support::bench_args() else {
        return;
    };
    let num = |i: usize, default: u64| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("creates") => creates(
            num(1, 64) as usize,
            num(2, 20),
            args.get(3).map_or("all", String::as_str),
            if args.get(4).is_some_and(|k| k == "every") {
                "every"
            } else {
                "cron"
            },
        ),
        _ => {
            eprintln!(
                "usage: cargo bench --bench api -- creates [CLIENTS] [SECONDS] [all|leader] [cron|every]"
            )
        }
    }
}
