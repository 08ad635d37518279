//! The cost of following task outcomes, with real `belfry server` processes and real
//! `redis-server`s (a broker and a separate result backend, so the backend's command counts
//! are belfry's reads alone):
//!
//! `cargo bench --bench outcomes -- [SCHEDULES] [SECONDS] [ROUNDS]`: SCHEDULES every-minute
//! schedules spread over the minute; a stand-in for the workers pops every message and stores a
//! SUCCESS result key for it, as Celery's Redis backend does. Over SECONDS after a warm-up
//! minute, it reports the result backend's calls and keys read per second, the outcomes
//! committed, and the CPU of the leader and of the followers; and the same without `[results]`,
//! for the difference. ROUNDS (default 1) repeats both, alternating which goes first.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use support::procs::ProcCluster;
use support::{cpu_seconds, RedisServer};

const QUEUE: &str = "bench";

/// `calls` of one command in `INFO commandstats`.
fn command_calls(conn: &mut redis::Connection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(conn)
        .unwrap_or_default();
    info.lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Pops every message and stores a SUCCESS result for it, until `stop`.
fn stand_in_worker(
    broker: String,
    backend: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut from = redis::Client::open(broker)
            .and_then(|c| c.get_connection())
            .expect("broker");
        let mut to = redis::Client::open(backend)
            .and_then(|c| c.get_connection())
            .expect("backend");
        let mut stored = 0;
        while !stop.load(Ordering::Relaxed) {
            let popped: Option<Vec<String>> = redis::cmd("LPOP")
                .arg(QUEUE)
                .arg(1000)
                .query(&mut from)
                .ok();
            let popped = popped.unwrap_or_default();
            if popped.is_empty() {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let mut pipe = redis::pipe();
            for payload in &popped {
                let envelope: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
                let Some(id) = envelope["headers"]["id"].as_str() else {
                    continue;
                };
                let meta = serde_json::json!({
                    "status": "SUCCESS", "result": null, "traceback": null, "children": [],
                    "date_done": Utc::now().to_rfc3339(), "task_id": id,
                });
                pipe.cmd("SET")
                    .arg(format!("celery-task-meta-{id}"))
                    .arg(meta.to_string())
                    .arg("EX")
                    .arg(86_400)
                    .ignore();
            }
            let _: redis::RedisResult<()> = pipe.query(&mut to);
            stored += popped.len() as u64;
        }
        stored
    })
}

fn run(n: usize, seconds: u64, follow_outcomes: bool) {
    let broker = RedisServer::start().expect("start the broker");
    let backend = RedisServer::start().expect("start the result backend");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(20);
    let config = if follow_outcomes {
        format!("[results]\nbackend = \"{}\"\n", backend.url(0))
    } else {
        String::new()
    };
    let mut cluster: ProcCluster = support::procs::start(
        3,
        &broker.url(0),
        &support::interval_schedules(n, 60, (t0, true), QUEUE),
        &config,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let worker = stand_in_worker(broker.url(0), backend.url(0), stop.clone());
    let leader = cluster
        .wait_for_leader(Duration::from_secs(120))
        .expect("a leader");
    // A full minute first: every schedule planned and each run followed steadily.
    while Utc::now() < t0 + TimeDelta::seconds(70) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut results = redis::Client::open(backend.url(0))
        .and_then(|c| c.get_connection())
        .expect("backend");
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i)).collect();
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let mget0 = command_calls(&mut results, "mget");
    let reads0 = support::metrics::value(&cluster, leader, "belfry_outcome_reads_total");
    let outcomes0 = support::metrics::value(
        &cluster,
        leader,
        "belfry_task_outcomes_total{state=\"SUCCESS\"}",
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| (cpu_seconds(*p) - c0) / elapsed * 100.0)
        .collect();
    let mgets = (command_calls(&mut results, "mget") - mget0) as f64 / elapsed;
    let reads = (support::metrics::value(&cluster, leader, "belfry_outcome_reads_total") - reads0)
        / elapsed;
    let outcomes = (support::metrics::value(
        &cluster,
        leader,
        "belfry_task_outcomes_total{state=\"SUCCESS\"}",
    ) - outcomes0)
        / elapsed;
    let followed = support::metrics::value(&cluster, leader, "belfry_outcomes_followed");
    let followers: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| format!("{:.1}%", cpu[i]))
        .collect();
    println!(
        "outcomes schedules={n} following={follow_outcomes}: leader CPU {:.1}% of a core, followers {}; \
         result backend {mgets:.1} MGET/s, {reads:.0} keys read/s, {outcomes:.0} outcomes committed/s, {followed:.0} runs followed",
        cpu[leader],
        followers.join(" and "),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = worker.join();
    cluster.shutdown(Duration::from_secs(10));
}

fn main() {
    let Some(args) = support::bench_args() else {
        return;
    };
    let num = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (n, seconds, rounds) = (num(0, 100_000) as usize, num(1, 60), num(2, 1));
    // Each round runs both; the order alternates, so a drift of the machine over time shows as
    // a difference between rounds rather than between the two modes.
    for round in 0..rounds {
        let first = round % 2 == 0;
        run(n, seconds, first);
        run(n, seconds, !first);
    }
}
