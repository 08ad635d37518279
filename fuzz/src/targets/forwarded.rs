//! Forwarded calls: the JSON a follower sends the leader, decoded as the forward handler does,
//! its deadline checked, and its write turned into the commands the leader would commit and
//! applied. Definitions that pass validation must pass `check_accepted`; others must still
//! apply without panicking (forwarded writes reach apply whatever they hold).

use std::collections::BTreeMap;

use belfry::api::control::{Forwarded, LeaderRequest, WriteOp};
use belfry::state::{Command, FireItem};
use chrono::Utc;
use uuid::Uuid;

use super::{apply_anywhere, check_def, now, sample, Target, Violation, SAMPLE_INCARNATION};
use crate::codec;
use crate::defs::{arbitrary_defs, DefOptions};
use crate::json::{mutated_json, JSON_KEYS};
use crate::rng::Rng;

pub struct ForwardedCall;

/// The commands the leader commits for `op` (its revision reads left out: they only choose
/// `expected_revision`).
fn commands(op: &WriteOp) -> Vec<Command> {
    let at = now();
    match op {
        WriteOp::Create { def, incarnation } => vec![Command::Put {
            def: def.clone(),
            expected_revision: Some(0),
            incarnation: *incarnation,
            at,
        }],
        WriteOp::Update {
            def,
            expected_revision,
            ..
        } => vec![Command::Put {
            def: def.clone(),
            expected_revision: Some(expected_revision.unwrap_or(1)),
            incarnation: Uuid::nil(),
            at,
        }],
        WriteOp::Delete {
            name,
            expected_revision,
        } => vec![Command::Delete {
            name: name.clone(),
            expected_revision: *expected_revision,
            at,
        }],
        WriteOp::SetEnabled { name, enabled } => vec![Command::SetEnabled {
            name: name.clone(),
            enabled: *enabled,
            at,
        }],
        WriteOp::Trigger { name, task_id } => vec![Command::Fire {
            faults: Vec::new(),
            fires: vec![FireItem {
                schedule: name.clone(),
                incarnation: SAMPLE_INCARNATION,
                scheduled_at: at,
                task_id: *task_id,
                manual: true,
                backfill: false,
            }],
            skips: Vec::new(),
            at,
        }],
        WriteOp::Apply {
            defs, incarnations, ..
        } => defs
            .iter()
            .zip(incarnations.iter().chain(std::iter::repeat(&Uuid::nil())))
            .map(|(def, incarnation)| Command::Put {
                def: def.clone(),
                expected_revision: None,
                incarnation: *incarnation,
                at,
            })
            .collect(),
        WriteOp::Backfill(ask) => vec![Command::StartBackfill {
            name: ask.name.clone(),
            incarnation: SAMPLE_INCARNATION,
            job: belfry::state::control::BackfillSpec {
                from: ask.from,
                to: ask.to,
                rate: ask.rate,
                overlap: ask.overlap,
                total: 1,
            },
            at,
        }],
        WriteOp::SkipOccurrences {
            name,
            next,
            instants,
        } => vec![Command::SkipOccurrences {
            name: name.clone(),
            next: *next,
            instants: instants.clone(),
            at,
        }],
        WriteOp::PauseUntil { name, until, note } => vec![Command::PauseUntil {
            name: name.clone(),
            until: *until,
            note: note.clone(),
            at,
        }],
    }
}

fn defs_of(op: &WriteOp) -> Vec<&belfry::state::ScheduleDef> {
    match op {
        WriteOp::Create { def, .. } | WriteOp::Update { def, .. } => vec![def],
        WriteOp::Apply { defs, .. } => defs.iter().take(8).collect(),
        _ => Vec::new(),
    }
}

impl Target for ForwardedCall {
    fn name(&self) -> &'static str {
        "forwarded"
    }

    fn about(&self) -> &'static str {
        "forwarded-call JSON (api::control::Forwarded): decode, deadline, apply its write"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let defs = arbitrary_defs(
            5,
            6,
            &DefOptions {
                numeric_expires: false,
                ..Default::default()
            },
        );
        let write = |op: WriteOp| LeaderRequest::Write(Box::new(op));
        let mut requests = vec![
            write(WriteOp::Create {
                def: defs[0].clone(),
                incarnation: Uuid::from_u128(1),
            }),
            write(WriteOp::Update {
                def: defs[1].clone(),
                keep_enabled: true,
                expected_revision: Some(1),
            }),
            write(WriteOp::Delete {
                name: "a".into(),
                expected_revision: None,
            }),
            write(WriteOp::SetEnabled {
                name: "b".into(),
                enabled: false,
            }),
            write(WriteOp::Trigger {
                name: "a".into(),
                task_id: Uuid::from_u128(2),
            }),
            write(WriteOp::Apply {
                defs: defs[2..].to_vec(),
                prune: true,
                prune_selector: BTreeMap::from([("team".into(), "data".into())]),
                incarnations: (3..7).map(Uuid::from_u128).collect(),
            }),
            LeaderRequest::ReadIndex,
            LeaderRequest::Status,
            LeaderRequest::AddNode {
                node_id: 4,
                address: "d:7400".into(),
                learner_only: false,
            },
            LeaderRequest::RemoveNode { node_id: 2 },
            LeaderRequest::TransferLeader {
                to: Some(2),
                only_if_leader: None,
            },
            LeaderRequest::Elect,
            LeaderRequest::HasState,
        ];
        requests
            .drain(..)
            .filter_map(|request| codec::encode_forwarded(&Forwarded::now(request)).ok())
            .collect()
    }

    fn dictionary(&self) -> &'static [&'static str] {
        JSON_KEYS
    }

    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        mutated_json(rng, corpus, self.dictionary())
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let Ok(forwarded) = codec::decode_forwarded(input) else {
            return Ok(());
        };
        let _ = forwarded.check_deadline(Utc::now());
        let _ = forwarded.check_deadline(now());
        if let LeaderRequest::Write(op) = &forwarded.request {
            for def in defs_of(op) {
                check_def(def)?;
            }
            for command in commands(op) {
                apply_anywhere(sample(), &command);
            }
        }
        Ok(())
    }
}
