//! Run control: a schedule's overlap policy, its bound on a run's time and its auto-pause
//! (`RunControl`, part of the definition), the task outcomes learned from Celery's result
//! backend (`TaskState`, `OutcomeItem`), and the run state these rules keep (`ControlState`).
//!
//! Invariant: every decision these rules make (skip, hold, release, lost, pause) is taken
//! while applying a committed command, from the command and the state alone, so every node and
//! every later leader reaches the same one. It must not read a clock or the result backend
//! (the leader's `dispatch::outcomes` reads it and commits what it learned).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What happens to an occurrence that falls due while earlier runs have no final state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Dispatched whatever runs already (Celery beat's behaviour).
    #[default]
    Allow,
    /// Skipped (reason `previous_running`) while `max_concurrent` runs are unfinished.
    Skip,
    /// Held, at most one: dispatched when a run finishes; a newer one replaces it and the
    /// older is skipped (`previous_running`).
    BufferOne,
}

impl Overlap {
    /// The name used in files, flags and the API.
    pub fn label(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::BufferOne => "buffer_one",
        }
    }

    /// Reads a name given by a person.
    pub fn parse(text: &str) -> Option<Overlap> {
        match text {
            "" | "allow" => Some(Overlap::Allow),
            "skip" => Some(Overlap::Skip),
            "buffer_one" => Some(Overlap::BufferOne),
            _ => None,
        }
    }
}

/// A run's time allowed when a schedule limits overlap and names none: a dead worker never
/// blocks a schedule for longer.
pub const DEFAULT_MAX_RUNTIME_SECS: u64 = 3_600;
/// How many failing task ids an auto-paused schedule keeps to show.
pub const MAX_FAILING_SHOWN: usize = 10;

/// A schedule's run-control settings. Absent from definitions that use none of them, so they
/// encode as they always did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunControl {
    #[serde(default)]
    pub overlap: Overlap,
    /// With `skip` or `buffer_one`: how many runs may be unfinished at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// After this long (seconds from its dispatch) an unfinished run counts as lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runtime_secs: Option<u64>,
    /// Pause the schedule after this many consecutive FAILURE outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<u32>,
    /// Delay each scheduled occurrence by up to this many milliseconds, by an offset derived
    /// from its task id (`jitter_offset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// The schedule finishes after this many scheduled runs (manual runs and backfills do not
    /// count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<u64>,
}

impl RunControl {
    /// Whether any setting differs from the defaults (a definition keeps `None` otherwise).
    pub fn is_set(&self) -> bool {
        *self != RunControl::default()
    }

    /// Whether unfinished runs are counted for this schedule.
    pub fn limits_overlap(&self) -> bool {
        self.overlap != Overlap::Allow
    }

    /// How many runs may be unfinished at once.
    pub fn concurrency(&self) -> usize {
        self.max_concurrent.unwrap_or(1).max(1) as usize
    }

    /// How long after its instant the occurrence with `task_id` is sent: the task id's last
    /// eight bytes, big-endian, modulo `jitter_ms + 1`, in milliseconds. The same on every
    /// node and every leader, never negative, at most `jitter_ms`.
    pub fn jitter_offset(&self, task_id: Uuid) -> chrono::Duration {
        let Some(jitter) = self.jitter_ms.filter(|j| *j > 0) else {
            return chrono::Duration::zero();
        };
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&task_id.as_bytes()[8..]);
        let offset = u64::from_be_bytes(tail) % (jitter + 1);
        chrono::Duration::milliseconds(i64::try_from(offset).unwrap_or(i64::MAX))
    }

    /// When an unfinished run dispatched at `since` counts as lost.
    pub fn lost_after(&self, since: DateTime<Utc>) -> DateTime<Utc> {
        let secs = self.max_runtime_secs.unwrap_or(DEFAULT_MAX_RUNTIME_SECS);
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        since
            .checked_add_signed(
                chrono::Duration::try_seconds(secs).unwrap_or(chrono::Duration::MAX),
            )
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// A Celery task state as the result backend stores it, plus `Lost` (belfry's own: no final
/// state within `max_runtime`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Started,
    Retry,
    Success,
    Failure,
    Revoked,
    Lost,
}

impl TaskState {
    /// Reads Celery's `status` field; `PENDING` and unknown states are not outcomes.
    pub fn from_celery(status: &str) -> Option<TaskState> {
        match status {
            "STARTED" => Some(TaskState::Started),
            "RETRY" => Some(TaskState::Retry),
            "SUCCESS" => Some(TaskState::Success),
            "FAILURE" => Some(TaskState::Failure),
            "REVOKED" => Some(TaskState::Revoked),
            _ => None,
        }
    }

    /// Whether the run is over: nothing more will be learned about it.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::Started | TaskState::Retry)
    }

    /// A short, stable name (metric labels, the API, the CLI).
    pub fn label(self) -> &'static str {
        match self {
            TaskState::Started => "STARTED",
            TaskState::Retry => "RETRY",
            TaskState::Success => "SUCCESS",
            TaskState::Failure => "FAILURE",
            TaskState::Revoked => "REVOKED",
            TaskState::Lost => "LOST",
        }
    }
}

