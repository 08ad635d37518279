//! One `belfry server` node: storage, Raft, the gRPC server, the leader's dispatcher and the
//! schedules file, wired together and shut down in order.
//!
//! Owns start-up (including bootstrapping a fresh cluster from the static member list, never
//! re-initializing a node that has state), signals, and shutdown. It must not hold scheduling
//! or consensus logic of its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::Utc;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::celery::{Encoder, KombuLayout};
use crate::config::NodeConfig;
use crate::dispatch::leader::{watch_leadership, DispatchContext};
use crate::dispatch::planner::PlanConfig;
use crate::dispatch::RedisSink;
use crate::raft::log_store::LogStore;
use crate::raft::network::{peer_server, PeerNetwork};
use crate::raft::Raft;
use crate::schedules_file;
use crate::state::{Command, CommandResult, StateHandle, StateMachineStore};

/// Why a node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path}: {message}")]
    Storage { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
    #[error("redis: {0}")]
    Redis(#[from] crate::dispatch::SinkError),
    #[error("grpc server: {0}")]
    Serve(#[from] tonic::transport::Error),
}

fn raft_config(config: &NodeConfig) -> Result<openraft::Config, NodeError> {
    let raft = openraft::Config {
        cluster_name: config.cluster_name.clone(),
        heartbeat_interval: config.raft.heartbeat.as_millis() as u64,
        election_timeout_min: config.raft.election_min.as_millis() as u64,
        election_timeout_max: config.raft.election_max.as_millis() as u64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.raft.snapshot_every_logs),
        max_in_snapshot_log_to_keep: config.raft.keep_logs_after_snapshot,
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    raft.validate().map_err(|e| NodeError::Raft(e.to_string()))
}

/// Runs a node until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let storage_err = |message: String| NodeError::Storage {
        path: config.data_dir.display().to_string(),
        message,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|e| storage_err(e.to_string()))?;
    let log_store = LogStore::open(&config.data_dir.join("raft-log.redb"))
        .map_err(|e| storage_err(e.to_string()))?;
    let state_machine = StateMachineStore::open(&config.data_dir.join("state"))
        .map_err(|e| storage_err(e.to_string()))?;
    let state = state_machine.handle();
    let changes = state_machine.changes();

    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config(&config)?),
        PeerNetwork::new(config.cluster_name.clone()),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;

    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    info!(node = config.node_id, listen = %config.listen, advertise = %config.advertise, "belfry node started");
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(peer_server(
                raft.clone(),
                config.node_id,
                config.cluster_name.clone(),
            ))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = serving_stopped.await;
            }),
    );

    bootstrap(&raft, &config).await?;

    let sink = RedisSink::new(&config.redis)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let ctx = Arc::new(DispatchContext {
        raft: raft.clone(),
        state: state.clone(),
        changes,
        sink,
        encoder: Encoder {
            origin: format!("belfry-{}@{host}", config.node_id),
            layout: KombuLayout {
                global_keyprefix: config.kombu_global_keyprefix.clone(),
                ..KombuLayout::default()
            },
        },
        cluster_id: config.cluster_id(),
        plan: PlanConfig::default(),
        push_batch: 1_000,
        quorum_timeout: config.raft.election_max,
    });
    let dispatcher = tokio::spawn(watch_leadership(ctx));
    let schedules = config
        .schedules
        .clone()
        .map(|path| tokio::spawn(keep_schedules_reconciled(raft.clone(), state.clone(), path)));

    shutdown.await;
    info!(node = config.node_id, "shutting down");
    dispatcher.abort();
    if let Some(task) = schedules {
        task.abort();
    }
    if let Err(err) = raft.shutdown().await {
        warn!(%err, "raft did not shut down cleanly");
    }
    let _ = stop_serving.send(());
    match server.await {
        Ok(result) => result?,
        Err(err) => error!(%err, "grpc server task failed"),
    }
    Ok(())
}

/// Forms a fresh cluster from the static member list: only its lowest-id member initializes
/// (as ordinal 0 does in a StatefulSet), the others wait to be contacted. A node with any Raft
/// state (a restart) is left alone, and so is any other node whose data is empty (a wiped node
/// rejoins through the leader, by snapshot), so no node ever re-initializes a running cluster.
async fn bootstrap(raft: &Raft, config: &NodeConfig) -> Result<(), NodeError> {
    if raft
        .is_initialized()
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?
    {
        info!("existing cluster state found: rejoining");
        return Ok(());
    }
    if config.peers.keys().next() != Some(&config.node_id) {
        info!("no local state: waiting for the cluster's leader to contact this node");
        return Ok(());
    }
    let members: BTreeMap<u64, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
        .collect();
    match raft.initialize(members).await {
        Ok(()) => info!(members = ?config.peers, "initialized a new cluster"),
        Err(err) => info!(%err, "cluster already initialized"),
    }
    Ok(())
}

/// Reconciles the schedules file whenever this node becomes leader and on SIGHUP.
async fn keep_schedules_reconciled(raft: Raft, state: StateHandle, path: std::path::PathBuf) {
    let mut metrics = raft.metrics();
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(err) => {
            warn!(%err, "cannot watch SIGHUP; the schedules file is read on leadership only");
            None
        }
    };
    let mut reconciled_term = None;
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if leading && reconciled_term != Some(term) {
            // Wait until this term's leadership is established before writing.
            if raft.ensure_linearizable().await.is_ok() {
                reconcile_once(&raft, &state, &path).await;
                reconciled_term = Some(term);
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = async { match hangup.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                info!(path = %path.display(), "SIGHUP: reloading the schedules file");
                if raft.metrics().borrow().state == ServerState::Leader {
                    reconcile_once(&raft, &state, &path).await;
                } else if let Err(err) = schedules_file::load(&path, Utc::now()) {
                    error!(%err, "the schedules file is invalid");
                }
            }
        }
    }
}

async fn reconcile_once(raft: &Raft, state: &StateHandle, path: &std::path::Path) {
    let now = Utc::now();
    let declared = match schedules_file::load(path, now) {
        Ok(defs) => defs,
        Err(err) => {
            error!(%err, "the schedules file is invalid; running schedules are left as they are");
            return;
        }
    };
    let commands = {
        let applied = state.read().await;
        schedules_file::reconcile(&applied.data, &declared, now, Uuid::new_v4)
    };
    let total = commands.len();
    // Large files go through Raft in batches, not one entry per schedule.
    for chunk in commands.chunks(1_000) {
        match raft.client_write(Command::Batch(chunk.to_vec())).await {
            Ok(response) => {
                if let CommandResult::Batch(results) = response.data {
                    for result in results {
                        if let CommandResult::Rejected(rejection) = result {
                            warn!(%rejection, "a schedules file change was refused");
                        }
                    }
                }
            }
            Err(err) => {
                warn!(%err, "stopped reconciling the schedules file: no longer leader");
                return;
            }
        }
    }
    info!(path = %path.display(), declared = declared.len(), changes = total, "schedules file reconciled");
}
