//! The fuzz targets: each owns a seed corpus, a dictionary, optionally a structure-aware
//! generator, and the function that feeds one input to belfry's code. A target reports a
//! `Violation` when an input breaks a promise without panicking (a definition accepted by
//! validation that does not survive the log, an occurrence outside its bounds); panics are
//! caught by the runner.

mod api;
mod config;
mod forwarded;
mod log_entry;
mod peer;
mod schedules_file;
mod snapshot;
mod spec;

use std::sync::Arc;

use belfry::celery::{Encoder, KombuLayout};
use belfry::raft::Entry;
use belfry::state::validate::validate_def;
use belfry::state::{Command, CommandResult, FireItem, ScheduleDef, StateData};
use chrono::{DateTime, Utc};
use openraft::raft::AppendEntriesRequest;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use uuid::Uuid;

use crate::codec;
use crate::rng::Rng;

/// A promise broken without a panic: what and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl Violation {
    pub fn new(text: impl Into<String>) -> Violation {
        Violation(text.into())
    }
}

/// One fuzz target.
pub trait Target: Send + Sync {
    fn name(&self) -> &'static str;
    /// What it feeds, in one line.
    fn about(&self) -> &'static str;
    /// Valid examples to mutate.
    fn corpus(&self) -> Vec<Vec<u8>>;
    /// Tokens of its format for the mutator.
    fn dictionary(&self) -> &'static [&'static str];
    /// A generated input (from the corpus by default, byte-level mutation).
    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        crate::mutate::mutated(rng, corpus, self.dictionary())
    }
    /// Feeds `input` to the code under test.
    fn run(&self, input: &[u8]) -> Result<(), Violation>;
}

/// Every target, in a stable order.
pub fn all() -> Vec<Box<dyn Target>> {
    vec![
        Box::new(spec::SpecTarget::interval()),
        Box::new(spec::SpecTarget::crontab()),
        Box::new(spec::SpecTarget::cron()),
        Box::new(spec::SpecTarget::once()),
        Box::new(spec::SpecTarget::solar()),
        Box::new(schedules_file::SchedulesFile),
        Box::new(config::Config::new()),
        Box::new(api::ApiRequest),
        Box::new(forwarded::ForwardedCall),
        Box::new(peer::PeerPayload),
        Box::new(log_entry::LogEntry),
        Box::new(snapshot::SnapshotFile::new()),
    ]
}

/// The target called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Target>> {
    all().into_iter().find(|t| t.name() == name)
}

/// The instant validation and apply run at.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_735_689_600, 0).unwrap_or_default()
}

/// An incarnation fuzzed commands can name (the nil uuid is easy to reach by mutation).
pub const SAMPLE_INCARNATION: Uuid = Uuid::nil();

/// The sample state, built once.
pub fn sample() -> &'static StateData {
    static SAMPLE: std::sync::LazyLock<StateData> = std::sync::LazyLock::new(sample_state);
    &SAMPLE
}

/// A state with a few schedules (`a`, `b`, `report-0`) and an outbox entry, so that fuzzed
/// deletes, fires and acks find something to act on.
pub fn sample_state() -> StateData {
    let mut state = StateData::default();
    for (name, every) in [("a", "1s"), ("b", "15m"), ("report-0", "1h")] {
        let def = ScheduleDef {
            name: Arc::from(name),
            task: "t".into(),
            spec: belfry::schedule::SpecInput {
                every: Some(every.into()),
                ..Default::default()
            },
            args: Vec::new(),
            kwargs: Default::default(),
            options: Default::default(),
            catchup: Default::default(),
            enabled: true,
            labels: Default::default(),
            description: Default::default(),
            last_run_at: None,
            control: None,
        };
        state.apply(&Command::Put {
            def,
            expected_revision: None,
            incarnation: SAMPLE_INCARNATION,
            at: now(),
        });
    }
    state.apply(&Command::Fire {
        faults: Vec::new(),
        fires: vec![FireItem {
            schedule: "a".into(),
            incarnation: SAMPLE_INCARNATION,
            scheduled_at: now() + chrono::Duration::seconds(1),
            task_id: SAMPLE_INCARNATION,
            manual: false,
            backfill: false,
        }],
        skips: Vec::new(),
        at: now(),
    });
    state
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(3, 1), index)
}

/// An entry carrying `command`, as the leader proposes it.
pub fn entry(index: u64, command: Command) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(command),
    }
}

/// The put a create of `def` commits.
pub fn put(def: &ScheduleDef) -> Command {
    Command::Put {
        def: def.clone(),
        expected_revision: Some(0),
        incarnation: Uuid::from_u128(7),
        at: now(),
    }
}

/// What every definition that passed validation must do: apply (validation and apply agree),
/// render its Celery message, and come back unchanged from the log and from a peer message.
/// Forwarded calls and snapshots are covered by their own targets and the round-trip test.
pub fn check_accepted(def: &ScheduleDef) -> Result<(), Violation> {
    let mut state = StateData::default();
    let result = state.apply(&put(def));
    if result != CommandResult::Revision(1) {
        return Err(Violation::new(format!(
            "validation accepted a definition that apply refused: {result:?}"
        )));
    }
    let record = &state.schedules()[&*def.name];
    let at = record.next.unwrap_or_else(now);
    let encoder = Encoder {
        origin: "fuzz".into(),
        layout: KombuLayout::default(),
    };
    belfry::dispatch::render::render(
        &encoder,
        def,
        Uuid::from_u128(9),
        at,
        belfry::celery::Trigger::Schedule,
    )
    .map_err(|e| Violation::new(format!("an accepted definition cannot be rendered: {e}")))?;
    let entry = entry(5, put(def));
    let back = codec::encode_entry(&entry)
        .and_then(|bytes| codec::decode_entry(&bytes))
        .map_err(|e| Violation::new(format!("log entry of an accepted definition: {e}")))?;
    if back != entry {
        return Err(Violation::new(
            "log entry of an accepted definition changed on the way",
        ));
    }
    let rpc = AppendEntriesRequest::<belfry::raft::TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(log_id(4)),
        entries: vec![entry.clone()],
        leader_commit: Some(log_id(4)),
    };
    let back = codec::encode_peer(&rpc)
        .and_then(|bytes| codec::decode_append_entries(&bytes))
        .map_err(|e| Violation::new(format!("AppendEntries of an accepted definition: {e}")))?;
    if back.entries != rpc.entries {
        return Err(Violation::new(
            "AppendEntries of an accepted definition changed on the way",
        ));
    }
    Ok(())
}

/// `check_accepted` for definitions that pass validation; others only have to apply without
/// panicking (apply parses the spec again and refuses what it cannot use).
pub fn check_def(def: &ScheduleDef) -> Result<(), Violation> {
    match validate_def(def, now()) {
        Ok(_) => check_accepted(def),
        Err(_) => {
            StateData::default().apply(&put(def));
            Ok(())
        }
    }
}

/// Applies `command` to a copy of the sample state and to an empty one: apply must never
/// panic, whatever a log entry or a peer carries.
pub fn apply_anywhere(sample: &StateData, command: &Command) {
    let mut state = sample.clone();
    state.apply(command);
    StateData::default().apply(command);
}

/// Text of `input`, invalid UTF-8 replaced (readers of files refuse it; the parsers behind
/// them still get to see the rest).
pub fn text(input: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(input)
}
