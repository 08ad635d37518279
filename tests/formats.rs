//! Golden fixtures of every persisted and inter-node format (`tests/fixtures/formats/v<N>/`),
//! and the proof that this build still reads each of them back to the same values.
//!
//! A fixture is never edited once committed: it is what a released build wrote, and every
//! later build must read it. `write_fixtures` (ignored; run with `BELFRY_FIXTURE_DIR` set)
//! writes the current build's encodings into a new directory when a format gains a version.

// openraft's results carry its large error types; these tests only decode them.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use belfry::api::control::{Forwarded, LeaderRequest, WriteOp};
use belfry::celery::{Expires, TaskOptions};
use belfry::raft::log_store::LogStore;
use belfry::raft::StateMachineStore;
use belfry::raft::{Entry, TypeConfig};
use belfry::schedule::{SolarInput, SpecInput};
use belfry::state::control::{BackfillSpec, OutcomeItem, Overlap, RunControl, TaskState};
use belfry::state::{
    CatchupPolicy, CatchupRule, Command, FireItem, Labels, ScheduleDef, SkipItem, SkipReason,
};
use chrono::{DateTime, TimeZone, Utc};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership, RaftSnapshotBuilder, Vote,
};
use serde_json::json;
use uuid::Uuid;

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_767_225_600 + secs, 0)
        .single()
        .expect("instant")
}

fn uuid(n: u128) -> Uuid {
    Uuid::from_u128(0x0123_4567_89ab_4def_8123_0000_0000_0000 + n)
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// A definition with every field and option set.
fn full_def() -> ScheduleDef {
    let options = TaskOptions {
        queue: Some("reports".into()),
        routing_key: Some("reports".into()),
        priority: Some(3),
        expires: Some(Expires::At(at(86_400))),
        headers: json!({"team": "billing", "attempt": 1})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        time_limit: Some(300.5),
        soft_time_limit: Some(240.0),
        ignore_result: Some(true),
    };
    ScheduleDef {
        name: Arc::from("reports.nightly"),
        task: "reports.tasks.build".into(),
        spec: SpecInput {
            every: Some("90m".into()),
            anchor: Some("2026-01-01T00:00:00Z".into()),
            tz: Some("Europe/Paris".into()),
            start_at: Some("2026-01-01T00:00:00Z".into()),
            end_at: Some("2027-01-01T00:00:00Z".into()),
            ..SpecInput::default()
        },
        args: vec![
            json!(1),
            json!("two"),
            serde_json::from_str("123456789012345678901234567890").expect("big integer"),
            json!({"nested": [true, null, 2.5]}),
        ],
        kwargs: json!({"region": "eu", "limit": 10})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        options: options.into(),
        catchup: CatchupPolicy {
            rule: CatchupRule::Latest,
            window_secs: 7200,
        },
        enabled: false,
        labels: Labels::from([
            ("team".to_string(), "billing".to_string()),
            ("tier".to_string(), "gold".to_string()),
        ]),
        description: "Nightly reports, every option set".into(),
        last_run_at: None,
        control: None,
    }
}

/// A definition with only what is required, for each of the other spec kinds.
fn minimal_def(name: &str, spec: SpecInput) -> ScheduleDef {
    ScheduleDef {
        name: Arc::from(name),
        task: "tasks.ping".into(),
        spec,
        args: Vec::new(),
        kwargs: serde_json::Map::new(),
        options: TaskOptions::default().into(),
        catchup: CatchupPolicy::default(),
        enabled: true,
        labels: Labels::default(),
        description: Default::default(),
        last_run_at: None,
        control: None,
    }
}

fn cron_def() -> ScheduleDef {
    minimal_def(
        "cron.weekdays",
        SpecInput {
            cron: Some("30 2 * * 1-5".into()),
            tz: Some("America/New_York".into()),
            ..SpecInput::default()
        },
    )
}

fn crontab_def() -> ScheduleDef {
    minimal_def(
        "crontab.mondays",
        SpecInput {
            crontab: Some("0 8 * * mon".into()),
            ..SpecInput::default()
        },
    )
}

fn once_def() -> ScheduleDef {
    minimal_def(
        "once.launch",
        SpecInput {
            once: Some("2026-06-01T12:00:00Z".into()),
            ..SpecInput::default()
        },
    )
}

/// One command of every variant (and every field of each), by fixture name.
fn commands() -> Vec<(&'static str, Command)> {
    let fire = Command::Fire {
        fires: vec![
            FireItem {
                schedule: "reports.nightly".into(),
                incarnation: uuid(1),
                scheduled_at: at(5400),
                task_id: uuid(10),
                manual: false,
                backfill: false,
            },
            FireItem {
                schedule: "reports.nightly".into(),
                incarnation: uuid(1),
                scheduled_at: at(5401),
                task_id: uuid(11),
                manual: true,
                backfill: false,
            },
        ],
        skips: [
            SkipReason::OutsideCatchupWindow,
            SkipReason::SupersededByLatest,
            SkipReason::CatchupNone,
            SkipReason::InvalidMessage,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, reason)| SkipItem {
            schedule: "cron.weekdays".into(),
            incarnation: uuid(2),
            scheduled_at: at(i as i64 * 60),
            reason,
            count: i as u64 + 1,
            cause: None,
        })
        .collect(),
        faults: vec![],
        at: at(5400),
    };
    vec![
        (
            "put-full",
            Command::Put {
                def: full_def(),
                expected_revision: Some(4),
                incarnation: uuid(1),
                at: at(1),
            },
        ),
        (
            "put-cron",
            Command::Put {
                def: cron_def(),
                expected_revision: None,
                incarnation: uuid(2),
                at: at(2),
            },
        ),
        (
            "put-crontab",
            Command::Put {
                def: crontab_def(),
                expected_revision: Some(0),
                incarnation: uuid(3),
                at: at(3),
            },
        ),
        (
            "put-once",
            Command::Put {
                def: once_def(),
                expected_revision: None,
                incarnation: uuid(4),
                at: at(4),
            },
        ),
        (
            "delete",
            Command::Delete {
                name: "once.launch".into(),
                expected_revision: Some(1),
                at: at(5),
            },
        ),
        (
            "set-enabled",
            Command::SetEnabled {
                name: "reports.nightly".into(),
                enabled: true,
                at: at(6),
            },
        ),
        ("fire", fire),
        (
            "ack",
            Command::Ack {
                task_ids: vec![uuid(10), uuid(11)],
                already_sent: vec![uuid(11)],
                at: at(5402),
            },
        ),
        (
            "batch",
            Command::Batch(vec![
                Command::Put {
                    def: crontab_def(),
                    expected_revision: None,
                    incarnation: uuid(5),
                    at: at(7),
                },
                Command::Delete {
                    name: "cron.weekdays".into(),
                    expected_revision: None,
                    at: at(7),
                },
            ]),
        ),
    ]
}

