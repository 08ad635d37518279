//! Getting committed occurrences into Redis exactly once, on the leader: planning what is due
//! (`planner`), committing it, pushing the outbox (`cursor`, `render`, `sink`), acknowledging.
//!
//! Invariant: an occurrence reaches Redis only after its `Fire` is committed, and once whoever
//! pushes it, while its marker lives (deterministic task ids, `ids`; the marker script, `sink`).
//! It must not change replicated state except by proposing `Fire` and `Ack` through Raft.

mod broker;
pub mod cursor;
mod gate;
pub mod health;
pub mod ids;
pub mod leader;
pub mod lease;
pub mod planner;
pub mod render;
pub mod sentinel;
pub mod sink;

pub use health::DispatchHealth;
pub use ids::occurrence_task_id;
pub use sink::{Push, PushOutcome, RedisSink, SinkConfig, SinkError};
