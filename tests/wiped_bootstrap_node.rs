//! The node that bootstraps a fresh cluster (the lowest id) loses its data together with
//! another node, while the third keeps its own: the two empty nodes must be brought back from
//! the survivor, not form a new, empty cluster that overwrites it.

mod support;

use std::time::Duration;

use belfry::api::pb;
use support::procs::{Clients, ADMIN_TOKEN};
use support::{block, wait_for, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiping_the_bootstrap_node_and_a_follower_loses_no_schedule() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let mut api = cluster.client(2, Some(ADMIN_TOKEN)).schedules;
    let created = api
        .create_schedule(pb::CreateScheduleRequest {
            schedule: Some(pb::ScheduleSpec {
                name: "kept".into(),
                task: "tests.kept".into(),
                spec: Some(pb::Spec {
                    every: "1s".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("create")
        .into_inner();
    // Node 3 (index 2) has it applied: it answered the write from its own state.
    wait_for("a few runs", Duration::from_secs(20), || {
        block(api.get_schedule(pb::GetScheduleRequest {
            name: "kept".into(),
        }))
        .filter(|s| s.fired_count >= 2)
    });

    // Nodes 1 and 2 lose everything and start again, empty, at the same time.
    cluster.wipe(0).expect("wipe a node");
    cluster.wipe(1).expect("wipe a node");
    cluster.spawn(0).expect("start a node");
    cluster.spawn(1).expect("start a node");

    // A leader is elected and the schedule is still there, same incarnation, still firing,
    // and every node has it again.
    let after = wait_for(
        "the schedule, still firing",
        Duration::from_secs(60),
        || {
            let mut api = cluster.client(2, Some(ADMIN_TOKEN)).schedules;
            block(api.get_schedule(pb::GetScheduleRequest {
                name: "kept".into(),
            }))
        },
    );
    assert_eq!(after.incarnation, created.incarnation);
    for i in 0..3 {
        wait_for(
            "every node to hold the schedule",
            Duration::from_secs(60),
            || {
                let mut api = cluster.client(i, Some(ADMIN_TOKEN)).schedules;
                block(api.get_schedule(pb::GetScheduleRequest {
                    name: "kept".into(),
                }))
                .filter(|s| s.incarnation == created.incarnation)
            },
        );
    }
    let logs = cluster.log_text();
    assert_eq!(
        logs.matches("initialized a new cluster").count(),
        1,
        "a second cluster was initialized:\n{logs}"
    );
}
