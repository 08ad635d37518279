//! One `belfry server` node: storage, Raft, the gRPC server, the leader's dispatcher and the
//! schedules file, wired together and shut down in order.
//!
//! Invariant: `run` is a sequence of named steps (check the settings, open storage, start Raft,
//! serve, join the cluster, start the background tasks, stop), each step bounded when stopping.
//! It must not hold scheduling or consensus logic of its own.

mod clock;
mod cluster;
mod serve;
mod storage;

pub use storage::{open_storage, StorageOpenError, LOG_FILE, STATE_DIR};

use std::future::Future;
use std::sync::Arc;

use openraft::SnapshotPolicy;
use tokio::signal::unix::Signal;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::api::Control;
use crate::celery::{Encoder, KombuLayout};
use crate::config::NodeConfig;
use crate::dispatch::leader::{watch_leadership, DispatchContext};
use crate::dispatch::planner::PlanConfig;
use crate::dispatch::{DispatchHealth, RedisSink};
use crate::raft::log_store::{CheckError, LogIdentity, LogStore};
use crate::raft::network::PeerNetwork;
use crate::raft::{Raft, StateHandle};
use crate::schedules_file;

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
    #[error("tls: {0}")]
    Tls(String),
    #[error(transparent)]
    Telemetry(#[from] crate::telemetry::TelemetryError),
    #[error("{0}")]
    Console(String),
    #[error("the Raft log cannot be read: {0}")]
    Faulted(crate::raft::log_store::EntryError),
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

/// Runs a node until `shutdown` completes; each `hangup` reloads the schedules file.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    hangup: Signal,
) -> Result<(), NodeError> {
    // Everything that can be checked without the cluster is, before the data directory is
    // touched: a bad Redis or TLS setting must not leave a half-started node behind.
    let sink = RedisSink::new(&config.redis)?;
    let tls = config
        .security
        .tls
        .as_ref()
        .map(|files| serve::tls_configs(files, config.connections.handshake_timeout))
        .transpose()?;
    let (log_store, state_machine) = match open_checked_storage(&config).await? {
        Checked::Usable(log_store, state_machine) => (log_store, state_machine),
        Checked::Undecodable(entry) => {
            return storage::stay_up_faulted(&config, entry, shutdown).await
        }
    };
    let state = state_machine.handle();
    let changes = state_machine.changes();
    let clocks = crate::raft::clock::PeerClocks::new(config.node_id, config.raft.max_clock_offset);
    let network = peer_network(&config, tls.as_ref().map(|(_, client)| client.clone()))
        .with_clocks(clocks.clone());
    let committed_index = log_store.committed_index();
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config(&config)?),
        network.clone(),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| NodeError::Raft(e.to_string()))?;
    let encoder = encoder(&config);
    let control = Control::new(
        raft.clone(),
        state.clone(),
        config.node_id,
        config.cluster_name.clone(),
        network.clone(),
        encoder.clone(),
        crate::api::control::ControlSettings {
            election_timeout_max: config.raft.election_max,
            outcomes_followed: config.results.is_some(),
        },
    );
    serve::warn_if_insecure(&config);
    let serving = serve::start(&config, tls.map(|(server, _)| server), &raft, &control).await?;
    cluster::bootstrap(&raft, &config, &control).await?;
    let joining = cluster::join_if_new(&raft, &config).await?;
    let running = Running {
        sink,
        encoder,
        state,
        changes,
        committed_index,
        clocks,
        network,
    };
    let tasks = start_tasks(
        &config,
        &raft,
        &control,
        running,
        serving.health.clone(),
        hangup,
    )
    .await?;
    shutdown.await;
    info!(node = config.node_id, "shutting down");
    if let Some(task) = joining {
        task.abort();
    }
    stop(&raft, &control, tasks, serving).await
}

/// A data directory opened and checked.
enum Checked {
    Usable(LogStore, crate::raft::StateMachineStore),
    /// The log holds an entry this build cannot decode.
    Undecodable(crate::raft::log_store::EntryError),
}

