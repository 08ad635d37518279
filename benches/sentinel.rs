//! What a Redis failover costs without `min_replicas`, measured with real processes: three
//! `belfry server` nodes (release build) pushing through Redis Sentinel (a master, one replica,
//! three sentinels) with no `min_replicas`, under a steady load.
//!
//! `cargo bench --bench sentinel -- loss [SCHEDULES] [TRIALS]`: SCHEDULES one-second schedules
//! spread over the second (3,000 by default); TRIALS times (5), after 5 s of steady dispatch,
//! the master is SIGKILLed and the sentinels promote the replica. Nothing consumes the queue
//! during a trial: once dispatch has gone on past the trial's window on the new master, its
//! list is read whole, and every occurrence scheduled from the trial's start to 2 s after the
//! kill must be there. One that is not was pushed to the old master (belfry counted it as
//! pushed, so it is never pushed again) and had not reached the replica when the master died:
//! lost. Then the list is emptied, the killed server comes back as a replica of the new master
//! and the next trial begins.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::Duration;

use belfry_kit::consumer::decode;
use belfry_kit::sentinel::{info, SentinelOptions, SentinelTopology};
use belfry_kit::Schedule;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};

const QUEUE: &str = "bench";

/// Schedule `i` of `n` fires every second at `t0` + i/n s.
fn anchor(t0: DateTime<Utc>, i: usize, n: usize) -> DateTime<Utc> {
    t0 + TimeDelta::milliseconds((i as i64 * 1000) / n as i64)
}

fn schedules(n: usize, t0: DateTime<Utc>) -> String {
    (0..n)
        .map(|i| {
            Schedule::new(&format!("s{i}"), "bench.tick")
                .every("1s")
                .start_at(anchor(t0, i, n))
                .queue(QUEUE)
                .to_toml()
        })
        .collect()
}

