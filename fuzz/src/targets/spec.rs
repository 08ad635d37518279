//! The five spec kinds (`every`, `crontab`, `cron`, `once`, `solar`): parsing, and on success
//! the next occurrences from instants across chrono's whole range, which must be strictly
//! increasing, later than where the search started, inside the spec's bounds and never leap
//! seconds.
//!
//! Input: lines of `field=value` (`every`, `anchor`, `cron`, `crontab`, `once`, `tz`,
//! `start_at`, `end_at`, `solar`, `latitude`, `longitude`); a line without `=` is the target's
//! own field.

use belfry::schedule::{
    parse_every, parse_instant, parse_tz, CronExpr, Dialect, Kind as SpecKind, Spec, SpecInput,
};
use chrono::{DateTime, NaiveDateTime, Utc};

use super::{now, text, Target, Violation};
use crate::defs::{CRONS, EVERIES, ZONES};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Interval,
    Crontab,
    Cron,
    Once,
    Solar,
}

pub struct SpecTarget(Kind);

impl SpecTarget {
    pub fn interval() -> Self {
        SpecTarget(Kind::Interval)
    }
    pub fn crontab() -> Self {
        SpecTarget(Kind::Crontab)
    }
    pub fn cron() -> Self {
        SpecTarget(Kind::Cron)
    }
    pub fn once() -> Self {
        SpecTarget(Kind::Once)
    }
    pub fn solar() -> Self {
        SpecTarget(Kind::Solar)
    }

    fn field(&self) -> &'static str {
        match self.0 {
            Kind::Interval => "every",
            Kind::Crontab => "crontab",
            Kind::Cron => "cron",
            Kind::Once => "once",
            Kind::Solar => "solar",
        }
    }
}

/// The spec an input describes.
fn spec_input(own: &str, input: &str) -> SpecInput {
    let mut spec = SpecInput::default();
    for line in input.split('\n') {
        let (key, value) = line.split_once('=').unwrap_or((own, line));
        let degrees = || value.trim().parse::<f64>().ok();
        let slot = match key {
            "latitude" => {
                spec.solar.to_mut().latitude = degrees();
                continue;
            }
            "longitude" => {
                spec.solar.to_mut().longitude = degrees();
                continue;
            }
            "solar" => &mut spec.solar.to_mut().event,
            "every" => &mut spec.every,
            "anchor" => &mut spec.anchor,
            "cron" => &mut spec.cron,
            "crontab" => &mut spec.crontab,
            "once" => &mut spec.once,
            "tz" => &mut spec.tz,
            "start_at" => &mut spec.start_at,
            "end_at" => &mut spec.end_at,
            _ => continue,
        };
        *slot = Some(value.into());
    }
    spec
}

/// Instants to search from: chrono's extremes, the epoch, the ends of RFC 3339's range.
fn starting_points() -> Vec<DateTime<Utc>> {
    let at = |secs| DateTime::from_timestamp(secs, 0).unwrap_or_default();
    vec![
        DateTime::<Utc>::MIN_UTC,
        at(-62_167_219_200), // 0000-01-01
        at(0),
        now(),
        at(253_402_300_799), // 9999-12-31T23:59:59
        DateTime::<Utc>::MAX_UTC - chrono::Duration::seconds(90),
        DateTime::<Utc>::MAX_UTC,
    ]
}

/// The promises of `upcoming`: each occurrence later than the last, inside the bounds, never a
/// leap second.
fn check_occurrences(spec: &Spec, after: DateTime<Utc>) -> Result<(), Violation> {
    let mut last = after;
    for next in spec.upcoming(after, 3) {
        if next <= last {
            return Err(Violation::new(format!(
                "occurrence {next:?} is not after {last:?}"
            )));
        }
        if spec.start_at.is_some_and(|start| next < start) {
            return Err(Violation::new(format!(
                "occurrence {next:?} is before start_at {:?}",
                spec.start_at
            )));
        }
        if spec.end_at.is_some_and(|end| next >= end) {
            return Err(Violation::new(format!(
                "occurrence {next:?} is not before end_at {:?}",
                spec.end_at
            )));
        }
        if next.timestamp_subsec_nanos() >= 1_000_000_000 {
            return Err(Violation::new(format!(
                "leap second {next:?} is an occurrence"
            )));
        }
        last = next;
    }
    Ok(())
}

/// A leap second in any of the spec's instants (`1_000_000_000` nanoseconds and up, as chrono
/// keeps them).
fn holds_leap_second(spec: &Spec) -> bool {
    let leap = |t: &DateTime<Utc>| t.timestamp_subsec_nanos() >= 1_000_000_000;
    let kind = match &spec.kind {
        SpecKind::Interval { anchor, .. } => leap(anchor),
        SpecKind::Once(at) => leap(at),
        SpecKind::Cron(_) | SpecKind::Crontab(_) | SpecKind::Solar(_) => false,
    };
    kind || spec.start_at.iter().chain(spec.end_at.iter()).any(leap)
}

/// Says so when a spec that broke a promise holds a leap second: accepting them at all is the
/// known finding, whatever it then breaks.
fn name_leap_seconds(spec: &Spec, violation: Violation) -> Violation {
    if holds_leap_second(spec) {
        Violation(format!("leap second in the spec: {}", violation.0))
    } else {
        violation
    }
}

