//! The replicated state machine: schedules, their run state, the outbox, and membership.
//!
//! The only place replicated state changes, by applying committed commands. Apply is
//! deterministic: no clock (instants come from the command, stamped by the leader), no
//! randomness (incarnation ids come from the command), no I/O.

mod command;
mod data;
pub mod diff;
mod labels;
mod store;
pub mod validate;

pub use command::{
    CatchupPolicy, CatchupRule, Command, CommandResult, FaultItem, FireItem, Rejection,
    ScheduleDef, SkipItem, SkipReason, MAX_COMMANDS_PER_ENTRY,
};
pub use data::{OutboxEntry, RunOutcome, RunRecord, ScheduleRecord, StateData, HISTORY_LEN};
pub use labels::Labels;
pub use store::{
    read_snapshot, snapshot_path, Applied, SnapshotBuilder, StateHandle, StateMachineStore,
    StoreError,
};
