//! A leader killed and restarted at once must not resume leadership in its old term.
//!
//! The log store hands entries to replication before they are fsynced; a leader killed in
//! between loses entries its followers already hold. Had it come back as leader of the same
//! term (what openraft does with a node whose stored vote is its own committed vote), its next
//! entries would reuse those log ids with other contents and the followers, seeing ids they
//! already have, would keep theirs: the replicas diverge. So whoever leads after the restart
//! must lead a newer term.

mod support;

use std::time::Duration;

use support::procs::ProcCluster;
use support::{wait_for, RedisServer};

/// Every "became leader" term a node has logged, oldest first.
fn leader_terms(cluster: &ProcCluster, i: usize) -> Vec<u64> {
    cluster
        .log_lines(i)
        .iter()
        .filter(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("became leader"))
        })
        .filter_map(|line| line["fields"]["term"].as_u64())
        .collect()
}

#[test]
fn a_leader_killed_and_restarted_at_once_leads_no_more_in_its_old_term() {
    let redis = RedisServer::start().expect("start redis-server");
    // Followers wait several seconds before they stand for election, so the old leader is
    // back well before they would replace it.
    let mut cluster = support::procs::start(
        3,
        &redis.url(0),
        "",
        "[raft]\nelection_timeout_min_ms = 4000\nelection_timeout_max_ms = 5000\n",
    );
    let leader = cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let old_term = *leader_terms(&cluster, leader)
        .last()
        .expect("the leader logged its term");
    let seen: Vec<usize> = (0..3).map(|i| leader_terms(&cluster, i).len()).collect();

    cluster.kill(leader);
    cluster.spawn(leader).expect("start a node");

    let (node, term) = wait_for(
        "a leader after the restart",
        Duration::from_secs(30),
        || {
            (0..3).find_map(|i| {
                leader_terms(&cluster, i)
                    .get(seen[i])
                    .map(|term| (i, *term))
            })
        },
    );
    assert!(
        term > old_term,
        "node {node} took office in term {term} after node {leader} led term {old_term} and was \
         restarted: a restarted leader must not resume its old term\n{}",
        cluster.log_text()
    );
}
