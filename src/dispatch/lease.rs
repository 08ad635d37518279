//! When this node last heard from a quorum, on this process's own monotonic clock.
//!
//! Invariant: a quorum contact counts from when its metrics value arrived here, never from the
//! age openraft reported, so a frozen interval (SIGSTOP, a long pause) counts as time without
//! contact and a deposed leader cannot push before its Raft core has caught up. It must not
//! trust a metrics value older than its arrival.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::raft::Raft;

/// No quorum contact known.
const NEVER: u64 = u64::MAX;

#[derive(Clone)]
pub(crate) struct QuorumContact {
    base: Instant,
    /// Milliseconds after `base` of the last quorum acknowledgement, or `NEVER`.
    acked_at_ms: Arc<AtomicU64>,
}

impl QuorumContact {
    /// Follows `raft`'s metrics from a background task for as long as they are published.
    pub(crate) fn track(raft: &Raft) -> QuorumContact {
        let contact = QuorumContact {
            base: Instant::now(),
            acked_at_ms: Arc::new(AtomicU64::new(NEVER)),
        };
        let tracker = contact.clone();
        let mut metrics = raft.metrics();
        tokio::spawn(async move {
            loop {
                let since = metrics.borrow_and_update().millis_since_quorum_ack;
                let acked_at = since.map_or(NEVER, |ms| tracker.now_ms().saturating_sub(ms));
                tracker.acked_at_ms.store(acked_at, Ordering::Release);
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        contact
    }

    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Whether a quorum acknowledged this node within `within`.
    pub(crate) fn is_within(&self, within: Duration) -> bool {
        let acked_at = self.acked_at_ms.load(Ordering::Acquire);
        acked_at != NEVER && self.now_ms().saturating_sub(acked_at) <= within.as_millis() as u64
    }
}
