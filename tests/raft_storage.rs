//! openraft's storage test suite against the durable log store and the state machine, and a
//! reopen of the same files after writes (what a restarted node sees).

use belfry::raft::log_store::{LogIdentity, LogStore};
use belfry::raft::StateMachineStore;
use belfry::raft::{storage_error, StorageError, TypeConfig};
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, ErrorSubject, ErrorVerb, LogId, Vote};

struct Builder;

fn identity() -> LogIdentity {
    LogIdentity {
        cluster: "storage-tests".into(),
        node_id: 1,
    }
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir()
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let log = LogStore::open(&dir.path().join("raft-log.redb"), &identity())
            .map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        let sm = StateMachineStore::open(&dir.path().join("sm"))
            .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(err) = Suite::test_all(Builder) {
        panic!("openraft's storage suite failed: {err}");
    }
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn blank(term: u64, index: u64) -> belfry::raft::Entry {
    openraft::Entry {
        log_id: log_id(term, index),
        payload: openraft::EntryPayload::Blank,
    }
}

/// Appends through the real callback path and waits for the flush.
async fn append(store: &mut LogStore, entries: Vec<belfry::raft::Entry>) {
    use openraft::storage::RaftLogStorageExt;
    store.blocking_append(entries).await.unwrap();
}

#[tokio::test]
async fn everything_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft-log.redb");
    {
        let mut store = LogStore::open(&path, &identity()).unwrap();
        append(&mut store, (1..=10).map(|i| blank(1, i)).collect()).await;
        store.save_vote(&Vote::new_committed(1, 1)).await.unwrap();
        store.save_committed(Some(log_id(1, 8))).await.unwrap();
        store.purge(log_id(1, 3)).await.unwrap();
        store.truncate(log_id(1, 9)).await.unwrap();
    }
    let mut store = LogStore::open(&path, &identity()).unwrap();
    assert_eq!(
        store.read_vote().await.unwrap(),
        Some(Vote::new_committed(1, 1))
    );
    assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 8)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(1, 8)));
    let entries = store.try_get_log_entries(0..100).await.unwrap();
    assert_eq!(
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        (4..=8).collect::<Vec<_>>()
    );
    let some = store.try_get_log_entries(5..=6).await.unwrap();
    assert_eq!(some.len(), 2);
}

#[tokio::test]
async fn purging_everything_keeps_the_last_log_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::open(&dir.path().join("raft-log.redb"), &identity()).unwrap();
    append(&mut store, (1..=5).map(|i| blank(2, i)).collect()).await;
    store.purge(log_id(2, 5)).await.unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    assert!(store.try_get_log_entries(0..10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_restarted_leader_gives_up_its_term_and_no_one_elses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("raft-log.redb");
    let mut store = LogStore::open(&path, &identity()).expect("open");

    // Its own committed vote: kept as an uncommitted vote of the same term.
    store
        .save_vote(&Vote::new_committed(7, 1))
        .await
        .expect("save vote");
    assert_eq!(
        store.forget_own_leadership(1).await.expect("forget"),
        Some(7)
    );
    assert_eq!(
        store.read_vote().await.expect("read vote"),
        Some(Vote::new(7, 1))
    );
    drop(store);
    let mut reopened = LogStore::open(&path, &identity()).expect("reopen");
    assert_eq!(
        reopened.read_vote().await.expect("read vote"),
        Some(Vote::new(7, 1)),
        "the change is durable"
    );

    // Another node's committed leadership, or a vote it only asked for, is left as it is.
    for vote in [Vote::new_committed(8, 2), Vote::new(9, 1)] {
        reopened.save_vote(&vote).await.expect("save vote");
        assert_eq!(
            reopened.forget_own_leadership(1).await.expect("forget"),
            None
        );
        assert_eq!(reopened.read_vote().await.expect("read vote"), Some(vote));
    }
}
