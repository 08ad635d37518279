//! The checker's own time arithmetic: which instants a spec names, computed here from first
//! principles and not by belfry's time engine.
//!
//! Intervals are `anchor + k × every`. Cron expressions are limited to what the workload uses
//! (numbers, `*`, ranges, steps and lists; no names) and are evaluated by walking real minutes
//! and matching each one's wall-clock time in the zone, which is the meaning belfry gives
//! interval-like expressions; the workload only uses those. Must not call belfry's code.

use chrono::{DateTime, Datelike, Duration, DurationRound, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use belfry::api::pb;

/// A spec as the workload writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpecDef {
    /// `anchor + k × every_secs`, k ≥ 0 (the anchor is also `start_at`).
    Every {
        every_secs: i64,
        anchor: DateTime<Utc>,
    },
    /// Celery's crontab (all fields must match) or Vixie cron (either day field matches when
    /// both are restricted), from `start_at` on.
    Cron {
        expr: String,
        tz: String,
        celery: bool,
        start_at: DateTime<Utc>,
    },
}

impl SpecDef {
    pub fn to_pb(&self) -> pb::Spec {
        match self {
            SpecDef::Every { every_secs, anchor } => pb::Spec {
                every: format!("{every_secs}s"),
                anchor: anchor.to_rfc3339(),
                start_at: anchor.to_rfc3339(),
                ..Default::default()
            },
            SpecDef::Cron {
                expr,
                tz,
                celery,
                start_at,
            } => pb::Spec {
                crontab: if *celery { expr.clone() } else { String::new() },
                cron: if *celery { String::new() } else { expr.clone() },
                timezone: tz.clone(),
                start_at: start_at.to_rfc3339(),
                ..Default::default()
            },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            SpecDef::Every { every_secs, .. } => format!("every {every_secs}s"),
            SpecDef::Cron {
                expr, tz, celery, ..
            } => format!("{} '{expr}' {tz}", if *celery { "crontab" } else { "cron" }),
        }
    }

    /// Every instant of the spec in `(after, until]`.
    pub fn occurrences(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        match self {
            SpecDef::Every { every_secs, anchor } => {
                let step = Duration::seconds(*every_secs);
                let mut k = if after < *anchor {
                    0
                } else {
                    (after - *anchor).num_milliseconds() / step.num_milliseconds() + 1
                };
                let mut out = Vec::new();
                loop {
                    let t = *anchor + Duration::milliseconds(step.num_milliseconds() * k);
                    if t > until {
                        break;
                    }
                    if t > after {
                        out.push(t);
                    }
                    k += 1;
                }
                out
            }
            SpecDef::Cron {
                expr,
                tz,
                celery,
                start_at,
            } => {
                let Ok(fields) = CronFields::parse(expr) else {
                    return Vec::new();
                };
                let Ok(zone) = tz.parse::<Tz>() else {
                    return Vec::new();
                };
                let from = after.max(*start_at - Duration::milliseconds(1));
                let mut t = from.duration_trunc(Duration::minutes(1)).unwrap_or(from);
                if t <= from {
                    t += Duration::minutes(1);
                }
                let mut out = Vec::new();
                while t <= until {
                    if fields.matches(&t.with_timezone(&zone), *celery) {
                        out.push(t);
                    }
                    t += Duration::minutes(1);
                }
                out
            }
        }
    }
}

/// The five fields as sets of allowed values.
struct CronFields {
    minute: Vec<bool>,
    hour: Vec<bool>,
    dom: Vec<bool>,
    month: Vec<bool>,
    dow: Vec<bool>,
    dom_star: bool,
    dow_star: bool,
}

impl CronFields {
    fn parse(expr: &str) -> Result<CronFields, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!("{expr:?}: five fields expected"));
        }
        let mut dow = field(parts[4], 0, 7)?;
        if dow[7] {
            dow[0] = true;
        }
        Ok(CronFields {
            minute: field(parts[0], 0, 59)?,
            hour: field(parts[1], 0, 23)?,
            dom: field(parts[2], 1, 31)?,
            month: field(parts[3], 1, 12)?,
            dow,
            dom_star: parts[2].starts_with('*'),
            dow_star: parts[4].starts_with('*'),
        })
    }

    fn matches<T: Datelike + Timelike>(&self, local: &T, celery: bool) -> bool {
        let day_of_month = self.dom[local.day() as usize];
        let day_of_week = self.dow[local.weekday().num_days_from_sunday() as usize];
        let day = if celery || self.dom_star || self.dow_star {
            day_of_month && day_of_week
        } else {
            day_of_month || day_of_week
        };
        self.minute[local.minute() as usize]
            && self.hour[local.hour() as usize]
            && self.month[local.month() as usize]
            && day
    }
}

/// One field: `*`, `*/n`, `a`, `a-b`, `a-b/n`, comma-separated.
fn field(text: &str, lo: usize, hi: usize) -> Result<Vec<bool>, String> {
    let mut set = vec![false; hi + 1];
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (r, s.parse::<usize>().map_err(|e| format!("{item}: {e}"))?),
            None => (item, 1),
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                a.parse().map_err(|_| format!("{item}: bad number"))?,
                b.parse().map_err(|_| format!("{item}: bad number"))?,
            )
        } else {
            let a: usize = range.parse().map_err(|_| format!("{item}: bad number"))?;
            (a, if step > 1 { hi } else { a })
        };
        if a < lo || b > hi || a > b || step == 0 {
            return Err(format!("{item}: out of range"));
        }
        for v in (a..=b).step_by(step) {
            set[v] = true;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn intervals_count_from_the_anchor() {
        let spec = SpecDef::Every {
            every_secs: 2,
            anchor: at("2025-01-01T00:00:00Z"),
        };
        assert_eq!(
            spec.occurrences(at("2024-12-31T00:00:00Z"), at("2025-01-01T00:00:04Z")),
            vec![
                at("2025-01-01T00:00:00Z"),
                at("2025-01-01T00:00:02Z"),
                at("2025-01-01T00:00:04Z")
            ]
        );
        assert_eq!(
            spec.occurrences(at("2025-01-01T00:00:02Z"), at("2025-01-01T00:00:05Z")),
            vec![at("2025-01-01T00:00:04Z")]
        );
    }

    #[test]
    fn crontab_steps_follow_local_minutes() {
        // Kathmandu is UTC+05:45: local even minutes are odd UTC minutes.
        let spec = SpecDef::Cron {
            expr: "*/2 * * * *".into(),
            tz: "Asia/Kathmandu".into(),
            celery: true,
            start_at: at("2025-01-01T00:00:00Z"),
        };
        assert_eq!(
            spec.occurrences(at("2025-01-01T00:00:00Z"), at("2025-01-01T00:04:00Z")),
            vec![at("2025-01-01T00:01:00Z"), at("2025-01-01T00:03:00Z")]
        );
    }

    #[test]
    fn start_at_is_inclusive() {
        let spec = SpecDef::Cron {
            expr: "* * * * *".into(),
            tz: "UTC".into(),
            celery: false,
            start_at: at("2025-01-01T00:01:00Z"),
        };
        assert_eq!(
            spec.occurrences(at("2024-01-01T00:00:00Z"), at("2025-01-01T00:02:00Z")),
            vec![at("2025-01-01T00:01:00Z"), at("2025-01-01T00:02:00Z")]
        );
    }
}
