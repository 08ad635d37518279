//! Keeps the gauges that describe state rather than events: Raft leadership and indexes (as
//! they change), outbox depth and age, and schedule counts (sampled on a timer).
//!
//! Invariant: reads only, through the read-only `StateHandle`, holding its read lock briefly;
//! schedule counts come from the counts the state keeps, and are taken every fifth sample. It
//! must not change the state or Raft.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use metrics::{counter, gauge};
use metrics_exporter_prometheus::PrometheusHandle;
use openraft::ServerState;

use super::names::*;
use crate::raft::StateHandle;
use crate::raft::{NodeId, Raft};

const STATE_EVERY: Duration = Duration::from_secs(1);
/// Schedules are counted once per this many state samples.
const COUNT_SCHEDULES_EVERY: u32 = 5;

/// Runs until the Raft metrics channel closes (the node shut down).
pub(crate) async fn sample_forever(
    raft: Raft,
    state: StateHandle,
    committed: Arc<AtomicU64>,
    handle: PrometheusHandle,
) {
    let mut raft_metrics = raft.metrics();
    let mut ticker = tokio::time::interval(STATE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leadership = LeadershipGauges::default();
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            changed = raft_metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                leadership.update(&raft_metrics.borrow_and_update(), &committed);
            }
            _ = ticker.tick() => {
                leadership.update(&raft_metrics.borrow(), &committed);
                sample_state(&state, ticks.is_multiple_of(COUNT_SCHEDULES_EVERY)).await;
                ticks = ticks.wrapping_add(1);
                handle.run_upkeep();
            }
        }
    }
}

/// Remembers what it last reported, to count leader changes and to zero the lag of followers
/// once this node stops leading.
#[derive(Default)]
struct LeadershipGauges {
    leader: Option<NodeId>,
    followers: BTreeSet<NodeId>,
}

impl LeadershipGauges {
    fn update(
        &mut self,
        m: &openraft::RaftMetrics<NodeId, openraft::BasicNode>,
        committed: &AtomicU64,
    ) {
        let leading = m.state == ServerState::Leader;
        gauge!(IS_LEADER).set(if leading { 1.0 } else { 0.0 });
        gauge!(RAFT_TERM).set(m.current_term as f64);
        if m.current_leader.is_some() && m.current_leader != self.leader {
            counter!(LEADER_CHANGES).increment(1);
            self.leader = m.current_leader;
        }
        let applied = m.last_applied.map_or(0, |l| l.index);
        let commit = committed.load(Ordering::Relaxed).max(applied);
        gauge!(RAFT_COMMIT_INDEX).set(commit as f64);
        gauge!(RAFT_APPLIED_INDEX).set(applied as f64);
        gauge!(RAFT_SNAPSHOT_INDEX).set(m.snapshot.map_or(0, |l| l.index) as f64);
        let last = m.last_log_index.unwrap_or(0);
        let purged = m.purged.map_or(0, |l| l.index);
        gauge!(RAFT_LOG_ENTRIES).set(last.saturating_sub(purged) as f64);

        let mut seen = BTreeSet::new();
        if let (true, Some(replication)) = (leading, &m.replication) {
            for (id, matched) in replication.iter() {
                if *id == m.id {
                    continue;
                }
                let lag = last.saturating_sub(matched.map_or(0, |l| l.index));
                gauge!(RAFT_FOLLOWER_LAG, "follower" => id.to_string()).set(lag as f64);
                seen.insert(*id);
            }
        }
        for gone in self.followers.difference(&seen) {
            gauge!(RAFT_FOLLOWER_LAG, "follower" => gone.to_string()).set(0.0);
        }
        self.followers = seen;
    }
}

async fn sample_state(state: &StateHandle, count_schedules: bool) {
    let now = Utc::now();
    let applied = state.read().await;
    let data = &applied.data;
    gauge!(OUTBOX_DEPTH).set(data.outbox().len() as f64);
    let oldest_due = data
        .outbox()
        .values()
        .map(|e| e.scheduled_at)
        .filter(|at| *at <= now)
        .min();
    let age = oldest_due.map_or(0.0, |at| (now - at).num_milliseconds() as f64 / 1000.0);
    gauge!(OUTBOX_OLDEST_AGE).set(age);
    if count_schedules {
        let total = data.schedules().len();
        let paused = data.paused_count();
        let faulted = data.faulted().len();
        let enabled = data.due().len();
        drop(applied);
        gauge!(SCHEDULES, "state" => "enabled").set(enabled as f64);
        gauge!(SCHEDULES, "state" => "paused").set(paused as f64);
        gauge!(SCHEDULES, "state" => "faulted").set(faulted as f64);
        gauge!(SCHEDULES, "state" => "finished")
            .set(total.saturating_sub(enabled + paused + faulted) as f64);
    }
}
