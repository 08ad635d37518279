//! The faults on the environment: Redis killed or slowed, the Redis master failed over, and a
//! member's clock stepped.
//!
//! Invariant: every fault that opens a window closes it, with Redis running (after a failover:
//! the killed server back as a replica in sync), the proxy fast and the clock true again. Must
//! not check anything.

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{millis, Draws, Nemesis, Targets};
use crate::broker::{blocking, Broker};
use crate::history::{close_fault, incident, open_fault};

pub(super) async fn redis_kill(t: &Targets, draws: Draws) {
    let name = Nemesis::RedisKill.name();
    let window = open_fault(&t.history, name, "SIGKILL redis-server".into());
    if let Broker::Single(server) = &mut *t.redis.lock().await {
        server.kill();
    }
    tokio::time::sleep(draws.hold).await;
    if let Err(err) = blocking(&t.redis, Broker::heal).await {
        incident(&t.history, format!("{name}: restart: {err}"));
    }
    close_fault(&t.history, window);
}

/// SIGKILLs the master the sentinels name and waits until they have promoted the replica;
/// after the hold, starts the killed server again, empty, as a replica of the new master, and
/// waits until it is in sync and every sentinel counts it, so the next failover has a
/// candidate.
pub(super) async fn redis_failover(t: &Targets, draws: Draws) {
    let name = Nemesis::RedisFailover.name();
    let window = open_fault(&t.history, name, "SIGKILL the Redis master".into());
    let failover = blocking(&t.redis, |b| {
        b.topology()?.kill_master_and_wait_for_failover()
    })
    .await;
    let killed = match failover {
        Ok((old, new)) => {
            let detail = format!("SIGKILL the Redis master (server {old}); server {new} promoted");
            eprintln!("{}  {name}: {detail}", Utc::now().format("%H:%M:%S%.3f"));
            let mut h = t.history.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(f) = h.faults.get_mut(window) {
                f.detail = detail;
            }
            Some(old)
        }
        Err(err) => {
            incident(&t.history, format!("{name}: {err}"));
            None
        }
    };
    tokio::time::sleep(draws.hold).await;
    if let Some(old) = killed {
        let back = blocking(&t.redis, move |b| b.topology()?.restart_as_replica(old)).await;
        if let Err(err) = back {
            incident(
                &t.history,
                format!("{name}: server {old} back as a replica: {err}"),
            );
        }
    }
    close_fault(&t.history, window);
}

pub(super) async fn redis_slow(t: &Targets, draws: Draws, rng: &mut ChaCha8Rng) {
    let name = Nemesis::RedisSlow.name();
    let delay = millis(rng, 50, 600);
    let Some(proxy) = &t.proxy else {
        return incident(&t.history, format!("{name}: no proxy in front of Redis"));
    };
    let window = open_fault(
        &t.history,
        name,
        format!("{} ms each way", delay.as_millis()),
    );
    proxy.set_delay(delay);
    tokio::time::sleep(draws.hold).await;
    proxy.set_delay(Duration::ZERO);
    close_fault(&t.history, window);
}

/// Steps one node's clock (the leader more often than not) and steps it back.
pub(super) async fn clock(t: &Targets, draws: Draws, rng: &mut ChaCha8Rng) {
    let name = Nemesis::Clock.name();
    // Up to ±10 s: well beyond belfry's default bound (250 ms), and within it.
    let magnitude = rng.random_range(100..=10_000) as i64;
    let offset = if draws.coin { magnitude } else { -magnitude };
    let leader = t.leader(Duration::from_secs(10)).await;
    let members = t.cluster.lock().await.members();
    let target = match leader {
        Some(l) if draws.pick % 10 < 6 => l,
        _ => members[(draws.pick % members.len() as u64) as usize],
    };
    let window = open_fault(
        &t.history,
        name,
        format!("node {target} clock {offset:+} ms"),
    );
    {
        // The checker widens its edges by the largest offset, and reads each window's own.
        let mut h = t.history.lock().unwrap_or_else(|e| e.into_inner());
        h.max_clock_offset_ms = h.max_clock_offset_ms.max(magnitude);
        if let Some(f) = h.faults.get_mut(window) {
            f.offset_ms = offset;
        }
    }
    if let Err(err) = t.cluster.lock().await.set_clock(target, offset) {
        incident(&t.history, format!("{name}: {err}"));
    }
    tokio::time::sleep(draws.hold).await;
    if let Err(err) = t.cluster.lock().await.set_clock(target, 0) {
        incident(&t.history, format!("{name}: {err}"));
    }
    // libfaketime re-reads the offset file once a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    close_fault(&t.history, window);
}
