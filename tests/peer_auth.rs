//! Peer calls are authenticated without TLS: a real three-node cluster whose peers share a
//! cluster secret. A caller without it (or with a wrong one) can neither vote, nor force an
//! election, nor forward writes, and is refused before its message is read, however large;
//! the cluster keeps its leader and term.

mod support;

use std::time::Duration;

use belfry::api::control::{Forwarded, LeaderRequest};
use belfry::api::pb;
use belfry::raft::network::proto::peer_client::PeerClient;
use belfry::raft::network::proto::PeerRequest;
use belfry::raft::network::MAX_MESSAGE_BYTES;
use support::procs::{with_cluster_secret, Clients, ADMIN_TOKEN};
use support::RedisServer;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A vote request for a term far ahead: granted, it would depose the leader.
fn disruptive_vote(candidate: u64) -> Vec<u8> {
    serde_json::json!({
        "vote": {"leader_id": {"term": 1_000_000, "node_id": candidate}, "committed": false},
        "last_log_id": {"leader_id": {"term": 1_000_000, "node_id": candidate}, "index": 1_000_000}
    })
    .to_string()
    .into_bytes()
}

fn peer_request(target: u64, payload: Vec<u8>) -> Request<PeerRequest> {
    Request::new(PeerRequest {
        target,
        cluster: "belfry".into(),
        payload,
        ..Default::default()
    })
}

fn with_secret<T>(mut request: Request<T>, secret: &str) -> Request<T> {
    request.metadata_mut().insert(
        "x-belfry-cluster-secret",
        secret.parse().expect("ASCII secret"),
    );
    request
}

async fn peer_client(addr: &str) -> PeerClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("connect to the node");
    PeerClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_calls_without_the_cluster_secret_are_refused() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    // A leader at all means the members authenticate each other with the secret.
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = (leader + 1) % 3;
    let (leader_id, follower_id) = (cluster.nodes[leader].id, cluster.nodes[follower].id);
    let mut api = cluster.client(leader, Some(ADMIN_TOKEN)).cluster;
    let before = api
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();

    let mut client = peer_client(&cluster.nodes[follower].addr).await;
    let elect = serde_json::to_vec(&Forwarded::now(LeaderRequest::Elect)).expect("encode");
    let transfer = serde_json::to_vec(&Forwarded::now(LeaderRequest::TransferLeader {
        to: Some(follower_id),
        only_if_leader: None,
    }))
    .expect("encode");
    let mut client_to_leader = peer_client(&cluster.nodes[leader].addr).await;

    let refusals = [
        (
            "a vote without the secret",
            client
                .vote(peer_request(follower_id, disruptive_vote(9)))
                .await,
        ),
        (
            "a vote with a wrong secret",
            client
                .vote(with_secret(
                    peer_request(follower_id, disruptive_vote(9)),
                    "not-the-cluster-secret-at-all",
                ))
                .await,
        ),
        (
            "a forced election without the secret",
            client
                .forward(peer_request(follower_id, elect.clone()))
                .await,
        ),
        (
            "a leadership transfer without the secret",
            client_to_leader
                .forward(peer_request(leader_id, transfer))
                .await,
        ),
        (
            "entries without the secret",
            client
                .append_entries(peer_request(follower_id, b"{}".to_vec()))
                .await,
        ),
        (
            "a snapshot without the secret",
            client
                .install_snapshot(peer_request(follower_id, b"{}".to_vec()))
                .await,
        ),
        // Larger than any message a node accepts: refused for the missing secret, not for
        // its size, so the node never read it.
        (
            "an oversized call without the secret",
            client
                .forward(peer_request(follower_id, vec![b' '; MAX_MESSAGE_BYTES + 1]))
                .await,
        ),
    ];
    for (what, outcome) in refusals {
        let status = outcome.expect_err(what);
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
    }

    // Nothing moved: same leader, same term.
    let after = api
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(after.leader_id, before.leader_id);
    assert_eq!(after.term, before.term);

    // With the secret, the same service answers (a stale vote is refused on its merits).
    let stale = serde_json::json!({"vote": {"leader_id": {"term": 0, "node_id": 9}, "committed": false}, "last_log_id": null});
    let reply = client
        .vote(with_cluster_secret(peer_request(
            follower_id,
            stale.to_string().into_bytes(),
        )))
        .await
        .expect("a vote reply to a member");
    let result: serde_json::Value =
        serde_json::from_slice(&reply.into_inner().payload).expect("JSON reply");
    assert_eq!(result["Ok"]["vote_granted"], false, "{result}");
    let logs = cluster.log_text();
    assert!(
        logs.contains("peers are authenticated by the cluster secret only"),
        "{logs}"
    );
}
