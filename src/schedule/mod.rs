//! The time engine: schedule specs (interval, crontab, cron, once, solar) in an IANA time zone
//! and "the next occurrence after an instant".
//!
//! Invariant: the same spec and instant give the same answer on every node: no I/O, no clock
//! reads (an interval's default anchor is the creation instant passed in), no randomness; every
//! input is validated with an error naming the field, every search is bounded, and no answer
//! lies past `latest_instant()`. It must not know about the state, Raft or Celery.

mod cron_expr;
mod field;
mod hash_spread;
mod input;
mod interval;
pub(crate) mod solar;
mod zoned;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

pub use cron_expr::CronExpr;
pub use field::Dialect;
pub use input::{SolarFields, SolarInput, SpecInput};
pub use interval::parse_every;
pub use solar::{Event as SolarEvent, Solar};

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
    /// A solar event at a place (absolute instants: no zone applies).
    Solar(Solar),
}

/// A validated spec: occurrences are the instants of `kind` inside `[start_at, end_at)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub tz: Tz,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
}

/// The earliest instant a spec may name: the Unix epoch.
pub const EARLIEST_INSTANT: DateTime<Utc> = DateTime::UNIX_EPOCH;

/// The latest instant a spec may name, and the last one the engine ever returns: the end of
/// year 9999, the last instant RFC 3339 can write in UTC.
pub fn latest_instant() -> DateTime<Utc> {
    // 9999-12-31T23:59:59Z.
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Checks that `at` is an instant the engine works with: within
/// [`EARLIEST_INSTANT`, `latest_instant()`] and not a leap second (never a fire time).
pub fn check_instant(at: DateTime<Utc>) -> Result<(), String> {
    if at.timestamp_subsec_nanos() >= 1_000_000_000 {
        return Err(format!(
            "{at:?} is a leap second, which is never a fire time"
        ));
    }
    if at < EARLIEST_INSTANT || at > latest_instant() {
        return Err(format!(
            "{} is outside 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z",
            at.to_rfc3339()
        ));
    }
    Ok(())
}

/// Parses an RFC 3339 instant, naming `field` on error. Only the syntax is checked here (a
/// stored definition is read back with the rules it was accepted under); `check_instant`
/// decides whether a new one is in range.
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

/// `at`, or the second after it when `at` falls in a leap second.
fn past_leap_second(at: DateTime<Utc>) -> DateTime<Utc> {
    if at.timestamp_subsec_nanos() < 1_000_000_000 {
        return at;
    }
    DateTime::from_timestamp(at.timestamp().saturating_add(1), 0).unwrap_or(at)
}

/// `parse_instant` followed by `check_instant`: for instants a person gives now.
pub fn parse_bounded_instant(field: &str, text: &str) -> Result<DateTime<Utc>, SpecError> {
    let at = parse_instant(field, text)?;
    check_instant(at).map_err(|reason| SpecError::new(field, reason))?;
    Ok(at)
}

/// Parses an IANA zone name such as `America/New_York`.
pub fn parse_tz(text: &str) -> Result<Tz, SpecError> {
    text.trim()
        .parse::<Tz>()
        .map_err(|_| SpecError::new("tz", format!("{text:?} is not a known IANA time zone")))
}

/// `latitude` and `longitude` come with `solar` and only with it; a zone does not apply to
/// solar instants (they are absolute), so `tz` is refused with `solar` rather than ignored.
fn check_solar_fields(input: &SpecInput) -> Result<(), SpecError> {
    let solar = &input.solar;
    let coordinates = [("latitude", solar.latitude), ("longitude", solar.longitude)];
    if solar.event.is_none() {
        if let Some((field, _)) = coordinates.iter().find(|(_, v)| v.is_some()) {
            return Err(SpecError::new(*field, "only applies to a `solar` event"));
        }
        return Ok(());
    }
    if let Some((field, _)) = coordinates.iter().find(|(_, v)| v.is_none()) {
        return Err(SpecError::new(
            *field,
            "is required with `solar` (degrees, north and east positive)",
        ));
    }
    if input.tz.is_some() {
        return Err(SpecError::new(
            "tz",
            "does not apply to a `solar` event, whose instants are absolute; leave it out",
        ));
    }
    Ok(())
}

impl Spec {
    /// Validates `input`. An interval without `anchor` or `start_at` is anchored at `created`
    /// (the caller's creation instant, never a clock read here).
    pub fn parse(input: &SpecInput, created: DateTime<Utc>) -> Result<Spec, SpecError> {
        Self::parse_named(input, created, "")
    }

    /// `parse`, for the schedule called `name`: a cron field's `H` takes its value from the
    /// name (`hash_spread`).
    pub fn parse_named(
        input: &SpecInput,
        created: DateTime<Utc>,
        name: &str,
    ) -> Result<Spec, SpecError> {
        // A leap second (stored before they were refused) is read as the second after it:
        // leap seconds are never fire times, and arithmetic on one would not move on.
        let opt_instant = |field: &str, value: &Option<Box<str>>| {
            value
                .as_deref()
                .map(|v| parse_instant(field, v).map(past_leap_second))
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
            ("solar", input.solar.event.is_some()),
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
                format!("give exactly one of every, cron, crontab, once, solar (found {found})"),
            ));
        }
        if input.anchor.is_some() && input.every.is_none() {
            return Err(SpecError::new(
                "anchor",
                "only applies to an `every` interval",
            ));
        }
        check_solar_fields(input)?;
        // Where an interval counts from (the others ignore it).
        let anchor = opt_instant("anchor", &input.anchor)?
            .or(start_at)
            .unwrap_or(created);
        let kind = Self::parse_kind(input, name, anchor)?;
        Ok(Spec {
            kind,
            tz,
            start_at,
            end_at,
        })
    }

    /// The one kind `input` gives (checked before): an interval from `anchor`, a cron
    /// expression (its `H` fields from `name`), a single instant or a solar event.
    fn parse_kind(input: &SpecInput, name: &str, anchor: DateTime<Utc>) -> Result<Kind, SpecError> {
        Ok(if let Some(every) = &input.every {
            Kind::Interval {
                every: parse_every(every)?,
                anchor,
            }
        } else if let Some(text) = &input.cron {
            let text = hash_spread::expand(text, name, "cron")?;
            Kind::Cron(CronExpr::parse(&text, Dialect::Vixie, "cron")?)
        } else if let Some(text) = &input.crontab {
            let text = hash_spread::expand(text, name, "crontab")?;
            Kind::Crontab(CronExpr::parse(&text, Dialect::Celery, "crontab")?)
        } else if let Some(at) = &input.once {
            Kind::Once(past_leap_second(parse_instant("once", at)?))
        } else if let SolarInput {
            event: Some(event),
            latitude: Some(lat),
            longitude: Some(lon),
        } = &*input.solar
        {
            Kind::Solar(Solar::new(solar::Event::parse(event)?, *lat, *lon)?)
        } else {
            return Err(SpecError::new(
                "spec",
                "give exactly one of every, cron, crontab, once, solar",
            ));
        })
    }

    /// The occurrences strictly after `after` and at or before `until`, at most `limit`.
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut found = Vec::new();
        let mut cursor = after;
        while found.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until => {
                    found.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        found
    }

    /// The first occurrence strictly after `after`, or `None` when the spec has no more. Never
    /// later than `latest_instant()`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Occurrences at or after start_at: search from just before it, by chrono's resolution
        // (a millisecond let an occurrence inside it through when start_at had microseconds).
        let after = match self.start_at {
            Some(start) => after.max(
                start
                    .checked_sub_signed(Duration::nanoseconds(1))
                    .unwrap_or(start),
            ),
            None => after,
        };
        let next = match &self.kind {
            Kind::Interval { every, anchor } => interval::next_after(*anchor, *every, after),
            Kind::Once(at) => (*at > after).then_some(*at),
            Kind::Solar(solar) => solar.next_after(after),
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
            _ if next > latest_instant() => None,
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
