//! Damaged, foreign or misplaced storage is an error naming the file, never a new node and
//! never a panic: through the stores themselves and through a real `belfry server` process.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use belfry::raft::log_store::{LogIdentity, LogOpenError, LogStore};
use belfry::raft::StateMachineStore;
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};

fn identity(cluster: &str, node_id: u64) -> LogIdentity {
    LogIdentity {
        cluster: cluster.into(),
        node_id,
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/formats/v1")
        .join(name)
}

/// Deterministic noise (xorshift), so a failure can be reproduced.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// A real log with entries and a vote, written and closed.
async fn written_log(path: &Path, id: &LogIdentity) {
    let mut store = LogStore::open(path, id).expect("create");
    let entries = (1..=50).map(|i| belfry::raft::Entry {
        log_id: log_id(1, i),
        payload: EntryPayload::Blank,
    });
    store.blocking_append(entries).await.expect("append");
    store
        .save_vote(&Vote::new_committed(1, 1))
        .await
        .expect("vote");
}

fn open_err(path: &Path, id: &LogIdentity) -> LogOpenError {
    match LogStore::open(path, id) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(err) => err,
    }
}

#[test]
fn a_zero_byte_log_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    std::fs::write(&path, b"").expect("write");
    let err = open_err(&path, &identity("c", 1));
    assert!(matches!(err, LogOpenError::Empty { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert_eq!(std::fs::metadata(&path).expect("still there").len(), 0);
}

#[test]
fn a_file_of_random_bytes_is_not_a_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    std::fs::write(&path, noise(1, 65_536)).expect("write");
    let err = open_err(&path, &identity("c", 1));
    assert!(matches!(err, LogOpenError::Foreign { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn random_bytes_inside_a_log_are_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    let id = identity("c", 1);
    written_log(&path, &id).await;
    let good = std::fs::read(&path).expect("read");
    // Everything after redb's header replaced: the file must be refused.
    let mut bytes = good.clone();
    let tail = noise(2, bytes.len() - 4096);
    bytes[4096..].copy_from_slice(&tail);
    std::fs::write(&path, &bytes).expect("write");
    let err = open_err(&path, &id);
    assert!(matches!(err, LogOpenError::Corrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );

    // Smaller damage anywhere: refused, or (bytes redb does not use) opened and readable, but
    // never a panic.
    for seed in 0..40u64 {
        let mut bytes = good.clone();
        let at = (noise(seed + 100, 8)
            .iter()
            .fold(0usize, |a, b| a * 256 + *b as usize))
            % bytes.len();
        let len = 64.min(bytes.len() - at);
        bytes[at..at + len].copy_from_slice(&noise(seed + 1000, len));
        std::fs::write(&path, &bytes).expect("write");
        if let Ok(mut store) = LogStore::open(&path, &id) {
            let _ = store.get_log_state().await;
            let _ = store.try_get_log_entries(0..100).await;
        }
    }
}

#[tokio::test]
async fn a_truncated_log_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    let id = identity("c", 1);
    written_log(&path, &id).await;
    let good = std::fs::read(&path).expect("read");
    for keep in [5, 512, 4096, good.len() / 2, good.len() - 1] {
        std::fs::write(&path, &good[..keep]).expect("write");
        let err = open_err(&path, &id);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn a_redb_file_of_another_program_is_not_a_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        txn.open_table(redb::TableDefinition::<&str, u64>::new("accounts"))
            .expect("table")
            .insert("alice", 10)
            .expect("insert");
        txn.commit().expect("commit");
    }
    let err = open_err(&path, &identity("c", 1));
    assert!(matches!(err, LogOpenError::Foreign { .. }), "{err}");
}

#[tokio::test]
async fn a_log_of_another_cluster_or_node_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    written_log(&path, &identity("blue", 1)).await;
    for other in [identity("green", 1), identity("blue", 2)] {
        let err = open_err(&path, &other);
        assert!(matches!(err, LogOpenError::OtherOwner { .. }), "{err}");
        assert!(err.to_string().contains("blue"), "{err}");
    }
    // Its own node still opens it, with everything in it.
    let mut store = LogStore::open(&path, &identity("blue", 1)).expect("reopen");
    assert_eq!(
        store.read_vote().await.expect("vote"),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(
        store.get_log_state().await.expect("state").last_log_id,
        Some(log_id(1, 50))
    );
}

#[tokio::test]
async fn a_log_from_before_identities_is_kept_and_stamped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    std::fs::copy(fixture("raft-log.redb"), &path).expect("copy");
    {
        let mut store = LogStore::open(&path, &identity("belfry-fixtures", 1)).expect("open");
        assert_eq!(
            store.read_vote().await.expect("vote"),
            Some(Vote::new_committed(2, 1))
        );
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_purged_log_id, Some(log_id(2, 1)));
        assert_eq!(state.last_log_id, Some(log_id(2, 11)));
        assert_eq!(
            store.try_get_log_entries(0..100).await.expect("read").len(),
            10
        );
    }
    let err = open_err(&path, &identity("belfry-fixtures", 2));
    assert!(matches!(err, LogOpenError::OtherOwner { .. }), "{err}");
}

#[test]
fn a_damaged_snapshot_is_an_error_naming_the_file() {
    let good = std::fs::read(fixture("snapshot")).expect("fixture");
    let truncated = good[..good.len() / 2].to_vec();
    let mut flipped = good.clone();
    let middle = flipped.len() * 3 / 4;
    flipped[middle..middle + 8].copy_from_slice(b"\x00\xff{]\"\x01\x02\x03");
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("truncated", truncated),
        ("damaged", flipped),
        ("random", noise(3, 4096)),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("dir");
        let path = belfry::raft::snapshot_path(&state);
        std::fs::write(&path, &bytes).expect("write");
        let err = match StateMachineStore::open(&state) {
            Ok(_) => panic!("a {what} snapshot opened"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(&path.display().to_string()), "{what}: {err}");
    }
}

#[test]
fn a_snapshot_without_its_log_is_not_a_new_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join(belfry::node::STATE_DIR);
    std::fs::create_dir_all(&state).expect("dir");
    std::fs::copy(fixture("snapshot"), belfry::raft::snapshot_path(&state)).expect("copy");
    let err = match belfry::node::open_storage(dir.path(), &identity("c", 1)) {
        Ok(_) => panic!("opened"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains(belfry::node::LOG_FILE), "{err}");
    assert!(!dir.path().join(belfry::node::LOG_FILE).exists());
}

#[test]
fn an_empty_data_directory_is_a_new_node_and_reopens_as_the_same_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("node1");
    drop(belfry::node::open_storage(&data, &identity("c", 1)).expect("new node"));
    drop(belfry::node::open_storage(&data, &identity("c", 1)).expect("the same node"));
    let err = match belfry::node::open_storage(&data, &identity("c", 2)) {
        Ok(_) => panic!("opened as another node"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("node 1"), "{err}");
}

/// Starts node 1 of a one-node cluster on a prepared data directory and expects it to refuse:
/// a non-zero exit (not a panic's 101) naming `file`, and no cluster initialized.
fn refuses_to_start(prepare: impl FnOnce(&Path), file: &str, expect: &str) {
    let mut cluster = support::procs::prepare(1, "redis://127.0.0.1:1/0", "", "");
    let data_dir = cluster.nodes[0].data_dir.clone();
    std::fs::create_dir_all(&data_dir).expect("data dir");
    prepare(&data_dir);
    cluster.spawn(0).expect("start a node");
    let status = cluster.wait_exit(0, Duration::from_secs(30));
    let log = std::fs::read_to_string(&cluster.nodes[0].log).unwrap_or_default();
    let Some(status) = status else {
        cluster.kill(0);
        panic!("the node did not refuse to start; its log:\n{log}");
    };
    assert_eq!(status.code(), Some(1), "exit status {status}; log:\n{log}");
    let path = data_dir.join(file).display().to_string();
    assert!(
        log.contains(&path),
        "the error does not name {path}:\n{log}"
    );
    assert!(
        log.contains(expect),
        "the error does not say {expect:?}:\n{log}"
    );
    assert!(!log.contains("initialized a new cluster"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_server_refuses_a_zero_byte_log() {
    refuses_to_start(
        |dir| std::fs::write(dir.join("raft-log.redb"), b"").expect("write"),
        "raft-log.redb",
        "the file is empty",
    );
}

#[test]
fn a_server_refuses_a_log_with_random_bytes_inside() {
    refuses_to_start(
        |dir| {
            let mut bytes = std::fs::read(fixture("raft-log.redb")).expect("fixture");
            let tail = noise(4, bytes.len() - 4096);
            bytes[4096..].copy_from_slice(&tail);
            std::fs::write(dir.join("raft-log.redb"), bytes).expect("write");
        },
        "raft-log.redb",
        "damaged",
    );
}

#[test]
fn a_server_refuses_a_truncated_snapshot() {
    refuses_to_start(
        |dir| {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(written_log(
                &dir.join("raft-log.redb"),
                &identity("belfry", 1),
            ));
            let state = dir.join("state");
            std::fs::create_dir_all(&state).expect("state dir");
            let good = std::fs::read(fixture("snapshot")).expect("fixture");
            std::fs::write(state.join("snapshot"), &good[..good.len() / 2]).expect("write");
        },
        "state/snapshot",
        "unreadable",
    );
}

#[test]
fn a_server_refuses_a_log_of_another_cluster() {
    refuses_to_start(
        |dir| {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(written_log(
                &dir.join("raft-log.redb"),
                &identity("another-cluster", 1),
            ));
        },
        "raft-log.redb",
        "another-cluster",
    );
}

/// Restoring one node's backup into another node's data directory (every node holds the same
/// log) takes an explicit `belfry data adopt`; until then the node refuses the log.
#[tokio::test]
async fn another_nodes_log_is_opened_only_after_an_explicit_adopt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(belfry::node::LOG_FILE);
    written_log(&path, &identity("belfry", 2)).await;
    let err = open_err(&path, &identity("belfry", 1));
    assert!(matches!(err, LogOpenError::OtherOwner { .. }), "{err}");

    let adopt = |node: &str| {
        std::process::Command::new(support::procs::belfry_bin())
            .args(["data", "adopt", "--node-id", node, "--data-dir"])
            .arg(dir.path())
            .env_remove("BELFRY_CLUSTER_NAME")
            .output()
            .expect("run belfry data adopt")
    };
    let adopted = adopt("1");
    let said = String::from_utf8_lossy(&adopted.stdout);
    assert!(adopted.status.success(), "{adopted:?}");
    assert!(
        said.contains("now node 1") && said.contains("it was node 2"),
        "{said}"
    );

    let mut store = LogStore::open(&path, &identity("belfry", 1)).expect("adopted");
    assert_eq!(
        store.get_log_state().await.expect("state").last_log_id,
        Some(log_id(1, 50))
    );
    // Not while the log is open: the node must be stopped.
    let refused = adopt("3");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use"),
        "{refused:?}"
    );
}
