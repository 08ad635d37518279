//! The replicated data (schedules, run state, the outbox) and the application of commands to it.
//!
//! Invariant: `apply` is deterministic (everything comes from the command and the state) and
//! keeps the derived indexes (due, outbox order, paused count, faults) in step with the data; a
//! fire is accepted only if newer than its schedule's `last_fire` for the same incarnation (a
//! manual run once per task id). It must not read a clock, use randomness or do I/O.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{ScheduleDef, SkipCause, SkipReason};
use super::control::{ControlState, TaskState};
use crate::schedule::Spec;

/// Recent runs kept per schedule (bounded so a million schedules stay small).
pub const HISTORY_LEN: usize = 10;

/// What became of one occurrence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Committed, not yet confirmed in Redis.
    Pending,
    /// Confirmed in Redis.
    Sent,
    /// Redis already held it (an earlier push delivered it).
    AlreadySent,
    /// Not dispatched, for the reason given.
    Skipped(SkipReason),
    /// Held by overlap policy `buffer_one` until a run finishes.
    Held,
}

/// One entry of a schedule's recent history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub scheduled_at: DateTime<Utc>,
    pub task_id: Option<Uuid>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub manual: bool,
    /// A run of a backfill (optional; older builds ignore it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub backfill: bool,
    /// With a skip: what made the occurrence late (optional; older builds ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_cause: Option<SkipCause>,
    /// What the result backend said of the run, when it is configured and has said anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_state: Option<TaskState>,
    /// Celery's `date_done` for a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl RunRecord {
    /// Whether the run was dispatched and nothing final is known of it yet.
    pub fn awaits_outcome(&self) -> bool {
        self.task_id.is_some()
            && matches!(
                self.outcome,
                RunOutcome::Pending | RunOutcome::Sent | RunOutcome::AlreadySent
            )
            && !self.task_state.is_some_and(TaskState::is_final)
    }
}

/// A schedule with its bookkeeping and run state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    /// Shared with the outbox entries of its pending runs, which render from it.
    pub def: Arc<ScheduleDef>,
    pub revision: u64,
    /// New on every create: occurrences of a re-created schedule get new task ids.
    pub incarnation: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Occurrences at or before this instant never count (creation or last spec change).
    pub plan_from: DateTime<Utc>,
    /// The scheduled instant of the newest committed (fired or skipped) occurrence.
    pub last_fire: Option<DateTime<Utc>>,
    pub fired: u64,
    pub skipped: u64,
    pub delivered: u64,
    pub history: VecDeque<RunRecord>,
    /// When the schedule was last resumed: occurrences before it fell in the pause, so they are
    /// missed (subject to the catch-up policy) however recent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_at: Option<DateTime<Utc>>,
    /// Why the leader could not plan this revision: set aside until the definition changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Box<str>>,
    /// Run control's state (`state::control`): open runs, a held occurrence, failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Box<ControlState>>,
    /// The parsed spec (derived from `def.spec` and `created_at`).
    #[serde(skip)]
    spec: Option<Spec>,
    /// The next occurrence to plan (derived).
    #[serde(skip)]
    pub next: Option<DateTime<Utc>>,
}

impl ScheduleRecord {
    pub fn spec(&self) -> Option<&Spec> {
        self.spec.as_ref()
    }

    /// Why this schedule is not planned although enabled, if it is faulted: the leader could
    /// not plan it, or its stored spec no longer reads (say, a time zone a newer zone database
    /// renamed).
    pub fn fault(&self) -> Option<String> {
        if let Some(reason) = &self.fault {
            return Some(reason.to_string());
        }
        if self.spec.is_some() {
            return None;
        }
        Spec::parse_named(&self.def.spec, self.counts_from(), &self.def.name)
            .err()
            .map(|err| format!("the stored spec cannot be read: {err}"))
    }

    /// When a timed pause of this schedule ends, if it is paused until an instant.
    pub fn paused_until(&self) -> Option<DateTime<Utc>> {
        self.control
            .as_ref()
            .and_then(|c| c.paused_until)
            .filter(|_| !self.def.enabled)
    }

    /// Whether a backfill of this schedule is running.
    fn has_running_backfill(&self) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| c.running_backfill().is_some())
    }

    /// Whether runs of this schedule are counted against its overlap limit.
    fn has_open_runs(&self) -> bool {
        self.control.as_ref().is_some_and(|c| !c.open.is_empty())
    }

    fn is_faulted(&self) -> bool {
        self.fault.is_some() || self.spec.is_none()
    }

    /// Where an interval without `anchor` or `start_at` counts from: the previous scheduler's
    /// last run when the schedule was created with one, else the creation instant.
    fn counts_from(&self) -> DateTime<Utc> {
        self.def.last_run_at.unwrap_or(self.created_at)
    }

    /// Parses the definition's spec (on create, replace and snapshot load, never per fire).
    fn parse_spec(&mut self) {
        self.spec = Spec::parse_named(&self.def.spec, self.counts_from(), &self.def.name).ok();
    }

    /// The next occurrence to plan, from the cached spec and the run state.
    fn plan_next(&mut self) {
        // `plan_from` is a command's instant: at chrono's lower limit nothing lies before it.
        let before_plan = self
            .plan_from
            .checked_sub_signed(Duration::milliseconds(1))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let floor = match self.last_fire {
            Some(last) => last.max(before_plan),
            None => before_plan,
        };
        self.next = self
            .spec
            .as_ref()
            .filter(|_| self.def.enabled && self.fault.is_none() && !self.runs_exhausted())
            .and_then(|spec| spec.next_after(floor));
    }

    fn remember(&mut self, record: RunRecord) {
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
        } else if self.history.capacity() < HISTORY_LEN {
            // Exactly the bound at once: growing by doubling would end at 16 slots per schedule.
            self.history.reserve_exact(HISTORY_LEN - self.history.len());
        }
        self.history.push_back(record);
    }
}

