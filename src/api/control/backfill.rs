//! Starting a backfill on the leader: the range is checked against the stored schedule and
//! counted (or listed, for a dry run), and the job is committed; `dispatch::backfill` sends it.
//!
//! Invariant: a backfill names past occurrences only, at most `MAX_BACKFILL` of them, at a
//! bounded rate, and every refusal names the field. It must not send anything itself.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::writes::{WriteOutcome, Written};
use super::Control;
use crate::api::error::ApiError;
use crate::state::control::{BackfillSpec, MAX_BACKFILL, MAX_BACKFILL_RATE};
use crate::state::Command;

/// How many occurrences a dry run lists.
pub(super) const LISTED: usize = 1_000;
/// The rate when none is given (occurrences per second).
pub const DEFAULT_RATE: u32 = 10;

/// A backfill as a client asked for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BackfillAsk {
    pub name: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub rate: u32,
    pub overlap: bool,
    pub dry_run: bool,
}

/// The range is in order and past, and the rate within bounds.
fn check_ask(ask: &BackfillAsk, now: DateTime<Utc>) -> Result<(), ApiError> {
    if ask.from > ask.to {
        return Err(ApiError::invalid("to", "is before from"));
    }
    if ask.to > now {
        return Err(ApiError::invalid(
            "to",
            format!(
                "{} is in the future (now {}): a backfill sends past occurrences",
                ask.to.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    }
    if ask.rate == 0 || ask.rate > MAX_BACKFILL_RATE {
        return Err(ApiError::invalid(
            "rate_per_second",
            format!("must be 1 to {MAX_BACKFILL_RATE}"),
        ));
    }
    Ok(())
}

impl Control {
    pub(super) async fn backfill(
        &self,
        ask: BackfillAsk,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        check_ask(&ask, now)?;
        let job = BackfillSpec {
            from: ask.from,
            to: ask.to,
            rate: ask.rate,
            overlap: ask.overlap,
            total: 0,
        };
        let (incarnation, found) = {
            let applied = self.state.read().await;
            let record = applied
                .data
                .schedules()
                .get(ask.name.as_str())
                .ok_or_else(|| ApiError::NotFound(format!("schedule {:?} not found", ask.name)))?;
            let spec = record.spec().ok_or_else(|| {
                ApiError::FailedPrecondition(format!(
                    "schedule {:?} is faulted: {}",
                    ask.name,
                    record.fault().unwrap_or_default()
                ))
            })?;
            // One more than the limit tells that the range holds too many.
            let found = spec.between(job.before_from(), ask.to, MAX_BACKFILL as usize + 1);
            (record.incarnation, found)
        };
        let total = found.len() as u64;
        if total > MAX_BACKFILL {
            return Err(ApiError::invalid(
                "to",
                format!(
                    "the range holds more than {MAX_BACKFILL} occurrences: backfill it in parts"
                ),
            ));
        }
        if ask.dry_run {
            return Ok(Written {
                log_index: 0,
                outcome: WriteOutcome::Backfill {
                    total,
                    listed: found.into_iter().take(LISTED).collect(),
                    started: false,
                },
            });
        }
        let written = self
            .revision_write(Command::StartBackfill {
                name: ask.name,
                incarnation,
                job: BackfillSpec { total, ..job },
                at: now,
            })
            .await?;
        Ok(Written {
            log_index: written.log_index,
            outcome: WriteOutcome::Backfill {
                total,
                listed: Vec::new(),
                started: true,
            },
        })
    }
}
