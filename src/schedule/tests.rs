//! Hand-checked cases for the engine; the exhaustive conformance cases against an independent
//! reference live in `tests/time_conformance.rs`.

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    parse_instant("test", s).unwrap()
}

fn spec(input: SpecInput) -> Spec {
    Spec::parse(&input, utc("2025-01-01T00:00:00Z")).unwrap()
}

fn cron(expr: &str, tz: &str) -> Spec {
    spec(SpecInput {
        cron: Some(expr.into()),
        tz: Some(tz.into()),
        ..Default::default()
    })
}

fn formatted(spec: &Spec, after: &str, n: usize) -> Vec<String> {
    spec.upcoming(utc(after), n)
        .iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect()
}

#[test]
fn fixed_time_in_spring_forward_gap_fires_at_the_transition() {
    // 02:30 does not exist in New York on 2025-03-09; the clock jumps 02:00 EST -> 03:00 EDT
    // at 07:00Z.
    let s = cron("30 2 * * *", "America/New_York");
    assert_eq!(
        formatted(&s, "2025-03-08T12:00:00Z", 3),
        [
            "2025-03-09T07:00:00Z",
            "2025-03-10T06:30:00Z",
            "2025-03-11T06:30:00Z"
        ]
    );
}

#[test]
fn fixed_time_in_fall_back_fold_fires_once_at_first_pass() {
    let s = cron("30 1 * * *", "America/New_York");
    assert_eq!(
        formatted(&s, "2025-11-01T12:00:00Z", 2),
        ["2025-11-02T05:30:00Z", "2025-11-03T06:30:00Z"]
    );
    // Asked from inside the second pass, the repeated time is not fired again.
    assert_eq!(
        formatted(&s, "2025-11-02T06:10:00Z", 1),
        ["2025-11-03T06:30:00Z"]
    );
}

#[test]
fn interval_like_fires_in_both_passes_and_skips_the_gap() {
    let s = cron("*/30 * * * *", "America/New_York");
    assert_eq!(
        formatted(&s, "2025-11-02T05:00:00Z", 4),
        [
            "2025-11-02T05:30:00Z",
            "2025-11-02T06:00:00Z",
            "2025-11-02T06:30:00Z",
            "2025-11-02T07:00:00Z"
        ]
    );
    assert_eq!(
        formatted(&s, "2025-03-09T06:30:00Z", 2),
        ["2025-03-09T07:00:00Z", "2025-03-09T07:30:00Z"]
    );
}

#[test]
fn apia_missing_day_fires_its_fixed_time_at_the_jump() {
    let s = cron("0 12 * * *", "Pacific/Apia");
    assert_eq!(
        formatted(&s, "2011-12-29T00:00:00Z", 3),
        [
            "2011-12-29T22:00:00Z",
            "2011-12-30T10:00:00Z",
            "2011-12-30T22:00:00Z"
        ]
    );
}

#[test]
fn interval_is_anchored_and_bounded_by_start_and_end() {
    let s = spec(SpecInput {
        every: Some("15m".into()),
        anchor: Some("2025-01-01T00:00:00Z".into()),
        end_at: Some("2025-01-01T01:00:00Z".into()),
        ..Default::default()
    });
    assert_eq!(
        formatted(&s, "2025-01-01T00:07:00Z", 10),
        [
            "2025-01-01T00:15:00Z",
            "2025-01-01T00:30:00Z",
            "2025-01-01T00:45:00Z"
        ]
    );
    let started = spec(SpecInput {
        cron: Some("0 * * * *".into()),
        start_at: Some("2025-01-01T05:00:00Z".into()),
        ..Default::default()
    });
    assert_eq!(
        formatted(&started, "2025-01-01T00:00:00Z", 1),
        ["2025-01-01T05:00:00Z"]
    );
}

#[test]
fn no_occurrence_comes_before_a_start_at_with_microseconds() {
    // Caught by the spec fuzz targets' bounds check: the search began a millisecond before
    // start_at, so an occurrence inside that millisecond but before start_at was returned.
    let start = "2025-01-01T00:00:10.0005Z";
    for (kind, input) in [
        (
            "every",
            SpecInput {
                every: Some("1s".into()),
                anchor: Some("2025-01-01T00:00:00Z".into()),
                ..Default::default()
            },
        ),
        (
            "cron",
            SpecInput {
                cron: Some("* * * * *".into()),
                ..Default::default()
            },
        ),
        (
            "once",
            SpecInput {
                once: Some("2025-01-01T00:00:10.0001Z".into()),
                ..Default::default()
            },
        ),
    ] {
        let s = spec(SpecInput {
            start_at: Some(start.into()),
            ..input
        });
        let first = s.next_after(utc("2025-01-01T00:00:00Z"));
        assert!(first.is_none_or(|t| t >= utc(start)), "{kind}: {first:?}");
    }
    // A whole-second start_at is itself an occurrence, as before.
    let whole = spec(SpecInput {
        every: Some("1s".into()),
        anchor: Some("2025-01-01T00:00:00Z".into()),
        start_at: Some("2025-01-01T00:00:10Z".into()),
        ..Default::default()
    });
    assert_eq!(
        whole.next_after(utc("2025-01-01T00:00:00Z")),
        Some(utc("2025-01-01T00:00:10Z"))
    );
}