fn members() -> BTreeMap<u64, BasicNode> {
    (1..=3)
        .map(|id| {
            (
                id,
                BasicNode {
                    addr: format!("10.0.0.{id}:7070"),
                },
            )
        })
        .collect()
}

/// The log entries of the fixtures, in log order (index 1 onwards).
fn entries() -> Vec<(String, Entry)> {
    let mut entries = vec![
        (
            "entry-membership".to_string(),
            EntryPayload::<TypeConfig>::Membership(Membership::new(
                vec![members().keys().copied().collect()],
                members(),
            )),
        ),
        ("entry-blank".to_string(), EntryPayload::Blank),
    ];
    for (name, command) in commands() {
        entries.push((format!("entry-{name}"), EntryPayload::Normal(command)));
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, (name, payload))| {
            (
                name,
                Entry {
                    log_id: log_id(2, i as u64 + 1),
                    payload,
                },
            )
        })
        .collect()
}

/// What the snapshot fixture holds: two schedules, one with every field set, with runs
/// fired, skipped, delivered and one still in the outbox.
fn snapshot_entries() -> Vec<Entry> {
    let fire = |task: u128, secs: i64, manual: bool| FireItem {
        schedule: "cron.weekdays".into(),
        incarnation: uuid(2),
        scheduled_at: at(secs),
        task_id: uuid(task),
        manual,
        backfill: false,
    };
    let payloads = vec![
        EntryPayload::<TypeConfig>::Membership(Membership::new(
            vec![members().keys().copied().collect()],
            members(),
        )),
        EntryPayload::Normal(Command::Put {
            def: full_def(),
            expected_revision: None,
            incarnation: uuid(1),
            at: at(1),
        }),
        EntryPayload::Normal(Command::Put {
            def: cron_def(),
            expected_revision: None,
            incarnation: uuid(2),
            at: at(2),
        }),
        EntryPayload::Normal(Command::Fire {
            fires: vec![fire(30, 3600, false), fire(31, 7200, false)],
            skips: vec![SkipItem {
                schedule: "cron.weekdays".into(),
                incarnation: uuid(2),
                scheduled_at: at(1800),
                reason: SkipReason::OutsideCatchupWindow,
                count: 2,
                cause: None,
            }],
            faults: vec![],
            at: at(7200),
        }),
        EntryPayload::Normal(Command::Ack {
            task_ids: vec![uuid(30)],
            already_sent: vec![],
            at: at(7201),
        }),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Entry {
            log_id: log_id(2, i as u64 + 1),
            payload,
        })
        .collect()
}

/// One forwarded request of every kind, by fixture name.
fn forwarded() -> Vec<(&'static str, Forwarded)> {
    let requests = vec![
        (
            "forwarded-create",
            LeaderRequest::Write(Box::new(WriteOp::Create {
                def: full_def(),
                incarnation: uuid(1),
            })),
        ),
        (
            "forwarded-update",
            LeaderRequest::Write(Box::new(WriteOp::Update {
                def: cron_def(),
                keep_enabled: true,
                expected_revision: Some(3),
            })),
        ),
        (
            "forwarded-delete",
            LeaderRequest::Write(Box::new(WriteOp::Delete {
                name: "cron.weekdays".into(),
                expected_revision: None,
            })),
        ),
        (
            "forwarded-set-enabled",
            LeaderRequest::Write(Box::new(WriteOp::SetEnabled {
                name: "cron.weekdays".into(),
                enabled: false,
            })),
        ),
        (
            "forwarded-trigger",
            LeaderRequest::Write(Box::new(WriteOp::Trigger {
                name: "reports.nightly".into(),
                task_id: uuid(20),
            })),
        ),
        (
            "forwarded-apply",
            LeaderRequest::Write(Box::new(WriteOp::Apply {
                defs: vec![crontab_def(), once_def()],
                prune: true,
                prune_selector: BTreeMap::from([("team".to_string(), "ops".to_string())]),
                incarnations: vec![uuid(21), uuid(22)],
            })),
        ),
        ("forwarded-read-index", LeaderRequest::ReadIndex),
        ("forwarded-status", LeaderRequest::Status),
        (
            "forwarded-add-node",
            LeaderRequest::AddNode {
                node_id: 4,
                address: "10.0.0.4:7070".into(),
                learner_only: true,
            },
        ),
        (
            "forwarded-remove-node",
            LeaderRequest::RemoveNode { node_id: 3 },
        ),
        (
            "forwarded-transfer-leader",
            LeaderRequest::TransferLeader {
                to: Some(2),
                only_if_leader: Some(1),
            },
        ),
        ("forwarded-elect", LeaderRequest::Elect),
        ("forwarded-has-state", LeaderRequest::HasState),
    ];
    requests
        .into_iter()
        .map(|(name, request)| {
            (
                name,
                Forwarded {
                    format: Forwarded::format_of(&request),
                    request,
                    not_after: at(10),
                },
            )
        })
        .collect()
}

