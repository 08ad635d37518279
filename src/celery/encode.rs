//! Rendering one occurrence into the Celery envelope and its kombu list key.
//!
//! Invariant: the message is a function of the occurrence, its options and the encoder: no
//! clock (a relative expiry counts from the scheduled instant), no randomness (the task id is
//! the caller's, and is also the root and correlation id). It must not derive ids, validate
//! options (`options` did, when the schedule was accepted) nor do I/O.

use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::options::{Expires, TaskOptions};
use super::pyrepr::{py_repr_list, py_repr_map};

/// How the workers' kombu transport names its lists. Must match the workers'
/// `broker_transport_options` (`global_keyprefix`, `sep`, `priority_steps`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KombuLayout {
    pub global_keyprefix: String,
    pub sep: String,
    /// Ascending, starting with 0 (kombu picks the last step not above the priority).
    pub priority_steps: Vec<u8>,
}

impl Default for KombuLayout {
    fn default() -> Self {
        KombuLayout {
            global_keyprefix: String::new(),
            sep: "\x06\x16".to_string(),
            priority_steps: vec![0, 3, 6, 9],
        }
    }
}

impl KombuLayout {
    /// The Redis list a message of `priority` on `queue` goes to (kombu's `_q_for_pri`).
    pub fn list_key(&self, queue: &str, priority: u8) -> String {
        let step = self
            .priority_steps
            .iter()
            .copied()
            .filter(|s| *s <= priority.min(9))
            .max()
            .unwrap_or(0);
        if step == 0 {
            format!("{}{}", self.global_keyprefix, queue)
        } else {
            format!("{}{}{}{}", self.global_keyprefix, queue, self.sep, step)
        }
    }
}

/// One occurrence to render. The task id is derived by the caller, deterministically.
#[derive(Clone, Copy, Debug)]
pub struct Occurrence<'a> {
    pub task: &'a str,
    pub task_id: Uuid,
    pub args: &'a [Value],
    pub kwargs: &'a Map<String, Value>,
    /// The schedule's name, sent as the `belfry_schedule` header.
    pub schedule: &'a str,
    /// The instant this occurrence was due, sent as `belfry_scheduled_at`.
    pub scheduled_at: DateTime<Utc>,
    /// What asked for the run: sent as `belfry_trigger` unless it is the schedule itself.
    pub trigger: Trigger,
}

/// What asked for a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trigger {
    /// The schedule: an occurrence falling due (no `belfry_trigger` header).
    #[default]
    Schedule,
    /// A person, out of schedule (`belfry_trigger: "manual"`).
    Manual,
    /// A backfill of a past range (`belfry_trigger: "backfill"`).
    Backfill,
}

impl Trigger {
    /// The header's value; none for the schedule's own occurrences.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Trigger::Schedule => None,
            Trigger::Manual => Some("manual"),
            Trigger::Backfill => Some("backfill"),
        }
    }

    /// A short, stable name (the API, the CLI).
    pub fn label(self) -> &'static str {
        self.header().unwrap_or("schedule")
    }

    /// From the flags a run is stored with.
    pub fn of(manual: bool, backfill: bool) -> Trigger {
        match (manual, backfill) {
            (true, _) => Trigger::Manual,
            (false, true) => Trigger::Backfill,
            (false, false) => Trigger::Schedule,
        }
    }
}

/// A message that could not be serialized (never expected for validated options).
#[derive(Debug, thiserror::Error)]
#[error("cannot serialize the Celery message: {0}")]
pub struct EncodeError(#[from] serde_json::Error);

/// A rendered message: the list to LPUSH onto and the envelope's bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Encoded {
    pub list_key: String,
    pub payload: String,
}

/// Renders occurrences for one cluster: `origin` names the sender in Celery's logs.
#[derive(Clone, Debug)]
pub struct Encoder {
    pub origin: String,
    pub layout: KombuLayout,
}

#[derive(Serialize)]
struct Envelope<'a> {
    body: String,
    #[serde(rename = "content-encoding")]
    content_encoding: &'static str,
    #[serde(rename = "content-type")]
    content_type: &'static str,
    headers: Headers<'a>,
    properties: Properties<'a>,
}

