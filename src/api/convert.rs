//! Conversions between the API's messages and belfry's own types.
//!
//! Invariant: an input conversion either yields a value of the right shape (JSON that must be
//! an array or object, numbers in range) or an error naming the field. It must not judge the
//! meaning of a definition: that is `state::validate`.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::error::ApiError;
use super::pb;
use crate::celery::{Expires, TaskOptions};
use crate::schedule::{parse_bounded_instant, SolarInput, SpecInput};
use crate::state::control::{Overlap, RunControl};
use crate::state::validate::MAX_ARGS_BYTES;
use crate::state::validate::MAX_JITTER_MS;
use crate::state::{
    CatchupPolicy, CatchupRule, Labels, RunOutcome, RunRecord, ScheduleDef, ScheduleRecord,
};

pub(super) fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

fn non_empty(text: &str) -> Option<Box<str>> {
    (!text.is_empty()).then(|| text.into())
}

fn json<T: serde::de::DeserializeOwned>(
    field: &str,
    text: &str,
    what: &str,
) -> Result<Option<T>, ApiError> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() > MAX_ARGS_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("takes {} bytes; the limit is {MAX_ARGS_BYTES}", text.len()),
        ));
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| ApiError::invalid(field, format!("must be a JSON {what}: {e}")))
}

/// A spec as the API carries it, as the state keeps it (empty strings are absent fields).
pub(crate) fn spec_input(spec: &pb::Spec) -> SpecInput {
    SpecInput {
        every: non_empty(&spec.every),
        anchor: non_empty(&spec.anchor),
        cron: non_empty(&spec.cron),
        crontab: non_empty(&spec.crontab),
        once: non_empty(&spec.once),
        tz: non_empty(&spec.timezone),
        start_at: non_empty(&spec.start_at),
        end_at: non_empty(&spec.end_at),
        solar: SolarInput {
            event: non_empty(&spec.solar),
            latitude: spec.latitude,
            longitude: spec.longitude,
        }
        .into(),
    }
}

fn pb_spec(spec: &SpecInput) -> pb::Spec {
    let text = |v: &Option<Box<str>>| v.as_deref().unwrap_or_default().to_string();
    pb::Spec {
        every: text(&spec.every),
        anchor: text(&spec.anchor),
        crontab: text(&spec.crontab),
        cron: text(&spec.cron),
        once: text(&spec.once),
        timezone: text(&spec.tz),
        start_at: text(&spec.start_at),
        end_at: text(&spec.end_at),
        solar: text(&spec.solar.event),
        latitude: spec.solar.latitude,
        longitude: spec.solar.longitude,
    }
}

fn task_options(options: &pb::TaskOptions) -> Result<TaskOptions, ApiError> {
    let priority = options
        .priority
        .map(|p| u8::try_from(p).map_err(|_| ApiError::invalid("options.priority", "must be 0-9")))
        .transpose()?;
    let expires = match (options.expires_after_seconds, options.expires_at.as_str()) {
        (Some(_), at) if !at.is_empty() => {
            return Err(ApiError::invalid(
                "options.expires_at",
                "give expires_after_seconds or expires_at, not both",
            ))
        }
        (Some(seconds), _) => Some(Expires::AfterSeconds(seconds)),
        (None, "") => None,
        (None, at) => Some(Expires::At(
            parse_bounded_instant("options.expires_at", at)
                .map_err(|e| ApiError::invalid(e.field, e.reason))?,
        )),
    };
    let headers: Map<String, Value> =
        json("options.headers_json", &options.headers_json, "object")?.unwrap_or_default();
    Ok(TaskOptions {
        queue: options.queue.clone(),
        routing_key: options.routing_key.clone(),
        priority,
        expires,
        headers,
        time_limit: options.time_limit,
        soft_time_limit: options.soft_time_limit,
        ignore_result: options.ignore_result,
    })
}

