//! Per-schedule Celery options (queue, priority, expiry, headers, time limits) and their
//! validation.
//!
//! Invariant: options that pass `validate` always encode, and never override a header the
//! protocol or belfry sets; every refusal names its field (`options.<name>`). `StoredOptions`
//! reads and serializes exactly like `TaskOptions`. It must not render messages (`encode`).

use std::ops::Deref;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The queue Celery workers consume by default.
pub const DEFAULT_QUEUE: &str = "celery";
const MAX_NAME_LEN: usize = 200;

/// Headers the protocol or belfry itself sets; a schedule may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "lang",
    "task",
    "id",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "kwargsrepr",
    "origin",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
];

/// A rejected option: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct OptionsError {
    pub field: String,
    pub reason: String,
}

fn invalid(field: &str, reason: impl Into<String>) -> OptionsError {
    OptionsError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// When a dispatched message stops being worth running: the worker revokes it after that.
/// Written as a number of seconds or an RFC 3339 instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Expires {
    /// Seconds after the occurrence's scheduled instant.
    AfterSeconds(f64),
    /// An absolute instant.
    At(DateTime<Utc>),
}

/// The longest relative expiry: a hundred years (as for `every`), far inside what instants can
/// represent.
pub const MAX_EXPIRES_SECONDS: f64 = 100.0 * 366.0 * 86_400.0;

// Read through `serde_json::Value`, not `#[serde(untagged)]`: with serde_json's
// `arbitrary_precision` an untagged enum sees a number as a private map and rejects it, so
// `expires = 3600` could be written to the log and then never read back.
impl<'de> Deserialize<'de> for Expires {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(deserializer)? {
            Value::Number(n) => n
                .as_f64()
                .map(Expires::AfterSeconds)
                .ok_or_else(|| D::Error::custom("expires: not a representable number")),
            Value::String(text) => DateTime::parse_from_rfc3339(&text)
                .map(|at| Expires::At(at.with_timezone(&Utc)))
                .map_err(|e| D::Error::custom(format!("expires: {text:?} is not RFC 3339: {e}"))),
            other => Err(D::Error::custom(format!(
                "expires: must be seconds or an RFC 3339 instant, not {other}"
            ))),
        }
    }
}

/// Celery options of one schedule, mirroring `apply_async`'s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskOptions {
    /// The queue (a Redis list); `celery` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// With kombu's anonymous exchange the routing key is the queue's name: when given
    /// without `queue` it names the queue, and it may not differ from `queue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// 0-9, 0 first (Redis priorities are inverted and bucketed by kombu).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Expires>,
    /// Extra message headers, merged into Celery's.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub headers: Map<String, Value>,
    /// Hard time limit in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<f64>,
    /// Soft time limit in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soft_time_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_result: Option<bool>,
}

fn check_name(field: &str, value: &str) -> Result<(), OptionsError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(invalid(
            field,
            format!("is longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            field,
            "must not contain whitespace or control characters",
        ));
    }
    Ok(())
}

fn check_seconds(field: &str, value: Option<f64>) -> Result<(), OptionsError> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => {
            Err(invalid(field, "must be a positive number of seconds"))
        }
        _ => Ok(()),
    }
}

/// A schedule's options as the state keeps them: nothing at all when every option is left at
/// its default (most schedules), since a million schedules would otherwise carry 128 bytes of
/// empty options each. Reads as `TaskOptions` and is serialized exactly like one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredOptions(Option<Box<TaskOptions>>);

static DEFAULT_OPTIONS: LazyLock<TaskOptions> = LazyLock::new(TaskOptions::default);

impl Deref for StoredOptions {
    type Target = TaskOptions;
    fn deref(&self) -> &TaskOptions {
        self.0.as_deref().unwrap_or(&DEFAULT_OPTIONS)
    }
}

impl From<TaskOptions> for StoredOptions {
    fn from(options: TaskOptions) -> Self {
        StoredOptions((options != *DEFAULT_OPTIONS).then(|| Box::new(options)))
    }
}

impl Serialize for StoredOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for StoredOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        TaskOptions::deserialize(deserializer).map(StoredOptions::from)
    }
}

impl TaskOptions {
    /// The queue messages go to.
    pub fn queue(&self) -> &str {
        self.queue
            .as_deref()
            .or(self.routing_key.as_deref())
            .unwrap_or(DEFAULT_QUEUE)
    }

