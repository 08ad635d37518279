//! The Redis under test: one `redis-server` that persists every write, reached by the nodes
//! through the slow proxy; or, with `--sentinel`, a master, one replica and three sentinels,
//! reached through a `sentinel://` URL with `min_replicas = 1`.
//!
//! Invariant: healing leaves every server running, and in a Sentinel topology every server
//! but the master a replica in sync that every sentinel counts. Waiting on sentinels takes
//! seconds, so that work runs on a blocking thread, never on the runtime's two workers. Owns
//! the processes' lifecycle; must not decide when to fault them (the nemeses do) nor read the
//! queues.

use std::sync::Arc;

use belfry_kit::{KitError, RedisServer, SentinelTopology};
use tokio::sync::Mutex;

pub enum Broker {
    Single(RedisServer),
    Sentinel(SentinelTopology),
}

impl Broker {
    /// Brings back every server that is down: the single server from its append-only file, a
    /// topology's as replicas of the master the sentinels name.
    pub fn heal(&mut self) -> Result<(), KitError> {
        match self {
            Broker::Single(server) if !server.is_running() => server.restart(),
            Broker::Single(_) => Ok(()),
            Broker::Sentinel(topology) => {
                let down: Vec<usize> = (0..topology.servers().len())
                    .filter(|slot| !topology.servers()[*slot].redis.is_running())
                    .collect();
                down.into_iter()
                    .try_for_each(|slot| topology.restart_as_replica(slot))
            }
        }
    }

    /// The Sentinel topology, or an error saying the run has none.
    pub fn topology(&mut self) -> Result<&mut SentinelTopology, KitError> {
        match self {
            Broker::Sentinel(topology) => Ok(topology),
            Broker::Single(_) => Err(KitError::Sentinel(
                "this run has no Sentinel topology (--sentinel)".into(),
            )),
        }
    }
}

/// Runs `work` on the broker on a blocking thread, holding its lock; `Err` if `work` panicked.
pub async fn blocking<T: Send + 'static>(
    broker: &Arc<Mutex<Broker>>,
    work: impl FnOnce(&mut Broker) -> Result<T, KitError> + Send + 'static,
) -> Result<T, KitError> {
    let mut guard = broker.clone().lock_owned().await;
    tokio::task::spawn_blocking(move || work(&mut guard))
        .await
        .map_err(|e| KitError::Sentinel(format!("the broker task failed: {e}")))?
}
