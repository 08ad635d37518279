//! Validation of a schedule definition before it is proposed, with limits that keep any one
//! request from exhausting memory.
//!
//! Invariant: every refusal names the field it concerns; a name already stored is checked for
//! size only, so it stays readable, pausable and deletable. It must not change a definition, and
//! apply never calls it: a limit added later must not reject an entry already in the log.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::command::ScheduleDef;
use super::control::RunControl;
use crate::schedule::{check_instant, Spec};

pub const MAX_NAME_LEN: usize = 200;
pub const MAX_TASK_LEN: usize = 256;
/// Serialized args plus kwargs.
pub const MAX_ARGS_BYTES: usize = 64 * 1024;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_LEN: usize = 128;
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// The deepest nesting of arrays and objects in args, kwargs and header values. Every
/// decoder on the way to the log and to peers wraps a definition in a dozen more levels
/// (entry, command, batch, request), and serde_json stops at 128: 32 leaves that margin
/// several times over, and is far deeper than any task signature.
pub const MAX_JSON_DEPTH: usize = 32;
/// The longest catch-up window: a year. Older occurrences are not a catch-up any more, and the
/// bound keeps `now - window` inside the range instants can represent.
pub const MAX_CATCHUP_WINDOW_SECS: u64 = 366 * 86_400;

/// How far `last_run_at` may lie ahead of the leader's clock: the previous scheduler's host
/// may run a little ahead. Occurrences up to it are still never sent.
pub const LAST_RUN_AT_AHEAD_SECS: i64 = 300;

