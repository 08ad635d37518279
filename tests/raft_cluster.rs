//! An in-process three-node cluster over real loopback gRPC: the durable log store, the state
//! machine and the peer network together. Election, replication, failover, catch-up of a wiped
//! follower by (chunked) snapshot, and the peer protocol's refusal of misaddressed traffic.
//!
//! Everything waits by polling with a deadline; nothing relies on a fixed sleep.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belfry::raft::log_store::{LogIdentity, LogStore};
use belfry::raft::network::proto::peer_client::PeerClient;
use belfry::raft::network::proto::PeerRequest;
use belfry::raft::network::{peer_server, PeerNetwork};
use belfry::raft::peer_auth::PeerAuth;
use belfry::raft::{NodeId, Raft};
use belfry::raft::{StateHandle, StateMachineStore};
use belfry::schedule::SpecInput;
use belfry::state::{CatchupPolicy, Command, CommandResult, ScheduleDef};
use chrono::Utc;
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, LogId, ServerState, SnapshotPolicy, Vote};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

const CLUSTER: &str = "raft-cluster-test";
const ELECTION: Duration = Duration::from_secs(20);
const REPLICATION: Duration = Duration::from_secs(10);
/// Snapshot chunk size: small, so a snapshot of a few schedules travels as several
/// InstallSnapshot calls.
const CHUNK_BYTES: u64 = 1024;

/// Polls `check` every 20 ms until it yields `Some`, or panics naming `what` after `timeout`.
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Test timings: heartbeat 100 ms, elections after 500–1000 ms; snapshots as asked.
fn raft_config(snapshot_every: u64, keep_after_snapshot: u64) -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: CLUSTER.into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        install_snapshot_timeout: 2_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(snapshot_every),
        max_in_snapshot_log_to_keep: keep_after_snapshot,
        purge_batch_size: 1,
        snapshot_max_chunk_size: CHUNK_BYTES,
        ..Default::default()
    };
    Arc::new(config.validate().expect("a valid raft config"))
}

/// One running node: its Raft, its applied state and its gRPC server.
struct TestNode {
    raft: Raft,
    state: StateHandle,
    stop_serving: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestNode {
    /// Opens the stores in `dir`, starts Raft and serves the peer protocol on `listener`.
    async fn start(
        id: NodeId,
        dir: &Path,
        listener: TcpListener,
        config: Arc<openraft::Config>,
    ) -> TestNode {
        std::fs::create_dir_all(dir).expect("node data dir");
        let log_store = LogStore::open(
            &dir.join("raft-log.redb"),
            &LogIdentity {
                cluster: CLUSTER.into(),
                node_id: id,
            },
        )
        .expect("open the log store");
        let state_machine =
            StateMachineStore::open(&dir.join("state")).expect("open the state machine");
        let state = state_machine.handle();
        let raft = Raft::new(
            id,
            config,
            PeerNetwork::new(CLUSTER),
            log_store,
            state_machine,
        )
        .await
        .expect("start raft");
        let (stop_serving, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(peer_server(
                    raft.clone(),
                    id,
                    CLUSTER,
                    None,
                    PeerAuth::default(),
                ))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stopped.await;
                }),
        );
        TestNode {
            raft,
            state,
            stop_serving,
            server,
        }
    }

    /// Shuts Raft down, then the server (which lets peers' open connections go).
    async fn stop(self) {
        self.raft.shutdown().await.expect("raft shuts down");
        let _ = self.stop_serving.send(());
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task")
            .expect("the server ran cleanly");
    }

    fn last_applied(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_applied.map(|l| l.index)
    }
}

