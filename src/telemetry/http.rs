//! The metrics port: `/metrics` (Prometheus text), `/healthz` (the process and its Raft core
//! are running) and `/readyz` (a member of a cluster that has a leader; when leading, Redis
//! answers and the dispatcher runs), for Kubernetes probes and Prometheus.
//!
//! Invariant: the endpoints only read (Raft's metrics, the dispatcher's health, a Redis PING);
//! a node whose log it cannot decode stays alive (`/healthz` 200) and never ready. It must not
//! change anything it reports on.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use openraft::ServerState;
use tokio::net::TcpListener;
use tracing::{info, warn};

use super::TelemetryError;
use crate::dispatch::sink::RedisSink;
use crate::dispatch::DispatchHealth;
use crate::raft::{NodeId, Raft};

/// How long `/readyz` waits for Redis to answer a PING.
const REDIS_PING_TIMEOUT: Duration = Duration::from_secs(1);

/// What `/readyz` looks at.
pub(crate) struct Readiness {
    pub node_id: NodeId,
    pub raft: Raft,
    pub sink: RedisSink,
    pub dispatch: DispatchHealth,
}

struct Endpoints {
    handle: PrometheusHandle,
    readiness: Readiness,
}

/// Binds `addr` (failing at once if it cannot) and serves until the task is aborted.
pub(crate) async fn serve(
    addr: &str,
    handle: PrometheusHandle,
    readiness: Readiness,
) -> Result<tokio::task::JoinHandle<()>, TelemetryError> {
    let endpoints = Arc::new(Endpoints { handle, readiness });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(endpoints);
    listen_and_serve(addr, app, "serving metrics, /healthz and /readyz").await
}

/// Serves the metrics port of a node that cannot take part in its cluster (its log holds an
/// entry it cannot decode): `/healthz` answers 200, since the process is alive and a restart
/// would meet the same entry, and `/readyz` answers 503 with `reason`, until the task is aborted.
pub(crate) async fn serve_faulted(
    addr: &str,
    handle: PrometheusHandle,
    reason: String,
) -> Result<tokio::task::JoinHandle<()>, TelemetryError> {
    let reason = Arc::new(reason);
    let (health, ready) = (reason.clone(), reason);
    let app = Router::new()
        .route("/metrics", get(move || async move { handle.render() }))
        .route(
            "/healthz",
            get(move || async move {
                (
                    StatusCode::OK,
                    format!("alive, but taking no part in the cluster: {health}\n"),
                )
            }),
        )
        .route(
            "/readyz",
            get(move || async move { (StatusCode::SERVICE_UNAVAILABLE, format!("{ready}\n")) }),
        );
    listen_and_serve(
        addr,
        app,
        "serving metrics, /healthz and /readyz (not ready: faulted)",
    )
    .await
}

/// Binds `addr` (failing at once if it cannot) and serves `app` until the task is aborted.
async fn listen_and_serve(
    addr: &str,
    app: Router,
    what: &'static str,
) -> Result<tokio::task::JoinHandle<()>, TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    info!(listen = %addr, "{what}");
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            warn!(%err, "the metrics server stopped");
        }
    }))
}

async fn metrics(State(endpoints): State<Arc<Endpoints>>) -> String {
    endpoints.handle.render()
}

async fn healthz(State(endpoints): State<Arc<Endpoints>>) -> (StatusCode, String) {
    match &endpoints.readiness.raft.metrics().borrow().running_state {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("raft stopped: {fatal}\n"),
        ),
    }
}

async fn readyz(State(endpoints): State<Arc<Endpoints>>) -> (StatusCode, String) {
    match not_ready_because(&endpoints.readiness).await {
        None => (StatusCode::OK, "ready\n".into()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

/// Why this node should not receive API traffic now, or `None` when it is ready.
pub(crate) async fn not_ready_because(readiness: &Readiness) -> Option<String> {
    let (leader, leading, term, member) = {
        let m = readiness.raft.metrics();
        let m = m.borrow();
        if let Err(fatal) = &m.running_state {
            return Some(format!("raft stopped: {fatal}"));
        }
        (
            m.current_leader,
            m.state == ServerState::Leader,
            m.current_term,
            m.membership_config
                .membership()
                .get_node(&readiness.node_id)
                .is_some(),
        )
    };
    if !member {
        return Some("not a member of a cluster yet".into());
    }
    if let Some(reason) = readiness.dispatch.clock_problem() {
        return Some(reason);
    }
    if leader.is_none() {
        return Some("the cluster has no leader".into());
    }
    if leading {
        if let Some(reason) = readiness.dispatch.not_dispatching_because(term) {
            return Some(reason);
        }
        match tokio::time::timeout(REDIS_PING_TIMEOUT, readiness.sink.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Some(format!("leader cannot reach Redis: {err}")),
            Err(_) => return Some("leader cannot reach Redis: PING timed out".into()),
        }
    }
    None
}
