//! Applying backfills: starting one, and each step the leader commits from the job's cursor.
//!
//! Invariant: a step applies only from where the cursor stands, so a step proposed twice (a
//! retried commit, a leader that lost office mid-way) changes nothing; each occurrence is sent
//! once per task id (one already in the outbox or the history is counted, not sent again), and
//! only the schedule's own incarnation is touched. It must not read a clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::control::{Admission, Taken};
use super::{RunOutcome, StateData};
use crate::celery::Trigger;
use crate::state::command::{CommandResult, FireItem, Rejection};
use crate::state::control::{BackfillJob, BackfillSpec};

impl StateData {
    /// Starts a backfill, unless one is running (only one at a time per schedule).
    pub(super) fn start_backfill(
        &mut self,
        name: &str,
        incarnation: Uuid,
        spec: &BackfillSpec,
        at: DateTime<Utc>,
    ) -> Result<CommandResult, Rejection> {
        let record = self
            .schedules
            .get_mut(name)
            .map(Arc::make_mut)
            .filter(|r| r.incarnation == incarnation)
            .ok_or_else(|| Rejection::NotFound(name.to_string()))?;
        let control = record.control_mut();
        if let Some(running) = control.running_backfill() {
            return Err(Rejection::Invalid(format!(
                "a backfill of {name:?} is running ({} of {} done); wait for it to finish",
                running.done, running.spec.total
            )));
        }
        control.backfill = Some(BackfillJob {
            spec: spec.clone(),
            started_at: at,
            cursor: None,
            done: 0,
            sent: 0,
            finished_at: (spec.total == 0).then_some(at),
        });
        let revision = record.revision;
        self.replan(name);
        Ok(CommandResult::Revision(revision))
    }

    /// Applies one step of a running backfill from `after`, moving its cursor to `to.0` and
    /// finishing it when `to.1`.
    pub(super) fn backfill_step(
        &mut self,
        name: &str,
        incarnation: Uuid,
        after: Option<DateTime<Utc>>,
        fires: &[FireItem],
        to: (Option<DateTime<Utc>>, bool),
        at: DateTime<Utc>,
    ) -> CommandResult {
        let (schedules, mut outbox) = self.outbox_parts();
        let Some(record) = schedules.get_mut(name).map(Arc::make_mut) else {
            return CommandResult::Backfilled(0);
        };
        let Some(job) = record.control.as_ref().and_then(|c| c.running_backfill()) else {
            return CommandResult::Backfilled(0);
        };
        if record.incarnation != incarnation || job.cursor != after {
            return CommandResult::Backfilled(0);
        }
        let overlap = job.spec.overlap;
        let mut sent = 0u64;
        for fire in fires {
            let known = outbox.outbox.contains_key(&fire.task_id)
                || record.history.iter().any(|r| {
                    r.task_id == Some(fire.task_id) && !matches!(r.outcome, RunOutcome::Skipped(_))
                });
            if known {
                continue;
            }
            let admission = if overlap {
                record.admit(fire.task_id, fire.scheduled_at, at)
            } else {
                Admission::Dispatch
            };
            let taken = record.take(
                fire.task_id,
                fire.scheduled_at,
                Trigger::Backfill,
                admission,
                (&mut outbox, at),
            );
            sent += u64::from(taken == Taken::Sent);
        }
        if let Some(job) = record.control.as_mut().and_then(|c| c.backfill.as_mut()) {
            job.cursor = to.0.or(job.cursor);
            job.done = job.done.saturating_add(fires.len() as u64);
            job.sent = job.sent.saturating_add(sent);
            if to.1 {
                job.finished_at = Some(at);
            }
        }
        self.replan(name);
        CommandResult::Backfilled(u32::try_from(sent).unwrap_or(u32::MAX))
    }
}
