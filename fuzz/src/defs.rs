//! Arbitrary valid schedule definitions covering every field, option and variant: each spec
//! kind with and without a zone and bounds, every Celery option (`expires` as seconds and as an
//! instant), headers, labels, catch-up rules, and args/kwargs with nested JSON, big integers
//! and odd strings. The fuzz targets take their seed corpora from here and the round-trip
//! property test its cases.

use std::sync::Arc;

use belfry::celery::{Expires, TaskOptions};
use belfry::schedule::{SolarInput, SpecInput};
use belfry::state::control::{Overlap, RunControl};
use belfry::state::{CatchupPolicy, CatchupRule, Labels, ScheduleDef};
use chrono::{DateTime, Offset, TimeZone, Utc};
use serde_json::{Map, Number, Value};

use crate::rng::Rng;

/// What the generator may produce.
#[derive(Clone, Copy, Debug)]
pub struct DefOptions {
    /// `options.expires` as a number of seconds (`Expires::AfterSeconds`).
    pub numeric_expires: bool,
    /// The deepest nesting of args, kwargs and header values.
    pub max_json_depth: usize,
}

impl Default for DefOptions {
    fn default() -> Self {
        DefOptions {
            numeric_expires: true,
            max_json_depth: 12,
        }
    }
}

pub const ZONES: &[&str] = &[
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "Asia/Kathmandu",
    "America/St_Johns",
    "Antarctica/Troll",
];

pub const CRONS: &[&str] = &[
    "*/5 * * * *",
    "0 9 * * mon-fri",
    "30 2 * * *",
    "0 8,20 * * *",
    "0 0 1 * *",
    "15 10 * * 0",
    "0 9-17/2 * jan,jul *",
    "59 23 31 12 *",
    "0 0 29 2 *",
    "* * * * *",
    "0 0 13 * 5",
    "5-10 0 1-7 * 1",
];

pub const EVERIES: &[&str] = &["1s", "90", "15m", "1h30m", "2d", "1w", "3600s", "52w"];

/// An instant between 2020 and 2090 (whole seconds, or with milliseconds).
pub fn instant(rng: &mut Rng) -> DateTime<Utc> {
    let secs = rng.between(1_577_836_800, 3_786_912_000);
    let millis = if rng.chance(1, 3) {
        rng.between(1, 999)
    } else {
        0
    };
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default() + chrono::Duration::milliseconds(millis)
}

fn rfc3339(rng: &mut Rng, at: DateTime<Utc>) -> String {
    match rng.below(3) {
        0 => at.to_rfc3339(),
        1 => at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        _ => at
            .with_timezone(&chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap_or(Utc.fix()))
            .to_rfc3339(),
    }
}

fn spec(rng: &mut Rng) -> SpecInput {
    let mut spec = SpecInput::default();
    match rng.below(5) {
        0 => {
            spec.every = Some(rng.pick(EVERIES).to_string().into());
            if rng.chance(1, 2) {
                let at = instant(rng);
                spec.anchor = Some(rfc3339(rng, at).into());
            }
        }
        1 => spec.cron = Some(rng.pick(CRONS).to_string().into()),
        2 => spec.crontab = Some(rng.pick(CRONS).to_string().into()),
        3 => {
            let at = instant(rng);
            spec.once = Some(rfc3339(rng, at).into());
        }
        _ => {
            let event = rng.pick(&belfry::schedule::SolarEvent::ALL);
            spec.solar = SolarInput {
                event: Some(event.name().into()),
                latitude: Some(rng.between(-90_000, 90_000) as f64 / 1000.0),
                longitude: Some(rng.between(-180_000, 180_000) as f64 / 1000.0),
            }
            .into();
        }
    }
    // A zone does not apply to solar events (refused with them).
    if rng.chance(2, 3) && spec.solar.event.is_none() {
        spec.tz = Some(rng.pick(ZONES).to_string().into());
    }
    if rng.chance(1, 3) {
        let start = instant(rng);
        spec.start_at = Some(rfc3339(rng, start).into());
        if rng.chance(1, 2) {
            let end = start + chrono::Duration::seconds(rng.between(1, 400_000_000));
            spec.end_at = Some(rfc3339(rng, end).into());
        }
    } else if rng.chance(1, 4) {
        let end = instant(rng);
        spec.end_at = Some(rfc3339(rng, end).into());
    }
    spec
}

const STRINGS: &[&str] = &[
    "",
    "report",
    "ünïcødé ☃",
    "quote \" and backslash \\",
    "line\nbreak\ttab",
    "\u{0}nul",
    "\u{1f600}",
    "{\"json\": \"in a string\"}",
    "2025-01-01T00:00:00Z",
];

const BIG_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "9007199254740993",
    "18446744073709551616",
    "-170141183460469231731687303715884105729",
    "123456789012345678901234567890123456789",
    "3.141592653589793",
    "1e300",
    "-2.5e-8",
    "1.0",
];

/// A JSON value at most `depth` levels deep.
pub fn json_value(rng: &mut Rng, depth: usize) -> Value {
    let leaf = depth <= 1 || rng.chance(1, 2);
    if leaf {
        return match rng.below(6) {
            0 => Value::Null,
            1 => Value::Bool(rng.chance(1, 2)),
            2 => Value::from(rng.between(-1_000_000, 1_000_000)),
            3 => serde_json::from_str::<Number>(rng.pick::<&str>(BIG_NUMBERS))
                .map_or(Value::Null, Value::Number),
            _ => Value::String(rng.pick(STRINGS).to_string()),
        };
    }
    if rng.chance(1, 2) {
        Value::Array(
            (0..rng.below(4))
                .map(|_| json_value(rng, depth - 1))
                .collect(),
        )
    } else {
        Value::Object(json_map(rng, depth - 1, 4))
    }
}