#[test]
fn interval_without_anchor_uses_start_then_creation() {
    let by_start = spec(SpecInput {
        every: Some("1h".into()),
        start_at: Some("2025-02-01T00:30:00Z".into()),
        ..Default::default()
    });
    assert_eq!(
        formatted(&by_start, "2025-01-01T00:00:00Z", 1),
        ["2025-02-01T00:30:00Z"]
    );
    let by_creation = spec(SpecInput {
        every: Some("1h".into()),
        ..Default::default()
    });
    assert_eq!(
        formatted(&by_creation, "2025-01-01T00:00:00Z", 1),
        ["2025-01-01T01:00:00Z"]
    );
}

#[test]
fn once_fires_once() {
    let s = spec(SpecInput {
        once: Some("2025-06-01T12:00:00+02:00".into()),
        ..Default::default()
    });
    assert_eq!(
        formatted(&s, "2025-01-01T00:00:00Z", 5),
        ["2025-06-01T10:00:00Z"]
    );
}

#[test]
fn errors_name_the_field() {
    let field_of = |input: SpecInput| {
        Spec::parse(&input, utc("2025-01-01T00:00:00Z"))
            .unwrap_err()
            .field
    };
    let cron = |c: &str| SpecInput {
        cron: Some(c.into()),
        ..Default::default()
    };
    assert_eq!(
        field_of(SpecInput {
            tz: Some("Mars/Olympus".into()),
            ..cron("* * * * *")
        }),
        "tz"
    );
    assert_eq!(field_of(cron("0 0 0 * * *")), "cron");
    assert_eq!(field_of(cron("0 0 30 2 *")), "cron");
    assert_eq!(
        field_of(SpecInput {
            every: Some("0s".into()),
            ..Default::default()
        }),
        "every"
    );
    assert_eq!(field_of(SpecInput::default()), "spec");
    assert_eq!(
        field_of(SpecInput {
            every: Some("1m".into()),
            ..cron("* * * * *")
        }),
        "spec"
    );
    assert_eq!(
        field_of(SpecInput {
            once: Some("tomorrow".into()),
            ..Default::default()
        }),
        "once"
    );
    assert_eq!(
        field_of(SpecInput {
            anchor: Some("2025-01-01T00:00:00Z".into()),
            ..cron("* * * * *")
        }),
        "anchor"
    );
    assert_eq!(
        field_of(SpecInput {
            start_at: Some("2025-02-01T00:00:00Z".into()),
            end_at: Some("2025-01-01T00:00:00Z".into()),
            ..cron("* * * * *")
        }),
        "end_at"
    );
}

/// Every search ends, stays strictly increasing, and never panics: a deterministic sweep over
/// zones with odd offsets and histories, expressions of both classes, and instants from 1900 to
/// the end of the search range.
#[test]
fn searches_terminate_and_increase_everywhere() {
    let zones = [
        "UTC",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kathmandu",
        "America/Santiago",
        "Pacific/Apia",
        "Pacific/Kiritimati",
        "Europe/Dublin",
        "Africa/Casablanca",
        "America/St_Johns",
        "Antarctica/Troll",
        "Asia/Tehran",
        "Pacific/Chatham",
    ];
    let exprs = [
        "* * * * *",
        "*/7 * * * *",
        "30 2 * * *",
        "0 0 29 2 *",
        "0 0 13 * 5",
        "59 23 31 12 *",
        "0,30 0-3 * * 0",
        "15 1,2 * * *",
        "0 0 1 1 *",
    ];
    let starts = [
        "1900-01-01T00:00:00Z",
        "1970-01-01T00:00:00Z",
        "2011-12-29T09:59:59Z",
        "2025-03-09T06:59:00Z",
        "2025-11-02T05:59:59Z",
        "2038-01-19T03:14:07Z",
        "9999-12-31T23:59:00Z",
    ];
    let mut total = 0;
    for zone in zones {
        for expr in exprs {
            for dialect_is_cron in [true, false] {
                let input = SpecInput {
                    tz: Some(zone.into()),
                    cron: dialect_is_cron.then(|| expr.into()),
                    crontab: (!dialect_is_cron).then(|| expr.into()),
                    ..Default::default()
                };
                let s = Spec::parse(&input, utc("2025-01-01T00:00:00Z")).unwrap();
                for start in starts {
                    let got = s.upcoming(utc(start), 20);
                    let mut prev = utc(start);
                    for t in got {
                        assert!(t > prev, "{zone} {expr} after {start}: {t} <= {prev}");
                        prev = t;
                        total += 1;
                    }
                }
            }
        }
    }
    assert!(
        total > 10_000,
        "the sweep produced only {total} occurrences"
    );
}

#[test]
fn nothing_is_returned_past_the_end_of_year_9999() {
    let input = SpecInput {
        every: Some("1s".into()),
        anchor: Some("9999-12-31T23:59:58Z".into()),
        ..Default::default()
    };
    let spec = Spec::parse(&input, utc("2025-01-01T00:00:00Z")).unwrap();
    assert_eq!(
        spec.upcoming(utc("2025-01-01T00:00:00Z"), 5),
        vec![utc("9999-12-31T23:59:58Z"), utc("9999-12-31T23:59:59Z")]
    );
    let yearly = Spec::parse(
        &SpecInput {
            cron: Some("0 0 1 1 *".into()),
            ..Default::default()
        },
        utc("2025-01-01T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(yearly.next_after(utc("9999-06-01T00:00:00Z")), None);
}
