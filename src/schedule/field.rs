//! Parsing of one cron field (`*`, numbers, names, ranges, steps, lists) into a bit set.
//!
//! Invariant: any input gives a bit set within the field's range or an error naming the field,
//! and never a panic. Owns the text-level grammar of both dialects (Vixie `cron` and Celery
//! `crontab`); it must know nothing of calendars or time zones.

use super::SpecError;

/// Which reading of a five-field expression applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Vixie cron: day-of-week 0-7 (0 and 7 are Sunday), three-letter names, no wrap-around.
    Vixie,
    /// Celery `crontab`: day-of-week 0-6 (Sunday = 0), full or abbreviated names, reversed
    /// ranges wrap around the field's end (`fri-mon`).
    Celery,
}

/// The static description of one of the five fields.
pub(super) struct FieldKind {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    names: &'static [&'static str],
}

const WEEKDAYS: &[&str] = &[
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

pub(super) const MINUTE: FieldKind = FieldKind {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
pub(super) const HOUR: FieldKind = FieldKind {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
pub(super) const DAY_OF_MONTH: FieldKind = FieldKind {
    name: "day_of_month",
    min: 1,
    max: 31,
    names: &[],
};
pub(super) const MONTH: FieldKind = FieldKind {
    name: "month_of_year",
    min: 1,
    max: 12,
    names: MONTHS,
};
pub(super) const DAY_OF_WEEK: FieldKind = FieldKind {
    name: "day_of_week",
    min: 0,
    max: 6,
    names: WEEKDAYS,
};

/// A parsed field: the set of allowed values and how the text was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Field {
    /// Bit `v` is set when value `v` is allowed.
    pub bits: u64,
    /// The text began with `*` (Vixie's rule for combining the two day fields).
    pub star: bool,
    /// The text holds `*`, a range or a step: the field follows real time (README, "Time semantics").
    pub interval_like: bool,
}

impl FieldKind {
    /// Parses `text` for this field in `dialect`. `spec_field` names the spec field in errors
    /// (`cron` or `crontab`).
    pub(super) fn parse(
        &self,
        text: &str,
        dialect: Dialect,
        spec_field: &str,
    ) -> Result<Field, SpecError> {
        let err = |reason: String| {
            SpecError::new(
                spec_field,
                format!("{} field {:?}: {}", self.name, text, reason),
            )
        };
        if text.is_empty() {
            return Err(err("is empty".into()));
        }
        // Vixie's day-of-week admits 7 as a second Sunday.
        let max = if dialect == Dialect::Vixie && self.name == DAY_OF_WEEK.name {
            7
        } else {
            self.max
        };
        let mut bits = 0u64;
        for item in text.split(',') {
            bits |= self.parse_item(item, dialect, max).map_err(&err)?;
        }
        if max == 7 && bits & (1 << 7) != 0 {
            bits = (bits & !(1 << 7)) | 1;
        }
        Ok(Field {
            bits,
            star: text.starts_with('*'),
            interval_like: text.contains(['*', '-', '/']),
        })
    }

    fn parse_item(&self, item: &str, dialect: Dialect, max: u32) -> Result<u64, String> {
        if item.is_empty() {
            return Err("has an empty list element".into());
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| format!("step {step:?} is not a positive whole number"))?;
                if step == 0 {
                    return Err("a step of 0 never advances".into());
                }
                (base, step)
            }
            None => (item, 1),
        };
        let (start, end) = if base == "*" {
            (self.min, max)
        } else if let Some((a, b)) = base.split_once('-') {
            (self.value(a, dialect, max)?, self.value(b, dialect, max)?)
        } else {
            if item.contains('/') {
                return Err(format!(
                    "a step needs a range or '*' before it (write {base}-{max}/{step})"
                ));
            }
            let v = self.value(base, dialect, max)?;
            (v, v)
        };
        if start <= end {
            return Ok(stepped(start, end, step));
        }
        // A reversed range: Celery wraps it around the field's end (`fri-mon`, `50-10`);
        // Vixie refuses it.
        if dialect == Dialect::Celery {
            let wrapped: Vec<u32> = (start..=self.max).chain(self.min..=end).collect();
            return Ok(wrapped
                .iter()
                .step_by(step as usize)
                .fold(0, |acc, v| acc | (1u64 << v)));
        }
        Err(format!("range {start}-{end} runs backwards"))
    }

    fn value(&self, text: &str, dialect: Dialect, max: u32) -> Result<u32, String> {
        if let Ok(v) = text.parse::<u32>() {
            if v < self.min || v > max {
                let hint = match (self.name, dialect) {
                    ("day_of_week", Dialect::Celery) => " (Sunday is 0)",
                    ("day_of_week", Dialect::Vixie) => " (0 and 7 are Sunday)",
                    _ => "",
                };
                return Err(format!("{v} is out of range {}-{max}{hint}", self.min));
            }
            return Ok(v);
        }
        let lower = text.to_ascii_lowercase();
        let matches_name = |full: &str| match dialect {
            Dialect::Vixie => lower.len() == 3 && full.starts_with(&lower),
            Dialect::Celery => lower.len() >= 3 && full.starts_with(&lower),
        };
        match self.names.iter().position(|full| matches_name(full)) {
            Some(index) => Ok(index as u32 + self.min),
            None if self.names.is_empty() => Err(format!("{text:?} is not a number")),
            None => Err(format!("{text:?} is neither a number nor a known name")),
        }
    }
}

fn stepped(start: u32, end: u32, step: u32) -> u64 {
    (start..=end)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | (1u64 << v))
}
