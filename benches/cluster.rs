//! Cluster measurements with real `belfry server` processes and a real `redis-server`:
//!
//! - `cargo bench --bench cluster -- lag [SCHEDULES] [SECONDS]`: dispatch lateness (scheduled
//!   instant → message in Redis) with SCHEDULES one-minute intervals spread over the minute,
//!   and with all of them due at the same second.
//! - `cargo bench --bench cluster -- failover [TRIALS]`: SIGKILL of the leader → first message
//!   pushed by the new leader.
//! - `cargo bench --bench cluster -- memory [SCHEDULES]`: resident memory per schedule.
//! - `cargo bench --bench cluster -- memory-history [SCHEDULES]`: the same once every schedule
//!   has run ten times, so each keeps a full history of recent runs.
//! - `cargo bench --bench cluster -- throughput [SCHEDULES] [SECONDS]`: sustained fires per
//!   second committed and pushed, with SCHEDULES one-second intervals.
//! - `cargo bench --bench cluster -- outage [SCHEDULES] [MINUTES]`: SCHEDULES every-minute
//!   schedules and Redis down for MINUTES: each node's peak resident memory, the outbox at its
//!   bound, the drain time once Redis is back, and every occurrence delivered once or skipped.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use belfry_kit::Schedule;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use support::procs::{Arrival, Clients, Consumer, ProcCluster};
use support::RedisServer;

