//! A five-field expression (Vixie `cron` or Celery `crontab`) and the search for the next
//! matching local wall-clock minute.
//!
//! Invariant: every search is bounded (401 years, never past year 9999) and its arithmetic is
//! checked, and an expression no date can satisfy is refused when parsed. Owns calendar
//! matching only: it works on naive wall-clock times and must not know about time zones or
//! daylight saving (that is `zoned`'s job).

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::field::{Dialect, DAY_OF_MONTH, DAY_OF_WEEK, HOUR, MINUTE, MONTH};
use super::SpecError;

/// How the day-of-month and day-of-week fields combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DayRule {
    /// Both must match (Celery always; Vixie when either day field begins with `*`).
    Both,
    /// Either may match (Vixie when both day fields are restricted).
    Either,
}

/// The latest year any search looks at: far enough for every real schedule, and safely inside
/// chrono's range so no arithmetic can overflow.
const LAST_YEAR: i32 = 9999;
/// The Gregorian calendar repeats every 400 years, so a feasible expression matches within it.
const SEARCH_YEARS: i32 = 401;

#[derive(Clone, Debug, PartialEq, Eq)]
/// Each field a bit set, each the smallest integer that holds its range: the state keeps one
/// per cron schedule, a million of them in a large deployment.
pub struct CronExpr {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    day_rule: DayRule,
    interval_like: bool,
}

