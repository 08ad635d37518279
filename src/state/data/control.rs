//! Applying run control: the overlap decision for each committed occurrence, what a learned
//! outcome changes (open runs, a held occurrence released, consecutive failures, auto-pause).
//!
//! Invariant: decided at apply, from the command and the state alone, so a failover neither
//! doubles nor drops a decision: a leader that planned an occurrence before an outcome was
//! applied still sees it skipped or held by every node alike. It must not read a clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{OutboxEntry, RunOutcome, RunRecord, ScheduleRecord, StateData};
use crate::celery::Trigger;
use crate::state::command::{CommandResult, ScheduleDef, SkipReason};
use crate::state::control::{ControlState, HeldRun, OpenRun, OutcomeItem, Overlap, TaskState};

/// What the overlap policy makes of one occurrence due while runs are open.
pub(super) enum Admission {
    /// Dispatch it (it counts as open when the policy limits overlap).
    Dispatch,
    /// Record it as skipped: `previous_running`.
    Skip,
    /// Record it as skipped: a person asked (`requested`).
    Requested,
    /// Hold it; the occurrence it replaces, if any, is skipped.
    Hold(Option<HeldRun>),
}

/// What became of one committed occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Taken {
    /// In the outbox.
    Sent,
    /// Skipped by the overlap policy.
    OverlapSkipped,
    /// Skipped as a person asked.
    Requested,
    /// Held by `buffer_one`; `replaced`: an older held one was skipped for it.
    Held { replaced: bool },
}

/// Tallies of what a command's occurrences became.
#[derive(Default)]
pub(super) struct Tally {
    pub accepted: u32,
    pub skipped: u32,
    pub overlap_skipped: u32,
    pub held: u32,
}

impl Tally {
    pub(super) fn add(&mut self, taken: Taken) {
        match taken {
            Taken::Sent => self.accepted += 1,
            Taken::OverlapSkipped => self.overlap_skipped += 1,
            Taken::Requested => self.skipped = self.skipped.saturating_add(1),
            Taken::Held { replaced } => {
                self.held += 1;
                self.overlap_skipped += u32::from(replaced);
            }
        }
    }
}

/// The outbox's three parts, borrowed together so a record can be changed alongside.
pub(super) struct OutboxParts<'a> {
    pub outbox: &'a mut BTreeMap<Uuid, OutboxEntry>,
    pub order: &'a mut BTreeMap<u64, Uuid>,
    pub seq: &'a mut u64,
}

impl OutboxParts<'_> {
    /// Puts a committed occurrence in line for the pusher.
    pub(super) fn enqueue(
        &mut self,
        schedule: &str,
        def: &Arc<ScheduleDef>,
        task_id: Uuid,
        scheduled_at: DateTime<Utc>,
        trigger: Trigger,
        at: DateTime<Utc>,
    ) {
        *self.seq = self.seq.saturating_add(1);
        self.order.insert(*self.seq, task_id);
        self.outbox.insert(
            task_id,
            OutboxEntry {
                seq: *self.seq,
                schedule: schedule.to_string(),
                scheduled_at,
                task_id,
                def: def.clone(),
                manual: trigger == Trigger::Manual,
                backfill: trigger == Trigger::Backfill,
                committed_at: at,
            },
        );
    }
}

impl ScheduleRecord {
    pub(super) fn control_mut(&mut self) -> &mut ControlState {
        self.control.get_or_insert_with(Default::default)
    }

