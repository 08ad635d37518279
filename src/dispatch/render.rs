//! The one way a run becomes a Celery message: a committed definition, the run's task id and
//! instant, and whether a person asked for it, through the encoder.
//!
//! Invariant: the same inputs give the same message on every node (but for `origin`, the
//! node that pushes). Pure: no I/O, no clock.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::celery::{EncodeError, Encoded, Encoder, Occurrence, Trigger};
use crate::state::ScheduleDef;

/// The message of the run of `def` at `scheduled_at` with `task_id`; `trigger` says what asked
/// for it (a person, a backfill) when it is not the schedule.
pub fn render(
    encoder: &Encoder,
    def: &ScheduleDef,
    task_id: Uuid,
    scheduled_at: DateTime<Utc>,
    trigger: Trigger,
) -> Result<Encoded, EncodeError> {
    let occurrence = Occurrence {
        task: &def.task,
        task_id,
        args: &def.args,
        kwargs: &def.kwargs,
        schedule: &def.name,
        scheduled_at,
        trigger,
    };
    encoder.encode(&occurrence, &def.options)
}
