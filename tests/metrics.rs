//! The metrics port of a real three-node cluster: `/metrics` series move as dispatches happen
//! and as the leader changes, API calls are counted by method and code, and `/readyz` follows
//! Redis on the leader.

mod support;

use std::time::Duration;

use belfry::api::pb;
use support::metrics::{http_get, scrape, series, value};
use support::procs::{Clients, ADMIN_TOKEN};
use support::{wait_for, RedisServer};

const PUSHED: &str = "belfry_dispatches_total{outcome=\"pushed\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_series_follow_dispatches_leadership_and_redis() {
    let mut redis = RedisServer::start().expect("start redis-server");
    let schedules = "[[schedule]]\nname = \"tick\"\ntask = \"metrics.tick\"\nevery = \"1s\"\n\n\
                     [[schedule]]\nname = \"paused\"\ntask = \"metrics.never\"\nevery = \"1h\"\nenabled = false\n";
    let mut cluster = support::procs::start(3, &redis.url(0), schedules, "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");

    for i in 0..3 {
        // A follower may still be starting its metrics port when the leader is known.
        wait_for("every node healthy", Duration::from_secs(20), || {
            http_get(&cluster.nodes[i].metrics_addr, "/healthz").filter(|(s, _)| *s == 200)
        });
        wait_for("every node ready", Duration::from_secs(20), || {
            http_get(&cluster.nodes[i].metrics_addr, "/readyz").filter(|(s, _)| *s == 200)
        });
    }

    // Dispatches are counted and timed on the leader only.
    let first = wait_for("pushes counted", Duration::from_secs(20), || {
        Some(value(&cluster, leader, PUSHED)).filter(|v| *v >= 2.0)
    });
    wait_for("the count to keep moving", Duration::from_secs(20), || {
        Some(value(&cluster, leader, PUSHED)).filter(|v| *v >= first + 2.0)
    });
    let body = scrape(&cluster, leader).expect("leader metrics");
    assert!(series(&body, "belfry_dispatch_lateness_seconds_count").unwrap_or(0.0) >= 2.0);
    assert!(series(&body, "belfry_redis_push_duration_seconds_count").unwrap_or(0.0) >= 2.0);
    assert_eq!(series(&body, "belfry_is_leader"), Some(1.0));
    let term = series(&body, "belfry_raft_term").expect("term");
    assert!(term >= 1.0);
    assert!(series(&body, "belfry_raft_commit_index").unwrap_or(0.0) >= 1.0);
    wait_for(
        "schedules counted by state",
        Duration::from_secs(20),
        || {
            let body = scrape(&cluster, leader)?;
            (series(&body, "belfry_schedules{state=\"enabled\"}") == Some(1.0)
                && series(&body, "belfry_schedules{state=\"paused\"}") == Some(1.0))
            .then_some(())
        },
    );
    // Memory gauges agree with what the OS reports for the process.
    let resident_kib = support::rss_kib(cluster.pid(leader)) as f64;
    let gauge = value(&cluster, leader, "process_resident_memory_bytes") / 1024.0;
    assert!(
        gauge > resident_kib / 2.0 && gauge < resident_kib * 2.0,
        "process_resident_memory_bytes says {gauge} KiB, the OS {resident_kib} KiB"
    );
    let allocated = value(&cluster, leader, "belfry_heap_allocated_bytes") / 1024.0;
    assert!(
        allocated > 0.0 && allocated < gauge,
        "heap {allocated} KiB of {gauge} KiB resident"
    );
    for follower in (0..3).filter(|i| *i != leader) {
        let id = cluster.nodes[follower].id;
        let lag = format!("belfry_raft_follower_lag_entries{{follower=\"{id}\"}}");
        assert!(series(&body, &lag).is_some(), "{lag} missing");
        let theirs = scrape(&cluster, follower).expect("follower metrics");
        assert_eq!(series(&theirs, "belfry_is_leader"), Some(0.0));
        assert_eq!(series(&theirs, PUSHED), None, "a follower pushed");
        assert!(series(&theirs, "belfry_raft_applied_index").unwrap_or(0.0) >= 1.0);
    }

    // API calls by method and code, on the node that answered.
    let follower = (leader + 1) % 3;
    let mut api = cluster.client(follower, Some(ADMIN_TOKEN)).schedules;
    api.get_schedule(pb::GetScheduleRequest {
        name: "tick".into(),
    })
    .await
    .expect("get tick");
    let missing = api
        .get_schedule(pb::GetScheduleRequest {
            name: "nope".into(),
        })
        .await
        .expect_err("unknown schedule");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let body = scrape(&cluster, follower).expect("follower metrics");
    assert_eq!(
        series(
            &body,
            "belfry_api_requests_total{method=\"Schedules/GetSchedule\",code=\"Ok\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        series(
            &body,
            "belfry_api_requests_total{method=\"Schedules/GetSchedule\",code=\"NotFound\"}"
        ),
        Some(1.0)
    );

    // A new leader: the survivors count the change, the term moves, and dispatch resumes there.
    let survivor = (leader + 1) % 3;
    let changes_before = value(&cluster, survivor, "belfry_leader_changes_total");
    cluster.kill(leader);
    let new_leader = wait_for("a new leader's metrics", Duration::from_secs(30), || {
        (0..3)
            .filter(|i| *i != leader)
            .find(|i| value(&cluster, *i, "belfry_is_leader") == 1.0)
    });
    assert!(value(&cluster, new_leader, "belfry_raft_term") > term);
    wait_for(
        "the survivor to count the change",
        Duration::from_secs(20),
        || {
            (value(&cluster, survivor, "belfry_leader_changes_total") > changes_before)
                .then_some(())
        },
    );
    wait_for("the new leader to push", Duration::from_secs(30), || {
        Some(value(&cluster, new_leader, PUSHED)).filter(|v| *v >= 2.0)
    });

    // Redis gone: the leader is not ready, errors are counted and the outbox fills up.
    redis.kill();
    wait_for(
        "the leader unready without Redis",
        Duration::from_secs(30),
        || http_get(&cluster.nodes[new_leader].metrics_addr, "/readyz").filter(|(s, _)| *s == 503),
    );
    wait_for("Redis errors counted", Duration::from_secs(30), || {
        let body = scrape(&cluster, new_leader)?;
        (series(&body, "belfry_redis_errors_total").unwrap_or(0.0) >= 1.0
            && series(&body, "belfry_outbox_depth").unwrap_or(0.0) >= 1.0
            && series(&body, "belfry_outbox_oldest_age_seconds").unwrap_or(0.0) > 0.0)
            .then_some(())
    });
    redis.restart().expect("restart redis-server");
    wait_for("the leader ready again", Duration::from_secs(30), || {
        http_get(&cluster.nodes[new_leader].metrics_addr, "/readyz").filter(|(s, _)| *s == 200)
    });
    // Occurrences are committed a little ahead of their instant, so the outbox is rarely empty;
    // drained means nothing due is left waiting.
    wait_for("the outbox drained", Duration::from_secs(30), || {
        Some(value(
            &cluster,
            new_leader,
            "belfry_outbox_oldest_age_seconds",
        ))
        .filter(|a| *a < 1.0)
    });
}
