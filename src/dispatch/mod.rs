//! Getting committed occurrences into Redis exactly once, on the leader: planning what is due
//! (`planner`), committing it, pushing the outbox (`cursor`, `render`, `sink`), acknowledging.
//!
//! Invariant: an occurrence reaches Redis only after its `Fire` is committed, and once whoever
//! pushes it, while its marker lives (deterministic task ids, `ids`; the marker script, `sink`).
//! It must not change replicated state except by proposing `Fire` and `Ack` through Raft.

pub(crate) mod backfill;
mod broker;
pub(crate) mod cursor;
mod gate;
pub(crate) mod health;
pub(crate) mod ids;
pub(crate) mod leader;
pub(crate) mod lease;
pub(crate) mod outcomes;
pub(crate) mod planner;
pub mod render;
pub(crate) mod sentinel;
pub mod sink;

pub use health::DispatchHealth;
pub use ids::occurrence_task_id;
pub use outcomes::ResultsConfig;
pub use sink::{Push, PushOutcome, RedisSink, SinkConfig, SinkError};
