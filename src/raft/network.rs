//! The gRPC transport between peers: `PeerNetwork` sends openraft's RPCs over one cached channel
//! per peer, `PeerService` receives them and hands them to the local Raft.
//!
//! Invariant: a received call reaches Raft (or the `Forward` handler) only if it passed
//! `PeerAuth`, is in a format this node reads, and is addressed to this node of this cluster;
//! every call sent carries the cluster secret, when there is one. Every call sent and answered
//! carries wall-clock timestamps, and every answered call with them is one clock sample
//! (`clock::PeerClocks`). Owns connections and encoding only: it must not interpret Raft
//! messages nor forwarded calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use super::clock::{wall_micros, PeerClocks};
use super::peer_auth::ClusterSecret;
use super::{NodeId, TypeConfig};

/// The generated gRPC code of `proto/belfry/raft/v1/raft.proto`.
pub mod proto {
    tonic::include_proto!("belfry.raft.v1");
}

mod server;

pub use server::{peer_server, ForwardHandler, PeerService};

use proto::peer_client::PeerClient;
use proto::{PeerReply, PeerRequest};

/// The largest message either side accepts: big enough for a snapshot chunk or a large batch.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// How long a (re)connection to a peer may take before the call fails as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// HTTP/2 pings on otherwise idle connections, so a dead peer is noticed and redialled.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The highest format each peer advertised in its latest reply.
type Advertised = Arc<Mutex<HashMap<NodeId, u32>>>;

/// A format as sent on the wire: 0 (a sender that predates the field) is format 1.
fn wire_format(format: u32) -> u32 {
    format.max(1)
}

/// A peer request from this node: `payload` in the current peer format.
fn peer_request(target: NodeId, cluster: &str, payload: Vec<u8>) -> PeerRequest {
    PeerRequest {
        target,
        cluster: cluster.to_string(),
        payload,
        format: crate::formats::PEER,
        highest_format: crate::formats::HIGHEST,
        sent_at_micros: wall_micros(),
    }
}

