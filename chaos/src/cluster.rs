//! The `belfry server` processes of a run, on the test kit's cluster (`belfry_kit::Cluster`):
//! each node in its own network namespace when the run has them (or on loopback), with a
//! controllable clock when libfaketime is available. Nodes are named by id here, as in the
//! history; node `id` is the kit's index `id - 1`.
//!
//! Owns the pairing of nodes and namespaces; must not decide when to fault a node (the
//! nemeses do) and must not judge what the nodes dispatched (the checker does).

use std::path::PathBuf;
use std::time::Duration;

use belfry::api::client::{ApiClient, ClientConfig};
use belfry_kit::cluster::{Cluster as Procs, ClusterOptions, Placement, Signal};

use crate::net::{Network, NODE_PORT};

/// The secret the harness's nodes authenticate peer calls with: they run without TLS, on
/// loopback or in network namespaces of their own.
const CLUSTER_SECRET: &str = "belfry-chaos-cluster-secret-0123456789";

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Kit(#[from] belfry_kit::KitError),
    #[error("network: {0}")]
    Net(#[from] crate::net::NetError),
}

/// Settings shared by every node.
pub struct ClusterConfig {
    pub belfry_bin: PathBuf,
    pub dir: PathBuf,
    pub redis_url: String,
    /// `LD_PRELOAD` library of libfaketime; clock offsets need it.
    pub faketime_lib: Option<PathBuf>,
    pub extra_config: String,
}

pub struct Cluster {
    pub net: Network,
    procs: Procs,
}

/// The kit's index of node `id`.
fn index(id: u64) -> usize {
    (id as usize).saturating_sub(1)
}

impl Cluster {
    /// Creates `n` nodes (namespaces, directories) and starts them.
    pub fn start(n: u64, mut net: Network, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let mut options = ClusterOptions::new(config.belfry_bin, n as usize, &config.redis_url)
            .arg("--insecure-no-tls")
            .arg("--insecure-no-auth")
            // Peers authenticate with a shared secret (the harness runs them without TLS).
            .env("BELFRY_CLUSTER_SECRET", CLUSTER_SECRET);
        options.dir = Some(config.dir);
        options.config = Some(config.extra_config);
        options.faketime = config.faketime_lib;
        for id in 1..=n {
            net.add_node(id)?;
            options.placements.push(placement(&net, id)?);
        }
        let procs = Procs::start(options)?;
        Ok(Cluster { net, procs })
    }

    /// Starts node `id` from its data directory.
    pub fn spawn(&mut self, id: u64) -> Result<(), ClusterError> {
        Ok(self.procs.spawn(index(id))?)
    }

    /// Adds a node that was not an initial member: it asks the members to add it (`--join`).
    pub fn spawn_joiner(&mut self) -> Result<u64, ClusterError> {
        let id = self.procs.nodes.len() as u64 + 1;
        self.net.add_node(id)?;
        let i = self.procs.add_joiner(Some(placement(&self.net, id)?))?;
        self.procs.spawn(i)?;
        Ok(id)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, id: u64) {
        self.procs.kill(index(id));
    }

    /// SIGSTOP: the node freezes.
    pub fn stop(&mut self, id: u64) {
        self.procs.signal(index(id), Signal::Stop);
    }

    pub fn cont(&mut self, id: u64) {
        self.procs.signal(index(id), Signal::Cont);
    }

    /// SIGTERM, then waits for the exit; SIGKILL after `grace`. Returns whether it exited by
    /// itself in time.
    pub fn terminate(&mut self, id: u64, grace: Duration) -> bool {
        let running = self.procs.pid(index(id)) != 0;
        !running || self.procs.terminate(index(id), grace).is_some()
    }

    /// Kills node `id` and deletes its data directory.
    pub fn wipe(&mut self, id: u64) -> Result<(), ClusterError> {
        Ok(self.procs.wipe(index(id))?)
    }

    /// A removed node's process stops for good and its namespace goes.
    pub fn retire(&mut self, id: u64) {
        self.procs.retire(index(id));
        self.net.remove_node(id);
    }

    /// Whether node `id` was removed from the membership.
    pub fn is_retired(&self, id: u64) -> bool {
        self.procs.nodes.get(index(id)).is_some_and(|n| !n.member)
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        self.procs.is_running(index(id))
    }

    /// Members whose process is running and not stopped.
    pub fn live_members(&mut self) -> Vec<u64> {
        ids(self.procs.live_members())
    }

    pub fn members(&self) -> Vec<u64> {
        ids(self.procs.members())
    }

    /// The node dispatching now: the newest term claimed by a running, unfrozen node.
    pub fn leader(&mut self) -> Option<u64> {
        self.procs.leader().map(|i| i as u64 + 1)
    }

    /// Sets node `id`'s wall clock to real time plus `offset_ms` (libfaketime re-reads it).
    pub fn set_clock(&mut self, id: u64, offset_ms: i64) -> Result<(), ClusterError> {
        Ok(self.procs.set_clock(index(id), offset_ms)?)
    }

    pub fn has_clock_control(&self) -> bool {
        self.procs.has_clock_control()
    }

    pub fn addr(&self, id: u64) -> Option<String> {
        self.procs.nodes.get(index(id)).map(|n| n.addr.clone())
    }

    /// Stops every process (SIGCONT first, so frozen ones can die).
    pub fn kill_all(&mut self) {
        self.procs.kill_all();
    }
}

fn ids(indexes: Vec<usize>) -> Vec<u64> {
    indexes.into_iter().map(|i| i as u64 + 1).collect()
}

/// Where node `id` listens: its namespace's address, or a free loopback port.
fn placement(net: &Network, id: u64) -> Result<Placement, ClusterError> {
    match net.node_ns(id) {
        Some(ns) if net.is_netns() => {
            let addr = format!("{}:{NODE_PORT}", net.node_ip(id));
            Ok(Placement {
                listen: addr.clone(),
                addr,
                wrapper: vec!["ip".into(), "netns".into(), "exec".into(), ns.into()],
            })
        }
        _ => Ok(Placement::loopback()?),
    }
}

/// An API client for `addr`, with a short deadline so a partitioned node fails fast.
pub fn client_for(addr: &str) -> Option<ApiClient> {
    ApiClient::new(&ClientConfig {
        endpoint: addr.to_string(),
        token: None,
        tls_ca: None,
        timeout: Some(Duration::from_secs(4)),
    })
    .ok()
}
