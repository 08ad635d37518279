//! Cluster administration through the API of a real three-node cluster: status from a follower,
//! leadership handed to a chosen node, a fourth node joining by itself (`--join`) and being
//! removed, the standard health service and server reflection.

mod support;

use std::time::Duration;

use belfry::api::pb;
use support::procs::{Clients, ADMIN_TOKEN};
use support::{block, wait_for, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_transfer_join_and_remove() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = (leader + 1) % 3;
    let mut api = cluster.client(follower, Some(ADMIN_TOKEN)).cluster;

    let status = api
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status from a follower")
        .into_inner();
    assert_eq!(status.leader_id, cluster.nodes[leader].id);
    assert_eq!(status.node_id, cluster.nodes[follower].id);
    assert_eq!(status.members.len(), 3);
    let leaders: Vec<_> = status
        .members
        .iter()
        .filter(|m| m.role == pb::Role::Leader as i32)
        .collect();
    assert_eq!(leaders.len(), 1);
    assert!(status.commit_index >= 1 && status.applied_index >= 1);

    // Hand leadership to a chosen follower.
    let target = cluster.nodes[(leader + 2) % 3].id;
    let transfer = api
        .transfer_leader(pb::TransferLeaderRequest {
            to: target,
            only_if_leader: 0,
        })
        .await
        .expect("transfer")
        .into_inner();
    assert!(transfer.transferred);
    assert_eq!(transfer.previous_leader, cluster.nodes[leader].id);
    let new_leader = wait_for("a new leader", Duration::from_secs(20), || {
        block(api.get_status(pb::GetStatusRequest {}))
            .filter(|s| s.leader_id != cluster.nodes[leader].id && s.leader_id != 0)
    });
    assert_eq!(new_leader.leader_id, transfer.new_leader);
    // `only_if_leader` naming a non-leader does nothing.
    let noop = api
        .transfer_leader(pb::TransferLeaderRequest {
            to: 0,
            only_if_leader: cluster.nodes[leader].id,
        })
        .await
        .expect("conditional transfer")
        .into_inner();
    assert!(!noop.transferred);

    // A fourth node joins by itself, as a learner promoted to voter.
    let joiner = cluster.spawn_joiner().expect("start a joiner");
    let joined_id = cluster.nodes[joiner].id;
    wait_for(
        "the joiner to become a voter",
        Duration::from_secs(60),
        || {
            block(api.get_status(pb::GetStatusRequest {})).filter(|s| {
                s.members
                    .iter()
                    .any(|m| m.id == joined_id && m.role == pb::Role::Follower as i32)
            })
        },
    );
    // It serves the API too.
    let mut via_joiner = cluster.client(joiner, Some(ADMIN_TOKEN)).cluster;
    let seen = via_joiner
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status from the new node")
        .into_inner();
    assert_eq!(seen.members.len(), 4);

    let removed = api
        .remove_node(pb::RemoveNodeRequest { node_id: joined_id })
        .await
        .expect("remove")
        .into_inner();
    assert!(removed.members.iter().all(|m| m.id != joined_id));
    let unknown = api
        .remove_node(pb::RemoveNodeRequest { node_id: 99 })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served_without_a_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let mut redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(1, &redis.url(0), "", "");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.nodes[0].addr))
            .unwrap()
            .connect()
            .await
            .expect("connect");
    let status_of = |service: &str| {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        block(HealthClient::new(channel.clone()).check(request)).map(|reply| reply.status)
    };
    // The API's health follows readiness: serving once there is a leader with Redis.
    for service in ["", "belfry.v1.Schedules", "belfry.v1.Cluster"] {
        wait_for("the service to be serving", Duration::from_secs(20), || {
            status_of(service).filter(|s| *s == ServingStatus::Serving as i32)
        });
    }
    // A leader without Redis is not ready; the process itself still is alive.
    redis.kill();
    wait_for("Schedules not serving", Duration::from_secs(20), || {
        status_of("belfry.v1.Schedules").filter(|s| *s == ServingStatus::NotServing as i32)
    });
    assert_eq!(status_of(""), Some(ServingStatus::Serving as i32));
    redis.restart().expect("restart redis-server");
    wait_for("Schedules serving again", Duration::from_secs(20), || {
        status_of("belfry.v1.Schedules").filter(|s| *s == ServingStatus::Serving as i32)
    });
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel.clone())
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reflection reply");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "belfry.v1.Schedules",
        "belfry.v1.Cluster",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    // The schema of a request message resolves, including the well-known types it imports.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "belfry.v1.Schedules".into(),
        )),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("one reply");
    assert!(matches!(
        reply.message_response,
        Some(MessageResponse::FileDescriptorResponse(_))
    ));
}
