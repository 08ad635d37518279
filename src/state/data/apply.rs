//! Applying commands to the data: the one place the replicated state changes.
//!
//! Invariant: every change comes from the command and the state alone (no clock, no
//! randomness), and each keeps the derived indexes in step. It must not do I/O.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::control::{Admission, Tally};
use super::{RunOutcome, RunRecord, ScheduleRecord, StateData};
use crate::celery::Trigger;
use crate::schedule::Spec;
use crate::state::command::{
    Command, CommandResult, FaultItem, FireItem, Rejection, ScheduleDef, SkipItem,
};

impl StateData {
    /// Applies one command. Deterministic: everything comes from the command and the state.
    pub fn apply(&mut self, command: &Command) -> CommandResult {
        let outcome = match command {
            Command::Put {
                def,
                expected_revision,
                incarnation,
                at,
            } => self.put(def, *expected_revision, *incarnation, *at),
            Command::Delete {
                name,
                expected_revision,
                ..
            } => self.delete(name, *expected_revision),
            Command::SetEnabled { name, enabled, at } => self.set_enabled(name, *enabled, *at),
            Command::Fire {
                fires,
                skips,
                faults,
                at,
            } => {
                let result = self.fire(fires, skips, *at);
                self.set_faults(faults);
                Ok(result)
            }
            Command::Batch(commands) => Ok(CommandResult::Batch(
                commands.iter().map(|c| self.apply(c)).collect(),
            )),
            Command::Ack {
                task_ids,
                already_sent,
                at,
            } => Ok(self.ack(task_ids, already_sent, *at)),
            Command::Outcomes { items, at } => Ok(self.outcomes(items, *at)),
            Command::StartBackfill {
                name,
                incarnation,
                job,
                at,
            } => self.start_backfill(name, *incarnation, job, *at),
            Command::SkipOccurrences {
                name,
                next,
                instants,
                at,
            } => self.skip_occurrences(name, *next, instants, *at),
            Command::PauseUntil {
                name,
                until,
                note,
                at,
            } => self.pause_until(name, *until, note, *at),
            Command::ResumeIfDue { name, until, at } => self.resume_if_due(name, *until, *at),
            Command::BackfillStep {
                name,
                incarnation,
                after,
                fires,
                cursor,
                finished,
                at,
            } => Ok(self.backfill_step(
                name,
                *incarnation,
                *after,
                fires,
                (*cursor, *finished),
                *at,
            )),
        };
        outcome.unwrap_or_else(CommandResult::Rejected)
    }

    fn check_revision(name: &str, expected: Option<u64>, actual: u64) -> Result<(), Rejection> {
        match expected {
            Some(expected) if expected != actual => Err(Rejection::StaleRevision {
                name: name.to_string(),
                expected,
                actual,
            }),
            _ => Ok(()),
        }
    }

