//! The leader's dispatch loop: `watch_leadership` starts `lead` for each term this node leads
//! and aborts it the moment it stops leading or the term changes.
//!
//! Invariant: the planner, the pusher and its acker run only while this node leads the term they
//! were started in, after a linearizable read (the outbox is complete), and only while a quorum
//! answered within the election timeout (`lease`) and the quorum's time is known with this
//! node's clock within the bound (`raft::clock`); only committed `Fire`s are pushed, and
//! nothing before its instant by the quorum's time. It must not run when not leader, nor keep
//! rules of its own on the outbox (`cursor`) or messages, nor read the wall clock to decide
//! what is due.
//!
//! - The planner commits `Fire` intents through Raft; the messages it rendered stay in this
//!   term's `Rendered` cache, not in the log.
//! - The pusher takes what the cursor says is due, each message from the cache (or rendered from
//!   the entry's committed definition, as after a failover), and pushes through the idempotent
//!   script; an acker commits `Ack`s behind it, so no push waits for a Raft commit.
//! - Both are supervised: one that panics or stops while its term goes on is logged, counted
//!   and restarted with backoff, and readiness reports it meanwhile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use metrics::counter;
use openraft::ServerState;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info};
use uuid::Uuid;

use super::planner::PlanConfig;
use super::sink::RedisSink;
use crate::celery::{Encoded, Encoder};
use crate::raft::Raft;
use crate::raft::StateHandle;
use crate::state::OutboxEntry;
use crate::telemetry::names;

/// Everything the dispatcher needs, shared by the tasks of every term.
pub(crate) struct DispatchContext {
    pub raft: Raft,
    pub state: StateHandle,
    pub changes: watch::Receiver<u64>,
    pub sink: RedisSink,
    pub encoder: Encoder,
    pub cluster_id: Uuid,
    pub plan: PlanConfig,
    /// Messages per push (and per `Ack`).
    pub push_batch: usize,
    /// No quorum contact for longer than this pauses dispatch.
    pub quorum_timeout: StdDuration,
    /// True while this node hands its leadership over: dispatch stops as if it were lost.
    pub handing_over: watch::Receiver<bool>,
    /// When a quorum last acknowledged this node, on this process's clock.
    pub quorum_contact: super::lease::QuorumContact,
    /// What the dispatcher is doing, for readiness.
    pub health: super::health::DispatchHealth,
    /// The quorum's time: what is due is decided by it, never by this node's wall clock.
    pub clocks: crate::raft::clock::PeerClocks,
    /// Celery's result backend, when task outcomes are followed.
    pub results: Option<Arc<super::outcomes::ResultBackend>>,
    /// The formats members advertise: `Outcomes` are committed only once all read them.
    pub network: crate::raft::network::PeerNetwork,
}

/// The longest a planner or pusher sleeps before looking at the time again: a wait computed
/// from the quorum's time is re-checked, so a change in the estimate (a peer's clock stepped)
/// or in this node's standing is seen within it.
const RECHECK_TIME: StdDuration = StdDuration::from_secs(1);

/// The first wait before restarting a failed dispatcher task, and the longest.
const RESTART_MIN: StdDuration = StdDuration::from_millis(100);
const RESTART_MAX: StdDuration = StdDuration::from_secs(5);
/// A task that ran this long before failing starts its backoff afresh.
const RAN_WELL: StdDuration = StdDuration::from_secs(30);

/// Logs the end of a confirmed leadership when dropped.
struct ConfirmedLeadership {
    term: u64,
}

impl Drop for ConfirmedLeadership {
    fn drop(&mut self) {
        info!(term = self.term, "no longer leader: dispatch stopped");
    }
}

/// Tells readiness a claimed or confirmed leadership ended, however `lead` ends.
struct LeadershipPhase {
    term: u64,
    health: super::health::DispatchHealth,
}

impl Drop for LeadershipPhase {
    fn drop(&mut self) {
        self.health.ended(self.term);
    }
}

/// Aborts a task when dropped, so a term's tasks cannot outlive it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows leadership and runs `lead` for each term this node leads. Runs until the Raft
/// metrics channel closes (node shutdown).
pub(crate) async fn watch_leadership(ctx: Arc<DispatchContext>) {
    let mut metrics = ctx.raft.metrics();
    let mut handing_over = ctx.handing_over.clone();
    let mut running: Option<(u64, AbortOnDrop)> = None;
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (
                m.state == ServerState::Leader
                    && m.running_state.is_ok()
                    && !*handing_over.borrow_and_update(),
                m.current_term,
            )
        };
        match (&running, leading) {
            (Some((running_term, _)), true) if *running_term == term => {}
            (_, true) => {
                // Only a claim until `lead` confirms it: a restarted ex-leader reports Leader
                // until it hears from the current one.
                debug!(term, "leadership claimed: confirming");
                running = Some((term, AbortOnDrop(tokio::spawn(lead(ctx.clone(), term)))));
            }
            (Some((running_term, _)), false) => {
                debug!(term = *running_term, "leadership ended");
                running = None;
            }
            (None, false) => {}
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            changed = handing_over.changed() => if changed.is_err() { return },
        }
    }
}

/// Whether this node still leads `term`.
fn leads(ctx: &DispatchContext, term: u64) -> bool {
    let m = ctx.raft.metrics();
    let m = m.borrow();
    m.state == ServerState::Leader && m.current_term == term
}

