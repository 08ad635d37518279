//! Found by the chaos harness (membership nemesis): a node that joins behind a large backlog
//! must catch up. openraft gives every AppendEntries the heartbeat interval (100 ms) whatever
//! it carries, and resends the same batch (up to 300 entries) at once after a timeout, so a
//! batch that cannot travel and be stored in 100 ms used to be resent forever: the new voter
//! never caught up.

mod support;

use std::time::Duration;

use belfry::api::pb;
use belfry_kit::Schedule;
use support::procs::{Clients, ADMIN_TOKEN};
use support::{block, wait_for, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_behind_a_large_backlog_catches_up() {
    let redis = RedisServer::start().expect("start redis-server");
    // A hundred one-second schedules: every second's Fire entry carries a hundred rendered
    // messages, so twenty seconds of log are megabytes.
    let schedules: String = (0..100)
        .map(|i| {
            Schedule::new(&format!("s{i}"), "tests.backlog")
                .every("1s")
                .args(serde_json::json!(["x".repeat(200)]))
                .to_toml()
        })
        .collect();
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules, "");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let mut status = cluster.client(0, Some(ADMIN_TOKEN)).cluster;
    wait_for("a backlog of log entries", Duration::from_secs(60), || {
        block(status.get_status(pb::GetStatusRequest {})).filter(|s| s.last_log_index >= 40)
    });
    let joiner = cluster.spawn_joiner().expect("start a joiner");
    let id = cluster.nodes[joiner].id;
    wait_for("the new node to catch up", Duration::from_secs(60), || {
        block(status.get_status(pb::GetStatusRequest {})).filter(|s| {
            s.members
                .iter()
                .any(|m| m.id == id && m.matched_index > 0 && m.lag < 20)
        })
    });
}
