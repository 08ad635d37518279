//! The peer protocol refuses traffic meant for another node or another cluster, and payloads
//! it cannot decode, with clear gRPC statuses.

mod support;

use std::time::Duration;

use belfry::raft::network::proto::peer_client::PeerClient;
use belfry::raft::network::proto::PeerRequest;
use support::procs::with_cluster_secret;
use support::RedisServer;

#[tokio::test]
async fn wrong_target_cluster_or_payload_is_refused() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(1, &redis.url(0), "", "");
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    let addr = format!("http://{}", cluster.nodes[0].addr);
    let mut client = PeerClient::connect(addr)
        .await
        .expect("connect to the node");
    // Authenticated as a member: what is checked here comes after the cluster secret.
    let call = |target: u64, cluster: &str, payload: &[u8]| {
        with_cluster_secret(tonic::Request::new(PeerRequest {
            target,
            cluster: cluster.to_string(),
            payload: payload.to_vec(),
            ..Default::default()
        }))
    };

    let wrong_node = client.vote(call(7, "belfry", b"{}")).await.unwrap_err();
    assert_eq!(wrong_node.code(), tonic::Code::FailedPrecondition);
    assert!(
        wrong_node.message().contains("not node 7"),
        "{}",
        wrong_node.message()
    );

    let wrong_cluster = client
        .append_entries(call(1, "other", b"{}"))
        .await
        .unwrap_err();
    assert_eq!(wrong_cluster.code(), tonic::Code::FailedPrecondition);
    assert!(
        wrong_cluster.message().contains("other"),
        "{}",
        wrong_cluster.message()
    );

    let garbage = client
        .install_snapshot(call(1, "belfry", b"not json"))
        .await
        .unwrap_err();
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument);

    // The node is unharmed: it still answers a well-formed (if stale) vote request.
    let vote = serde_json::json!({"vote": {"leader_id": {"term": 0, "node_id": 9}, "committed": false}, "last_log_id": null});
    let reply = client
        .vote(call(1, "belfry", vote.to_string().as_bytes()))
        .await
        .expect("a vote reply");
    let result: serde_json::Value = serde_json::from_slice(&reply.into_inner().payload).unwrap();
    assert_eq!(result["Ok"]["vote_granted"], false, "{result}");
    assert!(cluster.is_running(0));
}

/// Every reply carries the receiver's wall-clock receive and reply times (one clock sample for
/// the caller), and the clock probe is checked like any other call before it answers.
#[tokio::test]
async fn replies_carry_the_receivers_clock_and_the_probe_is_checked_like_any_call() {
    let (_redis, _cluster, mut client) = support::procs::one_node_with_peer_client().await;
    let call = |target: u64, payload: &[u8]| {
        with_cluster_secret(tonic::Request::new(PeerRequest {
            target,
            cluster: "belfry".into(),
            payload: payload.to_vec(),
            sent_at_micros: chrono::Utc::now().timestamp_micros(),
            ..Default::default()
        }))
    };
    let before = chrono::Utc::now().timestamp_micros();
    let probe = client
        .clock(call(1, b""))
        .await
        .expect("probe")
        .into_inner();
    let after = chrono::Utc::now().timestamp_micros();
    assert!(
        before <= probe.received_at_micros
            && probe.received_at_micros <= probe.replied_at_micros
            && probe.replied_at_micros <= after,
        "{before} {probe:?} {after}"
    );
    let vote = serde_json::json!({"vote": {"leader_id": {"term": 0, "node_id": 9}, "committed": false}, "last_log_id": null});
    let reply = client
        .vote(call(1, vote.to_string().as_bytes()))
        .await
        .expect("a vote reply")
        .into_inner();
    assert!(reply.received_at_micros > 0 && reply.replied_at_micros >= reply.received_at_micros);

    let wrong_node = client.clock(call(7, b"")).await.unwrap_err();
    assert_eq!(wrong_node.code(), tonic::Code::FailedPrecondition);
    let unauthenticated = client
        .clock(tonic::Request::new(PeerRequest {
            target: 1,
            cluster: "belfry".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(unauthenticated.code(), tonic::Code::Unauthenticated);
}
