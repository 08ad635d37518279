//! Snapshot files read back from disk, through the state store itself
//! (`StateMachineStore::open`: metadata line, serialized state, index rebuild). A loaded state
//! must then take commands without panicking, whatever its records say.

use std::path::PathBuf;

use belfry::raft::StateMachineStore;
use belfry::state::Command;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{BasicNode, CommittedLeaderId, EntryPayload, LogId, Membership};
use uuid::Uuid;

use super::{entry, now, Target, Violation, SAMPLE_INCARNATION};
use crate::defs::{arbitrary_defs, DefOptions};
use crate::json::{mutate_value, JSON_KEYS};
use crate::rng::Rng;

pub struct SnapshotFile {
    dir: tempfile::TempDir,
}

impl SnapshotFile {
    pub fn new() -> SnapshotFile {
        SnapshotFile {
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("a temporary directory: {e}")),
        }
    }
}

impl Default for SnapshotFile {
    fn default() -> Self {
        SnapshotFile::new()
    }
}

/// The name of the snapshot file inside the store's directory.
const FILE: &str = "snapshot";

/// Snapshot files written by the store's own builder after applying `commands`.
fn built(commands: Vec<Command>) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut store = StateMachineStore::open(dir.path()).map_err(|e| e.to_string())?;
        let nodes = (1..=3).map(|id| (id, BasicNode::new(format!("n{id}:7400"))));
        let mut entries = vec![belfry::raft::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), 1),
            payload: EntryPayload::Membership(Membership::new(
                vec![[1, 2, 3].into()],
                nodes.collect::<std::collections::BTreeMap<_, _>>(),
            )),
        }];
        entries.extend(
            commands
                .into_iter()
                .enumerate()
                .map(|(i, c)| entry(i as u64 + 2, c)),
        );
        store.apply(entries).await.map_err(|e| e.to_string())?;
        let mut builder = store.get_snapshot_builder().await;
        builder.build_snapshot().await.map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    })?;
    std::fs::read(dir.path().join(FILE)).map_err(|e| e.to_string())
}

impl Target for SnapshotFile {
    fn name(&self) -> &'static str {
        "snapshot"
    }

    fn about(&self) -> &'static str {
        "snapshot files loaded by StateMachineStore::open"
    }

    fn corpus(&self) -> Vec<Vec<u8>> {
        let defs = arbitrary_defs(
            8,
            4,
            &DefOptions {
                numeric_expires: false,
                ..Default::default()
            },
        );
        let mut commands: Vec<Command> = defs.iter().map(super::put).collect();
        commands.push(Command::Fire {
            faults: Vec::new(),
            fires: vec![belfry::state::FireItem {
                schedule: defs[0].name.to_string(),
                incarnation: Uuid::from_u128(7),
                scheduled_at: now() + chrono::Duration::seconds(5),
                task_id: SAMPLE_INCARNATION,
                manual: false,
                backfill: false,
            }],
            skips: Vec::new(),
            at: now(),
        });
        [Vec::new(), commands]
            .into_iter()
            .filter_map(|c| built(c).ok())
            .collect()
    }

    fn dictionary(&self) -> &'static [&'static str] {
        JSON_KEYS
    }

    /// Tree mutation of either JSON document of the file (metadata line or state), or byte
    /// mutation of the whole.
    fn generate(&self, rng: &mut Rng, corpus: &[Vec<u8>]) -> Vec<u8> {
        let Some(base) = (!corpus.is_empty()).then(|| rng.pick(corpus)) else {
            return Vec::new();
        };
        if rng.chance(1, 3) {
            return crate::mutate::mutated(rng, corpus, self.dictionary());
        }
        let split = base.iter().position(|b| *b == b'\n').unwrap_or(base.len());
        let (meta, data) = (&base[..split], base.get(split + 1..).unwrap_or_default());
        let mut parts = [meta.to_vec(), data.to_vec()];
        let which = rng.below(2);
        if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&parts[which]) {
            for _ in 0..1 + rng.below(4) {
                mutate_value(rng, &mut value);
            }
            parts[which] = serde_json::to_vec(&value).unwrap_or_default();
        }
        let [mut out, data] = parts;
        out.push(b'\n');
        out.extend_from_slice(&data);
        out
    }

    fn run(&self, input: &[u8]) -> Result<(), Violation> {
        let path: PathBuf = self.dir.path().join(FILE);
        std::fs::write(&path, input)
            .map_err(|e| Violation::new(format!("writing the file under test: {e}")))?;
        let Ok(store) = StateMachineStore::open(self.dir.path()) else {
            return Ok(());
        };
        let handle = store.handle();
        let Ok(applied) = handle.try_read() else {
            return Err(Violation::new("a freshly opened store's state is locked"));
        };
        let mut data = applied.data.clone();
        let names: Vec<String> = data.schedules().keys().map(|n| n.to_string()).collect();
        let ids: Vec<Uuid> = data.outbox().keys().copied().collect();
        data.apply(&Command::Ack {
            task_ids: ids,
            already_sent: Vec::new(),
            at: now(),
        });
        for name in names {
            data.apply(&Command::SetEnabled {
                name: name.clone(),
                enabled: false,
                at: now(),
            });
            data.apply(&Command::SetEnabled {
                name: name.clone(),
                enabled: true,
                at: now(),
            });
            data.apply(&Command::Delete {
                name,
                expected_revision: None,
                at: now(),
            });
        }
        Ok(())
    }
}