const QUEUE: &str = "bench";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn wait_until(at: DateTime<Utc>) {
    while Utc::now() < at {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lateness_ms(arrivals: &[Arrival], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<f64> {
    let mut ms: Vec<f64> = arrivals
        .iter()
        .filter(|a| a.scheduled_at >= from && a.scheduled_at < to)
        .map(|a| {
            (a.arrived_at - a.scheduled_at)
                .num_microseconds()
                .unwrap_or(0) as f64
                / 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ms
}

fn lag(n: usize, seconds: i64) {
    for spread in [true, false] {
        let redis = RedisServer::start().expect("start redis-server");
        let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(20);
        let mut cluster = support::procs::start(
            3,
            &redis.url(0),
            &support::interval_schedules(n, 60, (t0, spread), QUEUE),
            "",
        );
        let consumer = Consumer::batch(&redis.url(0), QUEUE);
        cluster
            .wait_for_leader(Duration::from_secs(60))
            .expect("a leader");
        // Measure after the first full minute, once every schedule is planned steadily.
        let from = t0 + TimeDelta::seconds(60);
        let to = from + TimeDelta::seconds(seconds);
        wait_until(to + TimeDelta::seconds(5));
        let ms = lateness_ms(&consumer.arrivals(), from, to);
        println!(
            "lag schedules={n} {}: {} dispatches, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            if spread {
                "spread over the minute"
            } else {
                "all due at the same second"
            },
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN)
        );
    }
}

fn failover(trials: usize) {
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(3);
    let mut cluster = support::procs::start(
        3,
        &redis.url(0),
        &support::interval_schedules(10, 1, (t0, true), QUEUE),
        "",
    );
    let consumer = Consumer::batch(&redis.url(0), QUEUE);
    let mut times = Vec::new();
    for trial in 0..trials {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(60))
            .expect("a leader");
        wait_until(Utc::now() + TimeDelta::seconds(3));
        let killed_at = Utc::now();
        cluster.kill(leader);
        let old_origin = format!("belfry-{}@", cluster.nodes[leader].id);
        let first = support::wait_for(
            "a dispatch by the new leader",
            Duration::from_secs(60),
            || {
                consumer
                    .arrivals()
                    .iter()
                    .filter(|a| a.arrived_at > killed_at && !a.origin.starts_with(&old_origin))
                    .map(|a| a.arrived_at)
                    .min()
            },
        );
        let ms = (first - killed_at).num_milliseconds() as f64;
        println!("failover trial {}: {ms:.0} ms", trial + 1);
        times.push(ms);
        cluster.spawn(leader).expect("start a node");
    }
    times.sort_by(|a, b| a.total_cmp(b));
    println!(
        "failover over {trials} trials: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or(f64::NAN)
    );
}

/// The resident size after a minute at rest: after bulk work the server gives freed heap back
/// to the system in passes over the following seconds (see `heap.rs`), and a node at rest is
/// what is measured.
fn resting_rss_kib(pid: u32) -> u64 {
    std::thread::sleep(Duration::from_secs(60));
    support::rss_kib(pid)
}

/// The resident size of a one-node cluster with no schedules, at rest.
fn empty_node_rss_kib(redis: &RedisServer) -> u64 {
    let mut empty = support::procs::start(1, &redis.url(0), "", "");
    empty
        .wait_for_leader(Duration::from_secs(60))
        .expect("a leader");
    resting_rss_kib(empty.pid(0))
}

/// What node 0's allocator holds, from its own gauges.
fn heap_report(cluster: &ProcCluster) -> String {
    let mib = |name| support::metrics::value(cluster, 0, name) / f64::from(1 << 20);
    format!(
        "heap {:.1} MiB allocated, {:.1} MiB free",
        mib("belfry_heap_allocated_bytes"),
        mib("belfry_heap_free_bytes")
    )
}

fn bytes_per_schedule(base_kib: u64, loaded_kib: u64, n: usize) -> f64 {
    (loaded_kib.saturating_sub(base_kib) as f64 * 1024.0) / n as f64
}

fn memory(n: usize) {
    let redis = RedisServer::start().expect("start redis-server");
    // Yearly schedules: nothing fires while memory is measured.
    let toml: String = (0..n)
        .map(|i| {
            Schedule::new(&format!("s{i}"), "bench.yearly")
                .cron("0 0 1 1 *")
                .args(serde_json::json!([i]))
                .to_toml()
        })
        .collect();
    let base = empty_node_rss_kib(&redis);
    let mut cluster = support::procs::start(1, &redis.url(0), &toml, "");
    cluster
        .wait_for_leader(Duration::from_secs(60))
        .expect("a leader");
    support::wait_for("the schedules to load", Duration::from_secs(1800), || {
        cluster
            .log_lines(0)
            .iter()
            .any(|l| l["fields"]["message"] == "schedules file reconciled")
            .then_some(())
    });
    let loaded = resting_rss_kib(cluster.pid(0));
    println!(
        "memory schedules={n}: {base} KiB empty, {loaded} KiB loaded, {:.0} bytes per schedule; {}",
        bytes_per_schedule(base, loaded, n),
        heap_report(&cluster)
    );
}

fn memory_with_history(n: usize) {
    const RUNS: usize = 10;
    let redis = RedisServer::start().expect("start redis-server");
    let base = empty_node_rss_kib(&redis);
    // Ten-second intervals spread over ten seconds (10,000 fires/s at 100,000 schedules, within
    // what a node sustains, so no backlog inflates the heap), each ending after exactly RUNS
    // occurrences; written only now, so that every instant lies ahead of the loaded node's start.
    const EVERY_SECS: i64 = 10;
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(30);
    let toml: String = (0..n)
        .map(|i| {
            let start = t0 + TimeDelta::milliseconds((i as i64 * EVERY_SECS * 1000) / n as i64);
            Schedule::new(&format!("s{i}"), "bench.tick")
                .every(&format!("{EVERY_SECS}s"))
                .start_at(start)
                .end_at(start + TimeDelta::seconds(EVERY_SECS * RUNS as i64))
                .args(serde_json::json!([i]))
                .queue(QUEUE)
                .to_toml()
        })
        .collect();
    let mut cluster = support::procs::start(1, &redis.url(0), &toml, "");
    cluster
        .wait_for_leader(Duration::from_secs(60))
        .expect("a leader");
    let mut redis_conn = redis::Client::open(redis.url(0))
        .and_then(|c| c.get_connection())
        .expect("connect to redis");
    let expected = n * RUNS;
    let mut queued = 0usize;
    support::wait_for(
        "every run to reach Redis",
        Duration::from_secs(1800),
        || {
            // Messages are counted and dropped as they come, so Redis does not hold them all.
            let (len, _): (usize, ()) = redis::pipe()
                .atomic()
                .cmd("LLEN")
                .arg(QUEUE)
                .cmd("LTRIM")
                .arg(QUEUE)
                .arg(1)
                .arg(0)
                .query(&mut redis_conn)
                .ok()?;
            queued += len;
            (queued >= expected).then_some(())
        },
    );
    let loaded = resting_rss_kib(cluster.pid(0));
    println!(
        "memory schedules={n} after {RUNS} runs each ({queued} messages): {base} KiB empty, {loaded} KiB, {:.0} bytes per schedule; {}",
        bytes_per_schedule(base, loaded, n),
        heap_report(&cluster)
    );
}

fn throughput(n: usize, seconds: i64) {
    let redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(20);
    let mut cluster = support::procs::start(
        3,
        &redis.url(0),
        &support::interval_schedules(n, 1, (t0, true), QUEUE),
        "",
    );
    let consumer = Consumer::batch(&redis.url(0), QUEUE);
    cluster
        .wait_for_leader(Duration::from_secs(60))
        .expect("a leader");
    let from = t0 + TimeDelta::seconds(10);
    let to = from + TimeDelta::seconds(seconds);
    wait_until(to + TimeDelta::seconds(10));
    let arrivals = consumer.arrivals();
    let in_window = arrivals
        .iter()
        .filter(|a| a.arrived_at >= from && a.arrived_at < to)
        .count();
    let ms = lateness_ms(&arrivals, from, to);
    println!(
        "throughput schedules={n} (every 1s): {:.0} fires/s pushed over {seconds} s, lateness p50 {:.1} ms, p99 {:.1} ms",
        in_window as f64 / seconds as f64,
        percentile(&ms, 0.5),
        percentile(&ms, 0.99)
    );
}

/// Occurrences of an every-minute schedule starting at `start`, up to and including `last`.
fn minutes_between(start: DateTime<Utc>, last: DateTime<Utc>) -> u64 {
    if last < start {
        0
    } else {
        ((last - start).num_seconds() / 60) as u64 + 1
    }
}

/// Every schedule's counters, through the API, a page at a time: (fired, skipped, expected).
fn counters(cluster: &ProcCluster, leader: usize, starts: &[DateTime<Utc>]) -> (u64, u64, u64) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let mut api = cluster
            .client(leader, Some(support::procs::READONLY_TOKEN))
            .schedules;
        let (mut fired, mut skipped, mut expected) = (0, 0, 0);
        let mut page_token = String::new();
        loop {
            let page = api
                .list_schedules(belfry::api::pb::ListSchedulesRequest {
                    page_size: 1_000,
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .expect("list schedules")
                .into_inner();
            for schedule in &page.schedules {
                let name = schedule
                    .definition
                    .as_ref()
                    .map(|d| d.name.as_str())
                    .unwrap_or("");
                let i: usize = name.trim_start_matches('s').parse().expect("s<i>");
                fired += schedule.fired_count;
                skipped += schedule.skipped_count;
                if let Some(last) = &schedule.last_run {
                    let last = DateTime::from_timestamp(last.seconds, last.nanos as u32)
                        .expect("an instant");
                    expected += minutes_between(starts[i], last);
                }
            }
            if page.next_page_token.is_empty() {
                return (fired, skipped, expected);
            }
            page_token = page.next_page_token;
        }
    })
}

fn outage(n: usize, minutes: i64) {
    let mut redis = RedisServer::start().expect("start redis-server");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(60);
    let starts: Vec<DateTime<Utc>> = (0..n)
        .map(|i| t0 + TimeDelta::milliseconds((i as i64 * 60_000) / n as i64))
        .collect();
    let mut cluster = support::procs::start(
        3,
        &redis.url(0),
        &support::interval_schedules(n, 60, (t0, true), QUEUE),
        "",
    );
    let consumer = Consumer::batch(&redis.url(0), QUEUE);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(120))
        .expect("a leader");
    wait_until(t0 + TimeDelta::seconds(120));
    let value = |name: &str| support::metrics::value(&cluster, leader, name);
    // Down with its data saved, as a broker's restart keeps it: belfry's markers survive.
    let _ = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "SHUTDOWN", "SAVE"])
        .status();
    let down_at = std::time::Instant::now();
    println!("outage: Redis down at {} for {minutes} min", Utc::now());
    let mut paused_after = None;
    while down_at.elapsed() < Duration::from_secs(minutes as u64 * 60) {
        if paused_after.is_none() && value("belfry_planning_paused") == 1.0 {
            paused_after = Some(down_at.elapsed());
            println!(
                "outage: planning paused after {:.0} s with {} occurrences in the outbox",
                down_at.elapsed().as_secs_f64(),
                value("belfry_outbox_depth")
            );
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    let peaks: Vec<u64> = (0..3)
        .map(|i| support::peak_rss_kib(cluster.pid(i)))
        .collect();
    redis.restart().expect("restart redis-server");
    let up_at = std::time::Instant::now();
    // Drained: planning runs and nothing in the outbox is older than a second (steady
    // every-minute schedules always keep the next second's occurrences there).
    support::wait_for("the backlog to drain", Duration::from_secs(3600), || {
        (value("belfry_planning_paused") == 0.0 && value("belfry_outbox_oldest_age_seconds") < 1.0)
            .then_some(())
    });
    let drained = up_at.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let (fired, skipped, expected) = counters(&cluster, leader, &starts);
    let arrivals = consumer.arrivals();
    let mut seen = std::collections::HashMap::with_capacity(arrivals.len());
    for a in &arrivals {
        *seen
            .entry((a.schedule.as_str(), a.scheduled_at))
            .or_insert(0u32) += 1;
    }
    let duplicates = seen.values().filter(|n| **n > 1).count();
    let peaks_after: Vec<u64> = (0..3)
        .map(|i| support::peak_rss_kib(cluster.pid(i)))
        .collect();
    println!(
        "outage schedules={n} minutes={minutes}: peak RSS per node {:?} MiB during the outage, {:?} MiB including the drain; drained in {:.1} s; {} messages, {} distinct occurrences, {duplicates} duplicated; fired {fired} + skipped {skipped} = {} of {expected} occurrences up to each schedule's last",
        peaks.iter().map(|k| k / 1024).collect::<Vec<_>>(),
        peaks_after.iter().map(|k| k / 1024).collect::<Vec<_>>(),
        drained.as_secs_f64(),
        arrivals.len(),
        seen.len(),
        fired + skipped,
    );
}

fn main() {
    let Some(args) = support::bench_args() else {
        return;
    };
    let num =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("lag") => lag(num(1, 10_000), num(2, 60) as i64),
        Some("failover") => failover(num(1, 10)),
        Some("memory") => memory(num(1, 100_000)),
        Some("memory-history") => memory_with_history(num(1, 100_000)),
        Some("throughput") => throughput(num(1, 20_000), num(2, 30) as i64),
        Some("outage") => outage(num(1, 100_000), num(2, 30) as i64),
        _ => eprintln!(
            "usage: cargo bench --bench cluster -- lag|failover|memory|memory-history|throughput|outage [N] [SECONDS|MINUTES]"
        ),
    }
}