fn fixture_dir(version: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/formats/v{version}"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap_or_else(|e| panic!("writing {name}: {e}"));
}

/// Writes this build's encodings of every fixture into `BELFRY_FIXTURE_DIR`.
#[tokio::test]
#[ignore = "writes fixtures; run by hand when a format gains a version"]
async fn write_fixtures() {
    let dir = PathBuf::from(std::env::var("BELFRY_FIXTURE_DIR").expect("BELFRY_FIXTURE_DIR"));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    for (name, entry) in entries() {
        let bytes = belfry::raft::log_store::encode_entry(&entry).expect("entry");
        write(&dir, &format!("{name}.json"), &bytes);
    }
    // Numeric `expires`, kept apart from the log and snapshot fixtures: see
    // `a_numeric_expires_decodes`.
    let mut def = full_def();
    let mut options = (*def.options).clone();
    options.expires = Some(Expires::AfterSeconds(3600.0));
    def.options = options.into();
    let entry = Entry {
        log_id: log_id(2, 12),
        payload: EntryPayload::Normal(Command::Put {
            def,
            expected_revision: None,
            incarnation: uuid(6),
            at: at(8),
        }),
    };
    write(
        &dir,
        "entry-put-expires-seconds.json",
        &belfry::raft::log_store::encode_entry(&entry).expect("entry"),
    );
    write(
        &dir,
        "vote.json",
        &belfry::formats::label(
            belfry::formats::VOTE,
            &serde_json::to_vec(&Vote::<u64>::new_committed(2, 1)).expect("vote"),
        ),
    );
    for (name, request) in forwarded() {
        write(
            &dir,
            &format!("{name}.json"),
            &serde_json::to_vec(&request).expect("forwarded"),
        );
    }
    write_peer_fixtures(&dir);
    for (name, bytes) in replies() {
        write(&dir, &format!("{name}.json"), &bytes);
    }
    write_stores(&dir).await;
}

/// The replies a leader sends back to a forwarded request, and a peer to a Raft RPC, by
/// fixture name, as JSON.
fn replies() -> Vec<(&'static str, Vec<u8>)> {
    use belfry::api::control::{
        LeaderReply, MemberView, Role, StatusView, TransferView, WriteOutcome, Written,
    };
    use belfry::api::ApiError;
    use openraft::error::{Fatal, InstallSnapshotError, RaftError};
    use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse};
    type Reply = Result<LeaderReply, ApiError>;
    let written = |outcome| {
        Reply::Ok(LeaderReply::Written(Written {
            log_index: 42,
            outcome,
        }))
    };
    let status = StatusView {
        cluster_name: "belfry-fixtures".into(),
        leader_id: 1,
        term: 2,
        commit_index: 40,
        applied_index: 39,
        last_log_index: 41,
        members: vec![
            MemberView {
                id: 1,
                address: "10.0.0.1:7070".into(),
                role: Role::Leader,
                matched_index: 41,
                lag: 0,
            },
            MemberView {
                id: 4,
                address: "10.0.0.4:7070".into(),
                role: Role::Learner,
                matched_index: 30,
                lag: 11,
            },
        ],
        outbox_depth: 3,
        schedules: 2,
    };
    let forwarded: Vec<(&str, Reply)> = vec![
        ("reply-written-revision", written(WriteOutcome::Revision(3))),
        (
            "reply-written-triggered",
            written(WriteOutcome::Triggered {
                task_id: uuid(20),
                scheduled_at: at(9),
            }),
        ),
        (
            "reply-written-applied",
            written(WriteOutcome::Applied {
                created: 1,
                updated: 2,
                unchanged: 3,
                deleted: 4,
            }),
        ),
        ("reply-read-index", Ok(LeaderReply::ReadIndex(41))),
        ("reply-status", Ok(LeaderReply::Status(status))),
        (
            "reply-transferred",
            Ok(LeaderReply::Transferred(TransferView {
                previous_leader: 1,
                new_leader: 2,
                transferred: true,
            })),
        ),
        ("reply-done", Ok(LeaderReply::Done)),
        ("reply-has-state", Ok(LeaderReply::HasState(true))),
        (
            "reply-invalid-argument",
            Err(ApiError::invalid("schedule.every", "must be at least 1s")),
        ),
        (
            "reply-unavailable",
            Err(ApiError::Unavailable("node 2 is not the leader".into())),
        ),
    ];
    let mut replies: Vec<(&'static str, Vec<u8>)> = forwarded
        .into_iter()
        .map(|(name, reply)| (name, serde_json::to_vec(&reply).expect("reply")))
        .collect();
    type AppendReply = Result<AppendEntriesResponse<u64>, RaftError<u64>>;
    let append: Vec<(&str, AppendReply)> = vec![
        (
            "peer-reply-append-success",
            Ok(AppendEntriesResponse::Success),
        ),
        (
            "peer-reply-append-partial",
            Ok(AppendEntriesResponse::PartialSuccess(Some(log_id(2, 5)))),
        ),
        (
            "peer-reply-append-conflict",
            Ok(AppendEntriesResponse::Conflict),
        ),
        (
            "peer-reply-append-higher-vote",
            Ok(AppendEntriesResponse::HigherVote(Vote::new(3, 2))),
        ),
        (
            "peer-reply-append-stopped",
            Err(RaftError::Fatal(Fatal::Stopped)),
        ),
    ];
    for (name, reply) in append {
        replies.push((name, serde_json::to_vec(&reply).expect("reply")));
    }
    let vote: Result<VoteResponse<u64>, RaftError<u64>> = Ok(VoteResponse {
        vote: Vote::new(3, 2),
        vote_granted: true,
        last_log_id: Some(log_id(2, 11)),
    });
    replies.push(("peer-reply-vote", serde_json::to_vec(&vote).expect("reply")));
    let snapshot: Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> =
        Ok(InstallSnapshotResponse {
            vote: Vote::new_committed(2, 1),
        });
    replies.push((
        "peer-reply-install-snapshot",
        serde_json::to_vec(&snapshot).expect("reply"),
    ));
    replies
}

