//! Deciding what to commit: the occurrences due now (or within the lookahead), with each
//! schedule's catch-up policy applied to those already past due.
//!
//! Invariant: a plan is a function of its arguments (the applied state, the clock reading passed
//! in, the settings); a schedule whose planning panics adds nothing but a fault, and the others
//! are planned all the same. It must not write anything: the leader turns a `Plan` into one
//! `Fire` command, and the rendered messages stay on the leader (the log carries none).

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::ids::occurrence_task_id;
use crate::celery::{Encoded, Encoder};
use crate::state::{
    CatchupRule, FaultItem, FireItem, ScheduleRecord, SkipCause, SkipItem, SkipReason, StateData,
};

/// The default bound on the outbox: several times the largest burst a large installation
/// plans at once (100,000 schedules due at one instant). Measured with 100,000 every-minute
/// schedules and the outbox full: about 1 GiB peak resident on the leader (README).
pub(crate) const DEFAULT_MAX_OUTBOX: usize = 500_000;

/// Planning limits and thresholds.
#[derive(Clone, Debug)]
pub(crate) struct PlanConfig {
    /// Occurrences due within this much of now are committed early; the pusher still waits for
    /// their instant, so Raft's commit latency does not add to their lateness.
    pub lookahead: Duration,
    /// An occurrence later than this when first planned counts as missed (catch-up applies).
    pub misfire_grace: Duration,
    /// Occurrences examined per schedule in one pass (a long outage is worked off over passes).
    pub max_per_schedule: usize,
    /// Fires per `Fire` command.
    pub max_fires: usize,
    /// Committed occurrences not yet in Redis beyond which planning pauses: a broker outage of
    /// any length then costs bounded memory and log, and once it ends each schedule's catch-up
    /// policy decides what of the pause is still sent.
    pub max_outbox: usize,
}

impl Default for PlanConfig {
    fn default() -> Self {
        PlanConfig {
            lookahead: Duration::seconds(1),
            misfire_grace: Duration::seconds(2),
            max_per_schedule: 100_000,
            max_fires: 1_000,
            max_outbox: DEFAULT_MAX_OUTBOX,
        }
    }
}

/// What one pass decided.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub fires: Vec<FireItem>,
    /// The message of each fire, rendered now so the pusher need not (and so a definition that
    /// cannot be rendered is skipped, not committed).
    pub rendered: Vec<(Uuid, Encoded)>,
    pub skips: Vec<SkipItem>,
    /// Schedules whose planning failed: set aside, the others go on.
    pub faults: Vec<FaultItem>,
    /// When to plan again if nothing changes: the next occurrence minus the lookahead.
    pub wake_at: Option<DateTime<Utc>>,
    /// Nothing was planned because the outbox is full (`PlanConfig::max_outbox`).
    pub outbox_full: bool,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.fires.is_empty() && self.skips.is_empty() && self.faults.is_empty()
    }
}

/// What one planning pass shares across schedules.
struct Pass<'a> {
    now: DateTime<Utc>,
    /// `now` plus the lookahead: occurrences up to here are planned.
    horizon: DateTime<Utc>,
    config: &'a PlanConfig,
    encoder: &'a Encoder,
    cluster_id: Uuid,
    /// Set while planning catches up after a pause for a full outbox: skips get that cause.
    after_outage: bool,
}

/// Plans every schedule whose next occurrence is due by `now + lookahead`. `after_outage` says
/// whether planning was paused for a full outbox since it last caught up: the catch-up policy's
/// skips then carry the cause `broker_unavailable`. With the outbox full, nothing is planned.
pub(crate) fn plan_after(
    state: &StateData,
    now: DateTime<Utc>,
    config: &PlanConfig,
    encoder: &Encoder,
    cluster_id: Uuid,
    after_outage: bool,
) -> Plan {
    if state.outbox().len() >= config.max_outbox {
        return Plan {
            outbox_full: true,
            ..Plan::default()
        };
    }
    let horizon = now + config.lookahead;
    let pass = Pass {
        now,
        horizon,
        config,
        encoder,
        cluster_id,
        after_outage,
    };
    let mut plan = Plan::default();
    for (next, name) in state.due() {
        if *next > horizon {
            plan.wake_at = Some(*next - config.lookahead);
            break;
        }
        if plan.fires.len() >= config.max_fires {
            plan.wake_at = Some(now);
            break;
        }
        if let Some(record) = state.schedules().get(name) {
            plan_guarded(&pass, record, *next, &mut plan);
        }
    }
    plan
}

/// Plans one schedule; if that panics, whatever it added is taken back and the schedule is
/// reported as faulted instead, so one schedule the engine cannot handle never stops the
/// others (nor every later leader, which would meet the same schedule).
fn plan_guarded(pass: &Pass, record: &ScheduleRecord, first: DateTime<Utc>, plan: &mut Plan) {
    let marks = (plan.fires.len(), plan.rendered.len(), plan.skips.len());
    let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        plan_schedule(pass, record, first, plan)
    }));
    if let Err(panic) = planned {
        plan.fires.truncate(marks.0);
        plan.rendered.truncate(marks.1);
        plan.skips.truncate(marks.2);
        let reason = format!("planning failed: {}", panic_message(panic.as_ref()));
        tracing::error!(schedule = %record.def.name, revision = record.revision, %reason, "schedule set aside as faulted");
        plan.faults.push(FaultItem {
            schedule: record.def.name.to_string(),
            incarnation: record.incarnation,
            revision: record.revision,
            reason,
        });
    }
}