    fn put(
        &mut self,
        def: &ScheduleDef,
        expected: Option<u64>,
        incarnation: Uuid,
        at: DateTime<Utc>,
    ) -> Result<CommandResult, Rejection> {
        // The stored definition's name is the map's key itself, so each name is kept once.
        let (name, kept_last_run) = match self.schedules.get_key_value(&*def.name) {
            Some((key, record)) => (key.clone(), Some(record.def.last_run_at)),
            None => (def.name.clone(), None),
        };
        // `last_run_at` belongs to the creation: a change keeps the stored one.
        let last_run_at = kept_last_run.unwrap_or(def.last_run_at);
        // What a new record's `counts_from()` will be (a replace parses again below).
        let spec = Spec::parse_named(&def.spec, last_run_at.unwrap_or(at), &def.name)
            .map_err(|e| Rejection::Invalid(e.to_string()))?;
        let stored = || {
            Arc::new(ScheduleDef {
                name: name.clone(),
                last_run_at,
                ..def.clone()
            })
        };
        let (schedules, mut outbox) = self.outbox_parts();
        let (revision, was_enabled) = match schedules.get_mut(&*name).map(Arc::make_mut) {
            None => {
                if expected.is_some_and(|r| r != 0) {
                    return Err(Rejection::NotFound(name.to_string()));
                }
                schedules.insert(
                    name.clone(),
                    Arc::new(ScheduleRecord {
                        def: stored(),
                        revision: 1,
                        incarnation,
                        created_at: at,
                        updated_at: at,
                        // From the previous scheduler's last run: what it missed since then
                        // is caught up by the policy, as after an outage.
                        plan_from: last_run_at.map_or(at, |last| last.min(at)),
                        last_fire: last_run_at,
                        fired: 0,
                        skipped: 0,
                        delivered: 0,
                        history: VecDeque::new(),
                        resumed_at: None,
                        fault: None,
                        control: None,
                        // Parsed from `counts_from()`, as a reload parses it.
                        spec: Some(spec),
                        next: None,
                    }),
                );
                (1, None)
            }
            Some(record) => {
                if expected == Some(0) {
                    return Err(Rejection::AlreadyExists(name.to_string()));
                }
                Self::check_revision(&name, expected, record.revision)?;
                if record.def.spec != def.spec {
                    // A new spec counts from now: no backfill of instants it would have had.
                    record.plan_from = at;
                }
                let was_enabled = record.def.enabled;
                record.def = stored();
                record.revision = record.revision.saturating_add(1);
                // A new definition is planned afresh.
                record.fault = None;
                record.updated_at = at;
                // Anchored at the creation instant, not at this change.
                record.parse_spec();
                if let Some(held) = record.policy_changed() {
                    record.enqueue_held(held, &mut outbox, at);
                }
                (record.revision, Some(was_enabled))
            }
        };
        self.count_paused(was_enabled, Some(def.enabled));
        self.replan(&name);
        Ok(CommandResult::Revision(revision))
    }

    fn delete(&mut self, name: &str, expected: Option<u64>) -> Result<CommandResult, Rejection> {
        let record = self
            .schedules
            .get(name)
            .ok_or_else(|| Rejection::NotFound(name.to_string()))?;
        Self::check_revision(name, expected, record.revision)?;
        let revision = record.revision;
        self.remove_schedule(name);
        Ok(CommandResult::Revision(revision))
    }

    pub(super) fn set_enabled(
        &mut self,
        name: &str,
        enabled: bool,
        at: DateTime<Utc>,
    ) -> Result<CommandResult, Rejection> {
        let record = self
            .schedules
            .get_mut(name)
            .map(Arc::make_mut)
            .ok_or_else(|| Rejection::NotFound(name.to_string()))?;
        let was_enabled = record.def.enabled;
        if !enabled {
            // A pause with no end replaces a timed one.
            record.clear_timed_pause();
        }
        if was_enabled != enabled {
            if enabled {
                record.resumed_at = Some(at);
                record.resumed();
            }
            Arc::make_mut(&mut record.def).enabled = enabled;
            record.revision = record.revision.saturating_add(1);
            // Resuming (or pausing) is a new revision: planning it is tried again.
            record.fault = None;
            record.updated_at = at;
        }
        let revision = record.revision;
        self.count_paused(Some(was_enabled), Some(enabled));
        self.replan(name);
        Ok(CommandResult::Revision(revision))
    }