fn write_peer_fixtures(dir: &Path) {
    use belfry::raft::network::proto::PeerRequest;
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    use prost::Message;
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        prev_log_id: Some(log_id(2, 1)),
        entries: entries().into_iter().skip(1).map(|(_, e)| e).collect(),
        leader_commit: Some(log_id(2, 2)),
    };
    let vote = VoteRequest::<u64> {
        vote: Vote::new(3, 2),
        last_log_id: Some(log_id(2, 11)),
    };
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(log_id(2, 11)),
            last_membership: openraft::StoredMembership::new(
                Some(log_id(2, 1)),
                Membership::new(vec![members().keys().copied().collect()], members()),
            ),
            snapshot_id: "2-1-11-1".into(),
        },
        offset: 0,
        data: b"{\"chunk\":1}".to_vec(),
        done: false,
    };
    let payloads = [
        ("peer-append-entries", serde_json::to_vec(&append)),
        ("peer-vote", serde_json::to_vec(&vote)),
        ("peer-install-snapshot", serde_json::to_vec(&snapshot)),
    ];
    for (name, payload) in payloads {
        let payload = payload.expect("peer payload");
        write(dir, &format!("{name}.json"), &payload);
        let request = PeerRequest {
            target: 2,
            cluster: "belfry-fixtures".into(),
            payload,
            format: belfry::formats::PEER,
            highest_format: belfry::formats::HIGHEST,
            sent_at_micros: 0,
        };
        write(dir, &format!("{name}.pb"), &request.encode_to_vec());
    }
}

/// A state directory with a snapshot of every command applied, and a log file holding the
/// entries and a vote, both written through the stores themselves.
async fn write_stores(dir: &Path) {
    let work = tempfile::tempdir().expect("temp dir");
    let mut sm = StateMachineStore::open(&work.path().join("state")).expect("state machine");
    sm.apply(snapshot_entries()).await.expect("apply");
    sm.get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    std::fs::copy(work.path().join("state/snapshot"), dir.join("snapshot")).expect("copy");

    let log_path = work.path().join("raft-log.redb");
    {
        let mut log = LogStore::open(
            &log_path,
            &belfry::raft::log_store::LogIdentity {
                cluster: "belfry-fixtures".into(),
                node_id: 1,
            },
        )
        .expect("log");
        use openraft::storage::RaftLogStorageExt;
        log.blocking_append(entries().into_iter().map(|(_, e)| e))
            .await
            .expect("append");
        log.save_vote(&Vote::new_committed(2, 1))
            .await
            .expect("vote");
        log.save_committed(Some(log_id(2, 11)))
            .await
            .expect("committed");
        log.purge(log_id(2, 1)).await.expect("purge");
    }
    std::fs::copy(&log_path, dir.join("raft-log.redb")).expect("copy");
}

fn read(version: u32, name: &str) -> Vec<u8> {
    let path = fixture_dir(version).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn v1_log_entries_decode_to_what_was_written() {
    for (name, expected) in entries() {
        let bytes = read(1, &format!("{name}.json"));
        let decoded = belfry::raft::log_store::decode_entry(expected.log_id.index, &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
    }
}

#[test]
fn a_numeric_expires_decodes() {
    let decoded =
        belfry::raft::log_store::decode_entry(12, &read(1, "entry-put-expires-seconds.json"))
            .expect("decode");
    let EntryPayload::Normal(Command::Put { def, .. }) = decoded.payload else {
        panic!("not a put: {decoded:?}");
    };
    assert_eq!(def.options.expires, Some(Expires::AfterSeconds(3600.0)));
}

#[test]
fn v1_vote_decodes() {
    let bytes = read(1, "vote.json");
    assert_eq!(
        belfry::formats::check_label(&bytes, belfry::formats::VOTE, String::new),
        Ok(1)
    );
    let vote: Vote<u64> = serde_json::from_slice(&bytes).expect("vote");
    assert_eq!(vote, Vote::new_committed(2, 1));
}

#[tokio::test]
async fn v1_log_file_reads_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    std::fs::copy(fixture_dir(1).join("raft-log.redb"), &path).expect("copy");
    let identity = belfry::raft::log_store::LogIdentity {
        cluster: "belfry-fixtures".into(),
        node_id: 1,
    };
    let mut log = LogStore::open(&path, &identity).expect("open");
    use openraft::storage::RaftLogReader;
    assert_eq!(
        log.read_vote().await.expect("vote"),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(2, 11))
    );
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 1)));
    assert_eq!(state.last_log_id, Some(log_id(2, 11)));
    let stored = log.try_get_log_entries(0..100).await.expect("entries");
    let expected: Vec<Entry> = entries().into_iter().skip(1).map(|(_, e)| e).collect();
    assert_eq!(stored, expected);
    assert_eq!(log.check_entries().ok(), Some(10));
}

