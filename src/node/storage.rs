//! A node's data directory: opening the log and the state machine (refusing damage rather than
//! starting as a new node), checking every stored entry decodes, and the faulted mode of a node
//! whose log holds one that does not.
//!
//! Invariant: nothing here initializes a cluster; a data directory that is not new and not
//! intact is an error naming the file.

use std::future::Future;

use tokio::net::TcpListener;
use tracing::{error, info};

use super::serve::{server_builder, tls_configs};
use super::{NodeError, SHUTDOWN_STEP_LIMIT};
use crate::api::pb;
use crate::config::NodeConfig;
use crate::connections::Guarded;
use crate::raft::log_store::{CheckError, EntryError, LogIdentity, LogStore};
use crate::raft::StateMachineStore;

/// The Raft log's file in a data directory.
pub const LOG_FILE: &str = "raft-log.redb";
/// The state machine's directory (its snapshot) in a data directory.
pub const STATE_DIR: &str = "state";

/// Opens a node's storage in `data_dir`. A new node is one whose data directory holds neither a
/// log nor a snapshot (a missing or emptied directory): its log is created, with `identity`. A
/// log is opened only if it is intact and `identity`'s (see `LogStore::open`), and a snapshot
/// without a log is refused: the log holds the vote and membership, and starting over without
/// them would let this node vote twice in a term.
pub fn open_storage(
    data_dir: &std::path::Path,
    identity: &LogIdentity,
) -> Result<(LogStore, StateMachineStore), StorageOpenError> {
    std::fs::create_dir_all(data_dir).map_err(|source| StorageOpenError::Dir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    let log = data_dir.join(LOG_FILE);
    let state = data_dir.join(STATE_DIR);
    let snapshot = crate::raft::snapshot_path(&state);
    if !log.exists() && snapshot.exists() {
        return Err(StorageOpenError::SnapshotWithoutLog { log, snapshot });
    }
    let log_store = LogStore::open(&log, identity)?;
    let state_machine = StateMachineStore::open(&state)?;
    Ok((log_store, state_machine))
}

/// Why a node's storage could not be opened; each case names the file.
#[derive(Debug, thiserror::Error)]
pub enum StorageOpenError {
    #[error("{path}: {source}")]
    Dir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{log} is missing while {snapshot} exists: the log (vote, membership) was lost; refusing to start this node as a new one. Move the whole data directory away to start it empty")]
    SnapshotWithoutLog {
        log: std::path::PathBuf,
        snapshot: std::path::PathBuf,
    },
    #[error(transparent)]
    Log(#[from] crate::raft::log_store::LogOpenError),
    #[error(transparent)]
    State(#[from] crate::raft::StoreError),
}

/// Decodes every entry of the log on a blocking thread (see `LogStore::check_entries`).
pub(super) async fn check_log(log_store: &LogStore) -> Result<(), CheckError> {
    let log = log_store.clone();
    let started = std::time::Instant::now();
    let checked = tokio::task::spawn_blocking(move || log.check_entries())
        .await
        .map_err(|e| CheckError::Read(format!("the check stopped: {e}")))?;
    let entries = checked?;
    info!(
        entries,
        ms = started.elapsed().as_millis() as u64,
        "every log entry decodes"
    );
    Ok(())
}

/// A node whose log holds an entry it cannot decode takes no part in the cluster (its Raft
/// core would stop at that entry) but stays up, reporting the entry and why on `/readyz`, until
/// it is stopped: exiting would only have it restarted onto the same entry, again and again,
/// and an operator needs it reachable to diagnose it. The other members keep their quorum.
pub(super) async fn stay_up_faulted(
    config: &NodeConfig,
    entry: EntryError,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    error!(index = entry.index, reason = %entry.reason, "this node cannot read its Raft log: it takes no part in the cluster and stays up, not ready, until stopped");
    let http = match &config.metrics_listen {
        Some(addr) => {
            let handle = crate::telemetry::install()?;
            Some(crate::telemetry::serve_faulted(addr, handle, entry.to_string()).await?)
        }
        None => None,
    };
    let (stop_serving, grpc) = serve_health_only(config).await?;
    shutdown.await;
    if let Some(http) = http {
        http.abort();
    }
    let _ = stop_serving.send(());
    let _ = tokio::time::timeout(SHUTDOWN_STEP_LIMIT, grpc).await;
    Err(NodeError::Faulted(entry))
}

/// The API port of a node that takes no part in its cluster: only the gRPC health service,
/// with the process SERVING (liveness probes use it, and a restart would not help) and
/// `belfry.v1.Schedules` NOT_SERVING (readiness), as `/healthz` and `/readyz` say.
async fn serve_health_only(
    config: &NodeConfig,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ),
    NodeError,
> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_not_serving::<pb::schedules_server::SchedulesServer<crate::api::SchedulesApi>>()
        .await;
    // The same connection limits (and TLS) as a working node's port.
    let server_tls = match &config.security.tls {
        Some(tls) => Some(tls_configs(tls, config.connections.handshake_timeout)?.0),
        None => None,
    };
    let mut builder = server_builder(config, server_tls)?;
    let limits = &config.connections;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(builder.add_service(health).serve_with_incoming_shutdown(
        Guarded::new(listener, limits),
        async {
            let _ = stopped.await;
        },
    ));
    Ok((stop, server))
}
