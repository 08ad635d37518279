//! The replicated state machine: schedules, their run state, the outbox; the commands that
//! change them; the diff from a declared set to commands; validation of definitions.
//!
//! Invariant: the only place replicated state changes, by applying committed commands, and
//! apply is deterministic: no clock (instants come from the command, stamped by the leader), no
//! randomness (incarnation ids come from the command), no I/O. Pure: no openraft, no tokio, no
//! filesystem (openraft's adapter, with snapshots and files, is `raft::state_machine`).

mod command;
pub mod control;
mod data;
pub mod diff;
mod labels;
pub mod validate;

pub use command::{
    CatchupPolicy, CatchupRule, Command, CommandResult, FaultItem, FireItem, Rejection,
    ScheduleDef, SkipCause, SkipItem, SkipReason, MAX_COMMANDS_PER_ENTRY,
};
pub use data::{OutboxEntry, RunOutcome, RunRecord, ScheduleRecord, StateData, HISTORY_LEN};
pub use labels::Labels;