    /// Checks every option; field names are given as `options.<name>`.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if let Some(queue) = &self.queue {
            check_name("options.queue", queue)?;
        }
        if let Some(key) = &self.routing_key {
            check_name("options.routing_key", key)?;
            if self.queue.as_ref().is_some_and(|q| q != key) {
                return Err(invalid(
                    "options.routing_key",
                    "must equal options.queue: on the Redis transport the routing key names the queue",
                ));
            }
        }
        if let Some(p) = self.priority {
            if p > 9 {
                return Err(invalid(
                    "options.priority",
                    format!("{p} is out of range 0-9 (0 runs first)"),
                ));
            }
        }
        match &self.expires {
            Some(Expires::AfterSeconds(secs)) => {
                check_seconds("options.expires", Some(*secs))?;
                if *secs > MAX_EXPIRES_SECONDS {
                    return Err(invalid(
                        "options.expires",
                        format!("{secs} s is more than 100 years ({MAX_EXPIRES_SECONDS} s)"),
                    ));
                }
            }
            Some(Expires::At(at)) => crate::schedule::check_instant(*at)
                .map_err(|reason| invalid("options.expires", reason))?,
            None => {}
        }
        check_seconds("options.time_limit", self.time_limit)?;
        check_seconds("options.soft_time_limit", self.soft_time_limit)?;
        for key in self.headers.keys() {
            if RESERVED_HEADERS.contains(&key.as_str()) || key.starts_with("belfry_") {
                return Err(invalid(
                    &format!("options.headers.{key}"),
                    "is set by the Celery protocol or by belfry and cannot be overridden",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_options_keep_nothing_for_defaults_and_read_and_write_as_task_options() {
        let default = StoredOptions::from(TaskOptions::default());
        assert_eq!(default, StoredOptions(None));
        assert_eq!(*default, TaskOptions::default());
        let set = TaskOptions {
            queue: Some("reports".into()),
            priority: Some(3),
            ..Default::default()
        };
        let stored = StoredOptions::from(set.clone());
        assert_eq!(stored.queue.as_deref(), Some("reports"));
        for (options, stored) in [(TaskOptions::default(), default), (set, stored)] {
            let json = serde_json::to_string(&options).unwrap();
            assert_eq!(serde_json::to_string(&stored).unwrap(), json);
            let back: StoredOptions = serde_json::from_str(&json).unwrap();
            assert_eq!(back, stored);
        }
    }

    fn field_of(options: TaskOptions) -> String {
        options.validate().unwrap_err().field
    }

    #[test]
    fn validation_names_the_field() {
        assert_eq!(
            field_of(TaskOptions {
                queue: Some(String::new()),
                ..Default::default()
            }),
            "options.queue"
        );
        assert_eq!(
            field_of(TaskOptions {
                queue: Some("a\u{6}\u{16}3".into()),
                ..Default::default()
            }),
            "options.queue"
        );
        assert_eq!(
            field_of(TaskOptions {
                priority: Some(10),
                ..Default::default()
            }),
            "options.priority"
        );
        assert_eq!(
            field_of(TaskOptions {
                expires: Some(Expires::AfterSeconds(-1.0)),
                ..Default::default()
            }),
            "options.expires"
        );
        assert_eq!(
            field_of(TaskOptions {
                time_limit: Some(f64::NAN),
                ..Default::default()
            }),
            "options.time_limit"
        );
        assert_eq!(
            field_of(TaskOptions {
                queue: Some("a".into()),
                routing_key: Some("b".into()),
                ..Default::default()
            }),
            "options.routing_key"
        );
        let mut headers = Map::new();
        headers.insert("id".into(), Value::from("x"));
        assert_eq!(
            field_of(TaskOptions {
                headers,
                ..Default::default()
            }),
            "options.headers.id"
        );
    }

    #[test]
    fn routing_key_alone_names_the_queue() {
        let options = TaskOptions {
            routing_key: Some("reports".into()),
            ..Default::default()
        };
        assert!(options.validate().is_ok());
        assert_eq!(options.queue(), "reports");
        assert_eq!(TaskOptions::default().queue(), "celery");
    }

    #[test]
    fn expires_reads_seconds_or_an_instant() {
        let secs: TaskOptions = serde_json::from_str(r#"{"expires": 30}"#).unwrap();
        assert_eq!(secs.expires, Some(Expires::AfterSeconds(30.0)));
        let at: TaskOptions =
            serde_json::from_str(r#"{"expires": "2025-01-01T00:00:00Z"}"#).unwrap();
        assert!(matches!(at.expires, Some(Expires::At(_))));
        assert!(serde_json::from_str::<TaskOptions>(r#"{"queu": "x"}"#).is_err());
    }
}
