//! The node's control plane, the one door to Raft and the state: a call that needs the leader
//! runs here when this node leads, is forwarded to the leader over the peer protocol otherwise,
//! and reads go through `read_barrier`, which makes them linearizable on any node.
//!
//! Invariant: only an `Unavailable` outcome (nothing was done) is retried, with the same
//! request and deadline, and a forwarded write is never started after its deadline. It must not
//! speak gRPC to clients (that is `schedules` and `cluster`), parse protobuf, nor apply state.

mod admit;
mod backfill;
mod forwarding;
mod group_commit;
mod membership;
mod reads;
mod search;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use tokio::sync::watch;
use tracing::debug;

use super::error::ApiError;
use crate::celery::Encoder;
use crate::raft::network::PeerNetwork;
use crate::raft::StateHandle;
use crate::raft::{NodeId, Raft};

pub use backfill::{BackfillAsk, DEFAULT_RATE as DEFAULT_BACKFILL_RATE};
pub use forwarding::{Forwarded, LeaderReply, LeaderRequest, FORWARD_CLOCK_ALLOWANCE};
pub use membership::{MemberView, Role, StatusView, TransferView};
pub use reads::PageQuery;
pub use search::{ScheduleState, SearchPage, SearchQuery, SortBy, SpecKind};
pub use writes::{WriteOp, WriteOutcome, Written, MAX_APPLY};

/// How long a request keeps retrying while there is no leader or leadership moves.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long a follower waits to apply up to the leader's read index or a forwarded write.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// What the control plane takes from the node's configuration.
pub struct ControlSettings {
    pub election_timeout_max: Duration,
    /// A result backend is configured: run control that needs outcomes is accepted.
    pub outcomes_followed: bool,
}

/// Shared by the API services, the peer service (forwarded requests) and shutdown.
pub struct Control {
    raft: Raft,
    state: StateHandle,
    node_id: NodeId,
    cluster_name: String,
    network: PeerNetwork,
    encoder: Encoder,
    /// True while this node hands its leadership over: dispatch and writes stop.
    handing_over: watch::Sender<bool>,
    election_timeout_max: Duration,
    /// Whether this node follows task outcomes (a result backend is configured): run control
    /// that needs outcomes is refused on a leader that does not.
    outcomes_followed: bool,
    /// Writes on their way into Raft, grouped into shared entries.
    writes: tokio::sync::mpsc::Sender<group_commit::PendingWrite>,
    /// Membership changes run one at a time: Raft refuses a change while another (including
    /// the second, uniform step of a joint change) is still uncommitted.
    membership_changes: tokio::sync::Mutex<()>,
}

impl Control {
    pub fn new(
        raft: Raft,
        state: StateHandle,
        node_id: NodeId,
        cluster_name: String,
        network: PeerNetwork,
        encoder: Encoder,
        settings: ControlSettings,
    ) -> Arc<Self> {
        Arc::new(Control {
            writes: group_commit::start(raft.clone()),
            membership_changes: tokio::sync::Mutex::new(()),
            raft,
            state,
            node_id,
            cluster_name,
            network,
            encoder,
            handing_over: watch::channel(false).0,
            election_timeout_max: settings.election_timeout_max,
            outcomes_followed: settings.outcomes_followed,
        })
    }

