//! API request conversion: protobuf bytes of `CreateScheduleRequest`, `UpdateScheduleRequest`
//! or `ApplySchedulesRequest` decoded as tonic does, converted and validated as the schedules
//! service does; every accepted definition must pass `check_accepted`.
//!
//! Input: one byte choosing the message, then its protobuf encoding.

use std::collections::BTreeSet;

use belfry::api::pb;
use belfry::api::{convert_def, schedule_def};
use belfry::state::validate::validate_def;
use prost::Message;

use super::{check_accepted, now, Target, Violation};
use crate::defs::{arbitrary_def, DefOptions};
use crate::mutate::{mutated, EDGE_NUMBERS};
use crate::rng::Rng;

pub struct ApiRequest;

/// How many definitions of one `ApplySchedules` go through `check_accepted` (the rest are
/// still converted and validated): the check is the costly part and they are all alike.
const CHECKED_PER_APPLY: usize = 8;

const CREATE: u8 = 0;
const UPDATE: u8 = 1;
const APPLY: u8 = 2;

fn framed(kind: u8, message: &impl Message) -> Vec<u8> {
    let mut bytes = vec![kind];
    message.encode(&mut bytes).unwrap_or_default();
    bytes
}

/// A request of `kind` carrying `specs`.
fn request(kind: u8, mut specs: Vec<pb::ScheduleSpec>, rng: &mut Rng) -> Vec<u8> {
    match kind {
        CREATE => framed(
            CREATE,
            &pb::CreateScheduleRequest {
                schedule: specs.pop(),
            },
        ),
        UPDATE => framed(
            UPDATE,
            &pb::UpdateScheduleRequest {
                schedule: specs.pop(),
                expected_revision: rng.chance(1, 2).then(|| rng.next_u64() % 5),
            },
        ),
        _ => framed(
            APPLY,
            &pb::ApplySchedulesRequest {
                schedules: specs,
                prune: rng.chance(1, 2),
                prune_selector: [("team".to_string(), "data".to_string())].into(),
            },
        ),
    }
}

/// Text fields of a request mutated with the spec and JSON dictionaries.
fn mutate_text(rng: &mut Rng, text: &mut String, dictionary: &[&str]) {
    let bytes = mutated(rng, &[text.clone().into_bytes()], dictionary);
    *text = String::from_utf8_lossy(&bytes).into_owned();
}

/// One field of `spec` changed in a way protobuf byte flips rarely manage.
fn mutate_spec(rng: &mut Rng, spec: &mut pb::ScheduleSpec) {
    const DICTIONARY: &[&str] = &[
        "*",
        "*/",
        "mon-fri",
        "L",
        "60",
        "1s",
        "100000w",
        "T",
        "Z",
        ":60",
        "[",
        "{",
        "\"",
        "]",
        "}",
        "{\"a\":",
        "null",
        "1e400",
        "-0",
        "Europe/Paris",
        "belfry_",
        "id",
        "eta",
    ];
    let timing = spec.spec.get_or_insert_with(Default::default);
    let options = spec.options.get_or_insert_with(Default::default);
    let catchup = spec.catchup.get_or_insert_with(Default::default);
    match rng.below(16) {
        0 => mutate_text(rng, &mut spec.name, DICTIONARY),
        1 => mutate_text(rng, &mut spec.task, DICTIONARY),
        2 => mutate_text(rng, &mut timing.every, DICTIONARY),
        3 => mutate_text(rng, &mut timing.cron, DICTIONARY),
        4 => mutate_text(rng, &mut timing.crontab, DICTIONARY),
        5 => mutate_text(rng, &mut timing.once, DICTIONARY),
        6 => mutate_text(rng, &mut timing.timezone, DICTIONARY),
        7 => mutate_text(rng, &mut timing.start_at, DICTIONARY),
        8 => mutate_text(rng, &mut spec.args_json, DICTIONARY),
        9 => mutate_text(rng, &mut spec.kwargs_json, DICTIONARY),
        10 => mutate_text(rng, &mut options.headers_json, DICTIONARY),
        11 => mutate_text(rng, &mut options.expires_at, DICTIONARY),
        12 => {
            let number: f64 = rng.pick(EDGE_NUMBERS).parse().unwrap_or(f64::NAN);
            match rng.below(3) {
                0 => options.expires_after_seconds = Some(number),
                1 => options.time_limit = Some(number),
                _ => options.soft_time_limit = Some(number),
            }
        }
        13 => {
            catchup.window_seconds = *rng.pick(&[0, 1, u64::MAX, i64::MAX as u64, 1 << 40]);
            catchup.rule = rng.between(-2, 5) as i32;
        }
        14 => options.priority = Some(*rng.pick(&[0, 9, 10, 255, 256, u32::MAX])),
        _ => {
            let depth = 1 + rng.below(200);
            spec.args_json = format!("[{}1{}]", "[".repeat(depth), "]".repeat(depth));
        }
    }
}

impl Target for ApiRequest {
    fn name(&self) -> &'static str {
        "api"
    }

    fn about(&self) -> &'static str {
        "Create/Update/ApplySchedules requests: protobuf decoding, conversion, validation"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let mut rng = Rng::new(14);
        (0..24)
            .map(|i| {
                let specs = (0..1 + i % 3)
                    .map(|j| convert_def(&arbitrary_def(&mut rng, j, &DefOptions::default())))
                    .collect();
                request((i % 3) as u8, specs, &mut rng)
            })
            .collect()
    }

    fn dictionary(&self) -> &'static [&'static str] {
        &[
            "\n",
            "\x12",
            "\x1a",
            "\x22",
            "\x08",
            "\x0a\x00",
            "\u{ff}\u{ff}\u{ff}\u{ff}\u{f}",
        ]
    }

    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        if rng.chance(1, 3) {
            return mutated(rng, corpus, self.dictionary());
        }
        let count = 1 + rng.below(3);
        let specs = (0..count)
            .map(|i| {
                let mut spec = convert_def(&arbitrary_def(rng, i, &DefOptions::default()));
                for _ in 0..1 + rng.below(3) {
                    mutate_spec(rng, &mut spec);
                }
                spec
            })
            .collect();
        let kind = rng.below(3) as u8;
        request(kind, specs, rng)
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let Some((kind, body)) = input.split_first() else {
            return Ok(());
        };
        let specs = match kind % 3 {
            CREATE => pb::CreateScheduleRequest::decode(body)
                .ok()
                .and_then(|r| r.schedule)
                .into_iter()
                .collect(),
            UPDATE => pb::UpdateScheduleRequest::decode(body)
                .ok()
                .and_then(|r| r.schedule)
                .into_iter()
                .collect(),
            _ => pb::ApplySchedulesRequest::decode(body)
                .map(|r| r.schedules)
                .unwrap_or_default(),
        };
        let mut names = BTreeSet::new();
        for (i, spec) in specs.iter().enumerate() {
            let Ok(def) = schedule_def(spec) else {
                continue;
            };
            if validate_def(&def, now()).is_err() || !names.insert(def.name.clone()) {
                continue;
            }
            if i < CHECKED_PER_APPLY {
                check_accepted(&def)?;
            }
        }
        Ok(())
    }
}