/// A committed occurrence waiting for confirmation that it is in Redis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// Commit order: the outbox drains oldest first.
    pub seq: u64,
    pub schedule: String,
    pub scheduled_at: DateTime<Utc>,
    pub task_id: Uuid,
    /// The definition as it stood when the run was committed: the message is rendered from it
    /// at push time, by whichever node is leader then, so the log carries no rendered bytes.
    pub def: Arc<ScheduleDef>,
    #[serde(default)]
    pub manual: bool,
    /// A run of a backfill (its message says so).
    #[serde(default, skip_serializing_if = "is_false")]
    pub backfill: bool,
    pub committed_at: DateTime<Utc>,
}

impl OutboxEntry {
    /// What asked for this run.
    pub fn trigger(&self) -> crate::celery::Trigger {
        crate::celery::Trigger::of(self.manual, self.backfill)
    }

    /// When it may be sent: its instant, delayed by the schedule's jitter for a scheduled
    /// occurrence (never for a manual run or a backfill).
    pub fn due_at(&self) -> DateTime<Utc> {
        let Some(control) = self.def.control.as_deref() else {
            return self.scheduled_at;
        };
        if self.trigger() != crate::celery::Trigger::Schedule {
            return self.scheduled_at;
        }
        self.scheduled_at
            .checked_add_signed(control.jitter_offset(self.task_id))
            .unwrap_or(self.scheduled_at)
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Everything replicated, plus indexes derived from it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StateData {
    /// Behind pointers: a map node then holds 11 pointers instead of 11 records (half of them
    /// often empty after splits, which cost more than a record). Shared ones, so a snapshot
    /// copies the map without copying records (see `snapshot_copy`); a write to a record
    /// still shared with a snapshot copies that record (`Arc::make_mut`).
    /// Each name is one allocation, shared with the due index and the stored definition.
    schedules: BTreeMap<Arc<str>, Arc<ScheduleRecord>>,
    outbox: BTreeMap<Uuid, OutboxEntry>,
    outbox_seq: u64,
    /// (next occurrence, schedule name) of every enabled schedule: what the dispatcher plans from.
    #[serde(skip)]
    due: BTreeSet<(DateTime<Utc>, Arc<str>)>,
    /// Outbox task ids by commit order (derived), so draining never sorts the outbox.
    #[serde(skip)]
    outbox_order: BTreeMap<u64, Uuid>,
    /// How many schedules are paused (derived), so metrics never scan every schedule while
    /// holding the state.
    #[serde(skip)]
    paused: usize,
    /// Schedules set aside as faulted (derived; rare, so kept by name).
    #[serde(skip)]
    faulted: BTreeSet<Arc<str>>,
    /// Schedules with open runs counted by their overlap policy (derived), so the leader finds
    /// runs past `max_runtime` without scanning every schedule.
    #[serde(skip)]
    open_runs: BTreeSet<Arc<str>>,
    /// Schedules with a running backfill (derived).
    #[serde(skip)]
    backfills: BTreeSet<Arc<str>>,
    /// Schedules paused until an instant (derived).
    #[serde(skip)]
    timed_pauses: BTreeSet<Arc<str>>,
}

impl StateData {
    /// What a snapshot holds, copied cheaply enough to take under the state lock: the
    /// schedules map is copied but its records are shared, and derived indexes are left out
    /// (a loaded snapshot rebuilds them). Serializing the copy then takes no lock.
    pub fn snapshot_copy(&self) -> StateData {
        StateData {
            schedules: self.schedules.clone(),
            outbox: self.outbox.clone(),
            outbox_seq: self.outbox_seq,
            due: BTreeSet::new(),
            outbox_order: BTreeMap::new(),
            paused: 0,
            faulted: BTreeSet::new(),
            open_runs: BTreeSet::new(),
            backfills: BTreeSet::new(),
            timed_pauses: BTreeSet::new(),
        }
    }

    /// Every schedule, by name.
    pub fn schedules(&self) -> &BTreeMap<Arc<str>, Arc<ScheduleRecord>> {
        &self.schedules
    }

    /// Committed occurrences not yet confirmed in Redis, by task id.
    pub fn outbox(&self) -> &BTreeMap<Uuid, OutboxEntry> {
        &self.outbox
    }

    /// (next occurrence, schedule) of every enabled schedule, earliest first.
    pub fn due(&self) -> &BTreeSet<(DateTime<Utc>, Arc<str>)> {
        &self.due
    }

    /// How many schedules are paused.
    pub fn paused_count(&self) -> usize {
        self.paused
    }

    /// The schedules set aside as faulted, by name.
    pub fn faulted(&self) -> &BTreeSet<Arc<str>> {
        &self.faulted
    }

    /// The schedules with runs counted by their overlap policy, by name.
    pub fn with_open_runs(&self) -> &BTreeSet<Arc<str>> {
        &self.open_runs
    }

    /// The schedules with a running backfill, by name.
    pub fn with_backfills(&self) -> &BTreeSet<Arc<str>> {
        &self.backfills
    }

    /// The schedules paused until an instant, by name.
    pub fn with_timed_pauses(&self) -> &BTreeSet<Arc<str>> {
        &self.timed_pauses
    }

    /// Rebuilds derived fields after deserializing a snapshot.
    pub fn rebuild_indexes(&mut self) {
        self.outbox_order = self.outbox.values().map(|e| (e.seq, e.task_id)).collect();
        self.due.clear();
        self.paused = 0;
        self.faulted.clear();
        self.open_runs.clear();
        self.backfills.clear();
        self.timed_pauses.clear();
        for (name, record) in self.schedules.iter_mut() {
            let record = Arc::make_mut(record);
            // A loaded snapshot holds each name twice (key and definition); keep one. A
            // definition shared with pending runs in the outbox is left as it is.
            if let Some(def) = Arc::get_mut(&mut record.def) {
                def.name = name.clone();
            }
            self.paused += usize::from(!record.def.enabled);
            record.parse_spec();
            record.plan_next();
            if let Some(next) = record.next {
                self.due.insert((next, name.clone()));
            }
            if record.is_faulted() {
                self.faulted.insert(name.clone());
            }
            if record.has_open_runs() {
                self.open_runs.insert(name.clone());
            }
            if record.has_running_backfill() {
                self.backfills.insert(name.clone());
            }
            if record.paused_until().is_some() {
                self.timed_pauses.insert(name.clone());
            }
        }
    }

    /// Outbox entries committed after sequence number `seq`, in commit order.
    pub fn outbox_after(&self, seq: u64) -> impl Iterator<Item = &OutboxEntry> {
        self.outbox_order
            .range(seq.saturating_add(1)..)
            .filter_map(|(_, id)| self.outbox.get(id))
    }

    /// Outbox entries in commit order, oldest first.
    pub fn outbox_in_order(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.outbox_order
            .values()
            .filter_map(|id| self.outbox.get(id))
    }

    /// Re-derives one schedule's plan and keeps the due index in step.
    fn replan(&mut self, name: &str) {
        let Some(record) = self.schedules.get_mut(name).map(Arc::make_mut) else {
            return;
        };
        // The stored definition's name is the map's key (see `put`): no second lookup.
        let key = record.def.name.clone();
        if let Some(old) = record.next {
            self.due.remove(&(old, key.clone()));
        }
        record.plan_next();
        // Every fire replans; the set is almost always empty, so most replans touch nothing.
        if record.is_faulted() {
            self.faulted.insert(key.clone());
        } else if !self.faulted.is_empty() {
            self.faulted.remove(&key);
        }
        if record.has_open_runs() {
            self.open_runs.insert(key.clone());
        } else if !self.open_runs.is_empty() {
            self.open_runs.remove(&key);
        }
        if record.has_running_backfill() {
            self.backfills.insert(key.clone());
        } else if !self.backfills.is_empty() {
            self.backfills.remove(&key);
        }
        if record.paused_until().is_some() {
            self.timed_pauses.insert(key.clone());
        } else if !self.timed_pauses.is_empty() {
            self.timed_pauses.remove(&key);
        }
        if let Some(next) = record.next {
            self.due.insert((next, key));
        }
    }

    /// Keeps the paused count in step with a schedule whose `enabled` went from `was` to `now`
    /// (`None`: the schedule did not exist, or no longer does).
    fn count_paused(&mut self, was: Option<bool>, now: Option<bool>) {
        if was == Some(false) {
            self.paused = self.paused.saturating_sub(1);
        }
        if now == Some(false) {
            self.paused += 1;
        }
    }

    fn remove_schedule(&mut self, name: &str) -> Option<Arc<ScheduleRecord>> {
        let (key, record) = self.schedules.remove_entry(name)?;
        self.count_paused(Some(record.def.enabled), None);
        self.faulted.remove(&key);
        self.open_runs.remove(&key);
        self.backfills.remove(&key);
        self.timed_pauses.remove(&key);
        if let Some(next) = record.next {
            self.due.remove(&(next, key));
        }
        Some(record)
    }
}

mod apply;
mod backfill;
mod control;
#[cfg(test)]
mod control_tests;
mod occurrences;
#[cfg(test)]
mod tests;