/// The text a panic was raised with.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// A schedule's occurrences from its next one up to the horizon, sorted by how late they are.
#[derive(Default)]
struct Due {
    /// The newest occurrence older than the catch-up window, and how many there were.
    outside_window: Option<(DateTime<Utc>, u64)>,
    /// Past the grace (or due while paused): the catch-up policy decides.
    missed: Vec<DateTime<Utc>>,
    on_time: Vec<DateTime<Utc>>,
}

fn plan_schedule(pass: &Pass, record: &ScheduleRecord, first: DateTime<Utc>, plan: &mut Plan) {
    #[cfg(test)]
    tests::fail_point(record);
    let Some(spec) = record.spec() else { return };
    let due = due_until(pass, record, spec, first);
    let skip = |plan: &mut Plan, at: DateTime<Utc>, reason: SkipReason, count: u64| {
        plan.skips.push(SkipItem {
            schedule: record.def.name.to_string(),
            incarnation: record.incarnation,
            scheduled_at: at,
            reason,
            count,
            // Lateness from the pause, not a failing of the schedule (a message that cannot be
            // rendered keeps its own reason).
            cause: (pass.after_outage && reason != SkipReason::InvalidMessage)
                .then_some(SkipCause::BrokerUnavailable),
        });
    };
    if let Some((last, count)) = due.outside_window {
        skip(plan, last, SkipReason::OutsideCatchupWindow, count);
    }
    let to_fire = apply_catchup(record.def.catchup.rule, due, |at, reason, count| {
        skip(plan, at, reason, count)
    });
    for scheduled_at in to_fire {
        let task_id = occurrence_task_id(pass.cluster_id, record.incarnation, scheduled_at);
        match super::render::render(
            pass.encoder,
            &record.def,
            task_id,
            scheduled_at,
            crate::celery::Trigger::Schedule,
        ) {
            Ok(message) => {
                plan.fires.push(FireItem {
                    schedule: record.def.name.to_string(),
                    incarnation: record.incarnation,
                    scheduled_at,
                    task_id,
                    manual: false,
                    backfill: false,
                });
                plan.rendered.push((task_id, message));
            }
            Err(err) => {
                tracing::error!(schedule = %record.def.name, %task_id, %err, "cannot render the Celery message");
                skip(plan, scheduled_at, SkipReason::InvalidMessage, 1);
            }
        }
    }
}

/// Walks the schedule's occurrences from `first` to `horizon` (at most
/// `config.max_per_schedule` of them) and sorts each by how late it is.
fn due_until(
    pass: &Pass,
    record: &ScheduleRecord,
    spec: &crate::schedule::Spec,
    first: DateTime<Utc>,
) -> Due {
    let (now, config) = (pass.now, pass.config);
    // Checked: a stored window may predate the bound validation puts on new ones.
    let window_start = i64::try_from(record.def.catchup.window_secs)
        .ok()
        .and_then(Duration::try_seconds)
        .and_then(|window| now.checked_sub_signed(window))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // Late but within the grace is on time; anything due during a pause is missed.
    let grace_start = now - config.misfire_grace;
    let missed_before = grace_start.max(record.resumed_at.unwrap_or(grace_start));
    let mut due = Due::default();
    let mut cursor = Some(first);
    let mut examined = 0;
    while let Some(at) = cursor {
        if at > pass.horizon || examined >= config.max_per_schedule {
            break;
        }
        examined += 1;
        if at < window_start {
            let count = due.outside_window.map_or(0, |(_, n)| n);
            due.outside_window = Some((at, count + 1));
        } else if at < missed_before {
            due.missed.push(at);
        } else {
            due.on_time.push(at);
        }
        cursor = spec.next_after(at);
    }
    due
}

/// The occurrences to fire under `rule`, oldest first; `skip(newest skipped, reason, count)`
/// records those it passes over.
fn apply_catchup(
    rule: CatchupRule,
    due: Due,
    mut skip: impl FnMut(DateTime<Utc>, SkipReason, u64),
) -> Vec<DateTime<Utc>> {
    let Due {
        missed, on_time, ..
    } = due;
    match rule {
        CatchupRule::All => missed.into_iter().chain(on_time).collect(),
        CatchupRule::Latest => {
            if missed.len() > 1 {
                skip(
                    missed[missed.len() - 2],
                    SkipReason::SupersededByLatest,
                    missed.len() as u64 - 1,
                );
            }
            missed.last().copied().into_iter().chain(on_time).collect()
        }
        CatchupRule::None => {
            if let Some(last) = missed.last() {
                skip(*last, SkipReason::CatchupNone, missed.len() as u64);
            }
            on_time
        }
    }
}

#[cfg(test)]
mod tests;