/// The field parsers on their own, and the cron search from the ends of chrono's naive range.
fn parse_fields(own: &str, value: &str) {
    let _ = parse_every(value);
    let _ = parse_instant(own, value);
    let _ = parse_tz(value);
    for dialect in [Dialect::Vixie, Dialect::Celery] {
        if let Ok(expr) = CronExpr::parse(value, dialect, own) {
            expr.is_interval_like();
            for from in [NaiveDateTime::MIN, NaiveDateTime::MAX, now().naive_utc()] {
                let _ = expr.next_match(from);
            }
        }
    }
}

impl Target for SpecTarget {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Interval => "interval",
            Kind::Crontab => "crontab",
            Kind::Cron => "cron",
            Kind::Once => "once",
            Kind::Solar => "solar",
        }
    }

    fn about(&self) -> &'static str {
        match self.0 {
            Kind::Interval => "`every` (and anchor) specs: parse, then next occurrences",
            Kind::Crontab => "Celery `crontab` specs: parse, then next occurrences",
            Kind::Cron => "Vixie `cron` specs: parse, then next occurrences",
            Kind::Once => "`once` specs: parse, then next occurrences",
            Kind::Solar => {
                "`solar` events at a latitude and longitude: parse, then next occurrences"
            }
        }
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let own: Vec<String> = match self.0 {
            Kind::Interval => EVERIES
                .iter()
                .map(|e| e.to_string())
                .chain([
                    "1w2d3h4m5s".into(),
                    "anchor=2025-03-09T02:30:00Z\n10m".into(),
                ])
                .collect(),
            Kind::Crontab | Kind::Cron => CRONS
                .iter()
                .map(|c| c.to_string())
                .chain([
                    "0 0 * * sun".into(),
                    "*/15 0-23/3 1,15 */2 mon,wed,fri".into(),
                    "0 12 L * *".into(),
                    "@daily".into(),
                ])
                .collect(),
            Kind::Once => vec![
                "2030-01-01T00:00:00Z".into(),
                "2025-03-09T02:30:00-05:00".into(),
                "2025-11-02T01:30:00.250+01:00".into(),
                "9999-12-31T23:59:59Z".into(),
                "0000-01-01T00:00:00Z".into(),
            ],
            Kind::Solar => belfry::schedule::SolarEvent::ALL
                .iter()
                .zip([0.0, 51.5, -66.0, 78.0, 90.0, -90.0, 69.9, 23.44, -12.0])
                .map(|(event, lat)| format!("{}\nlatitude={lat}\nlongitude=-0.12", event.name()))
                .collect(),
        };
        let mut corpus = Vec::new();
        for (i, value) in own.iter().enumerate() {
            corpus.push(value.clone().into_bytes());
            let zone = ZONES[i % ZONES.len()];
            corpus.push(format!("{value}\ntz={zone}").into_bytes());
            corpus.push(
                format!(
                    "{value}\ntz={zone}\nstart_at=2025-03-30T00:59:59Z\nend_at=2026-01-01T00:00:00.5Z"
                )
                .into_bytes(),
            );
            corpus.push(format!("{value}\nstart_at=2025-01-01T00:00:10.0005Z").into_bytes());
        }
        corpus
    }

    fn dictionary(&self) -> &'static [&'static str] {
        &[
            "*",
            "*/",
            "-",
            ",",
            "/",
            " ",
            "0",
            "7",
            "23",
            "31",
            "59",
            "60",
            "L",
            "W",
            "#",
            "?",
            "mon",
            "sun",
            "sat",
            "jan",
            "dec",
            "feb",
            "mon-fri",
            "sun-sat",
            "1-7",
            "0-6",
            "@daily",
            "@reboot",
            "s",
            "m",
            "h",
            "d",
            "w",
            "1h30m",
            "T",
            "Z",
            "+14:00",
            "-12:00",
            ":60",
            "2025-03-09T02:30:00",
            "2011-12-30T10:00:00Z",
            "9999-12-31T23:59:59Z",
            ".999999999",
            "\nevery=",
            "\nanchor=",
            "\ncron=",
            "\ncrontab=",
            "\nonce=",
            "\ntz=",
            "\nstart_at=",
            "\nend_at=",
            "\nsolar=",
            "\nlatitude=",
            "\nlongitude=",
            "sunrise",
            "dusk_astronomical",
            "solar_noon",
            "90",
            "-180",
            "66.56",
            "NaN",
            "inf",
            "1e308",
            "Pacific/Apia",
            "Europe/Dublin",
            "Australia/Lord_Howe",
            "Antarctica/Troll",
            "America/Havana",
            "Asia/Tehran",
            "UTC",
            "Etc/GMT+12",
            "Etc/GMT-14",
        ]
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let input = text(input);
        let own = self.field();
        if let Some(first) = input.split('\n').next() {
            parse_fields(own, first);
        }
        let spec_input = spec_input(own, &input);
        for created in [now(), DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
            let Ok(spec) = Spec::parse(&spec_input, created) else {
                continue;
            };
            for after in starting_points() {
                check_occurrences(&spec, after).map_err(|v| name_leap_seconds(&spec, v))?;
            }
        }
        Ok(())
    }
}
