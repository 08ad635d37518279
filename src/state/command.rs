//! Commands written through Raft and the results of applying them: the log's vocabulary.
//!
//! Invariant: a command carries everything its apply needs (the leader's instant `at`, a new
//! schedule's incarnation, each fire's task id), so every node applies it alike; a field added
//! later (`faults`) decodes as absent from older entries, and `format` names the log format a
//! command needs. It must not apply anything (that is `data`) nor do I/O.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::celery::StoredOptions;
use crate::schedule::SpecInput;

use super::control::{BackfillSpec, OutcomeItem, RunControl};
use super::Labels;

/// What happens to occurrences a leader finds already past due (after an election, or a
/// resume).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatchupRule {
    /// Every missed occurrence inside the window, oldest first.
    #[default]
    All,
    /// Only the newest missed occurrence.
    Latest,
    /// None of them; the next one runs on time.
    None,
}

/// A schedule's catch-up policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatchupPolicy {
    pub rule: CatchupRule,
    /// Occurrences older than this (seconds) are skipped whatever the rule.
    pub window_secs: u64,
}

impl Default for CatchupPolicy {
    fn default() -> Self {
        CatchupPolicy {
            rule: CatchupRule::All,
            window_secs: 3600,
        }
    }
}

/// A schedule as a user defines it.
///
/// Size: the state keeps one per schedule behind an `Arc`, whose two counts make a definition
/// of up to 296 bytes an allocation glibc serves from a 320-byte chunk, and a larger one takes
/// a 336-byte chunk. Hence boxed strings for `task` and `description` (no spare capacities)
/// and one allocation for a spec's solar fields (`SpecInput::solar`); `last_run_at` stays
/// inline, since schedules migrated from Celery beat usually have one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleDef {
    /// Shared with the key of the schedules map: one allocation per name.
    pub name: Arc<str>,
    /// The registered Celery task name. Boxed, not a `String`: see the size note above.
    pub task: Box<str>,
    pub spec: SpecInput,
    #[serde(default)]
    pub args: Vec<Value>,
    #[serde(default)]
    pub kwargs: Map<String, Value>,
    #[serde(default)]
    pub options: StoredOptions,
    #[serde(default)]
    pub catchup: CatchupPolicy,
    #[serde(default = "default_true")]
    pub enabled: bool,
    #[serde(default)]
    pub labels: Labels,
    /// Boxed, not a `String`: see the size note above.
    #[serde(default)]
    pub description: Box<str>,
    /// When the previous scheduler (Celery beat) last sent this schedule. Acts at creation
    /// only: occurrences at or before it are never sent, those after it follow the catch-up
    /// policy, and an interval without `anchor` or `start_at` counts from it. A change to an
    /// existing schedule keeps the stored value (see `StateData::put`). Absent from definitions
    /// without it, so they encode as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<DateTime<Utc>>,
    /// Overlap policy, run-time bound and auto-pause (`state::control`); absent when none is
    /// set, so such definitions encode as they always did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Box<RunControl>>,
}

impl ScheduleDef {
    /// Whether `self` and `other` define the same schedule, leaving out `last_run_at` (a fact
    /// of the creation, not of the definition).
    pub fn same_definition(&self, other: &ScheduleDef) -> bool {
        self.name == other.name
            && self.task == other.task
            && self.spec == other.spec
            && self.args == other.args
            && self.kwargs == other.kwargs
            && self.options == other.options
            && self.catchup == other.catchup
            && self.enabled == other.enabled
            && self.labels == other.labels
            && self.description == other.description
            && self.control == other.control
    }

    /// Whether this definition needs log entry format 2: a solar spec or a `last_run_at`, which
    /// a build reading format 1 would drop (and so apply differently).
    pub fn needs_format_2(&self) -> bool {
        self.last_run_at.is_some() || self.spec.solar.event.is_some()
    }

    /// Whether this definition needs log entry format 3: run control, which a build reading
    /// format 2 would drop.
    pub fn needs_format_3(&self) -> bool {
        self.control.is_some()
    }

    /// The run-control settings, defaults when none are set.
    pub fn run_control(&self) -> RunControl {
        self.control.as_deref().cloned().unwrap_or_default()
    }
}

fn default_true() -> bool {
    true
}

