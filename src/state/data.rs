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

use super::command::{
    Command, CommandResult, FaultItem, FireItem, Rejection, ScheduleDef, SkipItem, SkipReason,
};
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
}

/// One entry of a schedule's recent history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub scheduled_at: DateTime<Utc>,
    pub task_id: Option<Uuid>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub manual: bool,
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
        Spec::parse(&self.def.spec, self.counts_from())
            .err()
            .map(|err| format!("the stored spec cannot be read: {err}"))
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
        self.spec = Spec::parse(&self.def.spec, self.counts_from()).ok();
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
            .filter(|_| self.def.enabled && self.fault.is_none())
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
    pub committed_at: DateTime<Utc>,
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

    /// Rebuilds derived fields after deserializing a snapshot.
    pub fn rebuild_indexes(&mut self) {
        self.outbox_order = self.outbox.values().map(|e| (e.seq, e.task_id)).collect();
        self.due.clear();
        self.paused = 0;
        self.faulted.clear();
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
        if let Some(next) = record.next {
            self.due.remove(&(next, key));
        }
        Some(record)
    }

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
        let spec = Spec::parse(&def.spec, last_run_at.unwrap_or(at))
            .map_err(|e| Rejection::Invalid(e.to_string()))?;
        let stored = || {
            Arc::new(ScheduleDef {
                name: name.clone(),
                last_run_at,
                ..def.clone()
            })
        };
        let (revision, was_enabled) = match self.schedules.get_mut(&*name).map(Arc::make_mut) {
            None => {
                if expected.is_some_and(|r| r != 0) {
                    return Err(Rejection::NotFound(name.to_string()));
                }
                self.schedules.insert(
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

    fn set_enabled(
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
        if was_enabled != enabled {
            if enabled {
                record.resumed_at = Some(at);
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
        let (mut accepted, mut skipped) = (0u32, 0u32);
        let mut touched = BTreeSet::new();
        for (_, item) in items {
            let (name, incarnation, scheduled_at, manual) = match item {
                Item::Fire(f) => (&f.schedule, f.incarnation, f.scheduled_at, f.manual),
                Item::Skip(s) => (&s.schedule, s.incarnation, s.scheduled_at, false),
            };
            let Some(record) = self.schedules.get_mut(name.as_str()).map(Arc::make_mut) else {
                continue;
            };
            let fresh = record.last_fire.is_none_or(|last| scheduled_at > last);
            if record.incarnation != incarnation || !(fresh || manual) {
                continue;
            }
            if let Item::Fire(f) = item {
                if manual && self.outbox.contains_key(&f.task_id) {
                    continue;
                }
            }
            if !manual {
                record.last_fire = Some(scheduled_at);
            }
            match item {
                Item::Fire(f) => {
                    record.fired = record.fired.saturating_add(1);
                    record.remember(RunRecord {
                        scheduled_at,
                        task_id: Some(f.task_id),
                        dispatched_at: None,
                        outcome: RunOutcome::Pending,
                        manual,
                    });
                    self.outbox_seq = self.outbox_seq.saturating_add(1);
                    self.outbox_order.insert(self.outbox_seq, f.task_id);
                    self.outbox.insert(
                        f.task_id,
                        OutboxEntry {
                            seq: self.outbox_seq,
                            schedule: name.clone(),
                            scheduled_at,
                            task_id: f.task_id,
                            def: record.def.clone(),
                            manual,
                            committed_at: at,
                        },
                    );
                    accepted += 1;
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
                    });
                    skipped = skipped.saturating_add(u32::try_from(s.count).unwrap_or(u32::MAX));
                }
            }
            touched.insert(name.clone());
        }
        for name in touched {
            self.replan(&name);
        }
        CommandResult::Fired { accepted, skipped }
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

#[cfg(test)]
mod tests;
