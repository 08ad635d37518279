//! One `belfry server` node: storage, Raft, the gRPC server, the leader's dispatcher and the
//! schedules file, wired together and shut down in order.
//!
//! Owns start-up (including bootstrapping a fresh cluster from the static member list, never
//! re-initializing a node that has state), signals, and shutdown. It must not hold scheduling
//! or consensus logic of its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use openraft::{BasicNode, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::signal::unix::Signal;
use tracing::{error, info, warn};

use crate::api::auth::Authenticator;
use crate::api::client::{ApiClient, ClientConfig};
use crate::api::{pb, Control};
use crate::celery::{Encoder, KombuLayout};
use crate::config::NodeConfig;
use crate::connections::Guarded;
use crate::dispatch::leader::{watch_leadership, DispatchContext};
use crate::dispatch::planner::PlanConfig;
use crate::dispatch::RedisSink;
use crate::raft::log_store::{CheckError, EntryError, LogIdentity, LogStore};
use crate::raft::network::{peer_server, PeerNetwork};
use crate::raft::Raft;
use crate::raft::StateMachineStore;
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
        .map(|files| tls_configs(files, config.connections.handshake_timeout))
        .transpose()?;
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
    let state = state_machine.handle();
    let changes = state_machine.changes();

    let mut network = PeerNetwork::new(config.cluster_name.clone());
    if let Some((_, client_tls)) = &tls {
        network = network.with_tls(client_tls.clone());
    }
    if let Some(secret) = &config.security.cluster_secret {
        network = network.with_secret(secret.clone());
    }
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
    match check_log(&log_store).await {
        Ok(()) => {}
        Err(CheckError::Undecodable(entry)) => {
            return stay_up_faulted(&config, entry, shutdown).await
        }
        Err(err) => return Err(storage_err(err.to_string())),
    }
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
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
    let encoder = Encoder {
        origin: format!("belfry-{}@{host}", config.node_id),
        layout: KombuLayout {
            global_keyprefix: config.kombu_global_keyprefix.clone(),
            ..KombuLayout::default()
        },
    };
    let control = Control::new(
        raft.clone(),
        state.clone(),
        config.node_id,
        config.cluster_name.clone(),
        network,
        encoder.clone(),
        config.raft.election_max,
    );
    warn_if_insecure(&config);

    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    info!(node = config.node_id, listen = %config.listen, advertise = %config.advertise, "belfry node started");
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = &config.connections;
    let mut builder = tonic::transport::Server::builder()
        // Pings on quiet connections: one whose client vanished is closed, freeing its slot.
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_streams_per_connection));
    if let Some((server_tls, _)) = tls {
        builder = builder
            .tls_config(server_tls)
            .map_err(|e| NodeError::Tls(error_chain(&e)))?;
    }
    let (schedules_api, cluster_api) = crate::api::services(
        control.clone(),
        Authenticator::new(config.security.tokens.clone()),
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_not_serving::<pb::schedules_server::SchedulesServer<crate::api::SchedulesApi>>()
        .await;
    health_reporter
        .set_serving::<pb::cluster_server::ClusterServer<crate::api::ClusterApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Raft(format!("reflection: {e}")))?;
    let server = tokio::spawn(
        builder
            .layer(crate::telemetry::ApiMetricsLayer)
            .add_service(peer_server(
                raft.clone(),
                config.node_id,
                config.cluster_name.clone(),
                Some(crate::api::forward_handler(control.clone())),
                config.security.peer_auth(),
            ))
            .add_service(schedules_api)
            .add_service(cluster_api)
            .add_service(health)
            .add_service(reflection)
            .serve_with_incoming_shutdown(Guarded::new(listener, limits), async {
                let _ = serving_stopped.await;
            }),
    );

    bootstrap(&raft, &config, &control).await?;
    let joining = join_if_new(&raft, &config).await?;

    let dispatch_health = crate::dispatch::DispatchHealth::default();
    let health_follower = tokio::spawn(health_follows_readiness(
        health_reporter,
        crate::telemetry::Readiness {
            node_id: config.node_id,
            raft: raft.clone(),
            sink: sink.clone(),
            dispatch: dispatch_health.clone(),
        },
    ));
    let telemetry = match &config.metrics_listen {
        Some(addr) => {
            let handle = crate::telemetry::install()?;
            let sampler = tokio::spawn(crate::telemetry::sample_forever(
                raft.clone(),
                state.clone(),
                committed_index,
                handle.clone(),
            ));
            let readiness = crate::telemetry::Readiness {
                node_id: config.node_id,
                raft: raft.clone(),
                sink: sink.clone(),
                dispatch: dispatch_health.clone(),
            };
            let http = crate::telemetry::serve(addr, handle, readiness).await?;
            vec![sampler, http]
        }
        None => Vec::new(),
    };
    let ctx = Arc::new(DispatchContext {
        raft: raft.clone(),
        state: state.clone(),
        changes,
        sink,
        encoder,
        cluster_id: config.cluster_id(),
        plan: PlanConfig::default(),
        push_batch: 1_000,
        quorum_timeout: config.raft.election_max,
        handing_over: control.handover_watch(),
        quorum_contact: crate::dispatch::lease::QuorumContact::track(&raft),
        health: dispatch_health,
    });
    let dispatcher = tokio::spawn(watch_leadership(ctx));
    let heap_release = tokio::spawn(crate::heap::release_freed_forever());
    let cluster_log = tokio::spawn(log_cluster_changes(raft.clone()));
    let schedules = match config.schedules.clone() {
        Some(path) => tokio::spawn(schedules_file::keep_reconciled(
            control.clone(),
            path,
            hangup,
        )),
        None => tokio::spawn(schedules_file::ignore_hangups(hangup)),
    };

    shutdown.await;
    info!(node = config.node_id, "shutting down");
    if let Some(task) = joining {
        task.abort();
    }
    if tokio::time::timeout(SHUTDOWN_STEP_LIMIT * 2, hand_over_if_leading(&control))
        .await
        .is_err()
    {
        warn!("leadership handover did not finish in time; the followers will elect a leader");
    }
    dispatcher.abort();
    cluster_log.abort();
    heap_release.abort();
    health_follower.abort();
    for task in telemetry {
        task.abort();
    }
    schedules.abort();
    match tokio::time::timeout(SHUTDOWN_STEP_LIMIT, raft.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => warn!(%err, "raft did not shut down cleanly"),
        Err(_) => warn!(
            limit_s = SHUTDOWN_STEP_LIMIT.as_secs(),
            "raft did not stop in time; exiting anyway (everything acknowledged is on disk)"
        ),
    }
    let _ = stop_serving.send(());
    match tokio::time::timeout(SHUTDOWN_STEP_LIMIT, server).await {
        Ok(Ok(result)) => result?,
        Ok(Err(err)) => error!(%err, "grpc server task failed"),
        Err(_) => warn!(
            limit_s = SHUTDOWN_STEP_LIMIT.as_secs(),
            "calls still open after the server stopped accepting; exiting without them"
        ),
    }
    Ok(())
}