/// One occurrence the leader intends to dispatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FireItem {
    pub schedule: String,
    pub incarnation: Uuid,
    pub scheduled_at: DateTime<Utc>,
    pub task_id: Uuid,
    /// An out-of-schedule run asked for by a person: does not advance `last_fire`.
    #[serde(default)]
    pub manual: bool,
    /// A run of a backfill (format 3): does not advance `last_fire`, sent once per task id.
    #[serde(default, skip_serializing_if = "is_false")]
    pub backfill: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why an occurrence was not dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Older than the schedule's catch-up window when a leader found it.
    OutsideCatchupWindow,
    /// Policy `latest`: a newer missed occurrence was dispatched instead.
    SupersededByLatest,
    /// Policy `none`: missed occurrences are not dispatched.
    CatchupNone,
    /// The message could not be rendered (never expected for a validated schedule).
    InvalidMessage,
    /// Overlap policy `skip` (or a held occurrence replaced under `buffer_one`): earlier runs
    /// had no final state.
    PreviousRunning,
    /// A person asked to skip it (`SkipOccurrences`).
    Requested,
}

impl SkipReason {
    /// A short, stable name (metric labels, JSON).
    pub fn label(self) -> &'static str {
        match self {
            SkipReason::OutsideCatchupWindow => "outside_catchup_window",
            SkipReason::SupersededByLatest => "superseded_by_latest",
            SkipReason::CatchupNone => "catchup_none",
            SkipReason::InvalidMessage => "invalid_message",
            SkipReason::PreviousRunning => "previous_running",
            SkipReason::Requested => "requested",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SkipReason::OutsideCatchupWindow => "outside the catch-up window",
            SkipReason::SupersededByLatest => "superseded by a later occurrence (catch-up: latest)",
            SkipReason::CatchupNone => "missed (catch-up: none)",
            SkipReason::InvalidMessage => "the Celery message could not be rendered",
            SkipReason::PreviousRunning => "the previous run had not finished (overlap policy)",
            SkipReason::Requested => "skipped as requested",
        })
    }
}

/// Occurrences the leader decided not to dispatch, with the reason: `count` consecutive ones
/// ending with the one at `scheduled_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkipItem {
    pub schedule: String,
    pub incarnation: Uuid,
    pub scheduled_at: DateTime<Utc>,
    pub reason: SkipReason,
    #[serde(default = "one")]
    pub count: u64,
    /// What made these occurrences late, when it was not the scheduler: an optional field that
    /// builds which predate it ignore (they read the skip under its catch-up reason alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<SkipCause>,
}

/// What made skipped occurrences late enough for the catch-up policy to skip them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipCause {
    /// Planning was paused because the outbox was full: the broker took nothing for too long.
    BrokerUnavailable,
}

impl SkipCause {
    /// A short, stable name (metric labels, the API's skip reason).
    pub fn label(self) -> &'static str {
        match self {
            SkipCause::BrokerUnavailable => "broker_unavailable",
        }
    }
}

fn one() -> u64 {
    1
}

/// A schedule the leader could not plan: it is set aside (planned no more) until its
/// definition changes, and the reason is shown to people. Only the revision it names is
/// faulted, so a fix committed meanwhile is never marked by a stale report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultItem {
    pub schedule: String,
    pub incarnation: Uuid,
    pub revision: u64,
    pub reason: String,
}

/// A change to replicated state. `at` is the proposing leader's wall clock.
// Commands are short-lived messages on their way into the log; their size in memory does not
// matter, so the large `Put` variant stays unboxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Create (when `expected_revision` is `Some(0)` or absent and the name is free) or replace a
    /// schedule. A create takes `incarnation`; a replace keeps the schedule's.
    Put {
        def: ScheduleDef,
        expected_revision: Option<u64>,
        incarnation: Uuid,
        at: DateTime<Utc>,
    },
    Delete {
        name: String,
        expected_revision: Option<u64>,
        at: DateTime<Utc>,
    },
    /// Pause (`enabled: false`) or resume a schedule. A resume restarts its plan from `at`
    /// according to its catch-up policy.
    SetEnabled {
        name: String,
        enabled: bool,
        at: DateTime<Utc>,
    },
    /// Intents to dispatch, skips and planning faults, decided together.
    Fire {
        fires: Vec<FireItem>,
        skips: Vec<SkipItem>,
        /// Absent from entries written before faults were recorded, and left out when empty,
        /// so those entries read (and encode) as they always did.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        faults: Vec<FaultItem>,
        at: DateTime<Utc>,
    },
    /// Several commands in one log entry, applied in order (bulk changes to schedules).
    Batch(Vec<Command>),
    /// These task ids are in Redis: drop them from the outbox and record the runs.
    Ack {
        task_ids: Vec<Uuid>,
        /// `true` when Redis already had the marker (another push delivered it).
        already_sent: Vec<Uuid>,
        at: DateTime<Utc>,
    },
    /// What the result backend says of dispatched runs (format 3).
    Outcomes {
        items: Vec<OutcomeItem>,
        at: DateTime<Utc>,
    },
    /// Skips the next `next` scheduled occurrences and those at `instants` (format 3).
    SkipOccurrences {
        name: String,
        next: u32,
        instants: Vec<DateTime<Utc>>,
        at: DateTime<Utc>,
    },
    /// Pauses a schedule until `until`, with a note (format 3).
    PauseUntil {
        name: String,
        until: DateTime<Utc>,
        note: String,
        at: DateTime<Utc>,
    },
    /// Ends a pause at its instant, if the schedule is still paused until then (format 3): a
    /// later pause or resume by a person makes it a no-op.
    ResumeIfDue {
        name: String,
        until: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// Starts a backfill of a schedule's occurrences in `[from, to]` (format 3).
    StartBackfill {
        name: String,
        incarnation: Uuid,
        job: BackfillSpec,
        at: DateTime<Utc>,
    },
    /// A backfill's next occurrences, sent from where its cursor stands (`after`, `None` before
    /// the first): a step proposed twice, or by a stale leader, finds the cursor moved and
    /// changes nothing (format 3).
    BackfillStep {
        name: String,
        incarnation: Uuid,
        after: Option<DateTime<Utc>>,
        fires: Vec<FireItem>,
        /// Where the cursor goes; with `finished`, the job ends.
        cursor: Option<DateTime<Utc>>,
        finished: bool,
        at: DateTime<Utc>,
    },
}