/// Opens the data directory, forgets a leadership the node held when it stopped, and checks
/// that every stored entry decodes.
async fn open_checked_storage(config: &NodeConfig) -> Result<Checked, NodeError> {
    let storage_err = |message: String| NodeError::Storage {
        path: config.data_dir.display().to_string(),
        message,
    };
    let identity = LogIdentity {
        cluster: config.cluster_name.clone(),
        node_id: config.node_id,
    };
    let (log_store, state_machine) =
        open_storage(&config.data_dir, &identity).map_err(|e| storage_err(e.to_string()))?;
    if let Some(term) = log_store
        .forget_own_leadership(config.node_id)
        .await
        .map_err(|e| storage_err(e.to_string()))?
    {
        info!(
            term,
            "was leader when it stopped: stands for election in a new term"
        );
    }
    match storage::check_log(&log_store).await {
        Ok(()) => Ok(Checked::Usable(log_store, state_machine)),
        Err(CheckError::Undecodable(entry)) => Ok(Checked::Undecodable(entry)),
        Err(err) => Err(storage_err(err.to_string())),
    }
}

/// The network to the peers, with this node's TLS identity and the cluster secret.
fn peer_network(
    config: &NodeConfig,
    client_tls: Option<tonic::transport::ClientTlsConfig>,
) -> PeerNetwork {
    let mut network = PeerNetwork::new(config.cluster_name.clone());
    if let Some(client_tls) = client_tls {
        network = network.with_tls(client_tls);
    }
    if let Some(secret) = &config.security.cluster_secret {
        network = network.with_secret(secret.clone());
    }
    network
}

/// The Celery encoder, naming this node as the messages' origin.
fn encoder(config: &NodeConfig) -> Encoder {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    Encoder {
        origin: format!("belfry-{}@{host}", config.node_id),
        layout: KombuLayout {
            global_keyprefix: config.kombu_global_keyprefix.clone(),
            ..KombuLayout::default()
        },
    }
}

/// What the background tasks share.
struct Running {
    sink: RedisSink,
    encoder: Encoder,
    state: StateHandle,
    changes: tokio::sync::watch::Receiver<u64>,
    committed_index: Arc<std::sync::atomic::AtomicU64>,
    clocks: crate::raft::clock::PeerClocks,
    network: PeerNetwork,
}

/// Readiness, metrics, the dispatcher, the heap trimmer, the cluster log and the schedules
/// file: every task that runs beside the server until shutdown.
async fn start_tasks(
    config: &NodeConfig,
    raft: &Raft,
    control: &Arc<Control>,
    running: Running,
    health: tonic_health::server::HealthReporter,
    hangup: Signal,
) -> Result<Vec<JoinHandle<()>>, NodeError> {
    let dispatch_health = DispatchHealth::default();
    let readiness = || crate::telemetry::Readiness {
        node_id: config.node_id,
        raft: raft.clone(),
        sink: running.sink.clone(),
        dispatch: dispatch_health.clone(),
    };
    let mut tasks = vec![tokio::spawn(serve::health_follows_readiness(
        health,
        readiness(),
    ))];
    if let Some(addr) = &config.metrics_listen {
        let handle = crate::telemetry::install()?;
        tasks.push(tokio::spawn(crate::telemetry::sample_forever(
            raft.clone(),
            running.state.clone(),
            running.committed_index,
            handle.clone(),
        )));
        tasks.push(crate::telemetry::serve(addr, handle, readiness()).await?);
    }
    if let Some(listen) = &config.console_listen {
        tasks.extend(start_console(config, listen, raft, control, readiness()).await?);
    }
    let ctx = Arc::new(DispatchContext {
        raft: raft.clone(),
        state: running.state,
        changes: running.changes,
        sink: running.sink,
        encoder: running.encoder,
        cluster_id: config.cluster_id(),
        plan: PlanConfig {
            max_outbox: config.max_outbox,
            ..PlanConfig::default()
        },
        push_batch: 1_000,
        quorum_timeout: config.raft.election_max,
        handing_over: control.handover_watch(),
        quorum_contact: crate::dispatch::lease::QuorumContact::track(raft),
        health: dispatch_health.clone(),
        clocks: running.clocks.clone(),
        results: match &config.results {
            Some(results) => Some(Arc::new(crate::dispatch::outcomes::ResultBackend::new(
                results,
            )?)),
            None => None,
        },
        network: running.network.clone(),
    });
    tasks.push(tokio::spawn(clock::keep_time(clock::TimeKeeper {
        raft: raft.clone(),
        network: running.network,
        clocks: running.clocks,
        control: control.clone(),
        health: dispatch_health,
        node_id: config.node_id,
    })));
    tasks.push(tokio::spawn(watch_leadership(ctx)));
    tasks.push(tokio::spawn(crate::heap::release_freed_forever()));
    tasks.push(tokio::spawn(cluster::log_cluster_changes(raft.clone())));
    tasks.push(match config.schedules.clone() {
        Some(path) => tokio::spawn(schedules_file::keep_reconciled(
            control.clone(),
            path,
            hangup,
        )),
        None => tokio::spawn(schedules_file::ignore_hangups(hangup)),
    });
    Ok(tasks)
}