/// Decodes every entry of the log on a blocking thread (see `LogStore::check_entries`).
async fn check_log(log_store: &LogStore) -> Result<(), CheckError> {
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
async fn stay_up_faulted(
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
    // The same connection limits as a working node's port.
    let limits = &config.connections;
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_streams_per_connection));
    if let Some(tls) = &config.security.tls {
        let (server_tls, _) = tls_configs(tls, limits.handshake_timeout)?;
        builder = builder
            .tls_config(server_tls)
            .map_err(|e| NodeError::Tls(error_chain(&e)))?;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(builder.add_service(health).serve_with_incoming_shutdown(
        Guarded::new(listener, limits),
        async {
            let _ = stopped.await;
        },
    ));
    Ok((stop, server))
}

/// How long each step of a shutdown may take. A stuck step (an open call stream, a storage
/// wait) must not keep the process alive until the orchestrator's SIGKILL: nothing is lost by
/// leaving, because nothing is acknowledged before it is durable.
const SHUTDOWN_STEP_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Forms a fresh cluster from the static member list: only its lowest-id member initializes
/// (as ordinal 0 does in a StatefulSet), and only when no peer already holds a cluster; the
/// others wait to be contacted. A node with any Raft
/// state (a restart) is left alone, and so is any other node whose data is empty (a wiped node
/// rejoins through the leader, by snapshot), so no node ever re-initializes a running cluster.
async fn bootstrap(raft: &Raft, config: &NodeConfig, control: &Control) -> Result<(), NodeError> {
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
    // A lowest-id member that lost its data while the others kept theirs must not start a
    // new cluster beside theirs (with another empty node it could even win an election and
    // overwrite their logs): it waits to be brought back like any other wiped node.
    let holding = control
        .peers_with_state(&config.peers, std::time::Duration::from_secs(2))
        .await;
    if !holding.is_empty() {
        warn!(peers = ?holding, "no local state, but peers already hold a cluster: not initializing; waiting for its leader");
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

/// The gRPC health of `belfry.v1.Schedules` follows `/readyz` (a cluster with a leader; Redis
/// reachable when leading), so a gRPC readiness probe means the same as the HTTP one; the
/// server as a whole (service "") stays SERVING while the process runs, for liveness.
async fn health_follows_readiness(
    reporter: tonic_health::server::HealthReporter,
    readiness: crate::telemetry::Readiness,
) {
    type Schedules = pb::schedules_server::SchedulesServer<crate::api::SchedulesApi>;
    let mut ready = None;
    loop {
        let reason = crate::telemetry::not_ready_because(&readiness).await;
        let now_ready = reason.is_none();
        if ready != Some(now_ready) {
            if now_ready {
                reporter.set_serving::<Schedules>().await;
            } else {
                reporter.set_not_serving::<Schedules>().await;
            }
            if let Some(reason) = reason {
                info!(%reason, "not ready for API traffic");
            } else if ready.is_some() {
                info!("ready for API traffic");
            }
            ready = Some(now_ready);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// One log line per change of leader and per change of membership, on every node.
async fn log_cluster_changes(raft: Raft) {
    let mut metrics = raft.metrics();
    let (mut leader, mut membership) = (None, None);
    loop {
        {
            let m = metrics.borrow_and_update();
            if m.current_leader != leader {
                leader = m.current_leader;
                match leader {
                    Some(id) => info!(term = m.current_term, leader = id, "leader changed"),
                    None => info!(term = m.current_term, "no leader known"),
                }
            }
            let config = m.membership_config.log_id().map(|id| id.index);
            if config != membership {
                membership = config;
                let current = m.membership_config.membership();
                let voters: Vec<u64> = current.voter_ids().collect();
                let learners: Vec<u64> = current.learner_ids().collect();
                info!(?voters, ?learners, log_index = ?config, "membership changed");
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// The server's and the peer client's TLS settings, built (and so checked) before anything
/// starts. The server asks for a client certificate without demanding one: API clients have
/// none, and the peer service refuses callers without one.
fn tls_configs(
    tls: &crate::config::TlsFiles,
    handshake_timeout: std::time::Duration,
) -> Result<
    (
        tonic::transport::ServerTlsConfig,
        tonic::transport::ClientTlsConfig,
    ),
    NodeError,
> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
    let server = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert, &tls.key))
        .client_ca_root(Certificate::from_pem(&tls.ca))
        .client_auth_optional(true)
        // A client that never finishes its handshake does not hold a connection for long.
        .timeout(handshake_timeout);
    // Building a server with it parses the certificate and key: a key that does not match
    // the certificate is found now, not when the first client connects.
    tonic::transport::Server::builder()
        .tls_config(server.clone())
        .map_err(|e| {
            NodeError::Tls(format!(
                "tls_cert / tls_key / tls_client_ca: {}",
                error_chain(&e)
            ))
        })?;
    let client = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca))
        .identity(Identity::from_pem(&tls.cert, &tls.key));
    Ok((server, client))
}

/// An error with its sources: tonic's own message is only "transport error".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn warn_if_insecure(config: &NodeConfig) {
    if config.security.tokens.is_none() {
        warn!("API authentication is OFF (--insecure-no-auth): anyone who reaches the port can change schedules");
    }
    match (&config.security.tls, &config.security.cluster_secret) {
        (Some(_), _) => {}
        (None, Some(_)) => warn!("TLS is OFF (--insecure-no-tls): API and peer traffic travel in plain text; peers are authenticated by the cluster secret only"),
        (None, None) => warn!("TLS is OFF (--insecure-no-tls) and peer authentication is OFF (--insecure-no-peer-auth): anyone who reaches the port can move leadership and write schedules"),
    }
}

/// A leader being stopped hands its leadership over first, so dispatch resumes on another
/// node as soon as the followers' leases allow rather than after a failure is detected.
async fn hand_over_if_leading(control: &Control) {
    if !control.claims_leadership() {
        return;
    }
    info!("leader stopping: handing leadership over");
    let request = crate::api::control::LeaderRequest::TransferLeader {
        to: None,
        only_if_leader: Some(control.node_id()),
    };
    match control.serve_forwarded(request).await {
        Ok(_) => {}
        Err(err) => {
            warn!(%err, "could not hand leadership over; the followers will elect a leader")
        }
    }
}

/// A node that is not an initial member and has no state asks the cluster (through the
/// `--join` addresses, in turn) to add it, until one accepts: it joins as a learner and is
/// promoted to voter once caught up.
async fn join_if_new(
    raft: &Raft,
    config: &NodeConfig,
) -> Result<Option<tokio::task::JoinHandle<()>>, NodeError> {
    if config.peers.contains_key(&config.node_id)
        || raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?
    {
        return Ok(None);
    }
    let token = config
        .security
        .tokens
        .as_ref()
        .and_then(|t| t.admin.first().cloned());
    let tls_ca = config.security.tls.as_ref().map(|t| t.ca.clone());
    let (node_id, advertise, seeds) = (
        config.node_id,
        config.advertise.clone(),
        config.join.clone(),
    );
    Ok(Some(tokio::spawn(async move {
        loop {
            for seed in &seeds {
                let client = ApiClient::new(&ClientConfig {
                    endpoint: seed.clone(),
                    token: token.clone(),
                    tls_ca: tls_ca.clone(),
                    timeout: Some(std::time::Duration::from_secs(120)),
                });
                let mut client = match client {
                    Ok(client) => client,
                    Err(err) => {
                        error!(%err, "cannot use this join address");
                        continue;
                    }
                };
                let request = pb::AddNodeRequest {
                    node_id,
                    address: advertise.clone(),
                    learner_only: false,
                };
                match client.cluster.add_node(request).await {
                    Ok(_) => {
                        info!(node_id, %seed, "joined the cluster");
                        return;
                    }
                    Err(status) => {
                        warn!(%seed, code = ?status.code(), message = status.message(), "join refused; retrying")
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    })))
}
