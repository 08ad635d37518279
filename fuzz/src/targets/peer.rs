//! Peer payloads: the JSON of AppendEntries, Vote and InstallSnapshot requests, decoded as the
//! peer service does. Every input is offered to all three decoders. Commands an AppendEntries
//! carries are applied, and a whole snapshot an InstallSnapshot carries is loaded as
//! `install_snapshot` loads it.

use belfry::raft::Applied;
use belfry::raft::TypeConfig;
use belfry::state::Command;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, SnapshotMeta};
use openraft::{StoredMembership, Vote};

use super::{apply_anywhere, entry, now, sample, Target, Violation};
use crate::codec;
use crate::defs::{arbitrary_defs, DefOptions};
use crate::json::{mutated_json, JSON_KEYS};
use crate::rng::Rng;

pub struct PeerPayload;

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn membership() -> Membership<u64, BasicNode> {
    let nodes = (1..=3).map(|id| (id, BasicNode::new(format!("n{id}:7400"))));
    Membership::new(
        vec![[1, 2, 3].into()],
        nodes.collect::<std::collections::BTreeMap<_, _>>(),
    )
}

/// A snapshot's data as `install_snapshot` reads it: the serialized `Applied`.
fn snapshot_data() -> Vec<u8> {
    let data = sample().clone();
    let applied = Applied {
        last_applied: Some(log_id(2, 10)),
        membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
        data,
    };
    serde_json::to_vec(&applied).unwrap_or_default()
}

impl Target for PeerPayload {
    fn name(&self) -> &'static str {
        "peer"
    }

    fn about(&self) -> &'static str {
        "peer payloads: AppendEntries, Vote and InstallSnapshot request JSON"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let defs = arbitrary_defs(
            6,
            3,
            &DefOptions {
                numeric_expires: false,
                ..Default::default()
            },
        );
        let mut entries: Vec<_> = defs
            .iter()
            .enumerate()
            .map(|(i, def)| entry(5 + i as u64, super::put(def)))
            .collect();
        entries.push(belfry::raft::Entry {
            log_id: log_id(3, 8),
            payload: EntryPayload::Membership(membership()),
        });
        entries.push(belfry::raft::Entry {
            log_id: log_id(3, 9),
            payload: EntryPayload::Blank,
        });
        let append = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: Some(log_id(3, 4)),
            entries,
            leader_commit: Some(log_id(3, 4)),
        };
        let heartbeat = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            prev_log_id: None,
            entries: Vec::new(),
            leader_commit: None,
        };
        let vote = VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 9)));
        let install = InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(2, 10)),
                last_membership: StoredMembership::new(Some(log_id(1, 1)), membership()),
                snapshot_id: "2-1-10-1".into(),
            },
            offset: 0,
            data: snapshot_data(),
            done: true,
        };
        [
            codec::encode_peer(&append),
            codec::encode_peer(&heartbeat),
            codec::encode_peer(&vote),
            codec::encode_peer(&install),
        ]
        .into_iter()
        .filter_map(Result::ok)
        .collect()
    }

    fn dictionary(&self) -> &'static [&'static str] {
        JSON_KEYS
    }

    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        mutated_json(rng, corpus, self.dictionary())
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        if let Ok(rpc) = codec::decode_append_entries(input) {
            for entry in &rpc.entries {
                if let EntryPayload::Normal(command) = &entry.payload {
                    apply_anywhere(sample(), command);
                }
            }
        }
        let _ = codec::decode_vote_request(input);
        if let Ok(rpc) = codec::decode_install_snapshot(input) {
            if rpc.offset == 0 {
                if let Ok(mut applied) = serde_json::from_slice::<Applied>(&rpc.data) {
                    applied.data.rebuild_indexes();
                    applied.data.apply(&Command::Ack {
                        task_ids: applied.data.outbox().keys().copied().collect(),
                        already_sent: Vec::new(),
                        at: now(),
                    });
                }
            }
        }
        Ok(())
    }
}