fn json_map(rng: &mut Rng, depth: usize, most: usize) -> Map<String, Value> {
    (0..rng.below(most + 1))
        .map(|i| {
            let key = format!("{}{i}", rng.pick(&["k", "kw_", "ключ", "x y", ""]));
            (key, json_value(rng, depth))
        })
        .collect()
}

/// A value nested exactly `depth` levels (arrays and objects alternating).
pub fn deep_value(depth: usize) -> Value {
    let mut value = Value::from("bottom");
    for level in 0..depth {
        value = if level % 2 == 0 {
            Value::Array(vec![value])
        } else {
            let mut map = Map::new();
            map.insert("k".into(), value);
            Value::Object(map)
        };
    }
    value
}

fn options(rng: &mut Rng, choice: &DefOptions) -> TaskOptions {
    let mut options = TaskOptions::default();
    if rng.chance(1, 4) {
        return options;
    }
    let queue = format!(
        "{}{}",
        rng.pick(&["reports", "q", "celery", "high.prio", "a:b/c"]),
        rng.below(3)
    );
    match rng.below(3) {
        0 => options.queue = Some(queue),
        1 => options.routing_key = Some(queue),
        _ => {
            options.queue = Some(queue.clone());
            options.routing_key = Some(queue);
        }
    }
    if rng.chance(1, 2) {
        options.priority = Some(rng.below(10) as u8);
    }
    let seconds = |rng: &mut Rng| match rng.below(3) {
        0 => rng.between(1, 86_400) as f64,
        1 => rng.between(1, 1_000_000) as f64 / 1000.0,
        _ => *rng.pick(&[0.001, 1e-9, 1e12, 3600.0, 2.5]),
    };
    // Expiries are bounded (a hundred years); time limits are not.
    let expiry = |rng: &mut Rng| match seconds(rng) {
        s if s > belfry::celery::MAX_EXPIRES_SECONDS => belfry::celery::MAX_EXPIRES_SECONDS,
        s => s,
    };
    options.expires = match rng.below(3) {
        0 if choice.numeric_expires => Some(Expires::AfterSeconds(expiry(rng))),
        0 | 1 => Some(Expires::At(instant(rng))),
        _ => None,
    };
    if rng.chance(1, 2) {
        options.headers = json_map(rng, choice.max_json_depth, 3)
            .into_iter()
            .map(|(k, v)| (format!("x-{k}"), v))
            .collect();
    }
    if rng.chance(1, 2) {
        options.time_limit = Some(seconds(rng));
    }
    if rng.chance(1, 2) {
        options.soft_time_limit = Some(seconds(rng));
    }
    if rng.chance(1, 3) {
        options.ignore_result = Some(rng.chance(1, 2));
    }
    options
}

fn labels(rng: &mut Rng) -> Labels {
    (0..rng.below(5))
        .map(|i| {
            let key = format!("{}{i}", rng.pick(&["team", "belfry.io/source", "env", "ü"]));
            let value = rng.pick(&["", "data", "prod", "file", "a b c"]).to_string();
            (key, value)
        })
        .collect()
}

fn name(rng: &mut Rng, index: usize) -> String {
    let stem = rng.pick(&["report", "a", "nightly.cleanup", "team-x:job/1", "X_Y"]);
    format!("{stem}-{index}")
}

/// Run control, absent from most definitions; always within the limits.
fn control(rng: &mut Rng) -> Option<Box<RunControl>> {
    if rng.chance(3, 4) {
        return None;
    }
    let overlap = *rng.pick(&[Overlap::Allow, Overlap::Skip, Overlap::BufferOne]);
    let limits = overlap != Overlap::Allow;
    Some(Box::new(RunControl {
        overlap,
        max_concurrent: (limits && rng.chance(1, 2)).then(|| rng.between(1, 1_000) as u32),
        max_runtime_secs: (limits && rng.chance(1, 2)).then(|| rng.between(1, 86_400) as u64),
        pause_after_failures: rng.chance(1, 2).then(|| rng.between(1, 10_000) as u32),
        jitter_ms: rng.chance(1, 2).then(|| rng.between(1, 86_400_000) as u64),
        max_runs: rng.chance(1, 2).then(|| rng.between(1, 1_000_000) as u64),
    }))
}

/// A valid definition; `index` makes its name unique within a set.
pub fn arbitrary_def(rng: &mut Rng, index: usize, choice: &DefOptions) -> ScheduleDef {
    let depth = choice.max_json_depth;
    ScheduleDef {
        name: Arc::from(name(rng, index)),
        task: rng
            .pick(&["tasks.report", "app.tasks.cleanup", "t", "ünï.task"])
            .to_string()
            .into(),
        spec: spec(rng),
        args: (0..rng.below(5)).map(|_| json_value(rng, depth)).collect(),
        kwargs: json_map(rng, depth, 4),
        options: options(rng, choice).into(),
        catchup: CatchupPolicy {
            rule: *rng.pick(&[CatchupRule::All, CatchupRule::Latest, CatchupRule::None]),
            window_secs: match rng.below(3) {
                0 => 3600,
                1 => rng.between(1, 86_400) as u64,
                _ => rng.between(1, 30 * 86_400) as u64,
            },
        },
        enabled: rng.chance(3, 4),
        labels: labels(rng),
        description: rng.pick(STRINGS).repeat(rng.below(4)).into(),
        last_run_at: None,
        control: control(rng),
    }
}

/// `count` valid definitions from `seed`, with unique names.
pub fn arbitrary_defs(seed: u64, count: usize, choice: &DefOptions) -> Vec<ScheduleDef> {
    let mut rng = Rng::new(seed);
    (0..count)
        .map(|i| arbitrary_def(&mut rng, i, choice))
        .collect()
}
