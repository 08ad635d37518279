//! Log entries and log meta values read back from disk: the entry JSON the log store writes,
//! the stored vote and the committed/purged log ids. A decoded command is applied to a state
//! (apply must never panic), and a decoded entry must encode to bytes that decode to itself:
//! the log store writes what it was given.

use belfry::state::{Command, FireItem, SkipItem, SkipReason};
use openraft::{EntryPayload, Vote};
use uuid::Uuid;

use super::{apply_anywhere, entry, now, sample, Target, Violation, SAMPLE_INCARNATION};
use crate::codec;
use crate::defs::{arbitrary_defs, DefOptions};
use crate::json::{mutated_json, JSON_KEYS};
use crate::rng::Rng;

pub struct LogEntry;

impl Target for LogEntry {
    fn name(&self) -> &'static str {
        "log_entry"
    }

    fn about(&self) -> &'static str {
        "log entries, vote and log ids as read back from the redb log"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let defs = arbitrary_defs(
            7,
            4,
            &DefOptions {
                numeric_expires: false,
                ..Default::default()
            },
        );
        let at = now();
        let mut commands: Vec<Command> = defs.iter().map(super::put).collect();
        commands.extend([
            Command::Delete {
                name: "a".into(),
                expected_revision: Some(1),
                at,
            },
            Command::SetEnabled {
                name: "b".into(),
                enabled: false,
                at,
            },
            Command::Fire {
                faults: Vec::new(),
                fires: vec![FireItem {
                    schedule: "a".into(),
                    incarnation: SAMPLE_INCARNATION,
                    scheduled_at: at + chrono::Duration::seconds(2),
                    task_id: Uuid::from_u128(3),
                    manual: false,
                    backfill: false,
                }],
                skips: vec![SkipItem {
                    schedule: "b".into(),
                    incarnation: SAMPLE_INCARNATION,
                    scheduled_at: at,
                    reason: SkipReason::OutsideCatchupWindow,
                    count: 4,
                    cause: None,
                }],
                at,
            },
            Command::Ack {
                task_ids: vec![SAMPLE_INCARNATION],
                already_sent: vec![Uuid::from_u128(3)],
                at,
            },
            Command::Batch(defs.iter().skip(2).map(super::put).collect()),
        ]);
        let mut corpus: Vec<Vec<u8>> = commands
            .into_iter()
            .enumerate()
            .filter_map(|(i, command)| codec::encode_entry(&entry(i as u64 + 1, command)).ok())
            .collect();
        corpus.extend(
            [
                serde_json::to_vec(&Vote::<u64>::new_committed(3, 1)),
                serde_json::to_vec(&Vote::<u64>::new(4, 2)),
                serde_json::to_vec(&Some(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(3, 1),
                    9,
                ))),
            ]
            .into_iter()
            .filter_map(Result::ok),
        );
        corpus
    }

    fn dictionary(&self) -> &'static [&'static str] {
        JSON_KEYS
    }

    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        mutated_json(rng, corpus, self.dictionary())
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let _ = codec::decode_vote(input);
        let _ = codec::decode_log_id(input);
        let Ok(entry) = codec::decode_entry(input) else {
            return Ok(());
        };
        let again = codec::encode_entry(&entry)
            .and_then(|bytes| codec::decode_entry(&bytes))
            .map_err(|e| Violation::new(format!("a decoded entry does not decode again: {e}")))?;
        if again != entry {
            return Err(Violation::new("a decoded entry changed when written again"));
        }
        if let EntryPayload::Normal(command) = &entry.payload {
            apply_anywhere(sample(), command);
        }
        Ok(())
    }
}
