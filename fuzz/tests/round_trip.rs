//! Every valid definition survives every persisted and replicated encoding: the log entry,
//! the snapshot (built by the state store, loaded from its file and installed from a peer),
//! the peer messages (AppendEntries and InstallSnapshot) and the forwarded request (create,
//! update and apply). Definitions come from `belfry_fuzz::defs`, which covers every spec kind,
//! option and variant; a coverage check below keeps it honest.

use std::io::Cursor;
use std::sync::Arc;

use belfry::api::control::{Forwarded, LeaderRequest, WriteOp};
use belfry::celery::Expires;
use belfry::raft::StateMachineStore;
use belfry::raft::{Entry, TypeConfig};
use belfry::state::validate::validate_def;
use belfry::state::{Command, ScheduleDef};
use belfry_fuzz::codec;
use belfry_fuzz::defs::{arbitrary_defs, deep_value, DefOptions};
use belfry_fuzz::targets::{entry, now};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use serde_json::Value;
use uuid::Uuid;

fn puts(defs: &[ScheduleDef]) -> Vec<Entry> {
    defs.iter()
        .enumerate()
        .map(|(i, def)| {
            entry(
                i as u64 + 1,
                Command::Put {
                    def: def.clone(),
                    expected_revision: Some(0),
                    incarnation: Uuid::from_u128(i as u128 + 1),
                    at: now(),
                },
            )
        })
        .collect()
}

fn put_def(entry: &Entry) -> &ScheduleDef {
    match &entry.payload {
        EntryPayload::Normal(Command::Put { def, .. }) => def,
        other => panic!("not a put: {other:?}"),
    }
}

fn log_entries(defs: &[ScheduleDef]) -> Result<(), String> {
    for (def, entry) in defs.iter().zip(puts(defs)) {
        let bytes = codec::encode_entry(&entry).map_err(|e| format!("{}: {e}", def.name))?;
        let back = codec::decode_entry(&bytes).map_err(|e| format!("{}: {e}", def.name))?;
        assert_eq!(back, entry, "log entry of {}", def.name);
        assert_eq!(put_def(&back), def);
    }
    Ok(())
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(2, 1), index)
}

fn append_entries(defs: &[ScheduleDef]) -> Result<(), String> {
    let entries = puts(defs);
    // One message per definition (a failure names it) and one with all of them.
    let mut batches: Vec<Vec<Entry>> = entries.iter().map(|e| vec![e.clone()]).collect();
    batches.push(entries);
    for batch in batches {
        let rpc = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(2, 1),
            prev_log_id: Some(log_id(0)),
            entries: batch.clone(),
            leader_commit: Some(log_id(0)),
        };
        let name = put_def(&batch[0]).name.clone();
        let bytes = codec::encode_peer(&rpc).map_err(|e| format!("{name}: {e}"))?;
        let back = codec::decode_append_entries(&bytes).map_err(|e| format!("{name}: {e}"))?;
        assert_eq!(back.entries, batch, "AppendEntries with {name}");
        assert_eq!(back.vote, rpc.vote);
        assert_eq!(back.prev_log_id, rpc.prev_log_id);
    }
    Ok(())
}

fn forwarded_writes(defs: &[ScheduleDef]) -> Result<(), String> {
    let decoded = |request: LeaderRequest| -> Result<WriteOp, String> {
        let bytes = codec::encode_forwarded(&Forwarded::now(request)).map_err(|e| e.to_string())?;
        match codec::decode_forwarded(&bytes)
            .map_err(|e| e.to_string())?
            .request
        {
            LeaderRequest::Write(op) => Ok(*op),
            other => panic!("not a write: {other:?}"),
        }
    };
    for (i, def) in defs.iter().enumerate() {
        let incarnation = Uuid::from_u128(i as u128);
        let create = WriteOp::Create {
            def: def.clone(),
            incarnation,
        };
        match decoded(LeaderRequest::Write(Box::new(create)))
            .map_err(|e| format!("{}: {e}", def.name))?
        {
            WriteOp::Create {
                def: back,
                incarnation: id,
            } => {
                assert_eq!(&back, def, "forwarded create");
                assert_eq!(id, incarnation);
            }
            other => panic!("create came back as {other:?}"),
        }
        let update = WriteOp::Update {
            def: def.clone(),
            keep_enabled: i % 2 == 0,
            expected_revision: Some(i as u64),
        };
        match decoded(LeaderRequest::Write(Box::new(update)))
            .map_err(|e| format!("{}: {e}", def.name))?
        {
            WriteOp::Update {
                def: back,
                keep_enabled,
                expected_revision,
            } => {
                assert_eq!(&back, def, "forwarded update");
                assert_eq!(
                    (keep_enabled, expected_revision),
                    (i % 2 == 0, Some(i as u64))
                );
            }
            other => panic!("update came back as {other:?}"),
        }
    }
    let apply = WriteOp::Apply {
        defs: defs.to_vec(),
        prune: true,
        prune_selector: [("team".to_string(), "data".to_string())].into(),
        incarnations: (0..defs.len() as u128).map(Uuid::from_u128).collect(),
    };
    match decoded(LeaderRequest::Write(Box::new(apply)))? {
        WriteOp::Apply { defs: back, .. } => assert_eq!(back, defs, "forwarded apply"),
        other => panic!("apply came back as {other:?}"),
    }
    Ok(())
}