#[test]
fn v1_snapshot_decodes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("snapshot");
    std::fs::copy(fixture_dir(1).join("snapshot"), &path).expect("copy");
    let applied = belfry::raft::read_snapshot(&path).expect("snapshot");
    assert_eq!(applied.last_applied, Some(log_id(2, 5)));
    assert_eq!(
        applied
            .membership
            .membership()
            .nodes()
            .map(|(id, _)| *id)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let full = &applied.data.schedules()["reports.nightly"];
    assert_eq!(*full.def, full_def());
    assert_eq!(full.incarnation, uuid(1));
    assert_eq!((full.revision, full.created_at), (1, at(1)));
    let cron = &applied.data.schedules()["cron.weekdays"];
    assert_eq!(*cron.def, cron_def());
    assert_eq!(
        (cron.fired, cron.skipped, cron.delivered, cron.last_fire),
        (2, 2, 1, Some(at(7200)))
    );
    assert_eq!(cron.history.len(), 3);
    assert_eq!(applied.data.outbox().len(), 1);
    let pending = &applied.data.outbox()[&uuid(31)];
    assert_eq!((pending.seq, pending.scheduled_at), (2, at(7200)));
    assert_eq!(*pending.def, cron_def());
    // The derived indexes are rebuilt: the enabled schedule is due, the paused one is not.
    assert_eq!(applied.data.due().len(), 1);
    assert_eq!(applied.data.paused_count(), 1);
}

#[test]
fn v1_forwarded_requests_decode() {
    for (name, expected) in forwarded() {
        let decoded = Forwarded::decode(&read(1, &format!("{name}.json")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded.format, 1, "{name}");
        assert_eq!(decoded.not_after, expected.not_after, "{name}");
        // The request types have no equality of their own: their debug forms list every field.
        assert_eq!(
            format!("{:?}", decoded.request),
            format!("{:?}", expected.request),
            "{name}"
        );
    }
}

#[test]
fn v1_peer_messages_decode() {
    use belfry::raft::network::proto::PeerRequest;
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
    use prost::Message;
    for name in ["peer-append-entries", "peer-vote", "peer-install-snapshot"] {
        let request = PeerRequest::decode(read(1, &format!("{name}.pb")).as_slice())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            (request.target, request.cluster.as_str()),
            (2, "belfry-fixtures")
        );
        assert_eq!(request.format, 0, "format 1 predates the field");
        assert_eq!(request.payload, read(1, &format!("{name}.json")), "{name}");
    }
    let append: AppendEntriesRequest<TypeConfig> =
        serde_json::from_slice(&read(1, "peer-append-entries.json")).expect("append");
    let expected: Vec<Entry> = entries().into_iter().skip(1).map(|(_, e)| e).collect();
    assert_eq!(append.entries, expected);
    assert_eq!(
        (append.vote, append.leader_commit),
        (Vote::new_committed(2, 1), Some(log_id(2, 2)))
    );
    let vote: VoteRequest<u64> = serde_json::from_slice(&read(1, "peer-vote.json")).expect("vote");
    assert_eq!(
        vote,
        VoteRequest {
            vote: Vote::new(3, 2),
            last_log_id: Some(log_id(2, 11))
        }
    );
    let snapshot: InstallSnapshotRequest<TypeConfig> =
        serde_json::from_slice(&read(1, "peer-install-snapshot.json")).expect("snapshot");
    assert_eq!(snapshot.meta.snapshot_id, "2-1-11-1");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(2, 11)));
    assert_eq!(snapshot.data, b"{\"chunk\":1}");
    assert!(!snapshot.done);
}

/// What this build writes, a build of format 1 reads (it ignores the label): a node can be
/// rolled back to the previous release.
#[test]
fn current_encodings_are_read_by_format_1_readers() {
    for (name, entry) in entries() {
        let bytes = belfry::raft::log_store::encode_entry(&entry).expect("encode");
        assert!(bytes.starts_with(b"{\"format\":1,"), "{name}");
        let plain: Entry = serde_json::from_slice(&bytes).expect("a format-1 reader");
        assert_eq!(plain, entry, "{name}");
    }
    let forwarded = Forwarded::now(LeaderRequest::Status);
    let bytes = serde_json::to_vec(&forwarded).expect("encode");
    assert!(bytes.starts_with(b"{\"format\":1,"));
}