fn pb_options(options: &TaskOptions) -> pb::TaskOptions {
    let (expires_after_seconds, expires_at) = match &options.expires {
        Some(Expires::AfterSeconds(s)) => (Some(*s), String::new()),
        Some(Expires::At(at)) => (None, at.to_rfc3339()),
        None => (None, String::new()),
    };
    pb::TaskOptions {
        queue: options.queue.clone(),
        routing_key: options.routing_key.clone(),
        priority: options.priority.map(u32::from),
        expires_after_seconds,
        expires_at,
        headers_json: if options.headers.is_empty() {
            String::new()
        } else {
            Value::Object(options.headers.clone()).to_string()
        },
        time_limit: options.time_limit,
        soft_time_limit: options.soft_time_limit,
        ignore_result: options.ignore_result,
    }
}

fn catchup(policy: Option<&pb::CatchupPolicy>) -> Result<CatchupPolicy, ApiError> {
    let default = CatchupPolicy::default();
    let Some(policy) = policy else {
        return Ok(default);
    };
    let rule = match pb::CatchupRule::try_from(policy.rule) {
        Ok(pb::CatchupRule::Unspecified | pb::CatchupRule::All) => CatchupRule::All,
        Ok(pb::CatchupRule::Latest) => CatchupRule::Latest,
        Ok(pb::CatchupRule::None) => CatchupRule::None,
        Err(_) => {
            return Err(ApiError::invalid(
                "catchup.rule",
                format!("{} is not a catch-up rule", policy.rule),
            ))
        }
    };
    Ok(CatchupPolicy {
        rule,
        window_secs: if policy.window_seconds == 0 {
            default.window_secs
        } else {
            policy.window_seconds
        },
    })
}

/// A definition from a client. `enabled` defaults to true.
pub fn schedule_def(spec: &pb::ScheduleSpec) -> Result<ScheduleDef, ApiError> {
    let timing = spec
        .spec
        .as_ref()
        .ok_or_else(|| ApiError::invalid("spec", "required"))?;
    Ok(ScheduleDef {
        name: spec.name.as_str().into(),
        task: spec.task.as_str().into(),
        spec: spec_input(timing),
        args: json("args_json", &spec.args_json, "array")?.unwrap_or_default(),
        kwargs: json("kwargs_json", &spec.kwargs_json, "object")?.unwrap_or_default(),
        options: spec
            .options
            .as_ref()
            .map(task_options)
            .transpose()?
            .unwrap_or_default()
            .into(),
        catchup: catchup(spec.catchup.as_ref())?,
        enabled: spec.enabled.unwrap_or(true),
        labels: spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Labels>(),
        description: spec.description.as_str().into(),
        last_run_at: match spec.last_run_at.as_str() {
            "" => None,
            text => Some(
                parse_bounded_instant("last_run_at", text)
                    .map_err(|e| ApiError::invalid(e.field, e.reason))?,
            ),
        },
        control: run_control(spec.control.as_ref())?,
    })
}

/// Run control from a client: absent, or all defaults, is `None`.
fn run_control(control: Option<&pb::RunControl>) -> Result<Option<Box<RunControl>>, ApiError> {
    let Some(control) = control else {
        return Ok(None);
    };
    let overlap = Overlap::parse(&control.overlap).ok_or_else(|| {
        ApiError::invalid(
            "control.overlap",
            format!(
                "{:?} is not an overlap policy (allow, skip, buffer_one)",
                control.overlap
            ),
        )
    })?;
    let jitter_ms = match control.jitter_seconds {
        None => None,
        Some(secs) if secs.is_finite() && (0.0..=MAX_JITTER_MS as f64 / 1000.0).contains(&secs) => {
            Some((secs * 1000.0).round() as u64)
        }
        Some(secs) => {
            return Err(ApiError::invalid(
                "control.jitter_seconds",
                format!("must be 0 to {} seconds, not {secs}", MAX_JITTER_MS / 1000),
            ))
        }
    };
    let control = RunControl {
        overlap,
        max_concurrent: control.max_concurrent,
        max_runtime_secs: control.max_runtime_seconds,
        pause_after_failures: control.pause_after_failures,
        jitter_ms: jitter_ms.filter(|ms| *ms > 0),
        max_runs: control.max_runs,
    };
    Ok(control.is_set().then(|| Box::new(control)))
}

