//! Getting committed occurrences into Redis exactly once.
//!
//! Owns the idempotent push (`sink`) and the deterministic task ids (`ids`). It must not decide
//! what is due (that is the scheduler's job) nor change replicated state.

pub mod cursor;
pub mod health;
pub mod ids;
pub mod leader;
pub mod lease;
pub mod planner;
pub mod render;
pub mod sink;

pub use health::DispatchHealth;
pub use ids::occurrence_task_id;
pub use sink::{Push, PushOutcome, RedisSink, SinkConfig, SinkError};
