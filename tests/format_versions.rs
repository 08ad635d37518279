//! A running node refuses peer messages and forwarded requests in a format newer than it
//! reads, with a status that names the format, and advertises the highest format it reads.

mod support;

use belfry::api::control::{Forwarded, LeaderReply, LeaderRequest};
use belfry::api::ApiError;
use belfry::raft::network::proto::PeerRequest;
use support::procs::with_cluster_secret;

#[tokio::test]
async fn newer_formats_are_refused_and_the_highest_is_advertised() {
    let (_redis, _cluster, mut client) = support::procs::one_node_with_peer_client().await;
    // As a member would send it: with the cluster's secret.
    let call = |format: u32, payload: Vec<u8>| {
        with_cluster_secret(tonic::Request::new(PeerRequest {
            target: 1,
            cluster: "belfry".into(),
            payload,
            format,
            highest_format: format,
            sent_at_micros: 0,
        }))
    };
    let vote = serde_json::json!({"vote": {"leader_id": {"term": 0, "node_id": 9}, "committed": false}, "last_log_id": null});
    let vote = vote.to_string().into_bytes();

    let newer = client.vote(call(2, vote.clone())).await.unwrap_err();
    assert_eq!(newer.code(), tonic::Code::FailedPrecondition);
    assert!(newer.message().contains("format 2"), "{}", newer.message());

    // Format 1, labelled or not (0: a sender that predates the field), is served, and the
    // reply advertises the highest format this build reads.
    for format in [0, 1] {
        let reply = client
            .vote(call(format, vote.clone()))
            .await
            .expect("a vote reply")
            .into_inner();
        assert_eq!(reply.highest_format, belfry::formats::HIGHEST);
    }

    // A forwarded request labelled with a newer format is refused before it is read.
    let status = serde_json::to_vec(&Forwarded::now(LeaderRequest::Status)).expect("encode");
    let newer = String::from_utf8(status.clone())
        .expect("json")
        .replacen(
            "{\"format\":1,",
            &format!("{{\"format\":{},", belfry::formats::FORWARDED + 1),
            1,
        )
        .into_bytes();
    assert_ne!(newer, status);
    let reply = client
        .forward(call(1, newer))
        .await
        .expect("a forward reply")
        .into_inner();
    let outcome: Result<LeaderReply, ApiError> =
        serde_json::from_slice(&reply.payload).expect("a reply");
    match outcome {
        Err(ApiError::FailedPrecondition(message)) => {
            let newer = format!("format {}", belfry::formats::FORWARDED + 1);
            assert!(message.contains(&newer), "{message}")
        }
        other => panic!("a request of a newer format was not refused: {other:?}"),
    }
    let reply = client
        .forward(call(1, status))
        .await
        .expect("a forward reply")
        .into_inner();
    let outcome: Result<LeaderReply, ApiError> =
        serde_json::from_slice(&reply.payload).expect("a reply");
    assert!(matches!(outcome, Ok(LeaderReply::Status(_))), "{outcome:?}");
}