/// Whether `addr` is a peer address this transport can dial: `host:port`.
pub fn is_host_port(addr: &str) -> bool {
    matches!(addr.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Creates clients for peers, reusing one channel per (node, address).
#[derive(Clone)]
pub struct PeerNetwork {
    cluster: String,
    channels: Arc<Mutex<HashMap<(NodeId, String), Channel>>>,
    advertised: Advertised,
    /// Mutual TLS: the cluster CA and this node's certificate.
    tls: Option<ClientTlsConfig>,
    /// Sent with every call.
    secret: Option<ClusterSecret>,
    /// Where the clock samples of answered calls go.
    clocks: Option<PeerClocks>,
}

impl PeerNetwork {
    /// A network for the members of `cluster`: every request it sends names the cluster, and
    /// peers of another cluster refuse it.
    pub fn new(cluster: impl Into<String>) -> Self {
        PeerNetwork {
            cluster: cluster.into(),
            channels: Arc::default(),
            advertised: Arc::default(),
            tls: None,
            secret: None,
            clocks: None,
        }
    }

    /// Records a clock sample from every answered call into `clocks`.
    pub fn with_clocks(mut self, clocks: PeerClocks) -> Self {
        self.clocks = Some(clocks);
        self
    }

    /// The clock samples of answered calls, when kept.
    pub fn clocks(&self) -> Option<&PeerClocks> {
        self.clocks.as_ref()
    }

    /// The reference time a call starts at, for its clock sample.
    fn sample_start(&self) -> i64 {
        self.clocks.as_ref().map_or(0, PeerClocks::reference_micros)
    }

    /// Records the clock sample of a call to `peer` started at `t0` and answered by `reply`.
    fn record_sample(&self, peer: NodeId, t0: i64, reply: &PeerReply) {
        if let Some(clocks) = &self.clocks {
            let t3 = clocks.reference_micros();
            clocks.record(
                peer,
                t0,
                reply.received_at_micros,
                reply.replied_at_micros,
                t3,
            );
        }
    }

    /// Sends a clock probe to `target`: its reply is one clock sample. A peer that predates
    /// the probe answers `UNIMPLEMENTED`.
    pub async fn probe_clock(
        &self,
        target: NodeId,
        addr: &str,
        timeout: Duration,
    ) -> Result<(), Status> {
        let channel = self.channel(target, addr).map_err(Status::unavailable)?;
        let mut client = PeerClient::new(channel);
        let mut request = self.request(target, Vec::new());
        request.set_timeout(timeout);
        let t0 = self.sample_start();
        let reply = client.clock(request).await?.into_inner();
        self.record_sample(target, t0, &reply);
        // Every member probes every other: a follower that becomes leader already knows the
        // formats of members that are down by then.
        record_advertised(&self.advertised, target, &reply);
        Ok(())
    }

    /// Sends the cluster secret with every call.
    pub fn with_secret(mut self, secret: ClusterSecret) -> Self {
        self.secret = Some(secret);
        self
    }

    /// A peer call to `target`, with the cluster secret.
    fn request(&self, target: NodeId, payload: Vec<u8>) -> Request<PeerRequest> {
        let mut request = Request::new(peer_request(target, &self.cluster, payload));
        if let Some(secret) = &self.secret {
            secret.stamp(&mut request);
        }
        request
    }

    /// The highest format each peer advertised in its latest reply to this node.
    pub fn advertised_formats(&self) -> HashMap<NodeId, u32> {
        self.advertised
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// Talks to peers over TLS, presenting this node's certificate.
    pub fn with_tls(mut self, tls: ClientTlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The channel to `target` at `addr`, created (lazily connecting) on first use. A node
    /// that moved to another address gets a new channel; the old one is dropped.
    fn channel(&self, target: NodeId, addr: &str) -> Result<Channel, String> {
        let key = (target, addr.to_string());
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| "channel cache poisoned".to_string())?;
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let uri = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("{scheme}://{addr}")
        };
        let mut endpoint = Endpoint::from_shared(uri)
            .map_err(|e| format!("peer address {addr:?}: {e}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("peer address {addr:?}: {e}"))?;
        }
        // Never blocks: the connection is made by the first call, and again after a failure.
        let channel = endpoint.connect_lazy();
        channels.retain(|(id, _), _| *id != target);
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// Sends a forwarded API request (JSON) to `target` and returns its JSON reply.
    pub async fn forward(
        &self,
        target: NodeId,
        addr: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, Status> {
        let channel = self.channel(target, addr).map_err(Status::unavailable)?;
        let mut client = PeerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut request = self.request(target, payload);
        request.set_timeout(timeout);
        let t0 = self.sample_start();
        let reply = client.forward(request).await?.into_inner();
        self.record_sample(target, t0, &reply);
        record_advertised(&self.advertised, target, &reply);
        Ok(reply.payload)
    }

    /// How many peer channels are cached.
    pub fn cached_channels(&self) -> usize {
        self.channels.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        let client = self.channel(target, &node.addr).map(|channel| {
            PeerClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        });
        PeerConnection {
            target,
            network: self.clone(),
            client,
            advertised: self.advertised.clone(),
        }
    }
}

fn record_advertised(advertised: &Advertised, peer: NodeId, reply: &PeerReply) {
    if let Ok(mut advertised) = advertised.lock() {
        advertised.insert(peer, wire_format(reply.highest_format));
    }
}

/// A client for one peer.
pub struct PeerConnection {
    target: NodeId,
    /// Makes its requests (cluster name, secret).
    network: PeerNetwork,
    client: Result<PeerClient<Channel>, String>,
    advertised: Advertised,
}

#[derive(Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerConnection {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(reason) => {
                return Err(RPCError::Unreachable(Unreachable::new(
                    &std::io::Error::other(reason.clone()),
                )))
            }
        };
        let payload =
            serde_json::to_vec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut grpc_request = self.network.request(self.target, payload);
        // openraft's deadline for this RPC, enforced by the client and sent to the server.
        grpc_request.set_timeout(option.hard_ttl());
        let t0 = self.network.sample_start();
        let sent = match rpc {
            Rpc::AppendEntries => client.append_entries(grpc_request).await,
            Rpc::Vote => client.vote(grpc_request).await,
            Rpc::InstallSnapshot => client.install_snapshot(grpc_request).await,
        };
        let reply = sent.map_err(|status| match status.code() {
            // No connection (refused, connect timeout) or no answer within the deadline (a
            // dead or partitioned peer): openraft backs off before trying this peer again,
            // instead of retrying (and logging) on every heartbeat.
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                RPCError::Unreachable(Unreachable::new(&status))
            }
            // The peer answered but refused the call (wrong node or cluster, bad payload) or
            // the exchange broke mid-way: retried at openraft's normal pace.
            _ => RPCError::Network(NetworkError::new(&status)),
        })?;
        let reply = reply.into_inner();
        self.network.record_sample(self.target, t0, &reply);
        record_advertised(&self.advertised, self.target, &reply);
        let result: Result<Resp, E> = serde_json::from_slice(&reply.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        if entries < 2 {
            return self.call(Rpc::AppendEntries, &rpc, &option).await;
        }
        // openraft gives every AppendEntries the heartbeat interval, whatever it carries, and
        // resends the same batch at once after a timeout: a batch too big to travel and be
        // stored in that time (for a new or far-behind follower) would be resent forever.
        // Giving up a little before openraft does, asking for half as many entries, shrinks
        // the batch until it fits.
        match tokio::time::timeout(
            option.soft_ttl(),
            self.call(Rpc::AppendEntries, &rpc, &option),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
