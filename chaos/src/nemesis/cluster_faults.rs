//! The faults on the cluster itself: killing, freezing and restarting members, wiping a
//! member's data, and cutting the network between members.
//!
//! Invariant: every fault that opens a window closes it, and every member it stops is
//! brought back (unless retired) before it returns. Must not check anything.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::{Draws, Nemesis, Targets};
use crate::cluster::Cluster;
use crate::history::{close_fault, incident, open_fault};
use crate::net::NetError;

pub(super) async fn kill_leader(t: &Targets, draws: Draws) {
    let name = Nemesis::KillLeader.name();
    let Some(leader) = t.leader(Duration::from_secs(10)).await else {
        return incident(&t.history, format!("{name}: no leader within 10 s"));
    };
    let window = open_fault(&t.history, name, format!("SIGKILL node {leader}"));
    t.cluster.lock().await.kill(leader);
    tokio::time::sleep(draws.hold).await;
    respawn(t, leader).await;
    close_fault(&t.history, window);
}

/// A live member other than the leader, chosen by `pick`; `None` (an incident) when there is
/// none.
async fn pick_follower(t: &Targets, name: &str, pick: u64) -> Option<u64> {
    let leader = t.leader(Duration::from_secs(10)).await;
    let followers: Vec<u64> = {
        let mut c = t.cluster.lock().await;
        c.live_members()
            .into_iter()
            .filter(|id| Some(*id) != leader)
            .collect()
    };
    if followers.is_empty() {
        incident(&t.history, format!("{name}: no live follower"));
        return None;
    }
    Some(followers[(pick % followers.len() as u64) as usize])
}

pub(super) async fn kill_follower(t: &Targets, draws: Draws) {
    let name = Nemesis::KillFollower.name();
    let Some(victim) = pick_follower(t, name, draws.pick).await else {
        return;
    };
    let window = open_fault(&t.history, name, format!("SIGKILL node {victim}"));
    t.cluster.lock().await.kill(victim);
    tokio::time::sleep(draws.hold).await;
    respawn(t, victim).await;
    close_fault(&t.history, window);
}

/// A follower loses its data directory and must catch up from its peers.
pub(super) async fn wipe_follower(t: &Targets, draws: Draws) {
    let name = Nemesis::Wipe.name();
    let Some(victim) = pick_follower(t, name, draws.pick).await else {
        return;
    };
    let window = open_fault(
        &t.history,
        name,
        format!("node {victim} loses its data directory"),
    );
    if let Err(err) = t.cluster.lock().await.wipe(victim) {
        incident(&t.history, format!("{name}: {err}"));
    }
    tokio::time::sleep(draws.hold.min(Duration::from_secs(3))).await;
    respawn(t, victim).await;
    if let Err(last) = t.caught_up(Duration::from_secs(60)).await {
        incident(
            &t.history,
            format!("{name}: node {victim} not caught up 60 s after its restart ({last})"),
        );
    }
    close_fault(&t.history, window);
}

pub(super) async fn kill_majority(t: &Targets, draws: Draws, rng: &mut ChaCha8Rng) {
    let name = Nemesis::KillMajority.name();
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
    tokio::time::sleep(draws.hold).await;
    for id in victims {
        respawn(t, id).await;
    }
    close_fault(&t.history, window);
}

pub(super) async fn pause_leader(t: &Targets, draws: Draws) {
    let name = Nemesis::PauseLeader.name();
    let Some(leader) = t.leader(Duration::from_secs(10)).await else {
        return incident(&t.history, format!("{name}: no leader within 10 s"));
    };
    let window = open_fault(
        &t.history,
        name,
        format!("SIGSTOP node {leader} for {} ms", draws.hold.as_millis()),
    );
    t.cluster.lock().await.stop(leader);
    tokio::time::sleep(draws.hold).await;
    t.cluster.lock().await.cont(leader);
    close_fault(&t.history, window);
}

/// The members other than `leader`.
fn others(members: &[u64], leader: u64) -> Vec<u64> {
    members.iter().copied().filter(|id| *id != leader).collect()
}

/// Isolates the leader from everyone else; returns the fault's description and the outcome.
fn isolate_leader(c: &mut Cluster, leader: u64, members: &[u64]) -> (String, Result<(), NetError>) {
    let others = others(members, leader);
    (
        format!("node {leader} (leader) isolated from {others:?}"),
        c.net.partition(&[vec![leader], others]),
    )
}

/// Splits the members into a random minority and the rest.
fn split(
    c: &mut Cluster,
    members: &mut [u64],
    pick: u64,
    rng: &mut ChaCha8Rng,
) -> (String, Result<(), NetError>) {
    members.shuffle(rng);
    let minority = 1 + (pick as usize) % (members.len() / 2).max(1);
    let (a, b) = members.split_at(minority);
    (
        format!("{a:?} | {b:?}"),
        c.net.partition(&[a.to_vec(), b.to_vec()]),
    )
}

/// Cuts the connections one way between the leader and one follower.
fn cut_one_way(
    c: &mut Cluster,
    leader: u64,
    members: &[u64],
    draws: Draws,
) -> (String, Result<(), NetError>) {
    let others = others(members, leader);
    let other = others[(draws.pick % others.len() as u64) as usize];
    // Half the time the leader cannot reach a follower, half the time a follower cannot
    // reach the leader.
    let (from, to) = if draws.coin {
        (leader, other)
    } else {
        (other, leader)
    };
    (
        format!("node {from} cannot open connections to node {to}"),
        c.net.cut_one_way(from, to),
    )
}

pub(super) async fn partition(t: &Targets, kind: Nemesis, draws: Draws, rng: &mut ChaCha8Rng) {
    let name = kind.name();
    let leader = t.leader(Duration::from_secs(10)).await;
    let mut members = t.cluster.lock().await.members();
    let (detail, result) = {
        let mut c = t.cluster.lock().await;
        match (kind, leader) {
            (Nemesis::PartitionSplit, _) => split(&mut c, &mut members, draws.pick, rng),
            (_, None) => return incident(&t.history, format!("{name}: no leader")),
            (Nemesis::PartitionLeader, Some(leader)) => isolate_leader(&mut c, leader, &members),
            (_, Some(leader)) => cut_one_way(&mut c, leader, &members, draws),
        }
    };
    if let Err(err) = result {
        t.cluster.lock().await.net.heal();
        return incident(&t.history, format!("{name}: {err}"));
    }
    let window = open_fault(&t.history, name, detail);
    tokio::time::sleep(draws.hold).await;
    t.cluster.lock().await.net.heal();
    close_fault(&t.history, window);
}

/// Every member in turn is terminated cleanly, restarted, and given time to catch up.
pub(super) async fn rolling_restart(t: &Targets, rng: &mut ChaCha8Rng) {
    let name = Nemesis::RollingRestart.name();
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
                format!("{name}: cluster not caught up 60 s after restarting node {id} ({last})"),
            );
        }
    }
    close_fault(&t.history, window);
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
