//! Next-occurrence cost for each spec kind: `cargo bench --bench schedule`.

use std::hint::black_box;

use belfry::schedule::{parse_instant, SolarInput, Spec, SpecInput};
use chrono::Duration;
use criterion::{criterion_group, criterion_main, Criterion};

fn spec(input: SpecInput) -> Spec {
    Spec::parse(
        &input,
        parse_instant("created", "2025-01-01T00:00:00Z").unwrap(),
    )
    .unwrap()
}

fn next_occurrence(c: &mut Criterion) {
    let cases = [
        (
            "interval 15m",
            SpecInput {
                every: Some("15m".into()),
                ..Default::default()
            },
        ),
        (
            "cron */15 New_York",
            SpecInput {
                cron: Some("*/15 * * * *".into()),
                tz: Some("America/New_York".into()),
                ..Default::default()
            },
        ),
        (
            "cron 30 2 New_York",
            SpecInput {
                cron: Some("30 2 * * *".into()),
                tz: Some("America/New_York".into()),
                ..Default::default()
            },
        ),
        (
            "crontab 0 9 mon-fri Kolkata",
            SpecInput {
                crontab: Some("0 9 * * mon-fri".into()),
                tz: Some("Asia/Kolkata".into()),
                ..Default::default()
            },
        ),
        (
            "cron every minute UTC",
            SpecInput {
                cron: Some("* * * * *".into()),
                ..Default::default()
            },
        ),
        (
            "solar sunset London",
            SpecInput {
                solar: SolarInput {
                    event: Some("sunset".into()),
                    latitude: Some(51.5),
                    longitude: Some(-0.12),
                }
                .into(),
                ..Default::default()
            },
        ),
        (
            "solar sunset 78N (no sunset for months)",
            SpecInput {
                solar: SolarInput {
                    event: Some("sunset".into()),
                    latitude: Some(78.0),
                    longitude: Some(15.6),
                }
                .into(),
                ..Default::default()
            },
        ),
    ];
    let start = parse_instant("after", "2025-03-01T00:00:00Z").unwrap();
    for (name, input) in cases {
        let spec = spec(input);
        let mut after = start;
        c.bench_function(&format!("next_after/{name}"), |b| {
            b.iter(|| {
                // Walk forward so the measurement covers many different instants, DST included.
                after = match spec.next_after(black_box(after)) {
                    Some(next) if next < start + Duration::days(366) => next,
                    _ => start,
                };
                after
            })
        });
    }
}

criterion_group!(benches, next_occurrence);
criterion_main!(benches);
