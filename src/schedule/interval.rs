//! Anchored intervals: parsing `every` durations and stepping `anchor + k × every`.
//!
//! Invariant: occurrences are exact multiples of `every` from the anchor, so they never drift;
//! the arithmetic (milliseconds) is checked, so nothing overflows or loops: past the calendar's
//! end the answer is `None`. It must not know about zones or cron expressions.

use chrono::{DateTime, Duration, Utc};

use super::SpecError;

/// The longest accepted interval (about a hundred years): anything longer is a mistake, and
/// the bound keeps every product inside i64 milliseconds.
const MAX_EVERY_SECS: i64 = 100 * 366 * 86_400;

/// Parses `every`: one or more `<number><unit>` parts with units `s`, `m`, `h`, `d`, `w`
/// (`90s`, `15m`, `1h30m`, `2d`), or a bare number of seconds.
pub fn parse_every(text: &str) -> Result<Duration, SpecError> {
    let err = |reason: &str| SpecError::new("every", format!("{text:?}: {reason}"));
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(err("is empty"));
    }
    if trimmed.starts_with('-') {
        return Err(err("must be positive"));
    }
    let mut total: i64 = 0;
    if let Ok(secs) = trimmed.parse::<i64>() {
        total = secs;
    } else {
        let mut digits = String::new();
        for ch in trimmed.chars() {
            if ch.is_ascii_digit() {
                digits.push(ch);
                continue;
            }
            let unit = match ch {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 604_800,
                _ => {
                    return Err(err(
                        "use whole numbers with units s, m, h, d or w, e.g. 15m or 1h30m",
                    ))
                }
            };
            let n: i64 = digits
                .parse()
                .map_err(|_| err("each unit needs a whole number before it, e.g. 15m"))?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|part| total.checked_add(part))
                .ok_or_else(|| err("is too long"))?;
        }
        if !digits.is_empty() {
            return Err(err("a number at the end has no unit (s, m, h, d or w)"));
        }
    }
    if total <= 0 {
        return Err(err("must be positive (at least 1s)"));
    }
    if total > MAX_EVERY_SECS {
        return Err(err("is longer than 100 years"));
    }
    Ok(Duration::seconds(total))
}

/// The first `anchor + k × every` (k ≥ 0) strictly after `after`.
pub(super) fn next_after(
    anchor: DateTime<Utc>,
    every: Duration,
    after: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if after < anchor {
        return Some(anchor);
    }
    let every_ms = every.num_milliseconds();
    let elapsed_ms = (after - anchor).num_milliseconds();
    let steps = (elapsed_ms / every_ms).checked_add(1)?;
    let offset = Duration::try_milliseconds(steps.checked_mul(every_ms)?)?;
    anchor.checked_add_signed(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse_every("15m").unwrap(), Duration::minutes(15));
        assert_eq!(parse_every("1h30m").unwrap(), Duration::minutes(90));
        assert_eq!(parse_every("90").unwrap(), Duration::seconds(90));
        assert_eq!(parse_every("2d").unwrap(), Duration::days(2));
        assert_eq!(parse_every("1w").unwrap(), Duration::weeks(1));
    }

    #[test]
    fn rejects_zero_negative_and_garbage() {
        for bad in [
            "0",
            "0s",
            "-5m",
            "",
            "5x",
            "m",
            "10m5",
            "99999999999999999999d",
            "200000w",
        ] {
            let err = parse_every(bad).unwrap_err();
            assert_eq!(err.field, "every", "{bad}");
        }
    }

    #[test]
    fn steps_are_anchored_and_strictly_after() {
        let anchor = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let every = Duration::minutes(15);
        assert_eq!(
            next_after(anchor, every, anchor - Duration::days(1)),
            Some(anchor)
        );
        assert_eq!(next_after(anchor, every, anchor), Some(anchor + every));
        let t = anchor + Duration::minutes(31);
        assert_eq!(
            next_after(anchor, every, t),
            Some(anchor + Duration::minutes(45))
        );
        assert_eq!(next_after(anchor, every, DateTime::<Utc>::MAX_UTC), None);
    }
}
