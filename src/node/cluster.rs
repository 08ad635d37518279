//! A node's place in its cluster: bootstrapping a fresh cluster from the static member list,
//! joining one as a new member, handing leadership over when stopping, and logging changes.
//!
//! Invariant: a node with any Raft state never initializes, nor does a member other than the
//! lowest-id one, nor that one while a peer holds a cluster.

use std::collections::BTreeMap;

use openraft::BasicNode;
use tracing::{error, info, warn};

use super::NodeError;
use crate::api::client::{ApiClient, ClientConfig};
use crate::api::{pb, Control};
use crate::config::NodeConfig;
use crate::raft::Raft;

/// Forms a fresh cluster from the static member list: only its lowest-id member initializes
/// (as ordinal 0 does in a StatefulSet), and only when no peer already holds a cluster; the
/// others wait to be contacted. A node with any Raft
/// state (a restart) is left alone, and so is any other node whose data is empty (a wiped node
/// rejoins through the leader, by snapshot), so no node ever re-initializes a running cluster.
pub(super) async fn bootstrap(
    raft: &Raft,
    config: &NodeConfig,
    control: &Control,
) -> Result<(), NodeError> {
    if raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
    {
        info!("existing cluster state found: rejoining");
        return Ok(());
    }
    if config.peers.keys().next() != Some(&config.node_id) {
        info!("no local state: waiting for the cluster's leader to contact this node");
        return Ok(());
    }
    // A lowest-id member that lost its data while the others kept theirs must not start a
    // new cluster beside theirs (with another empty node it could even win an election and
    // overwrite their logs): it waits to be brought back like any other wiped node.
    let holding = control
        .peers_with_state(&config.peers, std::time::Duration::from_secs(2))
        .await;
    if !holding.is_empty() {
        warn!(peers = ?holding, "no local state, but peers already hold a cluster: not initializing; waiting for its leader");
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => info!(members = ?config.peers, "initialized a new cluster"),
        Err(err) => info!(%err, "cluster already initialized"),
    }
    Ok(())
}

/// One log line per change of leader and per change of membership, on every node.
pub(super) async fn log_cluster_changes(raft: Raft) {
    let mut metrics = raft.metrics();
    let (mut leader, mut membership) = (None, None);
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.current_leader != leader {
                leader = m.current_leader;
                match leader {
                    Some(id) => info!(term = m.current_term, leader = id, "leader changed"),
                    None => info!(term = m.current_term, "no leader known"),
                }
            }
            let config = m.membership_config.log_id().map(|id| id.index);
            if config != membership {
                membership = config;
                let current = m.membership_config.membership();
                let voters: Vec<u64> = current.voter_ids().collect();
                let learners: Vec<u64> = current.learner_ids().collect();
                info!(?voters, ?learners, log_index = ?config, "membership changed");
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// A leader being stopped hands its leadership over first, so dispatch resumes on another
/// node as soon as the followers' leases allow rather than after a failure is detected.
pub(super) async fn hand_over_if_leading(control: &Control) {
    if !control.claims_leadership() {
        return;
    }
    info!("leader stopping: handing leadership over");
    let request = crate::api::control::LeaderRequest::TransferLeader {
        to: None,
        only_if_leader: Some(control.node_id()),
    };
    match control.serve_forwarded(request).await {
        Ok(_) => {}
        Err(err) => {
            warn!(%err, "could not hand leadership over; the followers will elect a leader")
        }
    }
}

/// A node that is not an initial member and has no state asks the cluster (through the
/// `--join` addresses, in turn) to add it, until one accepts: it joins as a learner and is
/// promoted to voter once caught up.
pub(super) async fn join_if_new(
    raft: &Raft,
    config: &NodeConfig,
) -> Result<Option<tokio::task::JoinHandle<()>>, NodeError> {
    if config.peers.contains_key(&config.node_id)
        || raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?
    {
        return Ok(None);
    }
    let token = config
        .security
        .tokens
        .as_ref()
        .and_then(|t| t.admin.first().cloned());
    let tls_ca = config.security.tls.as_ref().map(|t| t.ca.clone());
    let (node_id, advertise, seeds) = (
        config.node_id,
        config.advertise.clone(),
        config.join.clone(),
    );
    Ok(Some(tokio::spawn(async move {
        loop {
            for seed in &seeds {
                let client = ApiClient::new(&ClientConfig {
                    endpoint: seed.clone(),
                    token: token.clone(),
                    tls_ca: tls_ca.clone(),
                    timeout: Some(std::time::Duration::from_secs(120)),
                });
                let mut client = match client {
                    Ok(client) => client,
                    Err(err) => {
                        error!(%err, "cannot use this join address");
                        continue;
                    }
                };
                let request = pb::AddNodeRequest {
                    node_id,
                    address: advertise.clone(),
                    learner_only: false,
                };
                match client.cluster.add_node(request).await {
                    Ok(_) => {
                        info!(node_id, %seed, "joined the cluster");
                        return;
                    }
                    Err(status) => {
                        warn!(%seed, code = ?status.code(), message = status.message(), "join refused; retrying")
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    })))
}
