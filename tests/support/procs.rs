//! Test clusters of real `belfry server` processes, on the kit's `Cluster`: the settings every
//! test cluster runs with (tokens, the cluster secret, a metrics port per node), API clients,
//! and the exactly-once check of what reached Redis.

use std::collections::BTreeMap;
use std::time::Duration;

#[allow(unused_imports)]
pub use belfry_kit::cluster::{Cluster as ProcCluster, ClusterOptions, Signal};
#[allow(unused_imports)]
pub use belfry_kit::consumer::{Arrival, Consumer};

/// The tokens every test cluster accepts.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const READONLY_TOKEN: &str = "readonly-token-for-tests";
/// The cluster secret of every test cluster without TLS.
pub const CLUSTER_SECRET: &str = "cluster-secret-for-tests-0123456789";

/// Adds the test clusters' secret to a peer call made by hand.
#[allow(dead_code)]
pub fn with_cluster_secret<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    request.metadata_mut().insert(
        belfry::raft::peer_auth::SECRET_METADATA,
        CLUSTER_SECRET.parse().expect("an ASCII secret"),
    );
    request
}

/// A peer network that sends the test clusters' secret.
#[allow(dead_code)]
pub fn peer_network() -> belfry::raft::network::PeerNetwork {
    belfry::raft::network::PeerNetwork::new("belfry").with_secret(
        belfry::raft::peer_auth::ClusterSecret::new(&[CLUSTER_SECRET]).expect("a valid secret"),
    )
}

/// The `belfry` binary the process tests run: this build's, or the one `BELFRY_TEST_BIN` names
/// (an earlier release's, to see a regression test fail there).
pub fn belfry_bin() -> &'static str {
    static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("BELFRY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_belfry").into())
    });
    &BIN
}

/// The options of a test cluster of `n` nodes: `schedules_toml` as its schedules file and
/// `extra_config` as its config file. Without TLS in the config, nodes run with
/// `--insecure-no-tls` and peers authenticate with `CLUSTER_SECRET` (unless the config names
/// a secret of its own).
pub fn options(
    n: u64,
    redis_url: &str,
    schedules_toml: &str,
    extra_config: &str,
) -> ClusterOptions {
    let tls = extra_config.contains("tls_cert");
    let own_secret = extra_config.contains("cluster_secret");
    let mut options = ClusterOptions::new(belfry_bin(), n as usize, redis_url)
        .env("BELFRY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("BELFRY_READONLY_TOKEN", READONLY_TOKEN);
    options.config = Some(extra_config.to_string());
    options.schedules = Some(schedules_toml.to_string());
    options.metrics = true;
    options.report_exits = true;
    if !tls {
        options = options.arg("--insecure-no-tls");
        if !own_secret {
            options = options.env("BELFRY_CLUSTER_SECRET", CLUSTER_SECRET);
        }
    }
    options
}

/// Writes `schedules_toml` and a config, then starts `n` nodes.
pub fn start(n: u64, redis_url: &str, schedules_toml: &str, extra_config: &str) -> ProcCluster {
    ProcCluster::start(options(n, redis_url, schedules_toml, extra_config))
        .expect("start a test cluster")
}

/// Writes the files `start` writes but starts no node, so that a test can prepare data
/// directories first and then start nodes with `spawn`.
pub fn prepare(n: u64, redis_url: &str, schedules_toml: &str, extra_config: &str) -> ProcCluster {
    ProcCluster::prepare(options(n, redis_url, schedules_toml, extra_config))
        .expect("prepare a test cluster")
}

/// API clients of a test cluster's nodes.
pub trait Clients {
    /// An API client of node `i` (lazy: connects on first call).
    fn client(&self, i: usize, token: Option<&str>) -> belfry::api::client::ApiClient;
}

impl Clients for ProcCluster {
    fn client(&self, i: usize, token: Option<&str>) -> belfry::api::client::ApiClient {
        belfry::api::client::ApiClient::new(&belfry::api::client::ClientConfig {
            endpoint: self.nodes[i].addr.clone(),
            token: token.map(str::to_string),
            tls_ca: None,
            timeout: Some(Duration::from_secs(30)),
        })
        .expect("api client")
    }
}

/// What the checker found for a window.
#[derive(Debug, Default)]
pub struct Report {
    pub expected: usize,
    pub delivered: usize,
    pub missing: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    pub duplicated: Vec<(String, chrono::DateTime<chrono::Utc>, usize)>,
    pub unexpected: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    pub max_lateness: chrono::Duration,
    pub p99_lateness: chrono::Duration,
}

/// Compares arrivals with the expected occurrences (schedule → instants, computed by the test
/// itself) inside `[from, to]`.
pub fn check(
    arrivals: &[Arrival],
    expected: &BTreeMap<String, Vec<chrono::DateTime<chrono::Utc>>>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Report {
    let mut seen: BTreeMap<(String, chrono::DateTime<chrono::Utc>), usize> = BTreeMap::new();
    let mut lateness = Vec::new();
    for a in arrivals
        .iter()
        .filter(|a| a.scheduled_at >= from && a.scheduled_at <= to)
    {
        *seen
            .entry((a.schedule.clone(), a.scheduled_at))
            .or_default() += 1;
        lateness.push(a.arrived_at - a.scheduled_at);
    }
    let mut report = Report::default();
    for (schedule, instants) in expected {
        for at in instants.iter().filter(|t| **t >= from && **t <= to) {
            report.expected += 1;
            match seen.remove(&(schedule.clone(), *at)) {
                None => report.missing.push((schedule.clone(), *at)),
                Some(1) => report.delivered += 1,
                Some(n) => {
                    report.delivered += 1;
                    report.duplicated.push((schedule.clone(), *at, n));
                }
            }
        }
    }
    for ((schedule, at), n) in seen {
        if expected.contains_key(&schedule) {
            report.unexpected.push((schedule.clone(), at));
        }
        if n > 1 {
            report.duplicated.push((schedule, at, n));
        }
    }
    lateness.sort();
    if let Some(max) = lateness.last() {
        report.max_lateness = *max;
        report.p99_lateness = lateness[(lateness.len() * 99 / 100).min(lateness.len() - 1)];
    }
    report
}

impl Report {
    pub fn assert_exactly_once(&self, context: &str) {
        assert!(
            self.missing.is_empty()
                && self.duplicated.is_empty()
                && self.unexpected.is_empty()
                && self.expected > 0,
            "{context}: expected {}, delivered {}, missing {:?}, duplicated {:?}, unexpected {:?}",
            self.expected,
            self.delivered,
            self.missing,
            self.duplicated,
            self.unexpected
        );
    }
}

/// A one-node cluster with its own Redis, once it leads, and a raw peer-protocol client to it
/// (calls still need the cluster secret: `with_cluster_secret`).
pub async fn one_node_with_peer_client() -> (
    crate::support::RedisServer,
    ProcCluster,
    belfry::raft::network::proto::peer_client::PeerClient<tonic::transport::Channel>,
) {
    let redis = crate::support::RedisServer::start().expect("start redis-server");
    let mut cluster = start(1, &redis.url(0), "", "");
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader");
    let client = belfry::raft::network::proto::peer_client::PeerClient::connect(format!(
        "http://{}",
        cluster.nodes[0].addr
    ))
    .await
    .expect("connect to the node");
    (redis, cluster, client)
}
