//! Found by the chaos harness (five nodes started at once in separate network namespaces): a
//! node that takes office while its peers do not answer yet fails to confirm its leadership,
//! and must keep trying rather than stay leader of that term without ever dispatching.
//!
//! The scenario here: the whole cluster is killed and the former leader restarts alone; it
//! cannot confirm anything while its peers are down. They come back a few seconds later, a
//! leader is elected in a new term (a restarted leader never resumes its old one, see
//! `restarted_leader.rs`), and dispatch must resume whoever wins.

mod support;

use std::time::Duration;

use belfry_kit::Schedule;
use chrono::Utc;
use support::procs::Consumer;
use support::{wait_for, RedisServer};

const QUEUE: &str = "unconfirmed";

#[test]
fn a_leader_restarted_while_its_peers_are_down_dispatches_once_they_return() {
    let redis = RedisServer::start().expect("start redis-server");
    let schedules = Schedule::new("tick", "tests.tick")
        .every("1s")
        .queue(QUEUE)
        .to_toml();
    let mut cluster = support::procs::start(3, &redis.url(0), &schedules, "");
    let consumer = Consumer::start(&redis.url(0), QUEUE);
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    wait_for("a first dispatch", Duration::from_secs(20), || {
        (!consumer.arrivals().is_empty()).then_some(())
    });

    for i in 0..3 {
        cluster.kill(i);
    }
    cluster.spawn(leader).expect("start a node");
    // Long enough for its confirmation to fail with every peer down.
    std::thread::sleep(Duration::from_secs(3));
    for i in (0..3).filter(|i| *i != leader) {
        cluster.spawn(i).expect("start a node");
    }
    let back = Utc::now();
    wait_for(
        "dispatch to resume after the peers return",
        Duration::from_secs(30),
        || {
            consumer
                .arrivals()
                .iter()
                .any(|a| a.scheduled_at > back)
                .then_some(())
        },
    );
}
