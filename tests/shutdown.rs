//! SIGTERM ends a node promptly whatever it is waiting for. A rolling restart in a 30-minute
//! chaos run left a follower running 20 s after its SIGTERM (until the harness killed it):
//! shutdown then waited, without bound, for Raft and for open calls.

mod support;

use std::time::Duration;

use belfry::api::pb;
use support::procs::{Clients, Signal, ADMIN_TOKEN};
use support::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_told_to_stop_while_its_peers_are_frozen_exits_in_time() {
    let redis = RedisServer::start().expect("start redis-server");
    let mut cluster = support::procs::start(3, &redis.url(0), "", "");
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let follower = (0..3).find(|i| *i != leader).unwrap_or_default();
    let others: Vec<usize> = (0..3).filter(|i| *i != follower).collect();
    for i in &others {
        cluster.signal(*i, Signal::Stop);
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
    let status = cluster.terminate(follower, Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "node {} did not exit cleanly after SIGTERM: {status:?}",
        cluster.nodes[follower].id
    );
    for i in &others {
        cluster.signal(*i, Signal::Cont);
    }
    pending.abort();
}

/// Signals that reach a node before it has finished starting are kept, not fatal. A CI run sent
/// SIGTERM to a follower that had already voted but was still starting, and the default action
/// ended it (killed by signal 15, not a clean exit); a SIGHUP then would have done the same.
#[test]
fn a_node_signalled_while_still_starting_keeps_the_signals_and_exits_cleanly() {
    // A peer that completes TCP connections and never answers holds node 1's bootstrap in its
    // two-second check for an existing cluster, after the start-up line is logged.
    let silent_peer = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a silent peer");
    let silent_addr = silent_peer.local_addr().expect("silent peer address");
    let dir = tempfile::tempdir().expect("temp dir");
    let log_path = dir.path().join("node1.log");
    let log = std::fs::File::create(&log_path).expect("node log");
    let addr = format!("127.0.0.1:{}", support::free_port());
    let mut child = std::process::Command::new(support::procs::belfry_bin())
        .args(["server", "--node-id", "1", "--listen", &addr])
        .args(["--peers", &format!("1={addr},2={silent_addr}")])
        .arg("--data-dir")
        .arg(dir.path().join("node1"))
        .args([
            "--redis-url",
            &format!("redis://127.0.0.1:{}/0", support::free_port()),
        ])
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{}", support::free_port()),
        ])
        .args([
            "--log-format",
            "json",
            "--insecure-no-tls",
            "--insecure-no-auth",
        ])
        .env("BELFRY_CLUSTER_SECRET", support::procs::CLUSTER_SECRET)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start belfry server");
    let logged = |needle: &str| {
        std::fs::read_to_string(&log_path)
            .ok()
            .filter(|text| text.contains(needle))
    };
    support::wait_for("the node's start-up line", Duration::from_secs(20), || {
        logged("belfry node started")
    });
    let pid = child.id().to_string();
    let send = |signal: &str| {
        let sent = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {signal}");
    };
    send("-HUP");
    send("-TERM");
    let status = support::wait_for("the node to exit", Duration::from_secs(30), || {
        child.try_wait().ok().flatten()
    });
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "node exited with {status}; log:\n{text}");
    drop(silent_peer);
}