/// The web console and the hour of samples its charts draw.
async fn start_console(
    config: &NodeConfig,
    listen: &str,
    raft: &Raft,
    control: &Arc<Control>,
    readiness: crate::telemetry::Readiness,
) -> Result<[JoinHandle<()>; 2], NodeError> {
    let window = Arc::new(crate::telemetry::window::Window::default());
    let sampler = tokio::spawn(crate::telemetry::window::keep_window(
        window.clone(),
        raft.clone(),
    ));
    let settings = crate::console::ConsoleSettings {
        listen: listen.to_string(),
        tls: config.security.tls.clone(),
        tokens: config.security.tokens.clone(),
        flower_url: config.flower_url.clone(),
        window,
        readiness,
    };
    let server = crate::console::serve(settings, control.clone())
        .await
        .map_err(|e| NodeError::Console(e.to_string()));
    match server {
        Ok(server) => Ok([sampler, server]),
        Err(err) => {
            sampler.abort();
            Err(err)
        }
    }
}

/// Stops in order, each step bounded: hand leadership over, stop the tasks, stop Raft, stop
/// serving.
async fn stop(
    raft: &Raft,
    control: &Control,
    tasks: Vec<JoinHandle<()>>,
    serving: serve::Serving,
) -> Result<(), NodeError> {
    if tokio::time::timeout(
        SHUTDOWN_STEP_LIMIT * 2,
        cluster::hand_over_if_leading(control),
    )
    .await
    .is_err()
    {
        warn!("leadership handover did not finish in time; the followers will elect a leader");
    }
    for task in tasks {
        task.abort();
    }
    match tokio::time::timeout(SHUTDOWN_STEP_LIMIT, raft.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(%err, "raft did not shut down cleanly"),
        Err(_) => warn!(
            limit_s = SHUTDOWN_STEP_LIMIT.as_secs(),
            "raft did not stop in time; exiting anyway (everything acknowledged is on disk)"
        ),
    }
    let _ = serving.stop.send(());
    match tokio::time::timeout(SHUTDOWN_STEP_LIMIT, serving.task).await {
        Ok(Ok(result)) => result?,
        Ok(Err(err)) => error!(%err, "grpc server task failed"),
        Err(_) => warn!(
            limit_s = SHUTDOWN_STEP_LIMIT.as_secs(),
            "calls still open after the server stopped accepting; exiting without them"
        ),
    }
    Ok(())
}

/// How long each step of a shutdown may take. A stuck step (an open call stream, a storage
/// wait) must not keep the process alive until the orchestrator's SIGKILL: nothing is lost by
/// leaving, because nothing is acknowledged before it is durable.
const SHUTDOWN_STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
