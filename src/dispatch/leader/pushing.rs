//! The leader's pusher and its acker: what the cursor says is due goes to Redis in batches, and
//! the acker commits an `Ack` behind each pushed batch.
//!
//! Invariant: a message is pushed only for a committed occurrence, never before its instant by
//! the quorum's time, and a failed batch goes back to the cursor in its place. It must not
//! decide what is due (that is `cursor`) nor plan.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use metrics::{counter, histogram};
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::{AbortOnDrop, DispatchContext, Rendered, RECHECK_TIME};
use crate::dispatch::cursor::{OutboxCursor, Taken};
use crate::dispatch::outcomes::Dispatched;
use crate::dispatch::sink::{Push, PushOutcome};
use crate::state::Command;
use crate::telemetry::names;

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
pub(super) async fn push_loop(
    ctx: Arc<DispatchContext>,
    term: u64,
    fires_committed: Arc<Notify>,
    rendered: Rendered,
    dispatched: Option<Dispatched>,
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
        let Some(now) = crate::dispatch::gate::quorum_gate(&ctx, term).await else {
            return;
        };
        while let Ok(done) = acks_done.try_recv() {
            cursor.ack_done(&done.ids, done.acknowledged);
        }
        let (batch, taken, schedules) =
            next_batch(&ctx, &mut cursor, &rendered, now, dispatched.is_some()).await;
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
                if let Some(dispatched) = &dispatched {
                    dispatched.add(
                        taken
                            .iter()
                            .zip(schedules)
                            .map(|(due, schedule)| (due.task_id, schedule, due.place.0)),
                    );
                }
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
/// now (the planner's, or rendered from the committed definition); with `names`, also the
/// schedule of each (for the outcome follower).
async fn next_batch(
    ctx: &DispatchContext,
    cursor: &mut OutboxCursor,
    rendered: &Rendered,
    now: DateTime<Utc>,
    names: bool,
) -> (Vec<Push>, Vec<Taken>, Vec<Arc<str>>) {
    let applied = ctx.state.read().await;
    let outbox = &applied.data.outbox();
    cursor.take_in(applied.data.outbox_after(cursor.taken_in()));
    let mut batch = Vec::new();
    let mut taken = Vec::new();
    let mut schedules = Vec::new();
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
        if names {
            schedules.push(entry.def.name.clone());
        }
    }
    (batch, taken, schedules)
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
                crate::telemetry::window::record_dispatch(lateness);
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
