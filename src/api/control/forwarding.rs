//! Requests on their way to the leader: what may be forwarded (`LeaderRequest`), its envelope
//! with a deadline (`Forwarded`), sending one over the peer protocol, and serving one that
//! arrives from another node.
//!
//! Invariant: a forwarded write is never started after its deadline, and a request in a format
//! this node does not read is refused before its contents are looked at. It must not decide
//! what a request does (that is `Control::serve_forwarded`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Control, StatusView, TransferView, WriteOp, Written, LEADER_WAIT};
use crate::api::error::ApiError;
use crate::raft::network::ForwardHandler;
use crate::raft::NodeId;

/// A request only the leader can serve; followers forward it over the peer protocol.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderRequest {
    Write(Box<WriteOp>),
    /// The index a linearizable read must have applied.
    ReadIndex,
    Status,
    AddNode {
        node_id: NodeId,
        address: String,
        learner_only: bool,
    },
    RemoveNode {
        node_id: NodeId,
    },
    TransferLeader {
        to: Option<NodeId>,
        only_if_leader: Option<NodeId>,
    },
    /// From a leader handing over to this node: start an election now. Served by any node.
    Elect,
    /// Whether this node holds Raft state (is part of a cluster). Served by any node.
    HasState,
}

/// A request on its way to the leader, with the forwarding node's deadline for starting it.
///
/// A forwarded call can reach the leader long after it was sent (a partition holds its
/// packets, TCP delivers them when it heals), after the caller gave up, retried elsewhere
/// and went on: a write started then could undo a newer one. The leader refuses to start a
/// write whose deadline, allowing for clock differences between nodes, has passed.
///
/// `format` is its first field, so it is serialized as the format label (see `formats`); a
/// request from a build that predates it is format 1.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Forwarded {
    #[serde(default = "format_1")]
    pub format: u32,
    pub request: LeaderRequest,
    /// Wall-clock time on the forwarding node after which the request must not start.
    pub not_after: DateTime<Utc>,
}

/// How far the leader's clock may run ahead of a forwarding node's before forwarded writes
/// are refused as late.
pub const FORWARD_CLOCK_ALLOWANCE: Duration = Duration::from_secs(2);

fn format_1() -> u32 {
    1
}

impl Forwarded {
    /// `request`, to be started within `LEADER_WAIT` from now.
    pub fn now(request: LeaderRequest) -> Forwarded {
        Forwarded {
            format: Self::format_of(&request),
            request,
            not_after: Utc::now() + LEADER_WAIT,
        }
    }

    /// The format a request is forwarded in: the first that carries it, so a leader of an
    /// earlier build still reads every request it knows.
    pub fn format_of(request: &LeaderRequest) -> u32 {
        match request {
            LeaderRequest::Write(op)
                if matches!(
                    **op,
                    WriteOp::Backfill(_)
                        | WriteOp::SkipOccurrences { .. }
                        | WriteOp::PauseUntil { .. }
                ) =>
            {
                2
            }
            _ => 1,
        }
    }

    /// Reads a forwarded request, refusing one in a format this node does not read before
    /// looking at its contents (which could mean something else in that format).
    pub fn decode(bytes: &[u8]) -> Result<Forwarded, ApiError> {
        crate::formats::check_label(bytes, crate::formats::FORWARDED, || {
            "the forwarded request".into()
        })
        .map_err(|e| ApiError::FailedPrecondition(e.to_string()))?;
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::invalid("request", format!("undecodable forwarded request: {e}"))
        })
    }

    /// Refuses a write that arrives after its deadline; reads and cluster calls have no lasting
    /// effect of their own and still run.
    pub fn check_deadline(&self, now: DateTime<Utc>) -> Result<(), ApiError> {
        let LeaderRequest::Write(_) = self.request else {
            return Ok(());
        };
        let late = now - self.not_after;
        match late.to_std() {
            Ok(late) if late > FORWARD_CLOCK_ALLOWANCE => Err(ApiError::DeadlineExceeded(format!(
                "the forwarded write reached the leader {} ms after its deadline and was not started; nothing changed",
                late.as_millis()
            ))),
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LeaderReply {
    Written(Written),
    ReadIndex(u64),
    Status(StatusView),
    Transferred(TransferView),
    Done,
    HasState(bool),
}

impl Control {
    pub(super) async fn forward(
        &self,
        leader: NodeId,
        addr: &str,
        request: &Forwarded,
    ) -> Result<LeaderReply, ApiError> {
        let payload = serde_json::to_vec(request)
            .map_err(|e| ApiError::Internal(format!("encoding a forwarded request: {e}")))?;
        let reply = self
            .network
            .forward(leader, addr, payload, LEADER_WAIT * 2)
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable => ApiError::Unavailable(format!(
                    "the leader (node {leader}) cannot be reached: {}",
                    status.message()
                )),
                _ => ApiError::Unknown(format!(
                    "the leader (node {leader}) did not answer; the request may or may not have taken effect: {}",
                    status.message()
                )),
            })?;
        serde_json::from_slice::<Result<LeaderReply, ApiError>>(&reply)
            .map_err(|e| ApiError::Internal(format!("decoding the leader's reply: {e}")))?
    }

    /// The peers (of `peers`, other than this node) that answer and hold Raft state. Peers that
    /// cannot be reached within `timeout` are left out.
    pub async fn peers_with_state(
        &self,
        peers: &std::collections::BTreeMap<NodeId, String>,
        timeout: Duration,
    ) -> Vec<NodeId> {
        let Ok(payload) = serde_json::to_vec(&Forwarded::now(LeaderRequest::HasState)) else {
            return Vec::new();
        };
        let mut with_state = Vec::new();
        for (id, addr) in peers.iter().filter(|(id, _)| **id != self.node_id) {
            let asked = self.network.forward(*id, addr, payload.clone(), timeout);
            let Ok(Ok(reply)) = tokio::time::timeout(timeout, asked).await else {
                continue;
            };
            if let Ok(Ok(LeaderReply::HasState(true))) =
                serde_json::from_slice::<Result<LeaderReply, ApiError>>(&reply)
            {
                with_state.push(*id);
            }
        }
        with_state
    }

    /// Serves the bytes of a request another node forwarded: decoded here, refused if late,
    /// run by `serve_forwarded`, and the outcome encoded for the peer protocol.
    pub(crate) async fn serve_forwarded_bytes(&self, payload: &[u8]) -> Vec<u8> {
        let outcome = match Forwarded::decode(payload) {
            Ok(forwarded) => match forwarded.check_deadline(Utc::now()) {
                Ok(()) => self.serve_forwarded(forwarded.request).await,
                Err(late) => {
                    tracing::warn!(%late, "refused a forwarded write that arrived late");
                    Err(late)
                }
            },
            Err(e) => Err(e),
        };
        serde_json::to_vec(&outcome).unwrap_or_default()
    }

    /// The handler the peer service calls with requests other nodes pass to this one.
    pub fn forward_handler(self: &Arc<Self>) -> ForwardHandler {
        let control = self.clone();
        Arc::new(move |payload: Vec<u8>| {
            let control = control.clone();
            Box::pin(async move { control.serve_forwarded_bytes(&payload).await })
        })
    }
}