/// A rejected definition: the field and the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DefError {
    pub field: String,
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> DefError {
    DefError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Names: 1-200 characters of letters, digits and `. _ - : /`.
pub fn validate_name(name: &str) -> Result<(), DefError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(invalid(
            "name",
            format!("must be 1-{MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c))
    {
        return Err(invalid(
            "name",
            format!("{name:?} may only hold letters, digits and . _ - : /"),
        ));
    }
    Ok(())
}

/// The name of a schedule that may already exist: a name stored under older rules must stay
/// readable, pausable and deletable, so only its size is checked (an unknown name is simply
/// not found).
pub fn validate_existing_name(name: &str) -> Result<(), DefError> {
    if name.is_empty() || name.len() > MAX_STORED_NAME_BYTES {
        return Err(invalid(
            "name",
            format!("must be 1-{MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

/// The longest name `validate_existing_name` lets through: 200 characters of up to four bytes.
const MAX_STORED_NAME_BYTES: usize = MAX_NAME_LEN * 4;

/// Checks every field of `def`; `now` anchors intervals without an explicit anchor.
pub fn validate_def(def: &ScheduleDef, now: DateTime<Utc>) -> Result<Spec, DefError> {
    validate_name(&def.name)?;
    if def.task.is_empty()
        || def.task.len() > MAX_TASK_LEN
        || def.task.chars().any(char::is_whitespace)
    {
        return Err(invalid(
            "task",
            format!("must be a Celery task name of 1-{MAX_TASK_LEN} characters without spaces"),
        ));
    }
    let spec =
        Spec::parse_named(&def.spec, now, &def.name).map_err(|e| invalid(e.field, e.reason))?;
    def.spec
        .check_instants()
        .map_err(|e| invalid(format!("spec.{}", e.field), e.reason))?;
    check_last_run_at(def, now)?;
    if let Some(control) = &def.control {
        check_control(control)?;
    }
    check_depth("args", def.args.iter())?;
    check_depth("kwargs", def.kwargs.values())?;
    check_depth("options.headers", def.options.headers.values())?;
    let args_len = serde_json::to_vec(&def.args).map_or(usize::MAX, |v| v.len())
        + serde_json::to_vec(&def.kwargs).map_or(usize::MAX, |v| v.len());
    if args_len > MAX_ARGS_BYTES {
        return Err(invalid(
            "args",
            format!("args and kwargs take {args_len} bytes; the limit is {MAX_ARGS_BYTES}"),
        ));
    }
    def.options
        .validate()
        .map_err(|e| invalid(e.field, e.reason))?;
    if def.labels.len() > MAX_LABELS {
        return Err(invalid("labels", format!("at most {MAX_LABELS} labels")));
    }
    for (key, value) in &def.labels {
        if key.is_empty() || key.len() > MAX_LABEL_LEN || value.len() > MAX_LABEL_LEN {
            return Err(invalid(
                format!("labels.{key}"),
                format!("keys must be 1-{MAX_LABEL_LEN} and values 0-{MAX_LABEL_LEN} characters"),
            ));
        }
    }
    if def.description.len() > MAX_DESCRIPTION_LEN {
        return Err(invalid(
            "description",
            format!("is longer than {MAX_DESCRIPTION_LEN} bytes"),
        ));
    }
    if def.catchup.window_secs == 0 || def.catchup.window_secs > MAX_CATCHUP_WINDOW_SECS {
        return Err(invalid(
            "catchup.window",
            format!(
                "must be 1 to {MAX_CATCHUP_WINDOW_SECS} seconds (a year), not {}",
                def.catchup.window_secs
            ),
        ));
    }
    Ok(spec)
}

/// The most runs a schedule may have unfinished at once under an overlap limit.
pub const MAX_CONCURRENT: u32 = 1_000;
/// The longest `max_runtime`: a year, like the catch-up window.
pub const MAX_RUNTIME_SECS: u64 = MAX_CATCHUP_WINDOW_SECS;
/// The longest jitter: a day.
pub const MAX_JITTER_MS: u64 = 86_400_000;
/// The most consecutive failures `pause_after_failures` waits for.
pub const MAX_PAUSE_AFTER_FAILURES: u32 = 10_000;

/// Run control's settings are in range, and the overlap limits go with a policy that uses them.
fn check_control(control: &RunControl) -> Result<(), DefError> {
    let limits = control.limits_overlap();
    if let Some(n) = control.max_concurrent {
        if !limits {
            return Err(invalid(
                "control.max_concurrent",
                "applies with overlap skip or buffer_one only",
            ));
        }
        if n == 0 || n > MAX_CONCURRENT {
            return Err(invalid(
                "control.max_concurrent",
                format!("must be 1 to {MAX_CONCURRENT}, not {n}"),
            ));
        }
    }
    if let Some(secs) = control.max_runtime_secs {
        if !limits {
            return Err(invalid(
                "control.max_runtime",
                "applies with overlap skip or buffer_one only",
            ));
        }
        if secs == 0 || secs > MAX_RUNTIME_SECS {
            return Err(invalid(
                "control.max_runtime",
                format!("must be 1 to {MAX_RUNTIME_SECS} seconds, not {secs}"),
            ));
        }
    }
    if let Some(ms) = control.jitter_ms {
        if ms > MAX_JITTER_MS {
            return Err(invalid(
                "control.jitter",
                format!("must be at most {} seconds", MAX_JITTER_MS / 1000),
            ));
        }
    }
    if let Some(n) = control.pause_after_failures {
        if n == 0 || n > MAX_PAUSE_AFTER_FAILURES {
            return Err(invalid(
                "control.pause_after_failures",
                format!("must be 1 to {MAX_PAUSE_AFTER_FAILURES}, not {n}"),
            ));
        }
    }
    Ok(())
}

/// `last_run_at` is an instant the engine works with, and not in the future (beyond
/// `LAST_RUN_AT_AHEAD_SECS`) of `now`.
fn check_last_run_at(def: &ScheduleDef, now: DateTime<Utc>) -> Result<(), DefError> {
    let Some(last) = def.last_run_at else {
        return Ok(());
    };
    check_instant(last).map_err(|reason| invalid("last_run_at", reason))?;
    if (last - now).num_seconds() > LAST_RUN_AT_AHEAD_SECS {
        return Err(invalid(
            "last_run_at",
            format!(
                "{} is in the future (now {}); it is when the schedule last ran",
                last.to_rfc3339(),
                now.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

/// How deeply arrays and objects nest in `value` (a scalar is 0, `[]` is 1). Iterative, so a
/// value of any depth is measured without recursion.
pub fn json_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// Refuses values of `field` nested deeper than `MAX_JSON_DEPTH`, counting the list or map
/// that holds them as the first level.
fn check_depth<'a>(field: &str, values: impl Iterator<Item = &'a Value>) -> Result<(), DefError> {
    let deepest = values.map(json_depth).max().unwrap_or(0) + 1;
    if deepest > MAX_JSON_DEPTH {
        return Err(invalid(
            field,
            format!("nests {deepest} levels deep; the limit is {MAX_JSON_DEPTH}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::celery::{Expires, TaskOptions};
    use crate::schedule::{SolarInput, SpecInput};

    fn def(spec: SpecInput) -> ScheduleDef {
        serde_json::from_value(serde_json::json!({
            "name": "nightly",
            "task": "reports.build",
            "spec": spec,
        }))
        .unwrap()
    }

    fn every_minute() -> ScheduleDef {
        def(SpecInput {
            every: Some("1m".into()),
            ..Default::default()
        })
    }

    fn field_of(def: &ScheduleDef) -> String {
        validate_def(def, Utc::now()).unwrap_err().field
    }

    fn nested(depth: usize) -> Value {
        (0..depth).fold(Value::from(1), |inner, _| Value::Array(vec![inner]))
    }

    #[test]
    fn depth_counts_every_array_and_object() {
        assert_eq!(json_depth(&Value::from(1)), 0);
        assert_eq!(json_depth(&serde_json::json!([])), 1);
        assert_eq!(json_depth(&serde_json::json!({"a": [1, {"b": []}]})), 4);
        assert_eq!(json_depth(&nested(10_000)), 10_000);
    }

    #[test]
    fn args_kwargs_and_headers_nest_at_most_the_limit() {
        let mut ok = every_minute();
        ok.args = vec![nested(MAX_JSON_DEPTH - 1)];
        assert!(validate_def(&ok, Utc::now()).is_ok());

        let mut deep = every_minute();
        deep.args = vec![nested(MAX_JSON_DEPTH)];
        assert_eq!(field_of(&deep), "args");

        let mut deep = every_minute();
        deep.kwargs.insert("k".into(), nested(121));
        assert_eq!(field_of(&deep), "kwargs");

        let mut headers = serde_json::Map::new();
        headers.insert("x-deep".into(), nested(MAX_JSON_DEPTH));
        let mut deep = every_minute();
        deep.options = TaskOptions {
            headers,
            ..Default::default()
        }
        .into();
        assert_eq!(field_of(&deep), "options.headers");
    }

    #[test]
    fn catch_up_windows_are_bounded() {
        let mut def = every_minute();
        def.catchup.window_secs = MAX_CATCHUP_WINDOW_SECS;
        assert!(validate_def(&def, Utc::now()).is_ok());
        for bad in [0, MAX_CATCHUP_WINDOW_SECS + 1, 10_000_000_000_000, u64::MAX] {
            def.catchup.window_secs = bad;
            assert_eq!(field_of(&def), "catchup.window", "{bad}");
        }
    }

    #[test]
    fn instants_are_within_the_engine_and_never_leap_seconds() {
        let once = |at: &str| {
            def(SpecInput {
                once: Some(at.into()),
                ..Default::default()
            })
        };
        assert!(validate_def(&once("2030-01-01T00:00:00Z"), Utc::now()).is_ok());
        assert_eq!(field_of(&once("2030-01-01T00:00:60Z")), "spec.once");
        assert_eq!(field_of(&once("1969-12-31T23:59:59Z")), "spec.once");
        assert_eq!(field_of(&once("9999-12-31T23:00:00-05:00")), "spec.once");
        let anchored = def(SpecInput {
            every: Some("1s".into()),
            anchor: Some("0001-01-01T00:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(field_of(&anchored), "spec.anchor");
        let bounded = def(SpecInput {
            every: Some("1s".into()),
            end_at: Some("2030-06-30T23:59:60Z".into()),
            ..Default::default()
        });
        assert_eq!(field_of(&bounded), "spec.end_at");
    }

    #[test]
    fn expiries_are_bounded() {
        for (expires, ok) in [
            (Expires::AfterSeconds(3600.0), true),
            (Expires::AfterSeconds(1e300), false),
            (
                Expires::At(
                    DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
                        .unwrap()
                        .to_utc(),
                ),
                true,
            ),
            (Expires::At(DateTime::<Utc>::MAX_UTC), false),
        ] {
            let mut def = every_minute();
            def.options = TaskOptions {
                expires: Some(expires.clone()),
                ..Default::default()
            }
            .into();
            match validate_def(&def, Utc::now()) {
                Ok(_) => assert!(ok, "{expires:?} accepted"),
                Err(e) => {
                    assert!(!ok, "{expires:?} refused: {e}");
                    assert_eq!(e.field, "options.expires");
                }
            }
        }
    }

    #[test]
    fn last_run_at_is_past_and_in_range() {
        let now = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .to_utc();
        let mut def = every_minute();
        for (at, ok) in [
            ("2026-12-07T11:00:00Z", true),
            ("2026-12-07T12:04:00Z", true),
            ("2026-12-07T12:06:00Z", false),
            ("1970-01-01T00:00:00Z", true),
            ("1969-12-31T23:59:59Z", false),
            ("2026-06-30T23:59:60Z", false),
        ] {
            def.last_run_at = Some(DateTime::parse_from_rfc3339(at).unwrap().to_utc());
            match validate_def(&def, now) {
                Ok(_) => assert!(ok, "{at} accepted"),
                Err(e) => {
                    assert!(!ok, "{at} refused: {e}");
                    assert_eq!(e.field, "last_run_at");
                }
            }
        }
    }

    #[test]
    fn solar_specs_name_their_fields() {
        let solar = |event: &str, lat: Option<f64>, lon: Option<f64>| {
            def(SpecInput {
                solar: SolarInput {
                    event: Some(event.into()),
                    latitude: lat,
                    longitude: lon,
                }
                .into(),
                ..Default::default()
            })
        };
        assert!(validate_def(&solar("sunrise", Some(51.5), Some(-0.12)), Utc::now()).is_ok());
        assert_eq!(field_of(&solar("moonrise", Some(1.0), Some(1.0))), "solar");
        assert_eq!(field_of(&solar("sunset", None, Some(1.0))), "latitude");
        assert_eq!(field_of(&solar("sunset", Some(1.0), None)), "longitude");
        assert_eq!(
            field_of(&solar("sunset", Some(91.0), Some(1.0))),
            "latitude"
        );
        assert_eq!(
            field_of(&solar("sunset", Some(1.0), Some(f64::NAN))),
            "longitude"
        );
        let mut zoned = solar("sunset", Some(1.0), Some(1.0));
        zoned.spec.tz = Some("Europe/Paris".into());
        assert_eq!(field_of(&zoned), "tz");
        let mut both = solar("sunset", Some(1.0), Some(1.0));
        both.spec.every = Some("1m".into());
        assert_eq!(field_of(&both), "spec");
        let mut stray = every_minute();
        stray.spec.solar.to_mut().latitude = Some(1.0);
        assert_eq!(field_of(&stray), "latitude");
    }

    #[test]
    fn an_existing_name_is_checked_for_size_only() {
        assert!(validate_existing_name("bad name with spaces \u{2603}").is_ok());
        assert!(validate_existing_name("").is_err());
        assert!(validate_existing_name(&"x".repeat(801)).is_err());
    }
}
