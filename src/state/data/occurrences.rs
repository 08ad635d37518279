//! Applying occurrence controls: skipping the next occurrences or named ones, a pause that ends
//! by itself, and `max_runs`.
//!
//! Invariant: each is decided at apply from the command and the state, so every leader skips,
//! resumes and finishes a schedule at the same occurrence; an automatic resume applies only to
//! the pause it was proposed for. It must not read a clock.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{ScheduleRecord, StateData};
use crate::state::command::{CommandResult, Rejection};
use crate::state::control::MAX_SKIP_AT;

impl StateData {
    pub(super) fn skip_occurrences(
        &mut self,
        name: &str,
        next: u32,
        instants: &[DateTime<Utc>],
        at: DateTime<Utc>,
    ) -> Result<CommandResult, Rejection> {
        let record = self
            .schedules
            .get_mut(name)
            .map(Arc::make_mut)
            .ok_or_else(|| Rejection::NotFound(name.to_string()))?;
        let control = record.control_mut();
        let mut wanted = control.skip_at.clone();
        // Named occurrences already past are not kept: they can no longer come.
        wanted.extend(instants.iter().filter(|i| **i > at));
        wanted.sort();
        wanted.dedup();
        if wanted.len() > MAX_SKIP_AT {
            return Err(Rejection::Invalid(format!(
                "at most {MAX_SKIP_AT} named occurrences may wait to be skipped"
            )));
        }
        control.skip_at = wanted;
        control.skip_next = control.skip_next.saturating_add(next);
        record.revision = record.revision.saturating_add(1);
        record.updated_at = at;
        let revision = record.revision;
        self.replan(name);
        Ok(CommandResult::Revision(revision))
    }

    pub(super) fn pause_until(
        &mut self,
        name: &str,
        until: DateTime<Utc>,
        note: &str,
        at: DateTime<Utc>,
    ) -> Result<CommandResult, Rejection> {
        let result = self.set_enabled(name, false, at)?;
        if let Some(record) = self.schedules.get_mut(name).map(Arc::make_mut) {
            let control = record.control_mut();
            control.paused_until = Some(until);
            control.pause_note = (!note.is_empty()).then(|| note.to_string());
        }
        self.replan(name);
        Ok(result)
    }

    pub(super) fn resume_if_due(
        &mut self,
        name: &str,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<CommandResult, Rejection> {
        let due = self.schedules.get(name).is_some_and(|r| {
            !r.def.enabled && r.control.as_ref().and_then(|c| c.paused_until) == Some(until)
        });
        if !due {
            return Ok(CommandResult::Revision(
                self.schedules.get(name).map_or(0, |r| r.revision),
            ));
        }
        self.set_enabled(name, true, at)
    }
}

impl ScheduleRecord {
    /// Whether a person asked to skip the scheduled occurrence at `instant` (taking it off).
    pub(super) fn requested_skip(&mut self, instant: DateTime<Utc>) -> bool {
        let Some(control) = self.control.as_mut() else {
            return false;
        };
        control.take_requested_skip(instant)
    }

    /// Counts a scheduled run towards `max_runs`.
    pub(super) fn count_run(&mut self) {
        if self.def.run_control().max_runs.is_some() {
            let control = self.control_mut();
            control.runs = control.runs.saturating_add(1);
        }
    }

    /// Whether `max_runs` scheduled runs have been dispatched: the schedule is finished.
    pub(super) fn runs_exhausted(&self) -> bool {
        let Some(max) = self.def.run_control().max_runs else {
            return false;
        };
        self.control.as_ref().map_or(0, |c| c.runs) >= max
    }

    /// How many scheduled runs are left before `max_runs`, if it is set.
    pub fn remaining_runs(&self) -> Option<u64> {
        let max = self.def.run_control().max_runs?;
        Some(max.saturating_sub(self.control.as_ref().map_or(0, |c| c.runs)))
    }
}
