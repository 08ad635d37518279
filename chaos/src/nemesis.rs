//! The faults, and the seeded schedule that injects them.
//!
//! Two tracks run side by side, so faults combine: the cluster track (kills, freezes,
//! partitions, restarts, membership, lost data) and the environment track (Redis crashes and
//! slowness, or with a Sentinel topology failovers of the Redis master; clock offsets). Each track waits a random healthy gap, picks one of its enabled
//! nemeses, injects it for a random time, heals it and records the window. Every choice comes
//! from the seed, so a run can be replayed (the timing of the cluster's own reactions, such as
//! who wins an election, cannot be). Owns fault injection; must not check anything.
//!
//! Each fault is one function: `cluster_faults` (members and the network between them),
//! `environment` (Redis and clocks) and `membership`; this module draws an injection's
//! choices and dispatches.

mod cluster_faults;
mod environment;
mod membership;

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;

use crate::api::Api;
use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::history::SharedHistory;
use crate::proxy::SlowProxy;
use cluster_faults::{
    kill_follower, kill_leader, kill_majority, partition, pause_leader, rolling_restart,
    wipe_follower,
};
use environment::{clock, redis_failover, redis_kill, redis_slow};
use membership::membership;

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
    RedisFailover,
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
    Nemesis::RedisFailover,
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
            Nemesis::RedisFailover => "redis-failover",
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
            Nemesis::RedisKill | Nemesis::RedisSlow | Nemesis::RedisFailover | Nemesis::Clock
        )
    }

    /// Why this nemesis cannot run in a run set up so, if it cannot.
    pub fn unavailable(self, netns: bool, clock: bool, sentinel: bool) -> Option<&'static str> {
        match self {
            _ if self.needs_netns() && !netns => Some("partitions need netns mode, as root"),
            Nemesis::Clock if !clock => Some("libfaketime is not installed"),
            Nemesis::RedisFailover if !sentinel => {
                Some("it fails over a Sentinel topology: run with --sentinel")
            }
            Nemesis::RedisKill | Nemesis::RedisSlow if sentinel => {
                Some("with --sentinel the Redis fault is redis-failover")
            }
            _ => None,
        }
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
    pub redis: Arc<Mutex<Broker>>,
    /// The proxy between the nodes and a single Redis server (none with Sentinel).
    pub proxy: Option<SlowProxy>,
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
        let members = self.cluster.lock().await.members();
        status_until(&self.api, wait, |status| {
            let all = members.iter().all(|id| {
                status
                    .members
                    .iter()
                    .any(|m| m.id == *id && m.lag < 100 && m.matched_index > 0)
            });
            status.leader_id != 0 && all
        })
        .await
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

/// The random choices of one injection. They are drawn before looking at the cluster, so the
/// sequence of draws is the same whatever the cluster does.
#[derive(Clone, Copy)]
struct Draws {
    /// How long the fault is held.
    hold: Duration,
    /// Picks a victim or a split, modulo whatever there is to pick from.
    pick: u64,
    coin: bool,
}

impl Draws {
    fn new(kind: Nemesis, rng: &mut ChaCha8Rng) -> Draws {
        let hold = match kind {
            Nemesis::PauseLeader => millis(rng, 1_500, 6_000),
            Nemesis::RedisSlow => millis(rng, 3_000, 12_000),
            Nemesis::Clock => millis(rng, 5_000, 20_000),
            _ => millis(rng, 1_000, 9_000),
        };
        let pick: u64 = rng.random();
        let coin = rng.random_bool(0.5);
        Draws { hold, pick, coin }
    }
}

async fn inject(t: &Targets, kind: Nemesis, rng: &mut ChaCha8Rng) {
    let draws = Draws::new(kind, rng);
    match kind {
        Nemesis::KillLeader => kill_leader(t, draws).await,
        Nemesis::KillFollower => kill_follower(t, draws).await,
        Nemesis::Wipe => wipe_follower(t, draws).await,
        Nemesis::KillMajority => kill_majority(t, draws, rng).await,
        Nemesis::PauseLeader => pause_leader(t, draws).await,
        Nemesis::PartitionLeader | Nemesis::PartitionSplit | Nemesis::PartitionOneWay => {
            partition(t, kind, draws, rng).await
        }
        Nemesis::RollingRestart => rolling_restart(t, rng).await,
        Nemesis::Membership => membership(t, draws.pick).await,
        Nemesis::RedisKill => redis_kill(t, draws).await,
        Nemesis::RedisSlow => redis_slow(t, draws, rng).await,
        Nemesis::RedisFailover => redis_failover(t, draws).await,
        Nemesis::Clock => clock(t, draws, rng).await,
    }
}

/// Asks the cluster for its status until `done` holds for what a leader reports; on timeout,
/// says what it saw last.
async fn status_until(
    api: &Api,
    wait: Duration,
    done: impl Fn(&belfry::api::pb::ClusterStatus) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match api.status(Duration::from_secs(5)).await {
            Ok(status) if done(&status) => return Ok(()),
            Ok(status) => {
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
