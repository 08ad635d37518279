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

use chrono::{DateTime, Utc};
use metrics::{counter, gauge, histogram};
use openraft::ServerState;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::cursor::{OutboxCursor, Taken};
use super::planner::{plan_after, Plan, PlanConfig};
use super::sink::{Push, PushOutcome, RedisSink};
use crate::celery::{Encoded, Encoder};
use crate::raft::Raft;
use crate::raft::StateHandle;
use crate::state::{Command, OutboxEntry};
use crate::telemetry::names;

/// Everything the dispatcher needs, shared by the tasks of every term.
pub struct DispatchContext {
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
pub async fn watch_leadership(ctx: Arc<DispatchContext>) {
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
    let still_leading = || leads(&ctx, term);
    let pusher = supervise(still_leading, &ctx.health, "pusher", || {
        push_loop(ctx.clone(), term, fires_committed.clone(), rendered.clone())
    });
    let planner = supervise(still_leading, &ctx.health, "planner", || {
        plan_loop(ctx.clone(), term, fires_committed.clone(), rendered.clone())
    });
    tokio::join!(pusher, planner);
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
            entry.manual,
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

async fn plan_loop(
    ctx: Arc<DispatchContext>,
    term: u64,
    fires_committed: Arc<Notify>,
    rendered: Rendered,
) {
    let mut changes = ctx.changes.clone();
    // Set from a pass that found the outbox full until planning has caught up again.
    let mut after_outage = false;
    loop {
        let Some(now) = super::gate::quorum_gate(&ctx, term).await else {
            return;
        };
        let planned = {
            let applied = ctx.state.read().await;
            let data = &applied.data;
            plan_after(
                data,
                now,
                &ctx.plan,
                &ctx.encoder,
                ctx.cluster_id,
                after_outage,
            )
        };
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

/// Commits one pass's plan as a `Fire` command and wakes the pusher; false if it could not be
/// committed (after a short pause, so the caller can plan again).
async fn commit_plan(
    ctx: &DispatchContext,
    term: u64,
    planned: Plan,
    now: chrono::DateTime<Utc>,
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

/// One pushed batch on its way to being acknowledged.
struct Pushed {
    delivered: Vec<Uuid>,
    already_sent: Vec<Uuid>,
}

/// What became of an `Ack`: the ids it carried, and whether it committed.
struct AckDone {
    ids: Vec<Uuid>,
    acknowledged: bool,
}

/// Pushes this term's committed occurrences as they fall due. The pure rules (order, the
/// instant, in-flight ids, retries) are the cursor's; this loop waits, reads the state,
/// talks to Redis and hands pushed batches to the acker, which reports each `Ack` back.
async fn push_loop(
    ctx: Arc<DispatchContext>,
    term: u64,
    fires_committed: Arc<Notify>,
    rendered: Rendered,
) {
    let (to_acker, acker_queue) = tokio::sync::mpsc::unbounded_channel();
    let (ack_results, mut acks_done) = tokio::sync::mpsc::unbounded_channel();
    let _acker = AbortOnDrop(tokio::spawn(ack_loop(
        ctx.clone(),
        term,
        acker_queue,
        ack_results,
    )));
    let mut cursor = OutboxCursor::default();
    let mut backoff = StdDuration::from_millis(50);
    // Entries committed by others (a manual run through the API) wake the pusher too.
    let mut changes = ctx.changes.clone();
    loop {
        let Some(now) = super::gate::quorum_gate(&ctx, term).await else {
            return;
        };
        while let Ok(done) = acks_done.try_recv() {
            cursor.ack_done(&done.ids, done.acknowledged);
        }
        let (batch, taken) = next_batch(&ctx, &mut cursor, &rendered, now).await;
        if batch.is_empty() {
            let wait = cursor
                .next_due()
                .map(|at| (at - now).to_std().unwrap_or_default())
                .unwrap_or(StdDuration::from_secs(60))
                .min(RECHECK_TIME);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = fires_committed.notified() => {}
                changed = changes.changed() => if changed.is_err() { return },
                done = acks_done.recv() => match done {
                    Some(done) => cursor.ack_done(&done.ids, done.acknowledged),
                    // The acker is gone: stop, so the supervisor starts both again.
                    None => return,
                },
            }
            continue;
        }
        let started = std::time::Instant::now();
        let result = ctx.sink.push_batch(&batch).await;
        histogram!(names::REDIS_PUSH_DURATION).record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                backoff = StdDuration::from_millis(50);
                let pushed = record_pushed(term, &batch, &taken, outcomes, &ctx.clocks);
                cursor.pushed(pushed.delivered.iter().chain(&pushed.already_sent).copied());
                if to_acker.send(pushed).is_err() {
                    return;
                }
            }
            Err(err) => {
                counter!(names::REDIS_ERRORS).increment(1);
                counter!(names::DISPATCHES, "outcome" => names::outcome::FAILED)
                    .increment(batch.len() as u64);
                // Back in line, in their places: the outbox holds, nothing is dropped.
                cursor.push_failed(taken);
                warn!(term, %err, retry_in_ms = backoff.as_millis() as u64, "Redis push failed; the outbox holds");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(StdDuration::from_secs(2));
            }
        }
    }
}

/// Takes in what was committed since the last pass and renders the messages of what is due
/// now (the planner's, or rendered from the committed definition).
async fn next_batch(
    ctx: &DispatchContext,
    cursor: &mut OutboxCursor,
    rendered: &Rendered,
    now: DateTime<Utc>,
) -> (Vec<Push>, Vec<Taken>) {
    let applied = ctx.state.read().await;
    let outbox = &applied.data.outbox();
    cursor.take_in(applied.data.outbox_after(cursor.taken_in()));
    let mut batch = Vec::new();
    let mut taken = Vec::new();
    for due in cursor.take_due(now, ctx.push_batch, |id| outbox.contains_key(id)) {
        let Some(entry) = outbox.get(&due.task_id) else {
            continue;
        };
        let Some(message) = rendered.take(entry, &ctx.encoder) else {
            continue;
        };
        batch.push(Push {
            task_id: due.task_id,
            list_key: message.list_key,
            payload: message.payload,
        });
        taken.push(due);
    }
    (batch, taken)
}

/// Counts and logs one pushed batch; returns what the acker must acknowledge.
fn record_pushed(
    term: u64,
    batch: &[Push],
    taken: &[Taken],
    outcomes: Vec<PushOutcome>,
    clocks: &crate::raft::clock::PeerClocks,
) -> Pushed {
    let in_redis = clocks.quorum_now().unwrap_or_else(|_| Utc::now());
    let mut pushed = Pushed {
        delivered: Vec::new(),
        already_sent: Vec::new(),
    };
    let mut max_lateness = chrono::Duration::zero();
    for ((push, outcome), due) in batch.iter().zip(outcomes).zip(taken) {
        let scheduled_at = due.place.0;
        let lateness = in_redis - scheduled_at;
        max_lateness = max_lateness.max(lateness);
        match outcome {
            PushOutcome::Delivered => {
                histogram!(names::DISPATCH_LATENESS)
                    .record(lateness.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
                debug!(task_id = %push.task_id, %scheduled_at, "pushed");
                pushed.delivered.push(push.task_id)
            }
            PushOutcome::AlreadySent => {
                debug!(task_id = %push.task_id, %scheduled_at, "already in Redis: not pushed again");
                pushed.already_sent.push(push.task_id)
            }
        }
    }
    counter!(names::DISPATCHES, "outcome" => names::outcome::PUSHED)
        .increment(pushed.delivered.len() as u64);
    counter!(names::DISPATCHES, "outcome" => names::outcome::ALREADY_SENT)
        .increment(pushed.already_sent.len() as u64);
    info!(
        term,
        delivered = pushed.delivered.len(),
        already_sent = pushed.already_sent.len(),
        max_lateness_ms = max_lateness.num_milliseconds(),
        "pushed to Redis"
    );
    pushed
}

/// Acknowledges pushed batches through Raft, merging whatever has queued up into one `Ack`, so
/// pushing never waits for a commit, and tells the pusher what became of each.
async fn ack_loop(
    ctx: Arc<DispatchContext>,
    term: u64,
    mut pending: tokio::sync::mpsc::UnboundedReceiver<Pushed>,
    done: tokio::sync::mpsc::UnboundedSender<AckDone>,
) {
    while let Some(first) = pending.recv().await {
        let mut merged = first;
        while let Ok(more) = pending.try_recv() {
            merged.delivered.extend(more.delivered);
            merged.already_sent.extend(more.already_sent);
        }
        let ids: Vec<Uuid> = merged
            .delivered
            .iter()
            .chain(&merged.already_sent)
            .copied()
            .collect();
        let ack = Command::Ack {
            task_ids: merged.delivered,
            already_sent: merged.already_sent,
            at: Utc::now(),
        };
        let acknowledged = match ctx.raft.client_write(ack).await {
            Ok(_) => true,
            Err(err) => {
                // They stay in the outbox: pushed again (the markers stop duplicates) and
                // re-acked.
                warn!(term, %err, "could not acknowledge pushed messages");
                tokio::time::sleep(StdDuration::from_millis(100)).await;
                false
            }
        };
        if done.send(AckDone { ids, acknowledged }).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// Supervises a task whose first run fails as `fail` does and whose second runs until
    /// leadership ends; returns how often it started and what readiness said meanwhile.
    async fn supervised_after(fail: fn()) -> (usize, Option<String>) {
        let health = super::super::health::DispatchHealth::default();
        health.dispatching(7);
        let starts = Arc::new(AtomicUsize::new(0));
        let leading = Arc::new(AtomicBool::new(true));
        let task = {
            let (starts, leading) = (starts.clone(), leading.clone());
            move || {
                let (starts, leading) = (starts.clone(), leading.clone());
                async move {
                    if starts.fetch_add(1, Ordering::SeqCst) == 0 {
                        fail();
                        return;
                    }
                    while leading.load(Ordering::SeqCst) {
                        tokio::time::sleep(StdDuration::from_millis(5)).await;
                    }
                }
            }
        };
        let probe = {
            let (health, starts, leading) = (health.clone(), starts.clone(), leading.clone());
            async move {
                while starts.load(Ordering::SeqCst) < 2 {
                    tokio::time::sleep(StdDuration::from_millis(5)).await;
                }
                let reported = health.not_dispatching_because(7);
                leading.store(false, Ordering::SeqCst);
                reported
            }
        };
        let still_leading = {
            let leading = leading.clone();
            move || leading.load(Ordering::SeqCst)
        };
        let (_, reported) = tokio::join!(supervise(still_leading, &health, "planner", task), probe);
        (starts.load(Ordering::SeqCst), reported)
    }

    #[tokio::test]
    async fn a_task_that_panics_while_leading_is_restarted_and_reported() {
        let (starts, reported) = supervised_after(|| panic!("planner bug")).await;
        assert_eq!(starts, 2, "started, then restarted once");
        let reported = reported.expect("reported while restarting");
        assert!(
            reported.contains("planner") && reported.contains("panicked: planner bug"),
            "{reported}"
        );
    }

    #[tokio::test]
    async fn a_task_that_stops_while_leading_is_restarted_and_reported() {
        let (starts, reported) = supervised_after(|| {}).await;
        assert_eq!(starts, 2, "started, then restarted once");
        assert!(reported.expect("reported").contains("stopped by itself"));
    }

    #[tokio::test]
    async fn a_task_ending_with_its_term_is_not_restarted() {
        let health = super::super::health::DispatchHealth::default();
        let starts = Arc::new(AtomicUsize::new(0));
        let counted = starts.clone();
        supervise(
            || false,
            &health,
            "pusher",
            move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async {}
            },
        )
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        health.dispatching(1);
        assert_eq!(health.not_dispatching_because(1), None);
    }
}