#[test]
fn newer_formats_are_refused_not_guessed_at() {
    let mut entry = read(1, "entry-put-full.json");
    let newer = belfry::formats::LOG_ENTRY + 1;
    entry = belfry::formats::label(newer, &entry);
    let err = belfry::raft::log_store::decode_entry(3, &entry).expect_err("a newer entry");
    assert!(
        err.to_string().contains("log entry 3")
            && err.to_string().contains(&format!("format {newer}")),
        "{err}"
    );
    let forwarded = belfry::formats::label(3, &read(1, "forwarded-status.json"));
    let err = Forwarded::decode(&forwarded).expect_err("a format-3 request");
    assert!(err.to_string().contains("format 3"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("snapshot");
    let snapshot = read(1, "snapshot");
    std::fs::write(&path, belfry::formats::label(2, &snapshot)).expect("write");
    let err = belfry::raft::read_snapshot(&path).expect_err("a format-2 snapshot");
    assert!(err.to_string().contains("format 2"), "{err}");
}

#[test]
fn every_format_1_command_is_still_format_1() {
    for (name, command) in commands() {
        assert_eq!(command.format(), 1, "{name}");
    }
}

/// Format 2: a `Put` of a solar spec, or with `last_run_at`.
fn v2_entries() -> Vec<(&'static str, Entry)> {
    let solar = minimal_def(
        "lights.on",
        SpecInput {
            solar: SolarInput {
                event: Some("dusk_civil".into()),
                latitude: Some(51.5),
                longitude: Some(-0.12),
            }
            .into(),
            ..SpecInput::default()
        },
    );
    let mut migrated = minimal_def(
        "reports.hourly",
        SpecInput {
            every: Some("1h".into()),
            ..SpecInput::default()
        },
    );
    migrated.last_run_at = Some(at(3_000));
    [
        ("entry-put-solar", solar),
        ("entry-put-last-run-at", migrated),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, def))| {
        let command = Command::Put {
            def,
            expected_revision: Some(0),
            incarnation: uuid(20 + i as u128),
            at: at(3_600),
        };
        let entry = Entry {
            log_id: log_id(3, 20 + i as u64),
            payload: EntryPayload::Normal(command),
        };
        (name, entry)
    })
    .collect()
}

/// Writes the format-2 fixtures into `BELFRY_FIXTURE_DIR`.
#[test]
#[ignore = "writes fixtures; run by hand when a format gains a version"]
fn write_v2_fixtures() {
    let dir = PathBuf::from(std::env::var("BELFRY_FIXTURE_DIR").expect("BELFRY_FIXTURE_DIR"));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    for (name, entry) in v2_entries() {
        let bytes = belfry::raft::log_store::encode_entry(&entry).expect("entry");
        write(&dir, &format!("{name}.json"), &bytes);
    }
    for (name, forwarded) in v2_forwarded() {
        let bytes = serde_json::to_vec(&forwarded).expect("forwarded");
        write(&dir, &format!("{name}.json"), &bytes);
    }
}

/// Forwarded format 2: a backfill, skipped occurrences, a timed pause.
fn v2_forwarded() -> Vec<(&'static str, Forwarded)> {
    let skip = LeaderRequest::Write(Box::new(WriteOp::SkipOccurrences {
        name: "reports.nightly".into(),
        next: 3,
        instants: vec![at(86_400)],
    }));
    let pause = LeaderRequest::Write(Box::new(WriteOp::PauseUntil {
        name: "reports.nightly".into(),
        until: at(172_800),
        note: "quarter close".into(),
    }));
    let labelled = |request: LeaderRequest| Forwarded {
        format: Forwarded::format_of(&request),
        request,
        not_after: at(10),
    };
    vec![
        ("forwarded-backfill", forwarded_backfill()),
        ("forwarded-skip-occurrences", labelled(skip)),
        ("forwarded-pause-until", labelled(pause)),
    ]
}

/// Forwarded format 2: a backfill.
fn forwarded_backfill() -> Forwarded {
    let request = LeaderRequest::Write(Box::new(WriteOp::Backfill(
        belfry::api::control::BackfillAsk {
            name: "reports.nightly".into(),
            from: at(0),
            to: at(86_400),
            rate: 50,
            overlap: true,
            dry_run: false,
        },
    )));
    Forwarded {
        format: Forwarded::format_of(&request),
        request,
        not_after: at(10),
    }
}

#[test]
fn v2_forwarded_backfill_decodes_to_what_was_written() {
    let bytes = read(2, "forwarded-backfill.json");
    assert!(bytes.starts_with(b"{\"format\":2,"));
    let decoded = Forwarded::decode(&bytes).expect("a format-2 request");
    assert_eq!(
        format!("{decoded:?}"),
        format!("{:?}", forwarded_backfill())
    );
}

