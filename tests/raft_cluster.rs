//! An in-process three-node cluster over real loopback gRPC: the durable log store, the state
//! machine and the peer network together. Election, replication, failover, catch-up of a wiped
//! follower by (chunked) snapshot, and the peer protocol's refusal of misaddressed traffic.
//!
//! The cluster is `support/raft_nodes.rs`; everything waits by polling with a deadline.

#[path = "support/raft_nodes.rs"]
mod raft_nodes;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use belfry::raft::network::proto::peer_client::PeerClient;
use belfry::raft::network::proto::PeerRequest;
use belfry::raft::network::PeerNetwork;
use belfry::raft::NodeId;
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, Vote};
use raft_nodes::{poll, raft_config, Cluster, TestNode, CHUNK_BYTES, CLUSTER, REPLICATION};
use tokio::net::TcpListener;

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
