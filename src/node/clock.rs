//! Keeping time with the cluster: probes every peer's clock, watches this node's wall clock for
//! steps, exports the offsets, and acts on the bound: a node whose clock is beyond
//! `max_clock_offset` from the quorum's does not stand for election, reports not ready, and, if
//! it leads, hands its leadership over.
//!
//! Invariant: the election switch this task turns off is turned on again once the clock is
//! back within the bound; it never forces an election nor changes replicated state. The
//! estimate is `raft::clock`'s; dispatch pauses by itself on the same estimate. It must not
//! decide what is due.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{info, warn};

use crate::api::control::LeaderRequest;
use crate::api::Control;
use crate::dispatch::DispatchHealth;
use crate::raft::clock::{beyond_reason, PeerClocks, Standing};
use crate::raft::network::PeerNetwork;
use crate::raft::{NodeId, Raft};
use crate::telemetry::names;

/// How often every peer is probed and the standing looked at.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe may take; a slower answer is no sample.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What the time keeper works with.
pub(super) struct TimeKeeper {
    pub raft: Raft,
    pub network: PeerNetwork,
    pub clocks: PeerClocks,
    pub control: Arc<Control>,
    pub health: DispatchHealth,
    pub node_id: NodeId,
}

/// Runs until the node stops (the task is aborted).
pub(super) async fn keep_time(keeper: TimeKeeper) {
    let mut ticker = tokio::time::interval(PROBE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beyond = false;
    let mut handover: Option<JoinHandle<()>> = None;
    loop {
        ticker.tick().await;
        keeper.probe_members().await;
        keeper.detect_step();
        let standing = keeper.clocks.standing();
        keeper.export(&standing);
        let now_beyond = match &standing {
            Standing::Beyond(e) => Some(beyond_reason(
                e.own_offset_us,
                keeper.clocks.max_offset().as_micros() as i64,
            )),
            _ => None,
        };
        match (&now_beyond, beyond) {
            (Some(reason), false) => {
                warn!(%reason, "clock beyond the bound: not standing for election, not dispatching");
                beyond = true;
            }
            (None, true) => {
                info!("clock back within the bound: stands for election again");
                keeper.raft.runtime_config().elect(true);
                beyond = false;
            }
            _ => {}
        }
        keeper.health.clock_beyond(now_beyond.clone());
        if beyond {
            // Again every round: a handover in progress turns elections back on when it ends.
            keeper.raft.runtime_config().elect(false);
            if keeper.control.claims_leadership()
                && handover.as_ref().is_none_or(JoinHandle::is_finished)
            {
                handover = Some(tokio::spawn(hand_over(
                    keeper.control.clone(),
                    keeper.node_id,
                )));
            }
        }
    }
}

/// A leader whose clock is beyond the bound hands its leadership to the most caught-up voter.
async fn hand_over(control: Arc<Control>, node_id: NodeId) {
    warn!("leader's clock beyond the bound: handing leadership over");
    let request = LeaderRequest::TransferLeader {
        to: None,
        only_if_leader: Some(node_id),
    };
    if let Err(err) = control.serve_forwarded(request).await {
        warn!(%err, "could not hand leadership over; trying again");
    }
}

impl TimeKeeper {
    /// Probes every other member's clock at once; each answer is a sample.
    async fn probe_members(&self) {
        let members: Vec<(NodeId, String)> = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            self.clocks.set_voters(membership.voter_ids().collect());
            membership
                .nodes()
                .filter(|(id, _)| **id != self.node_id)
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect()
        };
        let mut probes = JoinSet::new();
        for (id, addr) in members {
            let network = self.network.clone();
            probes.spawn(async move {
                let _ = tokio::time::timeout(
                    PROBE_TIMEOUT,
                    network.probe_clock(id, &addr, PROBE_TIMEOUT),
                )
                .await;
            });
        }
        while probes.join_next().await.is_some() {}
    }

    /// Logs and counts a step of the wall clock against the monotonic clock.
    fn detect_step(&self) {
        let Some(moved_us) = self.clocks.take_step() else {
            return;
        };
        let direction = if moved_us > 0 { "forward" } else { "backward" };
        warn!(
            moved_ms = moved_us / 1000,
            direction, "the wall clock stepped: dispatch goes by the quorum's time"
        );
        counter!(names::CLOCK_STEPS, "direction" => direction).increment(1);
    }

    /// The offsets as gauges: each peer's from this node, this node's from the quorum.
    fn export(&self, standing: &Standing) {
        let own = self.clocks.own_offset_micros();
        for (peer, sample) in self.clocks.best_samples() {
            gauge!(names::CLOCK_OFFSET, "peer" => peer.to_string())
                .set((sample.offset_us - own) as f64 / 1e6);
        }
        match standing {
            Standing::Agreed(e) | Standing::Beyond(e) => {
                gauge!(names::CLOCK_OFFSET_FROM_QUORUM).set(e.own_offset_us as f64 / 1e6);
                gauge!(names::CLOCK_QUORUM_KNOWN).set(1.0);
            }
            Standing::Unknown(_) => gauge!(names::CLOCK_QUORUM_KNOWN).set(0.0),
        }
    }
}