impl CronExpr {
    /// Parses a five-field expression. `spec_field` (`cron` or `crontab`) names the field in
    /// errors. Vixie macros (`@daily`, …) are accepted in the Vixie dialect only.
    pub fn parse(text: &str, dialect: Dialect, spec_field: &str) -> Result<Self, SpecError> {
        let trimmed = text.trim();
        let expanded = match (dialect, trimmed) {
            (Dialect::Vixie, "@hourly") => "0 * * * *",
            (Dialect::Vixie, "@daily" | "@midnight") => "0 0 * * *",
            (Dialect::Vixie, "@weekly") => "0 0 * * 0",
            (Dialect::Vixie, "@monthly") => "0 0 1 * *",
            (Dialect::Vixie, "@yearly" | "@annually") => "0 0 1 1 *",
            (_, other) if other.starts_with('@') => {
                return Err(SpecError::new(
                    spec_field,
                    format!(
                    "unknown macro {other:?} (use @hourly, @daily, @weekly, @monthly or @yearly)"
                ),
                ))
            }
            (_, other) => other,
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        if parts.len() != 5 {
            let hint = match parts.len() {
                6 => " (a six-field string is ambiguous: Quartz reads seconds first, others a year last; belfry takes minute hour day-of-month month day-of-week)",
                _ => " (minute hour day-of-month month day-of-week)",
            };
            return Err(SpecError::new(
                spec_field,
                format!("expected 5 fields, found {}{hint}", parts.len()),
            ));
        }
        let minute = MINUTE.parse(parts[0], dialect, spec_field)?;
        let hour = HOUR.parse(parts[1], dialect, spec_field)?;
        let dom = DAY_OF_MONTH.parse(parts[2], dialect, spec_field)?;
        let month = MONTH.parse(parts[3], dialect, spec_field)?;
        let dow = DAY_OF_WEEK.parse(parts[4], dialect, spec_field)?;
        let day_rule = match dialect {
            Dialect::Vixie if !dom.star && !dow.star => DayRule::Either,
            _ => DayRule::Both,
        };
        let expr = CronExpr {
            minutes: minute.bits,
            hours: narrow(hour.bits, spec_field)?,
            days_of_month: narrow(dom.bits, spec_field)?,
            months: narrow(month.bits, spec_field)?,
            days_of_week: narrow(dow.bits, spec_field)?,
            day_rule,
            interval_like: minute.interval_like || hour.interval_like,
        };
        expr.check_feasible(spec_field, text)?;
        Ok(expr)
    }

    /// True when the minute or hour field holds `*`, a range or a step (README, "Time semantics"): such an
    /// expression follows real time across daylight-saving changes.
    pub fn is_interval_like(&self) -> bool {
        self.interval_like
    }

    /// Rejects expressions that no date can ever satisfy, such as `0 0 30 2 *`. Every
    /// (month, day) pair falls on every weekday within the 400-year cycle, so feasibility only
    /// depends on months and days of the month.
    fn check_feasible(&self, spec_field: &str, text: &str) -> Result<(), SpecError> {
        if self.day_rule == DayRule::Either {
            return Ok(());
        }
        let feasible = (1..=12u32).any(|m| {
            self.months & (1 << m) != 0
                && (1..=max_days_in_month(m)).any(|d| self.days_of_month & (1 << d) != 0)
        });
        if feasible {
            Ok(())
        } else {
            Err(SpecError::new(
                spec_field,
                format!(
                    "{text:?} can never match: no selected month has the selected day of the month"
                ),
            ))
        }
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        match self.day_rule {
            DayRule::Both => dom && dow,
            DayRule::Either => dom || dow,
        }
    }

    /// The earliest matching wall-clock minute at or after `from` (seconds are rounded up to
    /// the next minute), or `None` when there is none before the search horizon.
    pub fn next_match(&self, from: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = round_up_to_minute(from)?;
        let last_year = from.year().saturating_add(SEARCH_YEARS).min(LAST_YEAR);
        let mut date = from.date();
        let (mut hour, mut minute) = (from.hour(), from.minute());
        loop {
            if date.year() > last_year {
                return None;
            }
            if self.months & (1 << date.month()) == 0 {
                date = first_of_next_month(date)?;
                (hour, minute) = (0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = date.succ_opt()?;
                (hour, minute) = (0, 0);
                continue;
            }
            match next_bit(u64::from(self.hours), hour, 23) {
                Some(h) => {
                    if h != hour {
                        minute = 0;
                    }
                    if let Some(m) = next_bit(self.minutes, minute, 59) {
                        return Some(date.and_time(NaiveTime::from_hms_opt(h, m, 0)?));
                    }
                    if h == 23 {
                        date = date.succ_opt()?;
                        (hour, minute) = (0, 0);
                    } else {
                        (hour, minute) = (h + 1, 0);
                    }
                }
                None => {
                    date = date.succ_opt()?;
                    (hour, minute) = (0, 0);
                }
            }
        }
    }
}

/// The smallest set bit at position `from..=max`.
/// A field's bits in its narrower type. Field parsing bounds every value by the field's
/// maximum, so this cannot fail; if it ever did, the spec is refused rather than truncated.
fn narrow<T: TryFrom<u64>>(bits: u64, spec_field: &str) -> Result<T, SpecError> {
    T::try_from(bits).map_err(|_| SpecError::new(spec_field, "a field value is out of range"))
}

fn next_bit(bits: u64, from: u32, max: u32) -> Option<u32> {
    if from > max {
        return None;
    }
    let shifted = bits >> from;
    if shifted == 0 {
        return None;
    }
    let bit = from + shifted.trailing_zeros();
    (bit <= max).then_some(bit)
}

fn round_up_to_minute(t: NaiveDateTime) -> Option<NaiveDateTime> {
    let floor = t.with_second(0)?.with_nanosecond(0)?;
    if floor == t {
        Some(t)
    } else {
        floor.checked_add_signed(Duration::minutes(1))
    }
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    let (y, m) = if date.month() == 12 {
        (date.year().checked_add(1)?, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
}

fn max_days_in_month(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    fn vixie(text: &str) -> CronExpr {
        CronExpr::parse(text, Dialect::Vixie, "cron").unwrap()
    }

    fn celery(text: &str) -> CronExpr {
        CronExpr::parse(text, Dialect::Celery, "crontab").unwrap()
    }

    #[test]
    fn next_match_rounds_seconds_up_and_is_inclusive() {
        let every_minute = vixie("* * * * *");
        assert_eq!(
            every_minute.next_match(at("2025-01-01 10:00:00")),
            Some(at("2025-01-01 10:00:00"))
        );
        assert_eq!(
            every_minute.next_match(at("2025-01-01 10:00:01")),
            Some(at("2025-01-01 10:01:00"))
        );
        assert_eq!(
            every_minute.next_match(at("2025-12-31 23:59:30")),
            Some(at("2026-01-01 00:00:00"))
        );
    }

    #[test]
    fn vixie_ors_restricted_day_fields_and_celery_ands_them() {
        // 2025-06-13 is a Friday; 2025-06-06 is the Friday before it.
        let from = at("2025-06-01 00:00:00");
        assert_eq!(
            vixie("0 0 13 * 5").next_match(from),
            Some(at("2025-06-06 00:00:00"))
        );
        assert_eq!(
            celery("0 0 13 * 5").next_match(from),
            Some(at("2025-06-13 00:00:00"))
        );
    }

    #[test]
    fn vixie_star_prefixed_day_field_switches_to_and() {
        // dom `*/2` begins with `*`, so a day must be odd AND a Monday: after Monday 2025-06-02
        // that is 2025-06-09 (with OR it would be the odd 2025-06-03).
        assert_eq!(
            vixie("0 0 */2 * 1").next_match(at("2025-06-02 00:00:01")),
            Some(at("2025-06-09 00:00:00"))
        );
        assert_eq!(
            vixie("0 0 1-31/2 * 1").next_match(at("2025-06-02 00:00:01")),
            Some(at("2025-06-03 00:00:00"))
        );
    }

    #[test]
    fn sunday_is_zero_and_seven_in_vixie() {
        let zero = vixie("0 0 * * 0");
        assert_eq!(zero, vixie("0 0 * * 7"));
        assert_eq!(zero, vixie("0 0 * * sun"));
        assert_eq!(
            zero.next_match(at("2025-06-02 00:00:00")),
            Some(at("2025-06-08 00:00:00"))
        );
    }

    #[test]
    fn celery_day_of_week_wraps_and_takes_full_names() {
        assert_eq!(celery("0 12 * * fri-mon"), celery("0 12 * * 5,6,0,1"));
        assert_eq!(celery("0 12 * * monday"), celery("0 12 * * 1"));
        assert_eq!(celery("58-1 * * * *"), celery("58,59,0,1 * * * *"));
    }

    #[test]
    fn rejects_what_cannot_match_or_parse() {
        let reason = |text: &str, dialect| {
            CronExpr::parse(text, dialect, "cron")
                .unwrap_err()
                .to_string()
        };
        assert!(reason("0 0 30 2 *", Dialect::Vixie).contains("can never match"));
        assert!(reason("0 0 31 4,6,9,11 *", Dialect::Celery).contains("can never match"));
        assert!(reason("61 * * * *", Dialect::Vixie).contains("minute"));
        assert!(reason("0 0 * * 7", Dialect::Celery).contains("Sunday is 0"));
        assert!(reason("0 0 0 * * *", Dialect::Vixie).contains("six-field"));
        assert!(reason("*/0 * * * *", Dialect::Vixie).contains("step of 0"));
        assert!(reason("5/15 * * * *", Dialect::Vixie).contains("needs a range"));
        assert!(reason("0 0 * * fri-mon", Dialect::Vixie).contains("backwards"));
        assert!(reason("0 0 * * monday", Dialect::Vixie).contains("known name"));
        assert!(reason("@fortnightly", Dialect::Vixie).contains("unknown macro"));
        assert!(reason("@daily", Dialect::Celery).contains("unknown macro"));
        assert!(reason("0,,1 * * * *", Dialect::Vixie).contains("empty list element"));
    }

    #[test]
    fn leap_day_is_found_years_ahead_and_the_horizon_ends_search() {
        let leap = vixie("0 0 29 2 *");
        assert_eq!(
            leap.next_match(at("2025-01-01 00:00:00")),
            Some(at("2028-02-29 00:00:00"))
        );
        assert_eq!(leap.next_match(at("9997-01-01 00:00:00")), None);
        // Friday the 29th of February is rare but real (2036-02-29 is a Friday).
        assert_eq!(
            celery("0 0 29 2 fri").next_match(at("2025-01-01 00:00:00")),
            Some(at("2036-02-29 00:00:00"))
        );
    }

    #[test]
    fn interval_like_classification_follows_minute_and_hour_fields() {
        assert!(vixie("*/15 * * * *").is_interval_like());
        assert!(vixie("0 9-17 * * *").is_interval_like());
        assert!(vixie("@hourly").is_interval_like());
        assert!(!vixie("30 2 * * *").is_interval_like());
        assert!(!vixie("0 8,20 * * *").is_interval_like());
        assert!(!vixie("@daily").is_interval_like());
        assert!(!vixie("0 0 */2 * *").is_interval_like());
    }
}
