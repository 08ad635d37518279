//! An in-process cluster of Raft nodes over real loopback gRPC, for tests of the consensus
//! layer itself: each node is the durable log store, the state machine and the peer network
//! of this build, started and stopped inside the test (the test kit, `belfry_kit`, runs
//! `belfry server` processes instead and cannot reach these internals).
//!
//! Invariant: every wait polls with a deadline; nothing relies on a fixed sleep. Nodes are
//! stopped by `Cluster::shutdown` (or when the test's runtime ends).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use belfry::raft::log_store::{LogIdentity, LogStore};
use belfry::raft::network::{peer_server, PeerNetwork};
use belfry::raft::peer_auth::PeerAuth;
use belfry::raft::{NodeId, Raft};
use belfry::raft::{StateHandle, StateMachineStore};
use belfry::schedule::SpecInput;
use belfry::state::{CatchupPolicy, Command, CommandResult, ScheduleDef};
use chrono::Utc;
use openraft::{BasicNode, LogId, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use uuid::Uuid;

pub const CLUSTER: &str = "raft-cluster-test";
pub const ELECTION: Duration = Duration::from_secs(20);
pub const REPLICATION: Duration = Duration::from_secs(10);
/// Snapshot chunk size: small, so a snapshot of a few schedules travels as several
/// InstallSnapshot calls.
pub const CHUNK_BYTES: u64 = 1024;

/// Polls `check` every 20 ms until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
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
pub fn raft_config(snapshot_every: u64, keep_after_snapshot: u64) -> Arc<openraft::Config> {
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
pub struct TestNode {
    pub raft: Raft,
    pub state: StateHandle,
    stop_serving: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl TestNode {
    /// Opens the stores in `dir`, starts Raft and serves the peer protocol on `listener`.
    pub async fn start(
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
    pub async fn stop(self) {
        self.raft.shutdown().await.expect("raft shuts down");
        let _ = self.stop_serving.send(());
        tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("the server stops within 10 s")
            .expect("the server task")
            .expect("the server ran cleanly");
    }

    pub fn last_applied(&self) -> Option<u64> {
        self.raft.metrics().borrow().last_applied.map(|l| l.index)
    }
}

/// Three nodes on loopback, each with its own data directory.
pub struct Cluster {
    config: Arc<openraft::Config>,
    addrs: BTreeMap<NodeId, String>,
    pub nodes: BTreeMap<NodeId, TestNode>,
    _root: tempfile::TempDir,
}

impl Cluster {
    /// Starts nodes 1, 2 and 3 and initializes each with the same three-member membership.
    pub async fn start(config: Arc<openraft::Config>) -> Cluster {
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
    pub fn agreed_leader(&self) -> Option<NodeId> {
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

    pub async fn wait_for_leader(&self) -> NodeId {
        poll(
            "one leader all running nodes agree on",
            ELECTION,
            || async { self.agreed_leader() },
        )
        .await
    }

    /// Writes a new schedule named `name` through the current leader, retrying while the
    /// leadership settles; returns the entry's log id.
    pub async fn put(&self, name: &str) -> LogId<NodeId> {
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
    pub async fn wait_applied_everywhere(&self, index: u64, name: &str) {
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
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).expect("a running node");
        node.stop().await;
    }

    /// Starts node `id` again at its address, on an empty data directory.
    pub async fn restart_empty(&mut self, id: NodeId, generation: u32) {
        let addr = self.addrs[&id].clone();
        let listener = poll(&format!("to bind {addr} again"), REPLICATION, || async {
            TcpListener::bind(&addr).await.ok()
        })
        .await;
        let node =
            TestNode::start(id, &self.dir(id, generation), listener, self.config.clone()).await;
        self.nodes.insert(id, node);
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// A minimal schedule: an hourly interval.
pub fn put(name: &str) -> Command {
    Command::Put {
        def: ScheduleDef {
            name: name.into(),
            task: "tests.noop".into(),
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
            description: Default::default(),
            last_run_at: None,
            control: None,
        },
        expected_revision: None,
        incarnation: Uuid::new_v4(),
        at: Utc::now(),
    }
}
