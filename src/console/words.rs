//! A spec in words ("At 09:00, Monday through Friday, in Europe/Paris"), for the console's
//! pages (the spec as written is `SpecInput::written`, which the CLI shows too).
//!
//! Invariant: describing never fails: a form it does not know is said field by field. It
//! must not judge a spec (that is `schedule::Spec::parse`).

use crate::schedule::SpecInput;

/// The spec in words.
pub(crate) fn spec_words(spec: &SpecInput) -> String {
    let zone = spec.tz.as_deref().unwrap_or("UTC");
    let text = if let Some(every) = &spec.every {
        format!("Every {}", interval_words(every))
    } else if let Some(cron) = spec.cron.as_deref().or(spec.crontab.as_deref()) {
        format!("{}, in {zone}", cron_words(cron))
    } else if let Some(event) = &spec.solar.event {
        format!(
            "At each day's {} at latitude {}, longitude {}",
            event.replace('_', " "),
            spec.solar.latitude.unwrap_or_default(),
            spec.solar.longitude.unwrap_or_default()
        )
    } else {
        format!("Once, at {}", spec.once.as_deref().unwrap_or("?"))
    };
    let mut text = text;
    if let Some(start) = &spec.start_at {
        text.push_str(&format!(", from {start}"));
    }
    if let Some(end) = &spec.end_at {
        text.push_str(&format!(", until {end}"));
    }
    text
}

/// `30s` → "30 seconds", `1h30m` → "1 hour 30 minutes".
fn interval_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => "second",
            'm' => "minute",
            'h' => "hour",
            'd' => "day",
            'w' => "week",
            _ => return text.to_string(),
        };
        let plural = if number == "1" { "" } else { "s" };
        words.push(format!("{number} {unit}{plural}"));
        number.clear();
    }
    if !number.is_empty() {
        words.push(format!("{number} seconds"));
    }
    if words.is_empty() {
        text.to_string()
    } else {
        words.join(" ")
    }
}

const DAYS: [&str; 8] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A day-of-week field: `1-5` → "Monday through Friday", `0,6` → "Sunday and Saturday".
fn days_words(field: &str) -> Option<String> {
    let day = |t: &str| t.parse::<usize>().ok().and_then(|n| DAYS.get(n).copied());
    let parts = field
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => Some(format!("{} through {}", day(a)?, day(b)?)),
            None => day(part).map(str::to_string),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(parts.join(" and "))
}

/// Five cron fields in words, for the common forms; other forms field by field.
pub(crate) fn cron_words(expr: &str) -> String {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = fields[..] else {
        return format!("Cron expression {expr}");
    };
    let num = |t: &str| t.parse::<u32>().ok();
    let time = match (minute, hour, num(minute), num(hour)) {
        ("*", "*", _, _) => "Every minute".to_string(),
        (_, "*", Some(m), _) => format!("At minute {m} of every hour"),
        (_, "*", None, _) if minute.starts_with("*/") => {
            format!("Every {} minutes", &minute[2..])
        }
        (_, _, Some(m), Some(h)) => format!("At {h:02}:{m:02}"),
        (_, _, Some(m), None) if hour.starts_with("*/") => {
            format!("At minute {m} of every {} hours", &hour[2..])
        }
        _ => format!("At minute {minute}, hour {hour}"),
    };
    let mut text = time;
    if dom != "*" {
        text.push_str(&format!(", on day {dom} of the month"));
    }
    if month != "*" {
        let named = num(month)
            .and_then(|m| MONTHS.get((m as usize).wrapping_sub(1)))
            .map_or_else(|| format!("month {month}"), |m| m.to_string());
        text.push_str(&format!(", in {named}"));
    }
    if dow != "*" {
        match days_words(dow) {
            Some(days) => text.push_str(&format!(", {days}")),
            None => text.push_str(&format!(", day of week {dow}")),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_crons_read_as_words() {
        assert_eq!(cron_words("0 9 * * 1-5"), "At 09:00, Monday through Friday");
        assert_eq!(cron_words("*/15 * * * *"), "Every 15 minutes");
        assert_eq!(cron_words("* * * * *"), "Every minute");
        assert_eq!(cron_words("30 * * * *"), "At minute 30 of every hour");
        assert_eq!(
            cron_words("0 3 1 1 *"),
            "At 03:00, on day 1 of the month, in January"
        );
        assert_eq!(
            cron_words("5 */2 * * 0,6"),
            "At minute 5 of every 2 hours, Sunday and Saturday"
        );
        assert_eq!(cron_words("bad"), "Cron expression bad");
    }

    #[test]
    fn intervals_and_others() {
        assert_eq!(interval_words("30s"), "30 seconds");
        assert_eq!(interval_words("1h30m"), "1 hour 30 minutes");
        let spec = SpecInput {
            cron: Some("0 9 * * 1-5".into()),
            tz: Some("Europe/Paris".into()),
            ..Default::default()
        };
        assert_eq!(
            spec_words(&spec),
            "At 09:00, Monday through Friday, in Europe/Paris"
        );
        assert_eq!(spec.written(), "cron 0 9 * * 1-5 (Europe/Paris)");
    }
}