#[test]
fn v2_log_entries_decode_to_what_was_written() {
    for (name, expected) in v2_entries() {
        let bytes = read(2, &format!("{name}.json"));
        assert!(bytes.starts_with(b"{\"format\":2,"), "{name}");
        let decoded = belfry::raft::log_store::decode_entry(expected.log_id.index, &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
        let EntryPayload::Normal(command) = &decoded.payload else {
            panic!("{name}: not a command");
        };
        assert_eq!(command.format(), 2, "{name}");
        // In a batch too: the entry takes the highest format of its commands.
        assert_eq!(Command::Batch(vec![command.clone()]).format(), 2, "{name}");
    }
}

/// Format 3: a `Put` with run control, and `Outcomes`.
fn v3_entries() -> Vec<(&'static str, Entry)> {
    let mut controlled = minimal_def(
        "etl.hourly",
        SpecInput {
            every: Some("1h".into()),
            ..SpecInput::default()
        },
    );
    controlled.control = Some(Box::new(RunControl {
        overlap: Overlap::BufferOne,
        max_concurrent: Some(2),
        max_runtime_secs: Some(5_400),
        pause_after_failures: Some(3),
        jitter_ms: None,
        max_runs: None,
    }));
    let put = Command::Put {
        def: controlled,
        expected_revision: Some(0),
        incarnation: uuid(30),
        at: at(3_600),
    };
    let outcome = |n: u128, state, date_done| OutcomeItem {
        schedule: "etl.hourly".into(),
        incarnation: uuid(30),
        task_id: uuid(40 + n),
        state,
        date_done,
    };
    let outcomes = Command::Outcomes {
        items: vec![
            outcome(0, TaskState::Success, Some(at(3_700))),
            outcome(1, TaskState::Failure, Some(at(3_800))),
            outcome(2, TaskState::Started, None),
            outcome(3, TaskState::Retry, None),
            outcome(4, TaskState::Revoked, Some(at(3_900))),
            outcome(5, TaskState::Lost, None),
        ],
        at: at(4_000),
    };
    let start = Command::StartBackfill {
        name: "etl.hourly".into(),
        incarnation: uuid(30),
        job: BackfillSpec {
            from: at(0),
            to: at(7_200),
            rate: 20,
            overlap: true,
            total: 3,
        },
        at: at(8_000),
    };
    let step = Command::BackfillStep {
        name: "etl.hourly".into(),
        incarnation: uuid(30),
        after: Some(at(0)),
        fires: vec![FireItem {
            schedule: "etl.hourly".into(),
            incarnation: uuid(30),
            scheduled_at: at(3_600),
            task_id: uuid(50),
            manual: false,
            backfill: true,
        }],
        cursor: Some(at(3_600)),
        finished: false,
        at: at(8_001),
    };
    let skip = Command::SkipOccurrences {
        name: "etl.hourly".into(),
        next: 2,
        instants: vec![at(90_000)],
        at: at(8_002),
    };
    let pause = Command::PauseUntil {
        name: "etl.hourly".into(),
        until: at(20_000),
        note: "warehouse maintenance".into(),
        at: at(8_003),
    };
    let resume = Command::ResumeIfDue {
        name: "etl.hourly".into(),
        until: at(20_000),
        at: at(20_001),
    };
    [
        ("entry-put-run-control", put),
        ("entry-outcomes", outcomes),
        ("entry-start-backfill", start),
        ("entry-backfill-step", step),
        ("entry-skip-occurrences", skip),
        ("entry-pause-until", pause),
        ("entry-resume-if-due", resume),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (name, command))| {
        let entry = Entry {
            log_id: log_id(4, 30 + i as u64),
            payload: EntryPayload::Normal(command),
        };
        (name, entry)
    })
    .collect()
}

/// Writes the format-3 fixtures into `BELFRY_FIXTURE_DIR`.
#[test]
#[ignore = "writes fixtures; run by hand when a format gains a version"]
fn write_v3_fixtures() {
    let dir = PathBuf::from(std::env::var("BELFRY_FIXTURE_DIR").expect("BELFRY_FIXTURE_DIR"));
    std::fs::create_dir_all(&dir).expect("fixture dir");
    for (name, entry) in v3_entries() {
        let bytes = belfry::raft::log_store::encode_entry(&entry).expect("entry");
        write(&dir, &format!("{name}.json"), &bytes);
    }
}

#[test]
fn v3_log_entries_decode_to_what_was_written() {
    for (name, expected) in v3_entries() {
        let bytes = read(3, &format!("{name}.json"));
        assert!(bytes.starts_with(b"{\"format\":3,"), "{name}");
        let decoded = belfry::raft::log_store::decode_entry(expected.log_id.index, &bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}");
        let EntryPayload::Normal(command) = &decoded.payload else {
            panic!("{name}: not a command");
        };
        assert_eq!(command.format(), 3, "{name}");
        assert_eq!(Command::Batch(vec![command.clone()]).format(), 3, "{name}");
    }
}

/// This build writes a log entry byte for byte as the fixtures were written, however it keeps
/// a definition's fields in memory: format 1 entries as they were before labels (the label
/// aside), format 2 entries with theirs.
#[test]
fn log_entries_encode_as_the_fixtures_were_written() {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    for (name, entry) in entries() {
        let json = serde_json::to_vec(&entry).expect("encode");
        assert_eq!(
            text(&json),
            text(&read(1, &format!("{name}.json"))),
            "{name}"
        );
    }
    for (name, entry) in v2_entries() {
        let bytes = belfry::raft::log_store::encode_entry(&entry).expect("encode");
        assert_eq!(
            text(&bytes),
            text(&read(2, &format!("{name}.json"))),
            "{name}"
        );
    }
    for (name, entry) in v3_entries() {
        let bytes = belfry::raft::log_store::encode_entry(&entry).expect("encode");
        assert_eq!(
            text(&bytes),
            text(&read(3, &format!("{name}.json"))),
            "{name}"
        );
    }
}