#[derive(Serialize)]
struct Headers<'a> {
    lang: &'static str,
    task: &'a str,
    id: &'a str,
    shadow: Option<()>,
    eta: Option<()>,
    expires: Option<String>,
    group: Option<()>,
    group_index: Option<()>,
    retries: u32,
    timelimit: [Value; 2],
    root_id: &'a str,
    parent_id: Option<()>,
    argsrepr: String,
    kwargsrepr: String,
    origin: &'a str,
    ignore_result: bool,
    replaced_task_nesting: u32,
    stamped_headers: Option<()>,
    stamps: Map<String, Value>,
    belfry_schedule: &'a str,
    belfry_scheduled_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    belfry_trigger: Option<&'static str>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

#[derive(Serialize)]
struct Properties<'a> {
    correlation_id: &'a str,
    reply_to: &'static str,
    delivery_mode: u8,
    delivery_info: DeliveryInfo<'a>,
    priority: u8,
    body_encoding: &'static str,
    delivery_tag: String,
}

#[derive(Serialize)]
struct DeliveryInfo<'a> {
    exchange: &'static str,
    routing_key: &'a str,
}

#[derive(Serialize)]
struct Embed {
    callbacks: Option<()>,
    errbacks: Option<()>,
    chain: Option<()>,
    chord: Option<()>,
}

/// A whole number of seconds is written as an integer, as Celery's own producer does.
fn seconds_value(seconds: Option<f64>) -> Value {
    match seconds {
        Some(s) if s.fract() == 0.0 && s.abs() < 9.0e15 => Value::from(s as i64),
        Some(s) => Value::from(s),
        None => Value::Null,
    }
}

fn iso(t: DateTime<Utc>) -> String {
    // Celery writes `isoformat()` of an aware datetime: microseconds and `+00:00`.
    t.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

impl Encoder {
    /// The envelope and list key for `occurrence` under `options` (already validated).
    pub fn encode(
        &self,
        occurrence: &Occurrence<'_>,
        options: &TaskOptions,
    ) -> Result<Encoded, EncodeError> {
        let id = occurrence.task_id.hyphenated().to_string();
        let queue = options.queue();
        let priority = options.priority.unwrap_or(0).min(9);
        let expires = options.expires.as_ref().and_then(|e| match e {
            Expires::At(at) => Some(*at),
            Expires::AfterSeconds(secs) => {
                Duration::try_milliseconds((secs * 1000.0).round() as i64)
                    .and_then(|d| occurrence.scheduled_at.checked_add_signed(d))
            }
        });
        let embed = Embed {
            callbacks: None,
            errbacks: None,
            chain: None,
            chord: None,
        };
        let body_json = serde_json::to_vec(&(occurrence.args, occurrence.kwargs, &embed))?;
        let envelope = Envelope {
            body: base64::engine::general_purpose::STANDARD.encode(body_json),
            content_encoding: "utf-8",
            content_type: "application/json",
            headers: Headers {
                lang: "py",
                task: occurrence.task,
                id: &id,
                shadow: None,
                eta: None,
                expires: expires.map(iso),
                group: None,
                group_index: None,
                retries: 0,
                timelimit: [
                    seconds_value(options.time_limit),
                    seconds_value(options.soft_time_limit),
                ],
                root_id: &id,
                parent_id: None,
                argsrepr: py_repr_list(occurrence.args),
                kwargsrepr: py_repr_map(occurrence.kwargs),
                origin: &self.origin,
                ignore_result: options.ignore_result.unwrap_or(false),
                replaced_task_nesting: 0,
                stamped_headers: None,
                stamps: Map::new(),
                belfry_schedule: occurrence.schedule,
                belfry_scheduled_at: occurrence
                    .scheduled_at
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                belfry_trigger: occurrence.trigger.header(),
                extra: &options.headers,
            },
            properties: Properties {
                correlation_id: &id,
                reply_to: "",
                delivery_mode: 2,
                delivery_info: DeliveryInfo {
                    exchange: "",
                    routing_key: queue,
                },
                priority,
                body_encoding: "base64",
                // Unique per message and stable across re-renders of the same occurrence.
                delivery_tag: Uuid::new_v5(&occurrence.task_id, b"delivery_tag")
                    .hyphenated()
                    .to_string(),
            },
        };
        Ok(Encoded {
            list_key: self.layout.list_key(queue, priority),
            payload: serde_json::to_string(&envelope)?,
        })
    }
}

#[cfg(test)]
mod tests;
