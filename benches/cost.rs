//! What a fire costs, with real `belfry server` processes (fsync on) and a real `redis-server`:
//!
//! `cargo bench --bench cost -- [SCHEDULES] [EVERY_SECS] [SECONDS]` (default 10,000, 10, 60):
//! SCHEDULES intervals of EVERY_SECS, their anchors spread evenly over the interval, so
//! SCHEDULES / EVERY_SECS fires a second arrive at a steady pace. After a warm-up of two
//! intervals it measures, over SECONDS: the fires pushed per second, the Raft entries committed
//! per second, Redis's commands per second, and the CPU of the leader and of each follower from
//! `/proc`, with the CPU per fire across the cluster. A thread empties the queue as it fills, so
//! Redis does not grow. The processes' ids are printed first, for a profiler to attach to.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DurationRound, TimeDelta, Utc};
use support::procs::ProcCluster;
use support::{cpu_seconds, RedisServer};

const QUEUE: &str = "bench";

/// Redis's `total_commands_processed`.
fn redis_commands(conn: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(conn)
        .unwrap_or_default();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Empties the queue as it fills, until `stop`.
fn drain(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
            return;
        };
        while !stop.load(Ordering::Relaxed) {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(QUEUE).query(&mut conn);
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

fn pushed(cluster: &ProcCluster, leader: usize) -> f64 {
    support::metrics::value(
        cluster,
        leader,
        "belfry_dispatches_total{outcome=\"pushed\"}",
    )
}

fn run(n: usize, every_secs: i64, seconds: u64) {
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(20);
    let mut cluster: ProcCluster = support::procs::start(
        3,
        &redis.url(0),
        &support::interval_schedules(n, every_secs, (t0, true), QUEUE),
        "",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let drainer = drain(redis.url(0), stop.clone());
    let leader = cluster
        .wait_for_leader(Duration::from_secs(120))
        .expect("a leader");
    let pids: Vec<u32> = (0..3).map(|i| cluster.pid(i)).collect();
    println!(
        "cost: leader pid {}, follower pids {:?}",
        pids[leader],
        (0..3)
            .filter(|i| *i != leader)
            .map(|i| pids[i])
            .collect::<Vec<_>>()
    );
    while Utc::now() < t0 + TimeDelta::seconds(2 * every_secs) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut conn = redis::Client::open(redis.url(0))
        .and_then(|c| c.get_connection())
        .expect("connect to redis");
    let cpu0: Vec<f64> = pids.iter().map(|p| cpu_seconds(*p)).collect();
    let pushed0 = pushed(&cluster, leader);
    let commit0 = support::metrics::value(&cluster, leader, "belfry_raft_commit_index");
    let commands0 = redis_commands(&mut conn);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu0)
        .map(|(p, c0)| (cpu_seconds(*p) - c0) / elapsed * 100.0)
        .collect();
    let fires = (pushed(&cluster, leader) - pushed0) / elapsed;
    let entries =
        (support::metrics::value(&cluster, leader, "belfry_raft_commit_index") - commit0) / elapsed;
    let commands = (redis_commands(&mut conn) - commands0) / elapsed;
    let total: f64 = cpu.iter().sum();
    let followers: Vec<String> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| format!("{:.1}%", cpu[i]))
        .collect();
    println!(
        "cost schedules={n} every={every_secs}s over {elapsed:.0} s: {fires:.0} fires/s, \
         {entries:.0} Raft entries/s, {commands:.0} Redis commands/s; CPU leader {:.1}% of a \
         core, followers {}, cluster {total:.1}%: {:.0} µs of CPU per fire",
        cpu[leader],
        followers.join(" and "),
        if fires > 0.0 {
            total / 100.0 / fires * 1e6
        } else {
            f64::NAN
        },
    );
    stop.store(true, Ordering::Relaxed);
    let _ = drainer.join();
    cluster.shutdown(Duration::from_secs(10));
}

fn main() {
    let Some(args) = support::bench_args() else {
        return;
    };
    let num = |i: usize, default: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    run(
        num(0, 10_000) as usize,
        num(1, 10).max(1) as i64,
        num(2, 60),
    );
}
