//! The leader's planner task: plans by the quorum's time, commits each plan as one `Fire`, and
//! pauses while the outbox is full.
//!
//! Invariant: it commits only while its term is confirmed (`gate`), and a pause for a full
//! outbox is remembered until a committed pass covers everything due, so the skips it causes
//! carry their cause. It must not push anything.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use metrics::{counter, gauge};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::{DispatchContext, Rendered, RECHECK_TIME};
use crate::dispatch::planner::{plan_after, Plan};
use crate::state::Command;
use crate::telemetry::names;

pub(super) async fn plan_loop(
    ctx: Arc<DispatchContext>,
    term: u64,
    fires_committed: Arc<Notify>,
    rendered: Rendered,
) {
    let mut changes = ctx.changes.clone();
    // Set from a pass that found the outbox full until planning has caught up again.
    let mut after_outage = false;
    loop {
        let Some(now) = crate::dispatch::gate::quorum_gate(&ctx, term).await else {
            return;
        };
        let (resumes, planned) = {
            let applied = ctx.state.read().await;
            let data = &applied.data;
            let resumes = due_resumes(data, now);
            let planned = plan_after(
                data,
                now,
                &ctx.plan,
                &ctx.encoder,
                ctx.cluster_id,
                after_outage,
            );
            (resumes, planned)
        };
        resume_timed_pauses(&ctx, term, resumes).await;
        if planned.outbox_full {
            if !after_outage {
                warn!(
                    term,
                    max_outbox = ctx.plan.max_outbox,
                    "the outbox is full: planning pauses until Redis takes the backlog"
                );
                gauge!(names::PLANNING_PAUSED).set(1.0);
            }
            after_outage = true;
            // Acknowledgements shrink the outbox and change the state.
            tokio::select! {
                _ = tokio::time::sleep(StdDuration::from_secs(1)) => {}
                changed = changes.changed() => if changed.is_err() { return },
            }
            continue;
        }
        // A pass that is not cut short covers everything due, so once it is committed whatever
        // the pause made late has been decided.
        let covers_all = planned.fires.len() < ctx.plan.max_fires;
        let (wake_at, empty) = (planned.wake_at, planned.is_empty());
        let committed =
            empty || commit_plan(&ctx, term, planned, now, &rendered, &fires_committed).await;
        if after_outage && covers_all && committed {
            after_outage = false;
            gauge!(names::PLANNING_PAUSED).set(0.0);
            info!(term, "planning caught up after the outbox was full");
        }
        if !empty {
            // Plan again at once: what was just committed moved those schedules forward.
            continue;
        }
        let sleep_for = wake_at
            .map(|at| (at - now).to_std().unwrap_or_default())
            .unwrap_or(StdDuration::from_secs(60))
            .min(RECHECK_TIME);
        tokio::select! {
            _ = tokio::time::sleep(sleep_for) => {}
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// The timed pauses whose instant has come by the quorum's time, each as a `ResumeIfDue`,
/// which a pause or resume committed meanwhile turns into a no-op.
fn due_resumes(data: &crate::state::StateData, now: chrono::DateTime<chrono::Utc>) -> Vec<Command> {
    data.with_timed_pauses()
        .iter()
        .filter_map(|name| {
            let until = data.schedules().get(name)?.paused_until()?;
            (until <= now).then(|| Command::ResumeIfDue {
                name: name.to_string(),
                until,
                at: now,
            })
        })
        .collect()
}

/// Commits the resumes of timed pauses; each applies the schedule's catch-up policy to what
/// fell in the pause.
async fn resume_timed_pauses(ctx: &DispatchContext, term: u64, due: Vec<Command>) {
    for command in due {
        if let Command::ResumeIfDue { name, until, .. } = &command {
            info!(term, schedule = %name, %until, "a timed pause ends: resuming");
        }
        if let Err(err) = ctx.raft.client_write(command).await {
            warn!(term, %err, "could not resume a schedule at the end of its pause");
        }
    }
}

/// Commits one pass's plan as a `Fire` command and wakes the pusher; false if it could not be
/// committed (after a short pause, so the caller can plan again).
async fn commit_plan(
    ctx: &DispatchContext,
    term: u64,
    planned: Plan,
    now: chrono::DateTime<chrono::Utc>,
    rendered: &Rendered,
    fires_committed: &Notify,
) -> bool {
    let (fires, skips) = (planned.fires.len(), planned.skips.len());
    let skipped: Vec<(&'static str, u64)> = planned
        .skips
        .iter()
        .map(|s| (s.cause.map_or(s.reason.label(), |c| c.label()), s.count))
        .collect();
    rendered.insert_all(planned.rendered);
    let command = Command::Fire {
        fires: planned.fires,
        skips: planned.skips,
        faults: planned.faults,
        at: now,
    };
    match ctx.raft.client_write(command).await {
        Ok(_) => {
            debug!(term, fires, skips, "committed a fire batch");
            count_skips(&skipped);
            fires_committed.notify_one();
            true
        }
        Err(err) => {
            warn!(term, %err, "could not commit a fire batch");
            tokio::time::sleep(StdDuration::from_millis(100)).await;
            false
        }
    }
}

/// Counts committed skips by reason (their cause, when they have one).
fn count_skips(skipped: &[(&'static str, u64)]) {
    for (reason, count) in skipped {
        counter!(names::SKIPPED_OCCURRENCES, "reason" => *reason).increment(*count);
        counter!(names::DISPATCHES, "outcome" => names::outcome::SKIPPED).increment(*count);
    }
}