fn pb_run_control(control: &RunControl) -> pb::RunControl {
    pb::RunControl {
        overlap: control.overlap.label().to_string(),
        max_concurrent: control.max_concurrent,
        max_runtime_seconds: control.max_runtime_secs,
        pause_after_failures: control.pause_after_failures,
        jitter_seconds: control.jitter_ms.map(|ms| ms as f64 / 1000.0),
        max_runs: control.max_runs,
    }
}

pub fn pb_def(def: &ScheduleDef) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        name: def.name.to_string(),
        task: def.task.to_string(),
        spec: Some(pb_spec(&def.spec)),
        args_json: Value::Array(def.args.clone()).to_string(),
        kwargs_json: Value::Object(def.kwargs.clone()).to_string(),
        options: Some(pb_options(&def.options)),
        catchup: Some(pb::CatchupPolicy {
            rule: match def.catchup.rule {
                CatchupRule::All => pb::CatchupRule::All,
                CatchupRule::Latest => pb::CatchupRule::Latest,
                CatchupRule::None => pb::CatchupRule::None,
            } as i32,
            window_seconds: def.catchup.window_secs,
        }),
        enabled: Some(def.enabled),
        labels: def.labels.clone().into_iter().collect(),
        description: def.description.to_string(),
        last_run_at: def
            .last_run_at
            .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_default(),
        control: def.control.as_deref().map(pb_run_control),
    }
}

pub(super) fn pb_schedule(record: &ScheduleRecord) -> pb::Schedule {
    let control = record.control.as_deref();
    pb::Schedule {
        definition: Some(pb_def(&record.def)),
        revision: record.revision,
        incarnation: record.incarnation.to_string(),
        created_at: Some(timestamp(record.created_at)),
        updated_at: Some(timestamp(record.updated_at)),
        last_run: record.last_fire.map(timestamp),
        next_run: record.next.map(timestamp),
        fired_count: record.fired,
        skipped_count: record.skipped,
        delivered_count: record.delivered,
        fault: record.fault().unwrap_or_default(),
        paused_reason: control
            .and_then(|c| c.paused_reason.clone())
            .unwrap_or_default(),
        consecutive_failures: control.map_or(0, |c| c.consecutive_failures),
        open_runs: control.map_or(0, |c| u32::try_from(c.open.len()).unwrap_or(u32::MAX)),
        held_run: control
            .and_then(|c| c.held.as_ref())
            .map(|h| timestamp(h.scheduled_at)),
        backfill: control
            .and_then(|c| c.backfill.as_ref())
            .map(|job| pb::BackfillProgress {
                from: Some(timestamp(job.spec.from)),
                to: Some(timestamp(job.spec.to)),
                total: job.spec.total,
                done: job.done,
                sent: job.sent,
                started_at: Some(timestamp(job.started_at)),
                finished_at: job.finished_at.map(timestamp),
                rate_per_second: job.spec.rate,
            }),
        remaining_runs: record.remaining_runs(),
        skip_next: control.map_or(0, |c| c.skip_next),
        skip_occurrences: control
            .map(|c| c.skip_at.iter().copied().map(timestamp).collect())
            .unwrap_or_default(),
        paused_until: record.paused_until().map(timestamp),
        pause_note: control
            .and_then(|c| c.pause_note.clone())
            .unwrap_or_default(),
    }
}