/// Replies cross versions too: a follower of one build forwards to a leader of another.
#[test]
fn v1_replies_decode() {
    use belfry::api::control::LeaderReply;
    use belfry::api::ApiError;
    use openraft::error::{InstallSnapshotError, RaftError};
    use openraft::raft::{AppendEntriesResponse, InstallSnapshotResponse, VoteResponse};
    for (name, expected) in replies() {
        let bytes = read(1, &format!("{name}.json"));
        // Each reply type by its name; the debug form of what was decoded, re-encoded, must
        // be that of what was written.
        let (decoded, written) = if name.starts_with("reply-") {
            let decoded: Result<LeaderReply, ApiError> =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let written: Result<LeaderReply, ApiError> =
                serde_json::from_slice(&expected).expect("expected");
            (format!("{decoded:?}"), format!("{written:?}"))
        } else if name.starts_with("peer-reply-append") {
            let decoded: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            let written: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
                serde_json::from_slice(&expected).expect("expected");
            (format!("{decoded:?}"), format!("{written:?}"))
        } else if name == "peer-reply-vote" {
            let decoded: Result<VoteResponse<u64>, RaftError<u64>> =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                decoded
                    .as_ref()
                    .ok()
                    .map(|v| (v.vote, v.vote_granted, v.last_log_id)),
                Some((Vote::new(3, 2), true, Some(log_id(2, 11))))
            );
            (format!("{decoded:?}"), format!("{decoded:?}"))
        } else {
            let decoded: Result<
                InstallSnapshotResponse<u64>,
                RaftError<u64, InstallSnapshotError>,
            > = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                decoded.as_ref().ok().map(|r| r.vote),
                Some(Vote::new_committed(2, 1))
            );
            (format!("{decoded:?}"), format!("{decoded:?}"))
        };
        assert_eq!(decoded, written, "{name}");
    }
    // And the values themselves, for one of each kind.
    let status: Result<LeaderReply, ApiError> =
        serde_json::from_slice(&read(1, "reply-status.json")).expect("status");
    match status {
        Ok(LeaderReply::Status(view)) => {
            assert_eq!((view.leader_id, view.term, view.outbox_depth), (1, 2, 3));
            assert_eq!(view.members.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    let invalid: Result<LeaderReply, ApiError> =
        serde_json::from_slice(&read(1, "reply-invalid-argument.json")).expect("error");
    assert_eq!(
        invalid.err(),
        Some(ApiError::invalid("schedule.every", "must be at least 1s"))
    );
    let partial: Result<AppendEntriesResponse<u64>, RaftError<u64>> =
        serde_json::from_slice(&read(1, "peer-reply-append-partial.json")).expect("partial");
    assert_eq!(
        partial.ok(),
        Some(AppendEntriesResponse::PartialSuccess(Some(log_id(2, 5))))
    );
}

/// The peer message as a build before the clock timestamps reads it (fields 1–5).
#[derive(Clone, PartialEq, prost::Message)]
struct PeerRequestBeforeTimestamps {
    #[prost(uint64, tag = "1")]
    target: u64,
    #[prost(string, tag = "2")]
    cluster: String,
    #[prost(bytes = "vec", tag = "3")]
    payload: Vec<u8>,
    #[prost(uint32, tag = "4")]
    format: u32,
    #[prost(uint32, tag = "5")]
    highest_format: u32,
}

/// The peer reply as a build before the clock timestamps reads it (fields 1–2).
#[derive(Clone, PartialEq, prost::Message)]
struct PeerReplyBeforeTimestamps {
    #[prost(bytes = "vec", tag = "1")]
    payload: Vec<u8>,
    #[prost(uint32, tag = "2")]
    highest_format: u32,
}

/// The clock timestamps are new optional fields of the peer messages, not a new format: a
/// message without them (every v1 fixture) reads as "no clock sample", and a build that
/// predates them reads a timestamped message as it always did. The timestamped encodings are
/// golden: a change of their field numbers or types would show here.
#[test]
fn peer_clock_timestamps_are_optional_fields() {
    use belfry::raft::network::proto::{PeerReply, PeerRequest};
    use prost::Message;
    for name in ["peer-append-entries", "peer-vote", "peer-install-snapshot"] {
        let request = PeerRequest::decode(read(1, &format!("{name}.pb")).as_slice())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(request.sent_at_micros, 0, "{name}: no sample");
    }
    let request = PeerRequest {
        target: 2,
        cluster: "c".into(),
        payload: b"{}".to_vec(),
        format: 1,
        highest_format: 1,
        sent_at_micros: 1_735_689_600_000_000,
    };
    let bytes = request.encode_to_vec();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "08021201631a027b7d200128013080c0b1d09bd38a03");
    let old = PeerRequestBeforeTimestamps::decode(bytes.as_slice()).expect("an older reader");
    assert_eq!(
        (
            old.target,
            old.cluster.as_str(),
            old.payload.as_slice(),
            old.format
        ),
        (2, "c", &b"{}"[..], 1)
    );
    let reply = PeerReply {
        payload: b"{}".to_vec(),
        highest_format: 1,
        received_at_micros: 1_735_689_600_000_000,
        replied_at_micros: 1_735_689_600_000_250,
    };
    let bytes = reply.encode_to_vec();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "0a027b7d10011880c0b1d09bd38a0320fac1b1d09bd38a03");
    let old = PeerReplyBeforeTimestamps::decode(bytes.as_slice()).expect("an older reader");
    assert_eq!(
        (old.payload.as_slice(), old.highest_format),
        (&b"{}"[..], 1)
    );
    let older = PeerReplyBeforeTimestamps {
        payload: b"{}".to_vec(),
        highest_format: 1,
    };
    let read_now = PeerReply::decode(older.encode_to_vec().as_slice()).expect("this build");
    assert_eq!(
        (read_now.received_at_micros, read_now.replied_at_micros),
        (0, 0),
        "no sample"
    );
}
