//! The faults, and the seeded schedule that injects them.
//!
//! Two tracks run side by side, so faults combine: the cluster track (kills, freezes,
//! partitions, restarts, membership, lost data) and the environment track (Redis crashes and
//! slowness, clock offsets). Each track waits a random healthy gap, picks one of its enabled
//! nemeses, injects it for a random time, heals it and records the window. Every choice comes
//! from the seed, so a run can be replayed (the timing of the cluster's own reactions, such as
//! who wins an election, cannot be). Owns fault injection; must not check anything.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

use crate::api::Api;
use crate::cluster::Cluster;
use crate::history::{close_fault, incident, open_fault, SharedHistory};
use crate::proxy::SlowProxy;
use belfry_kit::RedisServer as RedisProc;

/// Every nemesis, by the name the command line uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Nemesis {
    KillLeader,
    KillFollower,
    KillMajority,
    PauseLeader,
    PartitionLeader,
    PartitionSplit,
    PartitionOneWay,
    RollingRestart,
    Membership,
    Wipe,
    RedisKill,
    RedisSlow,
    Clock,
}

pub const ALL: &[Nemesis] = &[
    Nemesis::KillLeader,
    Nemesis::KillFollower,
    Nemesis::KillMajority,
    Nemesis::PauseLeader,
    Nemesis::PartitionLeader,
    Nemesis::PartitionSplit,
    Nemesis::PartitionOneWay,
    Nemesis::RollingRestart,
    Nemesis::Membership,
    Nemesis::Wipe,
    Nemesis::RedisKill,
    Nemesis::RedisSlow,
    Nemesis::Clock,
];

impl Nemesis {
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillFollower => "kill-follower",
            Nemesis::KillMajority => "kill-majority",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::PartitionLeader => "partition-leader",
            Nemesis::PartitionSplit => "partition-split",
            Nemesis::PartitionOneWay => "partition-oneway",
            Nemesis::RollingRestart => "rolling-restart",
            Nemesis::Membership => "membership",
            Nemesis::Wipe => "wipe",
            Nemesis::RedisKill => "redis-kill",
            Nemesis::RedisSlow => "redis-slow",
            Nemesis::Clock => "clock",
        }
    }

    pub fn parse(name: &str) -> Option<Nemesis> {
        ALL.iter().copied().find(|n| n.name() == name)
    }

    /// Environment faults run on their own track, alongside the cluster faults.
    pub fn is_environment(self) -> bool {
        matches!(
            self,
            Nemesis::RedisKill | Nemesis::RedisSlow | Nemesis::Clock
        )
    }

    pub fn needs_netns(self) -> bool {
        matches!(
            self,
            Nemesis::PartitionLeader | Nemesis::PartitionSplit | Nemesis::PartitionOneWay
        )
    }
}

/// What the nemeses act on.
#[derive(Clone)]
pub struct Targets {
    pub cluster: Arc<Mutex<Cluster>>,
    pub redis: Arc<Mutex<RedisProc>>,
    pub proxy: SlowProxy,
    pub api: Api,
    pub history: SharedHistory,
}

impl Targets {
    /// Points the API client at the current members.
    pub async fn refresh_api(&self) {
        let cluster = self.cluster.lock().await;
        let addrs = cluster
            .members()
            .into_iter()
            .filter_map(|id| cluster.addr(id))
            .collect();
        self.api.set_addrs(addrs);
    }