    /// Accepts an occurrence only if it is newer than the schedule's `last_fire` for the same
    /// incarnation, so a repeated or stale proposal changes nothing. Manual runs are always
    /// accepted once (their task id is their identity).
    fn fire(&mut self, fires: &[FireItem], skips: &[SkipItem], at: DateTime<Utc>) -> CommandResult {
        enum Item<'a> {
            Fire(&'a FireItem),
            Skip(&'a SkipItem),
        }
        let mut items: Vec<(DateTime<Utc>, Item)> = fires
            .iter()
            .map(|f| (f.scheduled_at, Item::Fire(f)))
            .chain(skips.iter().map(|s| (s.scheduled_at, Item::Skip(s))))
            .collect();
        items.sort_by_key(|(instant, _)| *instant);
        let mut tally = Tally::default();
        let mut touched = BTreeSet::new();
        let (schedules, mut outbox) = self.outbox_parts();
        for (_, item) in items {
            let (name, incarnation, scheduled_at, manual) = match item {
                Item::Fire(f) => (&f.schedule, f.incarnation, f.scheduled_at, f.manual),
                Item::Skip(s) => (&s.schedule, s.incarnation, s.scheduled_at, false),
            };
            let Some(record) = schedules.get_mut(name.as_str()).map(Arc::make_mut) else {
                continue;
            };
            let fresh = record.last_fire.is_none_or(|last| scheduled_at > last);
            if record.incarnation != incarnation || !(fresh || manual) {
                continue;
            }
            if let Item::Fire(f) = item {
                if manual && outbox.outbox.contains_key(&f.task_id) {
                    continue;
                }
            }
            if !manual {
                record.last_fire = Some(scheduled_at);
            }
            match item {
                Item::Fire(f) => {
                    let admission = if manual {
                        Admission::Dispatch
                    } else if record.requested_skip(scheduled_at) {
                        Admission::Requested
                    } else {
                        record.admit(f.task_id, scheduled_at, at)
                    };
                    let trigger = Trigger::of(manual, false);
                    let taken = record.take(
                        f.task_id,
                        scheduled_at,
                        trigger,
                        admission,
                        (&mut outbox, at),
                    );
                    tally.add(taken);
                }
                Item::Skip(s) => {
                    // Counts come from commands and snapshots: they saturate, never wrap.
                    record.skipped = record.skipped.saturating_add(s.count);
                    record.remember(RunRecord {
                        scheduled_at,
                        task_id: None,
                        dispatched_at: None,
                        outcome: RunOutcome::Skipped(s.reason),
                        manual: false,
                        backfill: false,
                        skip_cause: s.cause,
                        task_state: None,
                        finished_at: None,
                    });
                    let count = u32::try_from(s.count).unwrap_or(u32::MAX);
                    tally.skipped = tally.skipped.saturating_add(count);
                }
            }
            touched.insert(name.clone());
        }
        for name in touched {
            self.replan(&name);
        }
        CommandResult::Fired {
            accepted: tally.accepted,
            skipped: tally.skipped,
            overlap_skipped: tally.overlap_skipped,
            held: tally.held,
        }
    }

    /// Sets aside each faulted schedule, if it is still at the revision the leader planned.
    fn set_faults(&mut self, faults: &[FaultItem]) {
        for fault in faults {
            let Some(record) = self
                .schedules
                .get_mut(fault.schedule.as_str())
                .map(Arc::make_mut)
            else {
                continue;
            };
            if record.incarnation != fault.incarnation || record.revision != fault.revision {
                continue;
            }
            record.fault = Some(fault.reason.as_str().into());
            self.replan(&fault.schedule);
        }
    }

    fn ack(
        &mut self,
        task_ids: &[Uuid],
        already_sent: &[Uuid],
        at: DateTime<Utc>,
    ) -> CommandResult {
        let mut acked = 0u32;
        let duplicate: BTreeSet<&Uuid> = already_sent.iter().collect();
        for task_id in task_ids.iter().chain(already_sent.iter()) {
            let Some(entry) = self.outbox.remove(task_id) else {
                continue;
            };
            self.outbox_order.remove(&entry.seq);
            acked += 1;
            let Some(record) = self
                .schedules
                .get_mut(entry.schedule.as_str())
                .map(Arc::make_mut)
            else {
                continue;
            };
            record.delivered = record.delivered.saturating_add(1);
            if let Some(run) = record
                .history
                .iter_mut()
                .rev()
                .find(|r| r.task_id == Some(*task_id))
            {
                run.dispatched_at = Some(at);
                run.outcome = if duplicate.contains(task_id) {
                    RunOutcome::AlreadySent
                } else {
                    RunOutcome::Sent
                };
            }
        }
        CommandResult::Acked(acked)
    }
}
