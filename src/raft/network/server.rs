//! The receiving side of the peer protocol: `PeerService` checks each call's format and
//! address, hands Raft's RPCs to the local Raft and forwarded calls to their handler, and stamps
//! every reply with this node's clock.
//!
//! Invariant: a call reaches Raft or the handler only after `PeerAuth` passed it, in a format
//! this node reads, addressed to this node of this cluster. It must not interpret what it
//! passes on.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};

use super::super::clock::wall_micros;
use super::super::peer_auth::PeerAuth;
use super::super::{NodeId, Raft};
use super::proto::peer_server::{Peer, PeerServer};
use super::proto::{PeerReply, PeerRequest};
use super::*;

/// Serves forwarded API requests: takes the JSON request, returns the JSON reply.
pub type ForwardHandler = Arc<
    dyn Fn(Vec<u8>) -> std::pin::Pin<Box<dyn std::future::Future<Output = Vec<u8>> + Send>>
        + Send
        + Sync,
>;

/// Receives peers' RPCs for the local Raft.
pub struct PeerService {
    raft: Raft,
    node_id: NodeId,
    cluster: String,
    forward: Option<ForwardHandler>,
}

/// The peer service, ready to add to a tonic router. `auth` is checked on every call before
/// its body is read: an unauthenticated caller never makes the node buffer or decode a message.
pub fn peer_server(
    raft: Raft,
    node_id: NodeId,
    cluster: impl Into<String>,
    forward: Option<ForwardHandler>,
    auth: PeerAuth,
) -> InterceptedService<PeerServer<PeerService>, PeerAuth> {
    let server = PeerServer::new(PeerService {
        raft,
        node_id,
        cluster: cluster.into(),
        forward,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    InterceptedService::new(server, auth)
}

impl PeerService {
    /// Checks the addressee and decodes the payload.
    fn open<T: DeserializeOwned>(&self, request: Request<PeerRequest>) -> Result<T, Status> {
        let payload = self.check(request)?;
        serde_json::from_slice(&payload)
            .map_err(|e| Status::invalid_argument(format!("payload: {e}")))
    }

    /// Checks the addressee and returns the payload.
    fn check(&self, request: Request<PeerRequest>) -> Result<Vec<u8>, Status> {
        let request = request.into_inner();
        check_format(&request)?;
        if request.target != self.node_id {
            return Err(Status::failed_precondition(format!(
                "this is node {}, not node {}",
                self.node_id, request.target
            )));
        }
        if request.cluster != self.cluster {
            return Err(Status::failed_precondition(format!(
                "this node belongs to cluster {:?}, not {:?}",
                self.cluster, request.cluster
            )));
        }
        Ok(request.payload)
    }
}

/// Refuses a payload in a format this node does not read: it is never guessed at.
fn check_format(request: &PeerRequest) -> Result<(), Status> {
    crate::formats::check(wire_format(request.format), crate::formats::PEER, || {
        format!("the peer message from a member of {:?}", request.cluster)
    })
    .map_err(|e| Status::failed_precondition(e.to_string()))
}

/// A reply carrying `payload`, with this node's wall-clock times: when the request arrived
/// (`received_at`) and now.
fn stamped(payload: Vec<u8>, received_at: i64) -> Response<PeerReply> {
    Response::new(PeerReply {
        payload,
        highest_format: crate::formats::HIGHEST,
        received_at_micros: received_at,
        replied_at_micros: wall_micros(),
    })
}

fn reply<T: Serialize>(result: &T, received_at: i64) -> Result<Response<PeerReply>, Status> {
    let payload = serde_json::to_vec(result)
        .map_err(|e| Status::internal(format!("encoding the reply: {e}")))?;
    Ok(stamped(payload, received_at))
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<PeerRequest>,
    ) -> Result<Response<PeerReply>, Status> {
        let received_at = wall_micros();
        let rpc: AppendEntriesRequest<TypeConfig> = self.open(request)?;
        reply(&self.raft.append_entries(rpc).await, received_at)
    }

    async fn vote(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let received_at = wall_micros();
        let rpc: VoteRequest<NodeId> = self.open(request)?;
        reply(&self.raft.vote(rpc).await, received_at)
    }

    async fn install_snapshot(
        &self,
        request: Request<PeerRequest>,
    ) -> Result<Response<PeerReply>, Status> {
        let received_at = wall_micros();
        let rpc: InstallSnapshotRequest<TypeConfig> = self.open(request)?;
        reply(&self.raft.install_snapshot(rpc).await, received_at)
    }

    async fn forward(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let received_at = wall_micros();
        let payload = self.check(request)?;
        let handler = self
            .forward
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this node serves no API"))?;
        Ok(stamped(handler(payload).await, received_at))
    }

    async fn clock(&self, request: Request<PeerRequest>) -> Result<Response<PeerReply>, Status> {
        let received_at = wall_micros();
        self.check(request)?;
        Ok(stamped(Vec::new(), received_at))
    }
}