/// Three nodes on loopback, each with its own data directory.
struct Cluster {
    config: Arc<openraft::Config>,
    addrs: BTreeMap<NodeId, String>,
    nodes: BTreeMap<NodeId, TestNode>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Starts nodes 1, 2 and 3 and initializes each with the same three-member membership.
    async fn start(config: Arc<openraft::Config>) -> Cluster {
        let root = tempfile::tempdir().expect("temp dir");
        let mut listeners = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for id in 1..=3 {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local address").to_string();
            addrs.insert(id, addr);
            listeners.insert(id, listener);
        }
        let mut cluster = Cluster {
            config,
            addrs,
            nodes: BTreeMap::new(),
            _root: root,
        };
        for (id, listener) in listeners {
            let node =
                TestNode::start(id, &cluster.dir(id, 0), listener, cluster.config.clone()).await;
            cluster.nodes.insert(id, node);
        }
        let members: BTreeMap<NodeId, BasicNode> = cluster
            .addrs
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        for node in cluster.nodes.values() {
            // A node that has already heard from a candidate refuses; the membership is the
            // same anyway.
            match node.raft.initialize(members.clone()).await {
                Ok(()) => {}
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(_),
                )) => {}
                Err(err) => panic!("initialize: {err}"),
            }
        }
        cluster
    }

    /// Node `id`'s data directory for its `generation`-th life.
    fn dir(&self, id: NodeId, generation: u32) -> PathBuf {
        self._root.path().join(format!("node-{id}-{generation}"))
    }

    /// The leader every running node agrees on, if exactly one running node is leader.
    fn agreed_leader(&self) -> Option<NodeId> {
        let metrics: Vec<_> = self
            .nodes
            .values()
            .map(|n| n.raft.metrics().borrow().clone())
            .collect();
        let leaders: Vec<NodeId> = metrics
            .iter()
            .filter(|m| m.state == ServerState::Leader)
            .map(|m| m.id)
            .collect();
        let [leader] = leaders[..] else {
            return None;
        };
        let term = metrics.iter().find(|m| m.id == leader)?.current_term;
        metrics
            .iter()
            .all(|m| m.current_leader == Some(leader) && m.current_term == term)
            .then_some(leader)
    }

    async fn wait_for_leader(&self) -> NodeId {
        poll(
            "one leader all running nodes agree on",
            ELECTION,
            || async { self.agreed_leader() },
        )
        .await
    }

    /// Writes a new schedule named `name` through the current leader, retrying while the
    /// leadership settles; returns the entry's log id.
    async fn put(&self, name: &str) -> LogId<NodeId> {
        let command = put(name);
        poll(
            &format!("the write of {name:?} to commit"),
            ELECTION,
            || {
                let command = command.clone();
                async move {
                    let leader = self.agreed_leader()?;
                    let response = self.nodes[&leader].raft.client_write(command).await.ok()?;
                    assert_eq!(response.data, CommandResult::Revision(1), "{name}");
                    Some(response.log_id)
                }
            },
        )
        .await
    }

    /// Waits until every running node has applied `index` and holds schedule `name`.
    async fn wait_applied_everywhere(&self, index: u64, name: &str) {
        for (id, node) in &self.nodes {
            poll(
                &format!("node {id} to apply log {index}"),
                REPLICATION,
                || async { (node.last_applied() >= Some(index)).then_some(()) },
            )
            .await;
            assert!(
                node.state.read().await.data.schedules().contains_key(name),
                "node {id} has applied {index} but has no schedule {name:?}"
            );
        }
    }

    /// Stops node `id` (Raft, then its server); its address is kept for a restart.
    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("a running node");
        node.stop().await;
    }

    /// Starts node `id` again at its address, on an empty data directory.
    async fn restart_empty(&mut self, id: NodeId, generation: u32) {
        let addr = self.addrs[&id].clone();
        let listener = poll(&format!("to bind {addr} again"), REPLICATION, || async {
            TcpListener::bind(&addr).await.ok()
        })
        .await;
        let node =
            TestNode::start(id, &self.dir(id, generation), listener, self.config.clone()).await;
        self.nodes.insert(id, node);
    }

    async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// A minimal schedule: an hourly interval.
