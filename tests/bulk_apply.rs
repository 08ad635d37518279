//! A bulk `ApplySchedules` through a real three-node cluster is committed in entries of bounded
//! size: one entry per call would grow with the call (several megabytes at the API's limit of
//! 10,000 schedules), and an entry a follower cannot take within openraft's time for one
//! AppendEntries is resent forever, stalling every write behind it (with 2,500 schedules in one
//! entry a debug build had not committed the call 10 s later).

mod support;

use std::time::Duration;

use belfry::api::client::ApiClient;
use belfry::api::pb;
use belfry::state::MAX_COMMANDS_PER_ENTRY;
use support::procs::{Clients, ADMIN_TOKEN};
use support::RedisServer;

fn spec(i: usize) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: format!("bulk-{i:05}"),
        task: "belfry_test.record".into(),
        spec: Some(pb::Spec {
            every: "1h".into(),
            ..Default::default()
        }),
        args_json: format!("[{i}]"),
        ..Default::default()
    }
}

/// Applies schedules `0..total` through `clients`.
async fn apply_all(clients: &mut ApiClient, total: usize) -> pb::ApplySchedulesResponse {
    clients
        .schedules
        .apply_schedules(pb::ApplySchedulesRequest {
            schedules: (0..total).map(spec).collect(),
            prune: false,
            prune_selector: Default::default(),
        })
        .await
        .expect("apply through a follower")
        .into_inner()
}

/// The leader's commit index and schedule count, as a node reports them.
async fn commit_and_schedules(clients: &mut ApiClient) -> (u64, u64) {
    let status = clients
        .cluster
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    (status.commit_index, status.schedules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_apply_is_committed_in_bounded_entries_and_all_of_it_lands() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let mut clients = cluster.client((leader + 1) % 3, Some(ADMIN_TOKEN));

    let (commit_before, _) = commit_and_schedules(&mut clients).await;
    let total = MAX_COMMANDS_PER_ENTRY * 2 + MAX_COMMANDS_PER_ENTRY / 2;
    let applied = apply_all(&mut clients, total).await;
    assert_eq!(applied.created as usize, total);

    let (commit_after, schedules_after) = commit_and_schedules(&mut clients).await;
    assert_eq!(schedules_after as usize, total);
    let entries = commit_after - commit_before;
    assert!(
        entries >= 3,
        "{total} changes went into {entries} entries; at most {MAX_COMMANDS_PER_ENTRY} fit one"
    );

    // Applying the same set again changes nothing.
    let again = apply_all(&mut clients, total).await;
    assert_eq!((again.created, again.unchanged as usize), (0, total));
}
