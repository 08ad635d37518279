//! belfry's test kit: the real processes that `belfry dev`, the integration tests, the
//! benchmarks and the fault-injection harness (`chaos/`) start and watch, written once.
//!
//! - [`cluster`]: N `belfry server` processes from a given binary: ports, data directories,
//!   extra arguments and environment (a controllable clock through libfaketime), signals,
//!   restarts from the same data, wiping, and who leads per the nodes' own logs.
//! - [`redis_server`]: a `redis-server` on a free loopback port: start, kill, restart.
//! - [`sentinel`]: a master, its replicas and three `redis-sentinel` processes: failovers and
//!   killed servers brought back as replicas.
//! - [`consumer`]: reads the Celery messages belfry pushes onto a Redis list, one by one
//!   (reliable across Redis crashes) or in batches (for benchmarks).
//! - [`schedules`]: a builder for `[[schedule]]` entries of a schedules file.
//! - [`logs`]: following a node's JSON log as it grows.
//! - [`ports`], [`wait`]: free loopback ports, polling with a deadline.
//! - [`shared`]: a cluster (or anything) shared by the tests of one binary, stopped at exit.
//!
//! Invariant: every process the kit starts is stopped when the value that started it is
//! dropped (nodes, Redis and sentinels are SIGKILLed; `Cluster::shutdown` stops nodes gracefully first).
//! The kit knows belfry only from the outside (its command line, its JSON logs, the messages
//! it pushes): it must not depend on the `belfry` crate, whose binary uses the kit for
//! `belfry dev`.

pub mod cluster;
pub mod consumer;
pub mod logs;
pub mod ports;
pub mod redis_server;
pub mod schedules;
pub mod sentinel;
pub mod shared;
pub mod wait;

pub use cluster::{Cluster, ClusterOptions, Node, Placement, Signal};
pub use consumer::{Arrival, Consumer};
pub use redis_server::{RedisOptions, RedisServer};
pub use schedules::Schedule;
pub use sentinel::{SentinelOptions, SentinelTopology};
pub use shared::Shared;
pub use wait::{poll, wait_for};

use std::time::Duration;

/// Why the kit could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum KitError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis-server did not accept connections on port {port} within 10 s; its log:\n{log}")]
    RedisNotReady { port: u16, log: String },
    #[error("redis-server exited at start ({status}); its log:\n{log}")]
    RedisExited { status: String, log: String },
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("no node with index {0}")]
    UnknownNode(usize),
    #[error("sentinel topology: {0}")]
    Sentinel(String),
}

impl KitError {
    /// A closure turning an I/O error into `KitError::Io` about `what`.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KitError {
        let what = what.into();
        move |source| KitError::Io { what, source }
    }
}