fn put(name: &str) -> Command {
    Command::Put {
        def: ScheduleDef {
            name: name.into(),
            task: "tests.noop".to_string(),
            spec: SpecInput {
                every: Some("1h".into()),
                ..Default::default()
            },
            args: Vec::new(),
            kwargs: Default::default(),
            options: Default::default(),
            catchup: CatchupPolicy::default(),
            enabled: true,
            labels: Default::default(),
            description: String::new(),
            last_run_at: None,
        },
        expected_revision: None,
        incarnation: Uuid::new_v4(),
        at: Utc::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elects_one_leader_replicates_and_fails_over() {
    let mut cluster = Cluster::start(raft_config(5_000, 1_000)).await;
    let first_leader = cluster.wait_for_leader().await;

    let first = cluster.put("first").await;
    cluster.wait_applied_everywhere(first.index, "first").await;

    cluster.stop(first_leader).await;
    let second_leader = cluster.wait_for_leader().await;
    assert_ne!(second_leader, first_leader);
    assert_eq!(cluster.nodes.len(), 2);

    let second = cluster.put("second").await;
    assert!(second.index > first.index, "{second} after {first}");
    assert!(second.leader_id.term > first.leader_id.term);
    cluster
        .wait_applied_everywhere(second.index, "second")
        .await;
    assert!(cluster.nodes[&second_leader]
        .state
        .read()
        .await
        .data
        .schedules()
        .contains_key("first"));

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_follower_catches_up_by_snapshot() {
    // A snapshot every 5 entries, keeping no log behind it.
    let mut cluster = Cluster::start(raft_config(5, 0)).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster
        .nodes
        .keys()
        .find(|id| **id != leader)
        .expect("a follower");
    cluster.stop(follower).await;

    let names: Vec<String> = (0..30).map(|i| format!("schedule-{i:02}")).collect();
    let mut last = None;
    for name in &names {
        last = Some(cluster.put(name).await);
    }
    let last = last.expect("writes");
    cluster
        .wait_applied_everywhere(last.index, &names[29])
        .await;

    // The leader has snapshotted and purged the beginning of its log: the wiped follower can
    // only be brought up to date by a snapshot.
    let leader_raft = cluster.nodes[&leader].raft.clone();
    poll("the leader to snapshot and purge", REPLICATION, || async {
        let m = leader_raft.metrics().borrow().clone();
        let snapshot = m.snapshot?.index;
        let purged = m.purged?.index;
        (snapshot >= 20 && purged >= 10).then_some(())
    })
    .await;

    let snapshot = leader_raft
        .get_snapshot()
        .await
        .expect("read the leader's snapshot")
        .expect("the leader has a snapshot");
    let size = snapshot.snapshot.get_ref().len();
    assert!(
        size > 4 * CHUNK_BYTES as usize,
        "a {size}-byte snapshot would not exercise chunking"
    );

    cluster.restart_empty(follower, 1).await;
    let target = leader_raft
        .metrics()
        .borrow()
        .last_applied
        .expect("applied");
    let restarted = &cluster.nodes[&follower];
    poll(
        "the wiped follower to reach the leader",
        REPLICATION,
        || async { (restarted.last_applied() >= Some(target.index)).then_some(()) },
    )
    .await;
    let metrics = restarted.raft.metrics().borrow().clone();
    assert!(
        metrics.snapshot.is_some(),
        "the follower caught up without installing a snapshot: {metrics:?}"
    );
    let schedules: BTreeSet<String> = restarted
        .state
        .read()
        .await
        .data
        .schedules()
        .keys()
        .map(|name| name.to_string())
        .collect();
    assert_eq!(schedules, names.iter().cloned().collect());

    // And it keeps replicating normally afterwards.
    let after = cluster.put("after-snapshot").await;
    cluster
        .wait_applied_everywhere(after.index, "after-snapshot")
        .await;

    cluster.shutdown().await;
}

/// A valid vote request, so that only the envelope can make a call fail.
fn vote_payload() -> Vec<u8> {
    serde_json::to_vec(&VoteRequest::<NodeId>::new(Vote::new(1, 2), None)).expect("encode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misaddressed_or_garbled_peer_calls_are_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address").to_string();
    let node = TestNode::start(1, root.path(), listener, raft_config(5_000, 1_000)).await;

    let mut client = PeerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let request = |target: NodeId, cluster: &str, payload: Vec<u8>| PeerRequest {
        target,
        cluster: cluster.to_string(),
        payload,
        ..Default::default()
    };

    // Another node id, on every RPC: refused before the payload is even looked at.
    let refused = [
        client.vote(request(2, CLUSTER, vote_payload())).await,
        client
            .append_entries(request(2, CLUSTER, b"{}".to_vec()))
            .await,
        client
            .install_snapshot(request(2, CLUSTER, b"{}".to_vec()))
            .await,
    ];
    for result in refused {
        let status = result.expect_err("a call for node 2 reaching node 1");
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("not node 2"), "{status:?}");
    }

    // Another cluster.
    let status = client
        .vote(request(1, "another-cluster", vote_payload()))
        .await
        .expect_err("a call from another cluster");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");

    // Garbage payloads.
    for payload in [b"not json".to_vec(), b"{}".to_vec(), Vec::new()] {
        let status = client
            .append_entries(request(1, CLUSTER, payload))
            .await
            .expect_err("an undecodable request");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    // The node is unharmed and answers a well-formed call.
    let reply = client
        .vote(request(1, CLUSTER, vote_payload()))
        .await
        .expect("a vote reply");
    let result: serde_json::Value =
        serde_json::from_slice(&reply.into_inner().payload).expect("a JSON reply");
    assert!(result.get("Ok").is_some(), "{result}");

    // Through the network client, a wrong id is a network error, not an unreachable peer.
    let mut network = PeerNetwork::new(CLUSTER);
    let mut wrong = network
        .new_client(2, &BasicNode { addr: addr.clone() })
        .await;
    let err = wrong
        .vote(
            VoteRequest::new(Vote::new(1, 2), None),
            RPCOption::new(Duration::from_secs(1)),
        )
        .await
        .expect_err("node 1 refuses a vote meant for node 2");
    assert!(matches!(err, RPCError::Network(_)), "{err:?}");

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_network_caches_channels_and_fails_fast_on_dead_peers() {
    // A port nobody listens on.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local address").to_string()
    };
    let mut network = PeerNetwork::new(CLUSTER);
    let node = BasicNode { addr: dead.clone() };
    for _ in 0..100 {
        let _ = network.new_client(7, &node).await;
    }
    assert_eq!(network.cached_channels(), 1);

    let mut client = network.new_client(7, &node).await;
    let started = Instant::now();
    let err = client
        .vote(
            VoteRequest::new(Vote::new(1, 1), None),
            RPCOption::new(Duration::from_secs(5)),
        )
        .await
        .expect_err("nobody listens");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "an unreachable peer took {:?} to fail",
        started.elapsed()
    );

    // A node that moved gets a new channel; the old one is dropped.
    let _ = network
        .new_client(
            7,
            &BasicNode {
                addr: "127.0.0.1:1".into(),
            },
        )
        .await;
    let _ = network.new_client(8, &node).await;
    assert_eq!(network.cached_channels(), 2);

    // An address that is no URI is unreachable, not a panic.
    let mut bad = network
        .new_client(
            9,
            &BasicNode {
                addr: "not a valid address".into(),
            },
        )
        .await;
    let err = bad
        .vote(
            VoteRequest::new(Vote::new(1, 1), None),
            RPCOption::new(Duration::from_secs(1)),
        )
        .await
        .expect_err("no such address");
    assert!(matches!(err, RPCError::Unreachable(_)), "{err:?}");
}
