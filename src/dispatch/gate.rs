//! The gate a leader's planner and pusher pass before each round: a quorum answered within the
//! election timeout (`lease`), and the quorum's time is known with this node's clock within the
//! bound (`raft::clock`); it hands them that time, the only one they decide "due" by.
//!
//! Invariant: no time is handed out while either condition fails; a pause and its end are
//! logged once and told to readiness (`health`). It must not read the wall clock itself.

use std::time::Duration;

use chrono::{DateTime, Utc};
use openraft::ServerState;
use tracing::{info, warn};

use super::leader::DispatchContext;

/// Waits while this leader has not heard from a quorum within the timeout, or does not know
/// the quorum's time (or its own clock is beyond the bound); returns the quorum's time, or
/// `None` once it no longer leads `term`.
pub(super) async fn quorum_gate(ctx: &DispatchContext, term: u64) -> Option<DateTime<Utc>> {
    let mut paused_because: Option<String> = None;
    loop {
        let fresh = {
            let m = ctx.raft.metrics();
            let m = m.borrow();
            if m.state != ServerState::Leader || m.current_term != term {
                return None;
            }
            ctx.quorum_contact.is_within(ctx.quorum_timeout)
        };
        if fresh {
            match ctx.clocks.quorum_now() {
                Ok(now) => {
                    if paused_because.take().is_some() {
                        info!(term, "the quorum's time is known again: dispatch resumes");
                        ctx.health.clock_wait(None);
                    }
                    return Some(now);
                }
                Err(why) => {
                    if paused_because.as_ref() != Some(&why) {
                        warn!(term, reason = %why, "dispatch paused: no time to go by");
                        ctx.health.clock_wait(Some(why.clone()));
                        paused_because = Some(why);
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
