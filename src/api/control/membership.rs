//! Cluster status, membership changes and leadership handover, on the leader.
//!
//! Invariant: membership changes run one at a time, each after the previous one is committed
//! and not joint; a node joins as a learner and becomes a voter once caught up; the last voter
//! is never removed. A handover (openraft 0.9 has none) makes the leader go quiet (no dispatch,
//! no writes, no heartbeats) until the followers' leases lapse and a new leader is elected, the
//! chosen node first. It must not change schedules.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{not_leader, write_error, Control, LeaderRequest};
use crate::api::error::ApiError;
use crate::raft::NodeId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Leader,
    Follower,
    Learner,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub address: String,
    pub role: Role,
    pub matched_index: u64,
    pub lag: u64,
}

/// The cluster as its leader sees it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusView {
    pub cluster_name: String,
    pub leader_id: NodeId,
    pub term: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub members: Vec<MemberView>,
    pub outbox_depth: u64,
    pub schedules: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TransferView {
    pub previous_leader: NodeId,
    pub new_leader: NodeId,
    pub transferred: bool,
}

impl Control {
    pub(super) async fn status(&self) -> Result<StatusView, ApiError> {
        let (read, _) = self.raft.get_read_log_id().await.map_err(not_leader)?;
        let m = self.raft.metrics().borrow().clone();
        let last_log_index = m.last_log_index.unwrap_or(0);
        let matched: BTreeMap<NodeId, u64> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, log)| (*id, log.map_or(0, |l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched_index = if *id == self.node_id {
                    last_log_index
                } else {
                    matched.get(id).copied().unwrap_or(0)
                };
                MemberView {
                    id: *id,
                    address: node.addr.clone(),
                    role: if *id == self.node_id {
                        Role::Leader
                    } else if voters.contains(id) {
                        Role::Follower
                    } else {
                        Role::Learner
                    },
                    matched_index,
                    lag: last_log_index.saturating_sub(matched_index),
                }
            })
            .collect();
        let (outbox_depth, schedules) = {
            let applied = self.state.read().await;
            (
                applied.data.outbox().len() as u64,
                applied.data.schedules().len() as u64,
            )
        };
        Ok(StatusView {
            cluster_name: self.cluster_name.clone(),
            leader_id: self.node_id,
            term: m.current_term,
            commit_index: read.map_or(0, |l| l.index),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            last_log_index,
            members,
            outbox_depth,
            schedules,
        })
    }

    /// Adds `node_id` as a learner, waits until it has caught up, then makes it a voter.
    pub(super) async fn add_node(
        &self,
        node_id: NodeId,
        address: String,
        learner_only: bool,
    ) -> Result<(), ApiError> {
        if node_id == 0 {
            return Err(ApiError::invalid("node_id", "must be positive"));
        }
        if !crate::raft::network::is_host_port(&address) {
            return Err(ApiError::invalid(
                "address",
                format!("{address:?} is not host:port"),
            ));
        }
        let _one_at_a_time = self.membership_changes.lock().await;
        self.await_settled_membership().await?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if let Some(node) = membership.membership().get_node(&node_id) {
            if node.addr != address {
                return Err(ApiError::AlreadyExists(format!(
                    "node {node_id} is already a member at {}; remove it first",
                    node.addr
                )));
            }
        }
        info!(node_id, %address, "adding a learner");
        self.raft
            .add_learner(node_id, BasicNode { addr: address }, true)
            .await
            .map_err(write_error)?;
        if learner_only {
            return Ok(());
        }
        let is_voter = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == node_id);
        if !is_voter {
            info!(node_id, "learner caught up: promoting to voter");
            self.raft
                .change_membership(
                    ChangeMembers::AddVoterIds([node_id].into_iter().collect()),
                    false,
                )
                .await
                .map_err(write_error)?;
        }
        info!(node_id, "membership changed: node added");
        Ok(())
    }

    /// Waits (briefly) until the latest membership is committed and not a joint one: a change
    /// left half-way by an earlier leader completes before another starts.
    async fn await_settled_membership(&self) -> Result<(), ApiError> {
        let deadline = Instant::now() + self.election_timeout_max * 4;
        let mut metrics = self.raft.metrics();
        loop {
            let settled = {
                let m = metrics.borrow_and_update();
                let config = &m.membership_config;
                config.membership().get_joint_config().len() == 1
                    && config.log_id().map(|id| id.index) <= m.last_applied.map(|id| id.index)
            };
            if settled {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline.into(), metrics.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ApiError::Unavailable("Raft is shutting down".into())),
                Err(_) => {
                    return Err(ApiError::Unavailable(
                        "a membership change is still in progress".into(),
                    ))
                }
            }
        }
    }

    pub(super) async fn remove_node(&self, node_id: NodeId) -> Result<(), ApiError> {
        let _one_at_a_time = self.membership_changes.lock().await;
        self.await_settled_membership().await?;
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        if membership.get_node(&node_id).is_none() {
            return Err(ApiError::NotFound(format!(
                "node {node_id} is not a member"
            )));
        }
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters == [node_id] {
            return Err(ApiError::FailedPrecondition(format!(
                "node {node_id} is the only voter"
            )));
        }
        let change = if voters.contains(&node_id) {
            ChangeMembers::RemoveVoters([node_id].into_iter().collect())
        } else {
            ChangeMembers::RemoveNodes([node_id].into_iter().collect())
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        info!(node_id, "membership changed: node removed");
        Ok(())
    }

    /// Hands leadership to `to` (or the most caught-up voter). With `only_if_leader`, does
    /// nothing unless that node leads.
    pub(super) async fn transfer_leadership(
        &self,
        to: Option<NodeId>,
        only_if_leader: Option<NodeId>,
    ) -> Result<TransferView, ApiError> {
        if only_if_leader.is_some_and(|id| id != self.node_id) {
            return Ok(TransferView {
                previous_leader: self.node_id,
                new_leader: self.node_id,
                transferred: false,
            });
        }
        let target = self.choose_successor(to)?;
        let addr = {
            let m = self.raft.metrics().borrow().membership_config.clone();
            m.membership()
                .get_node(&target)
                .map(|n| n.addr.clone())
                .unwrap_or_default()
        };
        info!(target, "handing leadership over");
        self.handing_over.send_replace(true);
        let config = self.raft.runtime_config();
        config.heartbeat(false);
        config.elect(false);
        let outcome = self.await_successor(target, &addr).await;
        config.heartbeat(true);
        config.elect(true);
        self.handing_over.send_replace(false);
        match outcome {
            Some(new_leader) => {
                info!(new_leader, "leadership handed over");
                Ok(TransferView {
                    previous_leader: self.node_id,
                    new_leader,
                    transferred: true,
                })
            }
            None => {
                warn!(target, "no successor was elected; keeping leadership");
                Err(ApiError::Unavailable(format!(
                    "node {target} did not take over in time"
                )))
            }
        }
    }

    fn choose_successor(&self, to: Option<NodeId>) -> Result<NodeId, ApiError> {
        let m = self.raft.metrics().borrow().clone();
        let voters: Vec<NodeId> = m
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != self.node_id)
            .collect();
        if let Some(to) = to {
            return if voters.contains(&to) {
                Ok(to)
            } else {
                Err(ApiError::invalid(
                    "to",
                    format!("node {to} is not another voter of this cluster"),
                ))
            };
        }
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).copied().flatten())
                .map_or(0, |l| l.index)
        };
        // A voter whose clock is beyond the bound would not stand: chosen only if none is within.
        let off_clock = self
            .network
            .clocks()
            .map(|c| c.peers_beyond())
            .unwrap_or_default();
        voters
            .iter()
            .max_by_key(|id| (!off_clock.contains(id), matched(id)))
            .copied()
            .ok_or_else(|| ApiError::FailedPrecondition("there is no other voter".into()))
    }

    /// Waits for the followers' leases to lapse, asks `target` to stand, and returns the new
    /// leader once this node hears from it.
    async fn await_successor(&self, target: NodeId, addr: &str) -> Option<NodeId> {
        let lease = self.election_timeout_max;
        let deadline = Instant::now() + lease * 4;
        let mut metrics = self.raft.metrics();
        let started = Instant::now();
        let mut next_nudge = started + lease + Duration::from_millis(50);
        loop {
            {
                let m = metrics.borrow_and_update();
                if let Some(leader) = m.current_leader.filter(|id| *id != self.node_id) {
                    return Some(leader);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            if now >= next_nudge {
                let request = serde_json::to_vec(&super::Forwarded::now(LeaderRequest::Elect))
                    .unwrap_or_default();
                let _ = self
                    .network
                    .forward(target, addr, request, Duration::from_millis(500))
                    .await;
                next_nudge = Instant::now() + lease / 2;
            }
            let wait = next_nudge
                .min(deadline)
                .saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(wait, metrics.changed()).await;
        }
    }
}
