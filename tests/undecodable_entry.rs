//! A node whose log holds an entry it cannot decode says which entry and why, stays up and
//! reachable (`/healthz` 200, `/readyz` 503 with the reason) instead of exiting or looping,
//! and the other two members keep their quorum: writes still commit.

mod support;

use std::time::Duration;

use belfry::api::pb;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use support::metrics::http_get;
use support::procs::{Clients, ProcCluster, ADMIN_TOKEN};
use support::{block, wait_for, RedisServer};

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");

fn create(cluster: &ProcCluster, i: usize, name: &str) -> Option<pb::Schedule> {
    let mut api = cluster.client(i, Some(ADMIN_TOKEN)).schedules;
    block(api.create_schedule(pb::CreateScheduleRequest {
        schedule: Some(pb::ScheduleSpec {
            name: name.into(),
            task: "tests.ping".into(),
            spec: Some(pb::Spec {
                every: "1h".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }))
}

/// Replaces the newest entry of the stopped node's log by one with a command this build does
/// not know; returns its index.
fn poison_last_entry(log: &std::path::Path) -> u64 {
    let db = redb::Database::open(log).expect("open the stopped node's log");
    let (index, mut entry) = {
        let txn = db.begin_read().expect("read");
        let table = txn.open_table(LOGS).expect("logs");
        let (index, value) = table.last().expect("last").expect("an entry");
        let entry: serde_json::Value = serde_json::from_slice(value.value()).expect("json");
        (index.value(), entry)
    };
    entry["payload"] = serde_json::json!({"Normal": {"FutureCommand": {"x": 1}}});
    let bytes = serde_json::to_vec(&entry).expect("encode");
    let txn = db.begin_write().expect("write");
    txn.open_table(LOGS)
        .expect("logs")
        .insert(index, bytes.as_slice())
        .expect("insert");
    txn.commit().expect("commit");
    index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_an_undecodable_entry_stays_up_not_ready_and_the_others_go_on() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    wait_for("a first write", Duration::from_secs(30), || {
        create(&cluster, 2, "before")
    });

    cluster.kill(2);
    let index = poison_last_entry(&cluster.nodes[2].data_dir.join("raft-log.redb"));
    cluster.spawn(2).expect("start a node");

    let metrics = cluster.nodes[2].metrics_addr.clone();
    let (_, reason) = wait_for(
        "/readyz to give the reason",
        Duration::from_secs(30),
        || http_get(&metrics, "/readyz").filter(|(status, _)| *status == 503),
    );
    let expected = format!("log entry {index} cannot be decoded");
    assert!(reason.contains(&expected), "{reason}");
    assert!(reason.contains("FutureCommand"), "{reason}");
    let (status, health) = http_get(&metrics, "/healthz").expect("/healthz answers");
    assert_eq!(status, 200, "{health}");
    assert!(health.contains(&expected), "{health}");

    // The gRPC health on the API port says the same (Kubernetes probes it): the process is
    // alive, the API is not serving.
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", cluster.nodes[2].addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("the API port answers");
    for (service, expected) in [
        ("", ServingStatus::Serving),
        ("belfry.v1.Schedules", ServingStatus::NotServing),
    ] {
        let reply = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("a health reply");
        assert_eq!(reply.into_inner().status, expected as i32, "{service:?}");
    }

    // The other two keep a quorum: a write through them commits.
    wait_for(
        "a write with one node faulted",
        Duration::from_secs(30),
        || create(&cluster, 0, "after"),
    );
    assert!(cluster.is_running(2), "the faulted node exited");
    let logged = cluster
        .log_lines(2)
        .into_iter()
        .any(|line| line["fields"]["index"].as_u64() == Some(index));
    assert!(logged, "the node's log does not name entry {index}");
    cluster.kill(2);
}