fn wait_until(at: DateTime<Utc>) {
    while Utc::now() < at {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every occurrence scheduled in `[from, to]`, by (schedule, instant).
fn expected(
    n: usize,
    t0: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    let mut out = Vec::new();
    for i in 0..n {
        let first = anchor(t0, i, n);
        let mut at =
            first + TimeDelta::seconds(((from - first).num_milliseconds().max(0) + 999) / 1000);
        while at <= to {
            if at >= from {
                out.push((format!("s{i}"), at));
            }
            at += TimeDelta::seconds(1);
        }
    }
    out
}

/// A number field of `INFO replication` of the server on `port`.
fn replication_field(port: u16, key: &str) -> Option<i64> {
    info(port, "replication")
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .parse()
        .ok()
}

/// How far the replica trailed the master, in bytes of the replication stream: the master's
/// offset, then the replica's own (read a moment later, so never an overestimate).
fn replica_lag(topology: &SentinelTopology, master: usize) -> Option<i64> {
    let servers = topology.servers();
    let replica = (0..servers.len()).find(|s| *s != master && servers[*s].redis.is_running())?;
    let master_offset = replication_field(servers[master].redis.port, "master_repl_offset:")?;
    let replica_offset = replication_field(servers[replica].redis.port, "slave_repl_offset:")?;
    Some((master_offset - replica_offset).max(0))
}

/// The replica's link to the master as it reports it (`up`, or `down` during a resync).
fn replica_link(topology: &SentinelTopology, master: usize) -> String {
    let servers = topology.servers();
    (0..servers.len())
        .find(|s| *s != master && servers[*s].redis.is_running())
        .and_then(|replica| {
            info(servers[replica].redis.port, "replication")
                .lines()
                .find_map(|l| l.strip_prefix("master_link_status:"))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn loss(n: usize, trials: usize) {
    let mut topology =
        SentinelTopology::start(SentinelOptions::new(1)).expect("a sentinel topology");
    let t0 = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(20);
    let config = format!("[redis]\nmaster_name = \"{}\"\n", topology.master_name());
    let mut cluster = support::procs::start(3, &topology.url(0), &schedules(n, t0), &config);
    cluster
        .wait_for_leader(Duration::from_secs(60))
        .expect("a leader");
    let mut from = t0 + TimeDelta::seconds(5);
    let (mut total_expected, mut total_lost) = (0usize, 0usize);
    let mut per_trial = Vec::new();
    for trial in 1..=trials {
        wait_until(from + TimeDelta::seconds(5));
        let master = topology.master().expect("a master");
        let link = replica_link(&topology, master);
        let lag = replica_lag(&topology, master);
        let killed_at = Utc::now();
        let (old, new) = topology
            .kill_master_and_wait_for_failover()
            .expect("a failover");
        let failover = Utc::now() - killed_at;
        let to = killed_at + TimeDelta::seconds(2);
        let mut conn = topology.servers()[new]
            .redis
            .conn(0)
            .expect("connect to the new master");
        // Pushes go out in instant order: once one after the window is in, the window is done.
        support::wait_for("dispatch past the window", Duration::from_secs(120), || {
            let newest: Vec<String> = redis::cmd("LRANGE")
                .arg(QUEUE)
                .arg(0)
                .arg(0)
                .query(&mut conn)
                .ok()?;
            let newest = decode(QUEUE, newest.first()?, Utc::now()).ok()?;
            (newest.scheduled_at > to + TimeDelta::seconds(1)).then_some(())
        });
        let payloads: Vec<String> = redis::cmd("LRANGE")
            .arg(QUEUE)
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .expect("read the queue");
        let mut seen: HashMap<(String, DateTime<Utc>), usize> = HashMap::new();
        for payload in &payloads {
            if let Ok(a) = decode(QUEUE, payload, Utc::now()) {
                *seen.entry((a.schedule, a.scheduled_at)).or_default() += 1;
            }
        }
        let want = expected(n, t0, from, to);
        let lost: Vec<&(String, DateTime<Utc>)> =
            want.iter().filter(|k| !seen.contains_key(*k)).collect();
        let duplicated = want
            .iter()
            .filter(|k| seen.get(*k).is_some_and(|c| *c > 1))
            .count();
        let before_kill_ms = |at: &DateTime<Utc>| (killed_at - *at).num_milliseconds();
        println!(
            "trial {trial}: master SIGKILLed {} ms into the second, replica (link {link}) {} bytes behind just before; \
             failover (and the sentinels settled) {:.1} s; {} occurrences from {} to 2 s after the kill: {} lost{}, {duplicated} duplicated",
            killed_at.timestamp_subsec_millis(),
            lag.map_or("?".to_string(), |b| b.to_string()),
            failover.num_milliseconds() as f64 / 1000.0,
            want.len(),
            from.format("%H:%M:%S"),
            lost.len(),
            match (lost.iter().map(|(_, at)| before_kill_ms(at)).max(), lost.iter().map(|(_, at)| before_kill_ms(at)).min()) {
                (Some(early), Some(late)) => format!(" (scheduled {late} to {early} ms before the kill)"),
                _ => String::new(),
            }
        );
        total_expected += want.len();
        total_lost += lost.len();
        per_trial.push(lost.len());
        // Empty the queue, bring the killed server back in sync, and start the next window
        // after the emptying.
        let _: () = redis::cmd("DEL")
            .arg(QUEUE)
            .query(&mut conn)
            .expect("empty the queue");
        from = Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap() + TimeDelta::seconds(2);
        topology
            .restart_as_replica(old)
            .expect("the killed server back as a replica");
    }
    println!(
        "sentinel loss, {n} one-second schedules, no min_replicas: {total_lost} of {total_expected} \
         occurrences lost over {trials} master kills (per trial {per_trial:?})"
    );
    cluster.kill_all();
}

fn main() {
    let Some(args) = support::bench_args() else {
        return;
    };
    let num =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("loss") => loss(num(1, 3_000), num(2, 5)),
        _ => eprintln!("usage: cargo bench --bench sentinel -- loss [SCHEDULES] [TRIALS]"),
    }
}