/// The most commands one log entry carries (a `Batch` counts each of its own). Bounded so that
/// an entry travels and is stored well within the time openraft allows one AppendEntries (the
/// heartbeat interval): a single entry cannot be split on the way, and one that never fits
/// would stall replication for good.
pub const MAX_COMMANDS_PER_ENTRY: usize = 1_000;

impl Command {
    /// The lowest log entry format (`formats::LOG_ENTRY`) that carries this command: a
    /// variant, or a field with a meaning, added later names the format it arrived in. A
    /// leader proposes a command only when every member reads its format (ARCHITECTURE.md,
    /// "Formats"). A `Put` with run control and `Outcomes` are format 3; a `Put` of a solar
    /// spec or with `last_run_at` is format 2; every other command is format 1.
    pub fn format(&self) -> u32 {
        match self {
            Command::Batch(commands) => commands.iter().map(Command::format).max().unwrap_or(1),
            Command::Outcomes { .. }
            | Command::StartBackfill { .. }
            | Command::BackfillStep { .. }
            | Command::SkipOccurrences { .. }
            | Command::PauseUntil { .. }
            | Command::ResumeIfDue { .. } => 3,
            Command::Put { def, .. } if def.needs_format_3() => 3,
            Command::Put { def, .. } if def.needs_format_2() => 2,
            Command::Put { .. }
            | Command::Delete { .. }
            | Command::SetEnabled { .. }
            | Command::Fire { .. }
            | Command::Ack { .. } => 1,
        }
    }

    /// How many commands this adds to an entry.
    pub fn weight(&self) -> usize {
        match self {
            Command::Batch(commands) => commands.len().max(1),
            _ => 1,
        }
    }

    /// `commands`, in order, as `Batch` commands of at most `MAX_COMMANDS_PER_ENTRY` each.
    pub fn batches(commands: Vec<Command>) -> impl Iterator<Item = Command> {
        let mut commands = commands.into_iter().peekable();
        std::iter::from_fn(move || {
            commands.peek()?;
            Some(Command::Batch(
                commands.by_ref().take(MAX_COMMANDS_PER_ENTRY).collect(),
            ))
        })
    }
}

/// Why a command changed nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("schedule {0:?} not found")]
    NotFound(String),
    #[error("schedule {0:?} already exists")]
    AlreadyExists(String),
    #[error("schedule {name:?} is at revision {actual}, not {expected}")]
    StaleRevision {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The outcome of applying one command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResult {
    /// A membership change or blank entry.
    #[default]
    Empty,
    /// The schedule's revision after a put, delete or pause/resume.
    Revision(u64),
    /// How many fires were accepted (the others were stale or repeated) and skips recorded.
    Fired {
        accepted: u32,
        skipped: u32,
        /// Of the fires, how many the overlap policy skipped or held instead.
        #[serde(default)]
        overlap_skipped: u32,
        #[serde(default)]
        held: u32,
    },
    /// How many outcomes changed a run.
    Outcomes(u32),
    /// How many of a backfill step's occurrences were sent (0: a stale or repeated step).
    Backfilled(u32),
    /// How many outbox entries were acknowledged.
    Acked(u32),
    Rejected(Rejection),
    /// One result per command of a `Batch`.
    Batch(Vec<CommandResult>),
}
