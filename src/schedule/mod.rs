//! The time engine: schedule specs (interval, crontab, cron, once) in an IANA time zone and
//! "the next occurrence after an instant".
//!
//! Pure: no I/O, no clock reads, no randomness, so every node computes the same instants.
//! Every input is validated with an error naming the field, and every search is bounded.

mod cron_expr;
mod field;
mod interval;
mod zoned;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use cron_expr::CronExpr;
pub use field::Dialect;
pub use interval::parse_every;

/// A rejected spec: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

impl SpecError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        SpecError {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A spec as people and files write it: exactly one of `every`, `cron`, `crontab`, `once`,
/// plus an optional zone and bounds. Instants are RFC 3339 strings. Boxed strings, not
/// `String`s: the state keeps one per schedule, and eight spare capacities add up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crontab: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub once: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tz: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<Box<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<Box<str>>,
}

/// When a schedule fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `anchor + k × every` for k = 0, 1, 2, …: exact durations that never drift.
    Interval {
        every: Duration,
        anchor: DateTime<Utc>,
    },
    /// Celery's `crontab` (all fields must match).
    Crontab(CronExpr),
    /// A standard cron string with Vixie's meaning.
    Cron(CronExpr),
    /// A single instant.
    Once(DateTime<Utc>),
}

/// A validated spec: occurrences are the instants of `kind` inside `[start_at, end_at)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub tz: Tz,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
}

/// Parses an RFC 3339 instant, naming `field` on error.
pub fn parse_instant(field: &str, text: &str) -> Result<DateTime<Utc>, SpecError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            SpecError::new(
                field,
                format!("{text:?} is not an RFC 3339 instant such as 2025-01-01T00:00:00Z ({e})"),
            )
        })
}

/// Parses an IANA zone name such as `America/New_York`.
pub fn parse_tz(text: &str) -> Result<Tz, SpecError> {
    text.trim()
        .parse::<Tz>()
        .map_err(|_| SpecError::new("tz", format!("{text:?} is not a known IANA time zone")))
}

impl Spec {
    /// Validates `input`. An interval without `anchor` or `start_at` is anchored at `created`
    /// (the caller's creation instant, never a clock read here).
    pub fn parse(input: &SpecInput, created: DateTime<Utc>) -> Result<Spec, SpecError> {
        let opt_instant = |field: &str, value: &Option<Box<str>>| {
            value
                .as_deref()
                .map(|v| parse_instant(field, v))
                .transpose()
        };
        let start_at = opt_instant("start_at", &input.start_at)?;
        let end_at = opt_instant("end_at", &input.end_at)?;
        if let (Some(start), Some(end)) = (start_at, end_at) {
            if end <= start {
                return Err(SpecError::new("end_at", "must be later than start_at"));
            }
        }
        let tz = match &input.tz {
            Some(name) => parse_tz(name)?,
            None => Tz::UTC,
        };
        let given: Vec<&str> = [
            ("every", input.every.is_some()),
            ("cron", input.cron.is_some()),
            ("crontab", input.crontab.is_some()),
            ("once", input.once.is_some()),
        ]
        .iter()
        .filter(|(_, present)| *present)
        .map(|(name, _)| *name)
        .collect();
        if given.len() != 1 {
            let found = if given.is_empty() {
                "none".to_string()
            } else {
                given.join(" and ")
            };
            return Err(SpecError::new(
                "spec",
                format!("give exactly one of every, cron, crontab, once (found {found})"),
            ));
        }
        if input.anchor.is_some() && input.every.is_none() {
            return Err(SpecError::new(
                "anchor",
                "only applies to an `every` interval",
            ));
        }
        let kind = if let Some(every) = &input.every {
            let anchor = opt_instant("anchor", &input.anchor)?
                .or(start_at)
                .unwrap_or(created);
            Kind::Interval {
                every: parse_every(every)?,
                anchor,
            }
        } else if let Some(text) = &input.cron {
            Kind::Cron(CronExpr::parse(text, Dialect::Vixie, "cron")?)
        } else if let Some(text) = &input.crontab {
            Kind::Crontab(CronExpr::parse(text, Dialect::Celery, "crontab")?)
        } else if let Some(at) = &input.once {
            Kind::Once(parse_instant("once", at)?)
        } else {
            unreachable!("exactly one kind was checked above")
        };
        Ok(Spec {
            kind,
            tz,
            start_at,
            end_at,
        })
    }

    /// The first occurrence strictly after `after`, or `None` when the spec has no more.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Occurrences at or after start_at: search from just before it, by chrono's resolution
        // (a millisecond let an occurrence inside it through when start_at had microseconds).
        let after = match self.start_at {
            Some(start) => after.max(start - Duration::nanoseconds(1)),
            None => after,
        };
        let next = match &self.kind {
            Kind::Interval { every, anchor } => interval::next_after(*anchor, *every, after),
            Kind::Once(at) => (*at > after).then_some(*at),
            Kind::Cron(expr) | Kind::Crontab(expr) => {
                let secs = after.timestamp();
                let found = if expr.is_interval_like() {
                    zoned::next_real_time(expr, &self.tz, secs)
                } else {
                    zoned::next_wall_time(expr, &self.tz, secs)
                };
                found.and_then(|s| DateTime::from_timestamp(s, 0))
            }
        }?;
        match self.end_at {
            Some(end) if next >= end => None,
            _ => Some(next),
        }
    }

    /// Up to `count` occurrences after `after`, in order.
    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count.min(1024));
        let mut cursor = after;
        while out.len() < count {
            match self.next_after(cursor) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
