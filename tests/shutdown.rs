//! SIGTERM ends a node promptly whatever it is waiting for. A rolling restart in a 30-minute
//! chaos run left a follower running 20 s after its SIGTERM (until the harness killed it):
//! shutdown then waited, without bound, for Raft and for open calls.

mod support;

use std::time::Duration;

use belfry::api::pb;
use support::procs::{ProcCluster, ADMIN_TOKEN};
use support::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_told_to_stop_while_its_peers_are_frozen_exits_in_time() {
    let redis = RedisServer::start();
    let mut cluster = ProcCluster::start(3, &redis.url(0), "", "");
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (0..3).find(|i| *i != leader).unwrap_or_default();
    let others: Vec<usize> = (0..3).filter(|i| *i != follower).collect();
    for i in &others {
        cluster.signal(*i, "STOP");
    }
    // A write the follower forwards to its frozen leader stays open while it shuts down.
    let mut client = cluster.client(follower, Some(ADMIN_TOKEN)).schedules;
    let pending = tokio::spawn(async move {
        client
            .create_schedule(pb::CreateScheduleRequest {
                schedule: Some(pb::ScheduleSpec {
                    name: "in-flight".into(),
                    task: "t".into(),
                    spec: Some(pb::Spec {
                        every: "1h".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            })
            .await
    });
    // `terminate` waits up to 20 s for a clean exit.
    cluster.terminate(follower);
    for i in &others {
        cluster.signal(*i, "CONT");
    }
    pending.abort();
}
