//! The leader's backfill sender: each second, every running backfill's next occurrences (at
//! most its rate) are committed as one `BackfillStep` from where its cursor stands.
//!
//! Invariant: each step names the cursor it starts from, so a step committed twice or by a
//! leader that lost office changes nothing, and a new leader carries on from the committed
//! cursor: no gap, no duplicate. Task ids are the occurrences' own (`ids`), so a backfill
//! repeated over runs already sent sends nothing new. It must not push (the pusher sends what
//! the steps put in the outbox) nor decide what an overlap policy allows (that is `state`).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use super::leader::DispatchContext;
use crate::state::{Command, FireItem, StateData, MAX_COMMANDS_PER_ENTRY};

/// How often the sender looks for work and how long one round's rate covers.
const ROUND: StdDuration = StdDuration::from_secs(1);

/// Sends backfills for as long as this node leads `term`.
pub(crate) async fn backfill_loop(ctx: Arc<DispatchContext>, term: u64) {
    loop {
        let Some(now) = super::gate::quorum_gate(&ctx, term).await else {
            return;
        };
        let steps = {
            let applied = ctx.state.read().await;
            next_steps(&applied.data, ctx.cluster_id, now)
        };
        if steps.is_empty() {
            // Not woken by every applied entry: at thousands of fires a second that would
            // take the state's lock for nothing; a new backfill starts within a round.
            tokio::time::sleep(ROUND).await;
            continue;
        }
        let started = std::time::Instant::now();
        for step in steps {
            if let Command::BackfillStep {
                name,
                fires,
                finished: true,
                ..
            } = &step
            {
                info!(term, schedule = %name, last = fires.len(), "backfill finished");
            }
            if let Err(err) = ctx.raft.client_write(step).await {
                warn!(term, %err, "could not commit a backfill step: it is proposed again");
            }
        }
        tokio::time::sleep(ROUND.saturating_sub(started.elapsed())).await;
    }
}

/// One step for each running backfill: its next occurrences after the cursor, at most its rate
/// (and one entry's worth).
fn next_steps(data: &StateData, cluster_id: uuid::Uuid, now: DateTime<Utc>) -> Vec<Command> {
    let mut steps = Vec::new();
    for name in data.with_backfills() {
        let Some(record) = data.schedules().get(name) else {
            continue;
        };
        let (Some(job), Some(spec)) = (
            record.control.as_ref().and_then(|c| c.running_backfill()),
            record.spec(),
        ) else {
            continue;
        };
        let limit = (job.spec.rate as usize).clamp(1, MAX_COMMANDS_PER_ENTRY);
        let after = job.after();
        let found = spec.between(after, job.spec.to, limit);
        let finished = found.len() < limit
            || found
                .last()
                .and_then(|last| spec.next_after(*last))
                .is_none_or(|next| next > job.spec.to);
        let fires: Vec<FireItem> = found
            .iter()
            .map(|instant| FireItem {
                schedule: name.to_string(),
                incarnation: record.incarnation,
                scheduled_at: *instant,
                task_id: super::ids::occurrence_task_id(cluster_id, record.incarnation, *instant),
                manual: false,
                backfill: true,
            })
            .collect();
        steps.push(Command::BackfillStep {
            name: name.to_string(),
            incarnation: record.incarnation,
            after: job.cursor,
            cursor: found.last().copied(),
            fires,
            finished,
            at: now,
        });
    }
    steps
}