/// What the leader learned about one dispatched run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeItem {
    pub schedule: String,
    pub incarnation: Uuid,
    pub task_id: Uuid,
    pub state: TaskState,
    /// Celery's `date_done` (absent for `STARTED`, `RETRY` and `LOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_done: Option<DateTime<Utc>>,
}

/// A run counted against a schedule's overlap limit: committed and without a final state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenRun {
    pub task_id: Uuid,
    pub scheduled_at: DateTime<Utc>,
    /// When it entered the outbox: `max_runtime` counts from here.
    pub since: DateTime<Utc>,
}

/// An occurrence `buffer_one` holds until a run finishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRun {
    pub task_id: Uuid,
    pub scheduled_at: DateTime<Utc>,
}

/// The run state run control keeps for one schedule (only for schedules that have had it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    /// Runs without a final state, oldest first (only while the schedule limits overlap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<OpenRun>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<HeldRun>,
    /// FAILURE outcomes since the last SUCCESS (or resume).
    #[serde(default)]
    pub consecutive_failures: u32,
    /// The task ids of those failures, the newest `MAX_FAILING_SHOWN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<Uuid>,
    /// Why the schedule paused itself (cleared by resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_reason: Option<String>,
    /// The schedule's backfill, running or the last one finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<BackfillJob>,
    /// Scheduled occurrences still to skip, as a person asked (`SkipOccurrences`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skip_next: u32,
    /// Named occurrences to skip, as a person asked, earliest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_at: Vec<DateTime<Utc>>,
    /// A pause that ends by itself at this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<DateTime<Utc>>,
    /// Why the schedule was paused, as a person wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_note: Option<String>,
    /// Scheduled runs dispatched while the schedule has `max_runs`.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub runs: u64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// The most named occurrences a schedule keeps to skip.
pub const MAX_SKIP_AT: usize = 100;

/// The most occurrences one backfill sends.
pub const MAX_BACKFILL: u64 = 100_000;
/// The fastest a backfill sends (occurrences per second).
pub const MAX_BACKFILL_RATE: u32 = 10_000;

/// A backfill as asked for: the range (both ends included), the pace, and whether the
/// schedule's overlap policy applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillSpec {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Occurrences per second.
    pub rate: u32,
    #[serde(default)]
    pub overlap: bool,
    /// How many occurrences the range holds, counted by the leader that started it.
    pub total: u64,
}

/// A backfill and how far it has come.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillJob {
    pub spec: BackfillSpec,
    pub started_at: DateTime<Utc>,
    /// The last occurrence sent (the cursor); `None` before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<DateTime<Utc>>,
    /// Occurrences taken so far (sent, or decided by the overlap policy).
    pub done: u64,
    /// Of them, how many were new (not already in the outbox or the history).
    pub sent: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl BackfillSpec {
    /// Just before `from`: the range's occurrences are those strictly after it.
    pub fn before_from(&self) -> DateTime<Utc> {
        self.from
            .checked_sub_signed(chrono::Duration::milliseconds(1))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl BackfillJob {
    /// Where the next step starts: after the cursor, or from the range's start.
    pub fn after(&self) -> DateTime<Utc> {
        self.cursor.unwrap_or_else(|| self.spec.before_from())
    }

    /// Whether it still has occurrences to send.
    pub fn is_running(&self) -> bool {
        self.finished_at.is_none()
    }
}

impl ControlState {
    /// Whether there is nothing worth keeping.
    pub fn is_empty(&self) -> bool {
        *self == ControlState::default()
    }

    /// Records a FAILURE; returns the pause reason when it reaches `limit`.
    pub(crate) fn failed(&mut self, task_id: Uuid, limit: Option<u32>) -> Option<String> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        if self.failing.len() == MAX_FAILING_SHOWN {
            self.failing.remove(0);
        }
        self.failing.push(task_id);
        let limit = limit.filter(|n| *n > 0)?;
        (self.consecutive_failures >= limit).then(|| {
            let ids: Vec<String> = self.failing.iter().map(Uuid::to_string).collect();
            format!(
                "paused after {} consecutive failures (pause_after_failures = {limit}); failing task ids: {}",
                self.consecutive_failures,
                ids.join(", ")
            )
        })
    }

    /// The running backfill, if any.
    pub fn running_backfill(&self) -> Option<&BackfillJob> {
        self.backfill.as_ref().filter(|b| b.is_running())
    }

    /// Whether the occurrence at `instant` is to be skipped as a person asked; takes it off the
    /// list (or the count) if so.
    pub(crate) fn take_requested_skip(&mut self, instant: DateTime<Utc>) -> bool {
        if let Some(i) = self.skip_at.iter().position(|at| *at == instant) {
            self.skip_at.remove(i);
            return true;
        }
        if self.skip_next > 0 {
            self.skip_next -= 1;
            return true;
        }
        false
    }

    /// Clears what a success or a resume ends.
    pub(crate) fn clear_failures(&mut self) {
        self.consecutive_failures = 0;
        self.failing.clear();
    }
}