pub(super) fn pb_run(run: &RunRecord) -> pb::Run {
    let (outcome, skip_reason) = match run.outcome {
        RunOutcome::Pending => (pb::RunOutcome::Pending, String::new()),
        RunOutcome::Sent => (pb::RunOutcome::Sent, String::new()),
        RunOutcome::AlreadySent => (pb::RunOutcome::AlreadySent, String::new()),
        RunOutcome::Skipped(reason) => (
            pb::RunOutcome::Skipped,
            match run.skip_cause {
                Some(cause) => cause.label().to_string(),
                None => reason.label().to_string(),
            },
        ),
        RunOutcome::Held => (pb::RunOutcome::Held, String::new()),
    };
    let duration_seconds = match (run.dispatched_at, run.finished_at) {
        (Some(sent), Some(done)) => {
            Some((done - sent).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6)
        }
        _ => None,
    };
    pb::Run {
        scheduled_at: Some(timestamp(run.scheduled_at)),
        dispatched_at: run.dispatched_at.map(timestamp),
        task_id: run.task_id.map(|id| id.to_string()).unwrap_or_default(),
        outcome: outcome as i32,
        skip_reason,
        manual: run.manual,
        task_state: run
            .task_state
            .map(|s| s.label().to_string())
            .unwrap_or_default(),
        finished_at: run.finished_at.map(timestamp),
        duration_seconds,
        trigger: crate::celery::Trigger::of(run.manual, run.backfill)
            .label()
            .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::ScheduleSpec {
        pb::ScheduleSpec {
            name: "n".into(),
            task: "t.t".into(),
            spec: Some(pb::Spec {
                cron: "*/5 * * * *".into(),
                timezone: "Europe/Paris".into(),
                ..Default::default()
            }),
            args_json: "[1, \"a\"]".into(),
            kwargs_json: "{\"k\": true}".into(),
            options: Some(pb::TaskOptions {
                queue: Some("q".into()),
                priority: Some(3),
                expires_after_seconds: Some(30.0),
                headers_json: "{\"h\": 1}".into(),
                ..Default::default()
            }),
            catchup: Some(pb::CatchupPolicy {
                rule: pb::CatchupRule::Latest as i32,
                window_seconds: 600,
            }),
            enabled: None,
            labels: [("team".to_string(), "data".to_string())].into(),
            description: "d".into(),
            last_run_at: String::new(),
            control: None,
        }
    }

    #[test]
    fn a_definition_survives_the_round_trip() {
        let def = schedule_def(&spec()).unwrap();
        assert!(def.enabled);
        assert_eq!(def.args, vec![Value::from(1), Value::from("a")]);
        assert_eq!(def.options.priority, Some(3));
        assert_eq!(def.catchup.rule, CatchupRule::Latest);
        assert_eq!(def.spec.tz.as_deref(), Some("Europe/Paris"));
        assert_eq!(schedule_def(&pb_def(&def)).unwrap(), def);
    }

    #[test]
    fn malformed_input_names_the_field() {
        let field = |s: pb::ScheduleSpec| match schedule_def(&s) {
            Err(ApiError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(pb::ScheduleSpec {
                args_json: "{}".into(),
                ..spec()
            }),
            "args_json"
        );
        assert_eq!(
            field(pb::ScheduleSpec {
                kwargs_json: "[".into(),
                ..spec()
            }),
            "kwargs_json"
        );
        assert_eq!(
            field(pb::ScheduleSpec {
                spec: None,
                ..spec()
            }),
            "spec"
        );
        let mut s = spec();
        s.options.as_mut().unwrap().priority = Some(300);
        assert_eq!(field(s), "options.priority");
        let mut s = spec();
        s.options.as_mut().unwrap().expires_at = "2030-01-01T00:00:00Z".into();
        assert_eq!(field(s), "options.expires_at");
        let mut s = spec();
        s.catchup.as_mut().unwrap().rule = 42;
        assert_eq!(field(s), "catchup.rule");
        let mut s = spec();
        s.args_json = format!("[\"{}\"]", "x".repeat(MAX_ARGS_BYTES));
        assert_eq!(field(s), "args_json");
    }
}