    /// The current leader and its peer address, as this node knows it.
    fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Runs `request` on the leader, wherever it is. `Unavailable` outcomes (nothing was done)
    /// are retried until a leader answers or `LEADER_WAIT` passes.
    pub async fn on_leader(&self, request: LeaderRequest) -> Result<LeaderReply, ApiError> {
        let deadline = Instant::now() + LEADER_WAIT;
        let forwarded = Forwarded::now(request);
        loop {
            let outcome = match self.leader() {
                Some((id, _)) if id == self.node_id => {
                    self.serve_forwarded(forwarded.request.clone()).await
                }
                Some((id, addr)) => self.forward(id, &addr, &forwarded).await,
                None => Err(ApiError::Unavailable(
                    "the cluster has no leader at the moment; retry".into(),
                )),
            };
            match outcome {
                Err(ApiError::Unavailable(reason)) if Instant::now() < deadline => {
                    debug!(%reason, "leader unavailable: retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// Serves a request another node forwarded (or this node's own, when it leads). Anything
    /// but `Elect` needs this node to be the leader, and not in the middle of a handover.
    pub async fn serve_forwarded(&self, request: LeaderRequest) -> Result<LeaderReply, ApiError> {
        if let LeaderRequest::Elect = request {
            // A node whose clock is beyond the bound does not stand, even when asked to.
            if let Some(reason) = self.network.clocks().and_then(|c| c.beyond()) {
                return Err(ApiError::FailedPrecondition(reason));
            }
            self.raft
                .trigger()
                .elect()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            return Ok(LeaderReply::Done);
        }
        if let LeaderRequest::HasState = request {
            let initialized = self
                .raft
                .is_initialized()
                .await
                .map_err(|e| ApiError::Unavailable(e.to_string()))?;
            return Ok(LeaderReply::HasState(initialized));
        }
        if !self.is_leader() {
            return Err(ApiError::Unavailable(format!(
                "node {} is not the leader",
                self.node_id
            )));
        }
        if *self.handing_over.borrow() {
            return Err(ApiError::Unavailable(
                "leadership is being handed over; retry".into(),
            ));
        }
        match request {
            LeaderRequest::Write(op) => Ok(LeaderReply::Written(self.execute(*op).await?)),
            LeaderRequest::ReadIndex => {
                let (read, _) = self.raft.get_read_log_id().await.map_err(not_leader)?;
                Ok(LeaderReply::ReadIndex(read.map_or(0, |id| id.index)))
            }
            LeaderRequest::Status => Ok(LeaderReply::Status(self.status().await?)),
            LeaderRequest::AddNode {
                node_id,
                address,
                learner_only,
            } => {
                self.add_node(node_id, address, learner_only).await?;
                Ok(LeaderReply::Status(self.status().await?))
            }
            LeaderRequest::RemoveNode { node_id } => {
                self.remove_node(node_id).await?;
                Ok(LeaderReply::Status(self.status().await?))
            }
            LeaderRequest::TransferLeader { to, only_if_leader } => Ok(LeaderReply::Transferred(
                self.transfer_leadership(to, only_if_leader).await?,
            )),
            LeaderRequest::Elect => Ok(LeaderReply::Done),
            LeaderRequest::HasState => Ok(LeaderReply::HasState(true)),
        }
    }

    /// Makes the next read of local state linearizable: the leader confirms its leadership
    /// with a quorum and names the index to reach, and this node waits until it has applied it.
    pub async fn read_barrier(&self) -> Result<(), ApiError> {
        let index = match self.on_leader(LeaderRequest::ReadIndex).await? {
            LeaderReply::ReadIndex(index) => index,
            other => return Err(unexpected(&other)),
        };
        self.wait_applied(index).await
    }

    /// Waits until this node has applied `index` (a write made through the leader).
    pub async fn wait_applied(&self, index: u64) -> Result<(), ApiError> {
        self.raft
            .wait(Some(APPLY_WAIT))
            .applied_index_at_least(Some(index), "api read")
            .await
            .map(|_| ())
            .map_err(|e| {
                ApiError::Unavailable(format!(
                    "node {} has not caught up with the leader: {e}",
                    self.node_id
                ))
            })
    }
}

fn unexpected(reply: &LeaderReply) -> ApiError {
    ApiError::Internal(format!("unexpected reply from the leader: {reply:?}"))
}

/// A Raft error on a leader-only call: leadership moved (retry) or Raft stopped.
fn not_leader<E: std::fmt::Display>(err: RaftError<NodeId, E>) -> ApiError {
    match err {
        RaftError::APIError(e) => ApiError::Unavailable(e.to_string()),
        RaftError::Fatal(e) => ApiError::Unavailable(format!("raft stopped: {e}")),
    }
}

/// A Raft error on a write: leadership moved before the entry was appended (nothing done,
/// retry), a membership change was refused, or Raft stopped with the outcome unknown.
fn write_error(err: RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>) -> ApiError {
    match err {
        RaftError::APIError(ClientWriteError::ForwardToLeader(e)) => {
            ApiError::Unavailable(e.to_string())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ApiError::FailedPrecondition(e.to_string())
        }
        RaftError::Fatal(e) => ApiError::Unknown(format!("raft stopped: {e}")),
    }
}