    /// Decides what becomes of a scheduled (not manual) occurrence under the overlap policy,
    /// and records it as open or held.
    pub(super) fn admit(
        &mut self,
        task_id: Uuid,
        scheduled_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Admission {
        let policy = self.def.run_control();
        if !policy.limits_overlap() {
            return Admission::Dispatch;
        }
        let state = self.control_mut();
        if state.open.len() < policy.concurrency() {
            state.open.push(OpenRun {
                task_id,
                scheduled_at,
                since: at,
            });
            return Admission::Dispatch;
        }
        match policy.overlap {
            Overlap::Allow => Admission::Dispatch,
            Overlap::Skip => Admission::Skip,
            Overlap::BufferOne => Admission::Hold(state.held.replace(HeldRun {
                task_id,
                scheduled_at,
            })),
        }
    }

    /// Records one committed occurrence as `admission` decided: in the history, the counts and
    /// (when sent) the outbox.
    pub(super) fn take(
        &mut self,
        task_id: Uuid,
        scheduled_at: DateTime<Utc>,
        trigger: Trigger,
        admission: Admission,
        (outbox, at): (&mut OutboxParts<'_>, DateTime<Utc>),
    ) -> Taken {
        let outcome = match &admission {
            Admission::Dispatch => RunOutcome::Pending,
            Admission::Skip => RunOutcome::Skipped(SkipReason::PreviousRunning),
            Admission::Requested => RunOutcome::Skipped(SkipReason::Requested),
            Admission::Hold(_) => RunOutcome::Held,
        };
        self.remember(RunRecord {
            scheduled_at,
            task_id: Some(task_id),
            dispatched_at: None,
            outcome,
            manual: trigger == Trigger::Manual,
            backfill: trigger == Trigger::Backfill,
            skip_cause: None,
            task_state: None,
            finished_at: None,
        });
        match admission {
            Admission::Dispatch => {
                self.fired = self.fired.saturating_add(1);
                if trigger == Trigger::Schedule {
                    self.count_run();
                }
                let name = self.def.name.clone();
                outbox.enqueue(&name, &self.def, task_id, scheduled_at, trigger, at);
                Taken::Sent
            }
            Admission::Skip => {
                self.skipped = self.skipped.saturating_add(1);
                Taken::OverlapSkipped
            }
            Admission::Requested => {
                self.skipped = self.skipped.saturating_add(1);
                Taken::Requested
            }
            Admission::Hold(replaced) => {
                if let Some(old) = &replaced {
                    self.held_replaced(old);
                }
                Taken::Held {
                    replaced: replaced.is_some(),
                }
            }
        }
    }

    /// The history record of `task_id`, if it is still kept.
    pub(super) fn run_mut(&mut self, task_id: Uuid) -> Option<&mut RunRecord> {
        self.history
            .iter_mut()
            .rev()
            .find(|r| r.task_id == Some(task_id))
    }

    /// Marks a replaced held occurrence as skipped.
    pub(super) fn held_replaced(&mut self, old: &HeldRun) {
        self.skipped = self.skipped.saturating_add(1);
        if let Some(run) = self.run_mut(old.task_id) {
            run.outcome = RunOutcome::Skipped(SkipReason::PreviousRunning);
        }
    }

    /// After a change of definition: a policy that no longer limits overlap releases what it
    /// held and counts nothing open.
    pub(super) fn policy_changed(&mut self) -> Option<HeldRun> {
        if self.def.run_control().limits_overlap() {
            return None;
        }
        let state = self.control.as_mut()?;
        state.open.clear();
        let held = state.held.take();
        if state.is_empty() {
            self.control = None;
        }
        held
    }

    /// Ends a timed pause's schedule (the schedule stays paused).
    pub(super) fn clear_timed_pause(&mut self) {
        if let Some(state) = self.control.as_mut() {
            state.paused_until = None;
            state.pause_note = None;
        }
    }

    /// A resume clears an auto-pause and the failures that caused it, and a timed pause with
    /// its note.
    pub(super) fn resumed(&mut self) {
        if let Some(state) = self.control.as_mut() {
            state.paused_reason = None;
            state.paused_until = None;
            state.pause_note = None;
            state.clear_failures();
            if state.is_empty() {
                self.control = None;
            }
        }
    }
}

impl StateData {
    pub(super) fn outbox_parts(
        &mut self,
    ) -> (
        &mut BTreeMap<Arc<str>, Arc<ScheduleRecord>>,
        OutboxParts<'_>,
    ) {
        (
            &mut self.schedules,
            OutboxParts {
                outbox: &mut self.outbox,
                order: &mut self.outbox_order,
                seq: &mut self.outbox_seq,
            },
        )
    }

    /// Records what the result backend said (or that a run outlived `max_runtime`).
    pub(super) fn outcomes(&mut self, items: &[OutcomeItem], at: DateTime<Utc>) -> CommandResult {
        let mut changed = 0u32;
        let mut touched = Vec::new();
        for item in items {
            let (schedules, mut outbox) = self.outbox_parts();
            let Some(record) = schedules.get_mut(item.schedule.as_str()).map(Arc::make_mut) else {
                continue;
            };
            if record.incarnation != item.incarnation {
                continue;
            }
            let was_enabled = record.def.enabled;
            if record.learn(item, &mut outbox, at) {
                changed += 1;
                let now_enabled = record.def.enabled;
                if was_enabled != now_enabled {
                    record.updated_at = at;
                }
                self.count_paused(Some(was_enabled), Some(now_enabled));
                touched.push(item.schedule.clone());
            }
        }
        for name in touched {
            self.replan(&name);
        }
        CommandResult::Outcomes(changed)
    }
}

impl ScheduleRecord {
    /// Applies one outcome; whether it changed anything. A final state closes the run once:
    /// a repeated report finds it closed and changes nothing.
    fn learn(
        &mut self,
        item: &OutcomeItem,
        outbox: &mut OutboxParts<'_>,
        at: DateTime<Utc>,
    ) -> bool {
        let final_state = item.state.is_final();
        let run_was_open = match self.run_mut(item.task_id) {
            Some(run) if run.task_state.is_some_and(TaskState::is_final) => return false,
            Some(run) if run.task_state == Some(item.state) => return false,
            Some(run) => {
                run.task_state = Some(item.state);
                if final_state {
                    run.finished_at = item.date_done;
                }
                true
            }
            None => false,
        };
        let closed_open = final_state && self.close_open(item.task_id);
        if !(run_was_open || closed_open) {
            return false;
        }
        if final_state {
            self.count_outcome(item);
            self.release_held(outbox, at);
        }
        true
    }

    /// Removes `task_id` from the open runs; whether it was there.
    fn close_open(&mut self, task_id: Uuid) -> bool {
        let Some(state) = self.control.as_mut() else {
            return false;
        };
        let before = state.open.len();
        state.open.retain(|r| r.task_id != task_id);
        before != state.open.len()
    }

    /// Counts a final outcome towards auto-pause.
    fn count_outcome(&mut self, item: &OutcomeItem) {
        let limit = self.def.run_control().pause_after_failures;
        match item.state {
            TaskState::Failure => {
                let reason = self.control_mut().failed(item.task_id, limit);
                if let (Some(reason), true) = (reason, self.def.enabled) {
                    Arc::make_mut(&mut self.def).enabled = false;
                    self.revision = self.revision.saturating_add(1);
                    self.control_mut().paused_reason = Some(reason);
                }
            }
            TaskState::Success => {
                if let Some(state) = self.control.as_mut() {
                    state.clear_failures();
                }
            }
            _ => {}
        }
    }

    /// Dispatches the held occurrence once a run has finished and the limit allows it.
    fn release_held(&mut self, outbox: &mut OutboxParts<'_>, at: DateTime<Utc>) {
        let limit = self.def.run_control().concurrency();
        let Some(state) = self.control.as_mut() else {
            return;
        };
        if state.open.len() >= limit || !self.def.enabled {
            return;
        }
        let Some(held) = state.held.take() else {
            return;
        };
        state.open.push(OpenRun {
            task_id: held.task_id,
            scheduled_at: held.scheduled_at,
            since: at,
        });
        self.count_run();
        self.enqueue_held(held, outbox, at);
    }

    /// Puts a held occurrence in the outbox and shows it pending.
    pub(super) fn enqueue_held(
        &mut self,
        held: HeldRun,
        outbox: &mut OutboxParts<'_>,
        at: DateTime<Utc>,
    ) {
        if let Some(run) = self.run_mut(held.task_id) {
            run.outcome = RunOutcome::Pending;
        }
        self.fired = self.fired.saturating_add(1);
        let name = self.def.name.clone();
        outbox.enqueue(
            &name,
            &self.def,
            held.task_id,
            held.scheduled_at,
            Trigger::Schedule,
            at,
        );
    }
}
