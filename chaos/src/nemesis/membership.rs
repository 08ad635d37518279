//! The membership fault: a node is added, and once it is a caught-up voter an old follower
//! is removed, so the cluster keeps its size while its membership changes under load.
//!
//! Invariant: the fault's window is closed on every path, and a member is retired only once
//! the cluster has removed it. Must not check anything.

use std::time::Duration;

use chrono::Utc;

use super::{Nemesis, Targets};
use crate::history::{close_fault, incident, open_fault};

/// Adds a node, waits for it to become a voter, then removes an old follower.
pub(super) async fn membership(t: &Targets, pick: u64) {
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
    if let Err(last) = wait_for_voter(t, new, Duration::from_secs(60)).await {
        incident(
            &t.history,
            format!("{name}: node {new} not a caught-up voter within 60 s of starting ({last})"),
        );
    }
    let Some(victim) = pick_old_follower(t, new, pick).await else {
        return close_fault(&t.history, window);
    };
    remove(t, window, new, victim).await;
    close_fault(&t.history, window);
    eprintln!(
        "{}  members now {:?}",
        Utc::now().format("%H:%M:%S%.3f"),
        t.cluster.lock().await.members()
    );
}

/// Waits until a leader reports node `new` as a voter caught up (lag under 100 entries); on
/// timeout, says what it saw last.
async fn wait_for_voter(t: &Targets, new: u64, wait: Duration) -> Result<(), String> {
    super::status_until(&t.api, wait, |status| {
        status
            .members
            .iter()
            .any(|m| m.id == new && m.role != belfry::api::pb::Role::Learner as i32 && m.lag < 100)
    })
    .await
}

/// A member that is neither the new node nor the leader, chosen by `pick`.
async fn pick_old_follower(t: &Targets, new: u64, pick: u64) -> Option<u64> {
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
        return None;
    }
    Some(candidates[(pick % candidates.len() as u64) as usize])
}

/// Removes `victim` from the cluster, and retires it once removed.
async fn remove(t: &Targets, window: usize, new: u64, victim: u64) {
    let name = Nemesis::Membership.name();
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
}
