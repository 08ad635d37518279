//! Schedule definitions for tests, benchmarks and `belfry dev`, written as the `[[schedule]]`
//! entries of a schedules file (the format of belfry's `schedules_file` and its README).
//!
//! Invariant: an entry renders every field set on the builder, once, in a fixed order, as
//! valid TOML; values come from JSON (`serde_json::Value`). JSON's `null` has no TOML form and
//! is left out of arrays and tables. Must not validate a definition: the server does, and a
//! test may want to send it something invalid.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// One `[[schedule]]` entry.
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    fields: Vec<(&'static str, String)>,
    options: Vec<(&'static str, String)>,
    raw: Vec<String>,
}

impl Schedule {
    /// A schedule of `task` named `name`; give it a spec (`every`, `cron`, `crontab`, …).
    pub fn new(name: &str, task: &str) -> Schedule {
        Schedule::default()
            .field("name", &Value::from(name))
            .field("task", &Value::from(task))
    }

    fn field(mut self, key: &'static str, value: &Value) -> Self {
        self.fields.push((key, toml_value(value)));
        self
    }

    /// An interval, e.g. `"2s"`, `"1h"`.
    pub fn every(self, every: &str) -> Self {
        self.field("every", &Value::from(every))
    }

    /// A five-field cron expression (Vixie's meaning).
    pub fn cron(self, cron: &str) -> Self {
        self.field("cron", &Value::from(cron))
    }

    /// A five-field expression with Celery's `crontab` meaning.
    pub fn crontab(self, crontab: &str) -> Self {
        self.field("crontab", &Value::from(crontab))
    }

    /// The time zone of a cron or crontab spec.
    pub fn tz(self, tz: &str) -> Self {
        self.field("tz", &Value::from(tz))
    }

    /// The first instant (for `every`, the anchor), to the millisecond.
    pub fn start_at(self, at: DateTime<Utc>) -> Self {
        self.field("start_at", &Value::from(instant(at)))
    }

    pub fn end_at(self, at: DateTime<Utc>) -> Self {
        self.field("end_at", &Value::from(instant(at)))
    }

    /// Positional arguments: a JSON array.
    pub fn args(self, args: Value) -> Self {
        self.field("args", &args)
    }

    /// Keyword arguments: a JSON object.
    pub fn kwargs(self, kwargs: Value) -> Self {
        self.field("kwargs", &kwargs)
    }

    pub fn enabled(self, enabled: bool) -> Self {
        self.field("enabled", &Value::from(enabled))
    }

    pub fn description(self, description: &str) -> Self {
        self.field("description", &Value::from(description))
    }

    /// The Celery queue (`options.queue`).
    pub fn queue(mut self, queue: &str) -> Self {
        self.options
            .push(("queue", toml_value(&Value::from(queue))));
        self
    }

    /// The message priority (`options.priority`).
    pub fn priority(mut self, priority: u8) -> Self {
        self.options
            .push(("priority", toml_value(&Value::from(priority))));
        self
    }

    /// A line of TOML as is, for what the builder does not cover (e.g. a number too big for
    /// JSON): `kwargs = { big = 123456789012345678901234567890 }`.
    pub fn raw(mut self, line: &str) -> Self {
        self.raw.push(line.to_string());
        self
    }

    /// The entry, `[[schedule]]` first, ending with a blank line.
    pub fn to_toml(&self) -> String {
        let mut text = String::from("[[schedule]]\n");
        for (key, value) in &self.fields {
            text.push_str(&format!("{key} = {value}\n"));
        }
        if !self.options.is_empty() {
            let options: Vec<String> = self
                .options
                .iter()
                .map(|(key, value)| format!("{key} = {value}"))
                .collect();
            text.push_str(&format!("options = {{ {} }}\n", options.join(", ")));
        }
        for line in &self.raw {
            text.push_str(line);
            text.push('\n');
        }
        text.push('\n');
        text
    }
}

/// A whole schedules file.
pub fn file<'a>(schedules: impl IntoIterator<Item = &'a Schedule>) -> String {
    schedules.into_iter().map(Schedule::to_toml).collect()
}

/// RFC 3339 with milliseconds and `Z`.
fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A JSON value in TOML's inline syntax. JSON's string escapes are TOML's basic-string escapes.
fn toml_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => value.to_string(),
        Value::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .filter(|v| !v.is_null())
                .map(toml_value)
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(map) => {
            let entries: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), toml_value(v)))
                .collect();
            if entries.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", entries.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_renders_every_field_in_order() {
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        let entry = Schedule::new("s1", "bench.tick")
            .every("1s")
            .start_at(at)
            .args(serde_json::json!(["ü \"q\"", 1, null]))
            .kwargs(serde_json::json!({"region": "eu", "n": [1, 2]}))
            .queue("bench")
            .priority(3);
        assert_eq!(
            entry.to_toml(),
            "[[schedule]]\nname = \"s1\"\ntask = \"bench.tick\"\nevery = \"1s\"\n\
             start_at = \"2026-01-02T03:04:05.000Z\"\nargs = [\"ü \\\"q\\\"\", 1]\n\
             kwargs = { \"n\" = [1, 2], \"region\" = \"eu\" }\n\
             options = { queue = \"bench\", priority = 3 }\n\n"
        );
    }
}