    async fn leader(&self, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(id) = self.cluster.lock().await.leader() {
                return Some(id);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a leader reports every member caught up (lag under 100 entries); on
    /// timeout, says what it saw last.
    async fn caught_up(&self, wait: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            match self.api.status(Duration::from_secs(5)).await {
                Ok(status) => {
                    let members = self.cluster.lock().await.members();
                    let all = members.iter().all(|id| {
                        status
                            .members
                            .iter()
                            .any(|m| m.id == *id && m.lag < 100 && m.matched_index > 0)
                    });
                    if status.leader_id != 0 && all {
                        return Ok(());
                    }
                    last = format!(
                        "leader {} reports (id, role, matched, lag) {:?}",
                        status.leader_id,
                        status
                            .members
                            .iter()
                            .map(|m| (m.id, m.role, m.matched_index, m.lag))
                            .collect::<Vec<_>>()
                    );
                }
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(last)
    }
}

fn millis(rng: &mut ChaCha8Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.random_range(lo..=hi))
}

/// Runs one track until `until`: gap, fault, heal, repeat.
pub async fn run_track(
    targets: Targets,
    kinds: Vec<Nemesis>,
    seed: u64,
    until: tokio::time::Instant,
) {
    if kinds.is_empty() {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    loop {
        tokio::time::sleep(millis(&mut rng, 2_000, 8_000)).await;
        if tokio::time::Instant::now() >= until {
            return;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        inject(&targets, kind, &mut rng).await;
    }
}

async fn inject(t: &Targets, kind: Nemesis, rng: &mut ChaCha8Rng) {
    let name = kind.name();
    // Choices are drawn before looking at the cluster, so the sequence of draws is the same
    // whatever the cluster does.
    let hold = match kind {
        Nemesis::PauseLeader => millis(rng, 1_500, 6_000),
        Nemesis::RedisSlow => millis(rng, 3_000, 12_000),
        Nemesis::Clock => millis(rng, 5_000, 20_000),
        _ => millis(rng, 1_000, 9_000),
    };
    let pick: u64 = rng.random();
    let coin = rng.random_bool(0.5);
    match kind {
        Nemesis::KillLeader => {
            let Some(leader) = t.leader(Duration::from_secs(10)).await else {
                return incident(&t.history, format!("{name}: no leader within 10 s"));
            };
            let window = open_fault(&t.history, name, format!("SIGKILL node {leader}"));
            t.cluster.lock().await.kill(leader);
            tokio::time::sleep(hold).await;
            respawn(t, leader).await;
            close_fault(&t.history, window);
        }
        Nemesis::KillFollower | Nemesis::Wipe => {
            let leader = t.leader(Duration::from_secs(10)).await;
            let followers: Vec<u64> = {
                let mut c = t.cluster.lock().await;
                c.live_members()
                    .into_iter()
                    .filter(|id| Some(*id) != leader)
                    .collect()
            };
            if followers.is_empty() {
                return incident(&t.history, format!("{name}: no live follower"));
            }
            let victim = followers[(pick % followers.len() as u64) as usize];
            if kind == Nemesis::Wipe {
                let window = open_fault(
                    &t.history,
                    name,
                    format!("node {victim} loses its data directory"),
                );
                if let Err(err) = t.cluster.lock().await.wipe(victim) {
                    incident(&t.history, format!("{name}: {err}"));
                }
                tokio::time::sleep(hold.min(Duration::from_secs(3))).await;
                respawn(t, victim).await;
                if let Err(last) = t.caught_up(Duration::from_secs(60)).await {
                    incident(
                        &t.history,
                        format!(
                            "{name}: node {victim} not caught up 60 s after its restart ({last})"
                        ),
                    );
                }
                close_fault(&t.history, window);
            } else {
                let window = open_fault(&t.history, name, format!("SIGKILL node {victim}"));
                t.cluster.lock().await.kill(victim);
                tokio::time::sleep(hold).await;
                respawn(t, victim).await;
                close_fault(&t.history, window);
            }
        }
        Nemesis::KillMajority => {
            let mut members = t.cluster.lock().await.members();
            members.shuffle(rng);
            let victims: Vec<u64> = members[..members.len() / 2 + 1].to_vec();
            let window = open_fault(&t.history, name, format!("SIGKILL nodes {victims:?}"));
            {
                let mut c = t.cluster.lock().await;
                for id in &victims {
                    c.kill(*id);
                }
            }
            tokio::time::sleep(hold).await;
            for id in victims {
                respawn(t, id).await;
            }
            close_fault(&t.history, window);
        }
        Nemesis::PauseLeader => {
            let Some(leader) = t.leader(Duration::from_secs(10)).await else {
                return incident(&t.history, format!("{name}: no leader within 10 s"));
            };
            let window = open_fault(
                &t.history,
                name,
                format!("SIGSTOP node {leader} for {} ms", hold.as_millis()),
            );
            t.cluster.lock().await.stop(leader);
            tokio::time::sleep(hold).await;
            t.cluster.lock().await.cont(leader);
            close_fault(&t.history, window);
        }
        Nemesis::PartitionLeader | Nemesis::PartitionSplit | Nemesis::PartitionOneWay => {
            let leader = t.leader(Duration::from_secs(10)).await;
            let mut members = t.cluster.lock().await.members();
            let (detail, result) = {
                let mut c = t.cluster.lock().await;
                match kind {
                    Nemesis::PartitionLeader => {
                        let Some(leader) = leader else {
                            return incident(&t.history, format!("{name}: no leader"));
                        };
                        let others: Vec<u64> =
                            members.iter().copied().filter(|id| *id != leader).collect();
                        (
                            format!("node {leader} (leader) isolated from {others:?}"),
                            c.net.partition(&[vec![leader], others]),
                        )
                    }
                    Nemesis::PartitionSplit => {
                        members.shuffle(rng);
                        let minority = 1 + (pick as usize) % (members.len() / 2).max(1);
                        let (a, b) = members.split_at(minority);
                        (
                            format!("{a:?} | {b:?}"),
                            c.net.partition(&[a.to_vec(), b.to_vec()]),
                        )
                    }
                    _ => {
                        let Some(leader) = leader else {
                            return incident(&t.history, format!("{name}: no leader"));
                        };
                        let others: Vec<u64> =
                            members.iter().copied().filter(|id| *id != leader).collect();
                        let other = others[(pick % others.len() as u64) as usize];
                        // Half the time the leader cannot reach a follower, half the time a
                        // follower cannot reach the leader.
                        let (from, to) = if coin {
                            (leader, other)
                        } else {
                            (other, leader)
                        };
                        (
                            format!("node {from} cannot open connections to node {to}"),
                            c.net.cut_one_way(from, to),
                        )
                    }
                }
            };
            if let Err(err) = result {
                t.cluster.lock().await.net.heal();
                return incident(&t.history, format!("{name}: {err}"));
            }
            let window = open_fault(&t.history, name, detail);
            tokio::time::sleep(hold).await;
            t.cluster.lock().await.net.heal();
            close_fault(&t.history, window);
        }
        Nemesis::RollingRestart => {
            let mut members = t.cluster.lock().await.members();
            members.shuffle(rng);
            let window = open_fault(
                &t.history,
                name,
                format!("SIGTERM and restart, in turn: {members:?}"),
            );
            for id in members {
                let clean = {
                    let mut c = t.cluster.lock().await;
                    c.terminate(id, Duration::from_secs(20))
                };
                if !clean {
                    incident(
                        &t.history,
                        format!("{name}: node {id} did not exit within 20 s of SIGTERM"),
                    );
                }
                respawn(t, id).await;
                if let Err(last) = t.caught_up(Duration::from_secs(60)).await {
                    incident(
                        &t.history,
                        format!(
                            "{name}: cluster not caught up 60 s after restarting node {id} ({last})"
                        ),
                    );
                }
            }
            close_fault(&t.history, window);
        }
        Nemesis::Membership => membership(t, pick).await,
        Nemesis::RedisKill => {
            let window = open_fault(&t.history, name, "SIGKILL redis-server".into());
            t.redis.lock().await.kill();
            tokio::time::sleep(hold).await;
            if let Err(err) = t.redis.lock().await.restart() {
                incident(&t.history, format!("{name}: restart: {err}"));
            }
            close_fault(&t.history, window);
        }
        Nemesis::RedisSlow => {
            let delay = millis(rng, 50, 600);
            let window = open_fault(
                &t.history,
                name,
                format!("{} ms each way", delay.as_millis()),
            );
            t.proxy.set_delay(delay);
            tokio::time::sleep(hold).await;
            t.proxy.set_delay(Duration::ZERO);
            close_fault(&t.history, window);
        }
        Nemesis::Clock => {
            // Up to ±10 s: well beyond belfry's default bound (250 ms), and within it.
            let magnitude = rng.random_range(100..=10_000) as i64;
            let offset = if coin { magnitude } else { -magnitude };
            let leader = t.leader(Duration::from_secs(10)).await;
            let members = t.cluster.lock().await.members();
            let target = match leader {
                Some(l) if pick % 10 < 6 => l,
                _ => members[(pick % members.len() as u64) as usize],
            };
            let window = open_fault(
                &t.history,
                name,
                format!("node {target} clock {offset:+} ms"),
            );
            {
                let mut h = t.history.lock().unwrap_or_else(|e| e.into_inner());
                h.max_clock_offset_ms = h.max_clock_offset_ms.max(magnitude);
                if let Some(f) = h.faults.get_mut(window) {
                    f.offset_ms = offset;
                }
            }
            if let Err(err) = t.cluster.lock().await.set_clock(target, offset) {
                incident(&t.history, format!("{name}: {err}"));
            }
            tokio::time::sleep(hold).await;
            if let Err(err) = t.cluster.lock().await.set_clock(target, 0) {
                incident(&t.history, format!("{name}: {err}"));
            }
            // libfaketime re-reads the offset file once a second.
            tokio::time::sleep(Duration::from_millis(1_200)).await;
            close_fault(&t.history, window);
        }
    }
}

async fn respawn(t: &Targets, id: u64) {
    let mut c = t.cluster.lock().await;
    if c.is_retired(id) {
        return;
    }
    if c.is_running(id) {
        c.cont(id);
        return;
    }
    if let Err(err) = c.spawn(id) {
        drop(c);
        incident(&t.history, format!("restart node {id}: {err}"));
    }
}

/// Adds a node, waits for it to become a voter, then removes an old follower.
async fn membership(t: &Targets, pick: u64) {
    let name = Nemesis::Membership.name();
    let window = open_fault(&t.history, name, "adding a node".into());
    let new = match t.cluster.lock().await.spawn_joiner() {
        Ok(id) => id,
        Err(err) => {
            close_fault(&t.history, window);
            return incident(&t.history, format!("{name}: {err}"));
        }
    };
    t.refresh_api().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut voter = false;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match t.api.status(Duration::from_secs(5)).await {
            Ok(status) => {
                if status.members.iter().any(|m| {
                    m.id == new && m.role != belfry::api::pb::Role::Learner as i32 && m.lag < 100
                }) {
                    voter = true;
                    break;
                }
                last = format!(
                    "leader {} reports {:?}",
                    status.leader_id,
                    status
                        .members
                        .iter()
                        .map(|m| (m.id, m.role, m.matched_index, m.lag))
                        .collect::<Vec<_>>()
                );
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !voter {
        incident(
            &t.history,
            format!("{name}: node {new} not a caught-up voter within 60 s of starting ({last})"),
        );
    }
    let leader = t.leader(Duration::from_secs(10)).await;
    let candidates: Vec<u64> = t
        .cluster
        .lock()
        .await
        .members()
        .into_iter()
        .filter(|id| *id != new && Some(*id) != leader)
        .collect();
    if candidates.is_empty() {
        close_fault(&t.history, window);
        return;
    }
    let victim = candidates[(pick % candidates.len() as u64) as usize];
    if let Some(f) = t
        .history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .faults
        .get_mut(window)
    {
        f.detail = format!("added node {new}, removing node {victim}");
    }
    let removed = t
        .api
        .call(Duration::from_secs(60), |mut c| async move {
            c.cluster
                .remove_node(belfry::api::pb::RemoveNodeRequest { node_id: victim })
                .await
        })
        .await;
    match removed {
        Ok(_) => {
            t.cluster.lock().await.retire(victim);
            t.refresh_api().await;
        }
        Err(err) => incident(&t.history, format!("{name}: remove node {victim}: {err}")),
    }
    close_fault(&t.history, window);
    eprintln!(
        "{}  members now {:?}",
        Utc::now().format("%H:%M:%S%.3f"),
        t.cluster.lock().await.members()
    );
}
