//! Celery message encoding cost: `cargo bench --bench celery`.

use std::hint::black_box;

use belfry::celery::{Encoder, Expires, KombuLayout, Occurrence, TaskOptions};
use chrono::{DateTime, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use uuid::Uuid;

fn encode(c: &mut Criterion) {
    let encoder = Encoder {
        origin: "belfry-1@host".into(),
        layout: KombuLayout::default(),
    };
    let args = vec![
        json!(42),
        json!("report-2025"),
        json!({"region": "eu", "ids": [1, 2, 3]}),
    ];
    let kwargs = json!({"dry_run": false, "owner": "ops"})
        .as_object()
        .unwrap()
        .clone();
    let options = TaskOptions {
        queue: Some("reports".into()),
        priority: Some(5),
        expires: Some(Expires::AfterSeconds(300.0)),
        ..Default::default()
    };
    let scheduled_at: DateTime<Utc> = DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .unwrap()
        .to_utc();
    let mut n: u128 = 0;
    c.bench_function("encode/typical message", |b| {
        b.iter(|| {
            n += 1;
            let occurrence = Occurrence {
                task: "reports.build",
                task_id: Uuid::from_u128(n),
                args: &args,
                kwargs: &kwargs,
                schedule: "nightly-reports",
                scheduled_at,
                trigger: belfry::celery::Trigger::Schedule,
            };
            black_box(encoder.encode(black_box(&occurrence), &options).unwrap())
        })
    });
}

criterion_group!(benches, encode);
criterion_main!(benches);