/// The definitions stored in `store`'s state, in the order of `defs`.
async fn stored(store: &StateMachineStore, defs: &[ScheduleDef]) -> Vec<ScheduleDef> {
    let handle = store.handle();
    let applied = handle.read().await;
    defs.iter()
        .map(|def| {
            let record = applied
                .data
                .schedules()
                .get(&*def.name)
                .unwrap_or_else(|| panic!("{} is missing", def.name));
            ScheduleDef::clone(&record.def)
        })
        .collect()
}

/// Applies the definitions in a store, builds a snapshot with the store's own builder, then
/// reads it back twice: from its file (a restart) and installed on another store from an
/// InstallSnapshot message (a lagging follower).
async fn snapshots(defs: &[ScheduleDef]) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut store = StateMachineStore::open(dir.path()).map_err(|e| e.to_string())?;
    store.apply(puts(defs)).await.map_err(|e| e.to_string())?;
    assert_eq!(stored(&store, defs).await, defs, "applied");
    let mut builder = store.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.map_err(|e| e.to_string())?;
    drop(store);

    let reopened =
        StateMachineStore::open(dir.path()).map_err(|e| format!("snapshot file: {e}"))?;
    assert_eq!(stored(&reopened, defs).await, defs, "snapshot file");

    let rpc = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new_committed(2, 1),
        meta: snapshot.meta.clone(),
        offset: 0,
        data: snapshot.snapshot.into_inner(),
        done: true,
    };
    let bytes = codec::encode_peer(&rpc).map_err(|e| e.to_string())?;
    let back =
        codec::decode_install_snapshot(&bytes).map_err(|e| format!("InstallSnapshot: {e}"))?;
    assert_eq!(back, rpc, "InstallSnapshot");
    let other = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut follower = StateMachineStore::open(other.path()).map_err(|e| e.to_string())?;
    follower
        .install_snapshot(&back.meta, Box::new(Cursor::new(back.data)))
        .await
        .map_err(|e| format!("installing the snapshot: {e}"))?;
    assert_eq!(stored(&follower, defs).await, defs, "installed snapshot");
    Ok(())
}