/// Runs the task `start` makes for as long as this node leads `term`: a task that panics, or
/// returns while the term goes on, is logged, counted and started again after a backoff
/// (doubling from `RESTART_MIN` to `RESTART_MAX`). Each task keeps no state a restart would
/// lose: what it had pushed and not acknowledged is pushed again, and the markers stop
/// duplicates.
async fn supervise<F, Fut>(
    still_leading: impl Fn() -> bool,
    health: &super::health::DispatchHealth,
    task: &'static str,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff = RESTART_MIN;
    loop {
        let started = std::time::Instant::now();
        let mut running = AbortOnDrop(tokio::spawn(start()));
        let outcome = (&mut running.0).await;
        if !still_leading() {
            return;
        }
        let reason = match outcome {
            Ok(()) => "stopped by itself".to_string(),
            Err(err) if err.is_panic() => {
                format!(
                    "panicked: {}",
                    super::planner::panic_message(err.into_panic().as_ref())
                )
            }
            Err(_) => "was cancelled".to_string(),
        };
        if started.elapsed() >= RAN_WELL {
            backoff = RESTART_MIN;
        }
        tracing::error!(task, %reason, restart_in_ms = backoff.as_millis() as u64, "dispatcher task failed while leading: restarting it");
        counter!(names::DISPATCHER_RESTARTS, "task" => task).increment(1);
        health.failed(task, reason);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RESTART_MAX);
    }
}

async fn lead(ctx: Arc<DispatchContext>, term: u64) {
    let _phase = LeadershipPhase {
        term,
        health: ctx.health.clone(),
    };
    ctx.health.confirming(term);
    // Apply everything committed before this term: the outbox and every last_fire are complete.
    // Peers that do not answer yet (starting, frozen, cut off) fail the confirmation; keep
    // trying while this node holds the term: nothing else would start dispatch again until
    // the term changes, which a stable cluster never does.
    let mut retry_in = StdDuration::from_millis(100);
    while let Err(err) = ctx.raft.ensure_linearizable().await {
        let leading = {
            let m = ctx.raft.metrics();
            let m = m.borrow();
            m.state == ServerState::Leader && m.current_term == term
        };
        if !leading {
            debug!(term, %err, "leadership not confirmed");
            return;
        }
        debug!(term, %err, "leadership not confirmed yet: retrying");
        tokio::time::sleep(retry_in).await;
        retry_in = (retry_in * 2).min(StdDuration::from_secs(1));
    }
    let outbox = ctx.state.read().await.data.outbox().len();
    info!(term, outbox, "became leader: dispatching");
    ctx.health.dispatching(term);
    // Aborting this task drops the guard: the end of a confirmed leadership is always logged.
    let _leading = ConfirmedLeadership { term };
    let fires_committed = Arc::new(Notify::new());
    let rendered = Rendered::default();
    // Only filled when outcomes are followed.
    let dispatched = ctx
        .results
        .as_ref()
        .map(|_| super::outcomes::Dispatched::default());
    let still_leading = || leads(&ctx, term);
    let pusher = supervise(still_leading, &ctx.health, "pusher", || {
        pushing::push_loop(
            ctx.clone(),
            term,
            fires_committed.clone(),
            rendered.clone(),
            dispatched.clone(),
        )
    });
    let planner = supervise(still_leading, &ctx.health, "planner", || {
        planning::plan_loop(ctx.clone(), term, fires_committed.clone(), rendered.clone())
    });
    let follower = async {
        let (Some(backend), Some(dispatched)) = (ctx.results.clone(), dispatched.clone()) else {
            return;
        };
        supervise(still_leading, &ctx.health, "outcomes", || {
            super::outcomes::follow_loop(ctx.clone(), backend.clone(), term, dispatched.clone())
        })
        .await
    };
    let backfills = supervise(still_leading, &ctx.health, "backfill", || {
        super::backfill::backfill_loop(ctx.clone(), term)
    });
    tokio::join!(pusher, planner, follower, backfills);
}

/// Messages the planner rendered for the intents it committed, waiting for the pusher. Local
/// to one term on one node: a new leader renders from the committed definitions instead.
#[derive(Clone, Default)]
struct Rendered(Arc<std::sync::Mutex<HashMap<Uuid, (Encoded, std::time::Instant)>>>);

impl Rendered {
    /// Older than this, a message is one whose intent was never applied (a stale proposal):
    /// forgotten, so the cache cannot grow without bound.
    const KEEP: StdDuration = StdDuration::from_secs(120);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Encoded, std::time::Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert_all(&self, messages: Vec<(Uuid, Encoded)>) {
        let now = std::time::Instant::now();
        let mut cache = self.lock();
        if cache.len() > 100_000 {
            cache.retain(|_, (_, at)| now.duration_since(*at) < Self::KEEP);
        }
        cache.extend(messages.into_iter().map(|(id, m)| (id, (m, now))));
    }

    /// The message for `entry`: the planner's, else rendered from the committed definition.
    fn take(&self, entry: &OutboxEntry, encoder: &Encoder) -> Option<Encoded> {
        if let Some((message, _)) = self.lock().remove(&entry.task_id) {
            return Some(message);
        }
        let def = &entry.def;
        match super::render::render(
            encoder,
            def,
            entry.task_id,
            entry.scheduled_at,
            entry.trigger(),
        ) {
            Ok(message) => Some(message),
            Err(err) => {
                // Cannot happen for a definition the planner rendered: JSON values always
                // serialize. Left in the outbox (and its age alert) rather than dropped.
                tracing::error!(task_id = %entry.task_id, %err, "cannot render the Celery message");
                None
            }
        }
    }
}

mod planning;
mod pushing;
#[cfg(test)]
mod tests;