/// Every encoding, each definition on its own first so that a failure names it.
fn round_trip(defs: &[ScheduleDef]) {
    for def in defs {
        if let Err(e) = validate_def(def, now()) {
            panic!("the generator made an invalid definition {def:?}: {e}");
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut failures = Vec::new();
    for def in defs {
        let one = std::slice::from_ref(def);
        for (encoding, outcome) in [
            ("log entry", log_entries(one)),
            ("AppendEntries", append_entries(one)),
            ("forwarded request", forwarded_writes(one)),
            ("snapshot", runtime.block_on(snapshots(one))),
        ] {
            if let Err(e) = outcome {
                let shown: String = format!("{def:?}").chars().take(300).collect();
                failures.push(format!("{encoding}: {e}\n  {shown} …"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} round trips of {} definitions failed:\n{}",
        failures.len(),
        defs.len(),
        failures.join("\n")
    );
    // All together too: batches, a snapshot of many records, an apply of many definitions.
    append_entries(defs).unwrap();
    forwarded_writes(defs).unwrap();
    runtime.block_on(snapshots(defs)).unwrap();
}

/// What the generated set must contain for the test to mean what it says.
fn assert_covers_every_variant(defs: &[ScheduleDef]) {
    let count = |f: &dyn Fn(&ScheduleDef) -> bool| defs.iter().filter(|d| f(d)).count();
    let spec = |d: &ScheduleDef| d.spec.clone();
    let checks: [(&str, usize); 22] = [
        ("every", count(&|d| spec(d).every.is_some())),
        ("anchor", count(&|d| spec(d).anchor.is_some())),
        ("cron", count(&|d| spec(d).cron.is_some())),
        ("crontab", count(&|d| spec(d).crontab.is_some())),
        ("once", count(&|d| spec(d).once.is_some())),
        ("tz", count(&|d| spec(d).tz.is_some())),
        ("start_at", count(&|d| spec(d).start_at.is_some())),
        ("end_at", count(&|d| spec(d).end_at.is_some())),
        ("queue", count(&|d| d.options.queue.is_some())),
        ("routing_key", count(&|d| d.options.routing_key.is_some())),
        ("priority", count(&|d| d.options.priority.is_some())),
        (
            "expires at an instant",
            count(&|d| matches!(d.options.expires, Some(Expires::At(_)))),
        ),
        ("headers", count(&|d| !d.options.headers.is_empty())),
        ("time_limit", count(&|d| d.options.time_limit.is_some())),
        (
            "soft_time_limit",
            count(&|d| d.options.soft_time_limit.is_some()),
        ),
        (
            "ignore_result",
            count(&|d| d.options.ignore_result.is_some()),
        ),
        (
            "catch-up latest",
            count(&|d| d.catchup.rule == belfry::state::CatchupRule::Latest),
        ),
        (
            "catch-up none",
            count(&|d| d.catchup.rule == belfry::state::CatchupRule::None),
        ),
        ("disabled", count(&|d| !d.enabled)),
        ("labels", count(&|d| !d.labels.is_empty())),
        ("description", count(&|d| !d.description.is_empty())),
        (
            "big integers",
            count(&|d| {
                let text = serde_json::to_string(&(&d.args, &d.kwargs)).unwrap_or_default();
                text.contains("18446744073709551616")
                    || text.contains("123456789012345678901234567890123456789")
            }),
        ),
    ];
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(what, _)| *what)
        .collect();
    assert!(
        missing.is_empty(),
        "the generated definitions never have: {missing:?}"
    );
    let nested = count(&|d| depth(&Value::Array(d.args.clone())) >= 5);
    assert!(nested > 0, "no args nested five levels deep");
}

fn depth(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn every_valid_definition_survives_every_encoding() {
    let defs = arbitrary_defs(
        14,
        300,
        &DefOptions {
            numeric_expires: false,
            ..Default::default()
        },
    );
    assert_covers_every_variant(&defs);
    round_trip(&defs);
}

#[test]
fn numeric_expires_survives_every_encoding() {
    let defs: Vec<ScheduleDef> = arbitrary_defs(15, 400, &DefOptions::default())
        .into_iter()
        .filter(|d| matches!(d.options.expires, Some(Expires::AfterSeconds(_))))
        .collect();
    assert!(defs.len() > 50, "only {} with numeric expires", defs.len());
    round_trip(&defs);
}

/// A definition whose args, kwargs and one header are each nested `levels` deep.
fn nested_def(levels: usize) -> ScheduleDef {
    let mut def = arbitrary_defs(
        16,
        1,
        &DefOptions {
            numeric_expires: false,
            max_json_depth: 2,
        },
    )
    .remove(0);
    def.name = Arc::from("deep");
    def.args = vec![deep_value(levels - 1)];
    def.kwargs = [("k".to_string(), deep_value(levels - 1))]
        .into_iter()
        .collect();
    let mut options = belfry::celery::TaskOptions::clone(&def.options);
    options.headers = [("x-deep".to_string(), deep_value(levels - 1))]
        .into_iter()
        .collect();
    def.options = options.into();
    def
}

#[test]
fn the_deepest_accepted_arguments_survive_every_encoding() {
    // The deepest nesting validation accepts, up to 256 levels (validation's limit, once it
    // has one, is far below that).
    let accepted = |levels: usize| validate_def(&nested_def(levels), now()).is_ok();
    let (mut low, mut high) = (1, 256);
    if accepted(high) {
        low = high;
    }
    while low < high {
        let mid = (low + high).div_ceil(2);
        if accepted(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    assert!(accepted(low), "validation refuses even one level");
    round_trip(&[nested_def(low)]);
}
