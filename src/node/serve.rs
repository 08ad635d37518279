//! A node's API/peer port: TLS settings, the gRPC server with every service behind the
//! connection limits, and the gRPC health that follows readiness.
//!
//! Invariant: the port serves the peer protocol and the API only through their services'
//! own checks (peer authentication, API tokens); nothing here decides a request.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::NodeError;
use crate::api::auth::Authenticator;
use crate::api::{pb, Control};
use crate::config::NodeConfig;
use crate::connections::Guarded;
use crate::raft::network::peer_server;
use crate::raft::Raft;

/// The running gRPC server: how to stop it, its task, and its health reporter.
pub(super) struct Serving {
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), tonic::transport::Error>>,
    pub health: tonic_health::server::HealthReporter,
}

/// A gRPC server with the port's connection limits (and TLS, when configured).
pub(super) fn server_builder(
    config: &NodeConfig,
    server_tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::Server, NodeError> {
    let limits = &config.connections;
    let builder = tonic::transport::Server::builder()
        // Pings on quiet connections: one whose client vanished is closed, freeing its slot.
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_concurrent_streams(Some(limits.max_streams_per_connection));
    match server_tls {
        Some(server_tls) => builder
            .tls_config(server_tls)
            .map_err(|e| NodeError::Tls(error_chain(&e))),
        None => Ok(builder),
    }
}

/// Binds the port and serves the peer protocol, the API, health and reflection on it.
pub(super) async fn start(
    config: &NodeConfig,
    server_tls: Option<tonic::transport::ServerTlsConfig>,
    raft: &Raft,
    control: &Arc<Control>,
) -> Result<Serving, NodeError> {
    let listener = TcpListener::bind(&config.listen)
        .await
        .map_err(|source| NodeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    info!(node = config.node_id, listen = %config.listen, advertise = %config.advertise, "belfry node started");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = &config.connections;
    let builder = server_builder(config, server_tls)?;
    let (schedules_api, cluster_api) = crate::api::services(
        control.clone(),
        Authenticator::new(config.security.tokens.clone()),
    );
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<pb::schedules_server::SchedulesServer<crate::api::SchedulesApi>>()
        .await;
    health
        .set_serving::<pb::cluster_server::ClusterServer<crate::api::ClusterApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| NodeError::Raft(format!("reflection: {e}")))?;
    let task = tokio::spawn(
        builder
            .layer(crate::telemetry::ApiMetricsLayer)
            .add_service(peer_server(
                raft.clone(),
                config.node_id,
                config.cluster_name.clone(),
                Some(control.forward_handler()),
                config.security.peer_auth(),
            ))
            .add_service(schedules_api)
            .add_service(cluster_api)
            .add_service(health_service)
            .add_service(reflection)
            .serve_with_incoming_shutdown(Guarded::new(listener, limits), async {
                let _ = stopped.await;
            }),
    );
    Ok(Serving { stop, task, health })
}

/// The gRPC health of `belfry.v1.Schedules` follows `/readyz` (a cluster with a leader; Redis
/// reachable when leading), so a gRPC readiness probe means the same as the HTTP one; the
/// server as a whole (service "") stays SERVING while the process runs, for liveness.
pub(super) async fn health_follows_readiness(
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

/// The server's and the peer client's TLS settings, built (and so checked) before anything
/// starts. The server asks for a client certificate without demanding one: API clients have
/// none, and the peer service refuses callers without one.
pub(super) fn tls_configs(
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
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

pub(super) fn warn_if_insecure(config: &NodeConfig) {
    if config.security.tokens.is_none() {
        warn!("API authentication is OFF (--insecure-no-auth): anyone who reaches the port can change schedules");
    }
    match (&config.security.tls, &config.security.cluster_secret) {
        (Some(_), _) => {}
        (None, Some(_)) => warn!("TLS is OFF (--insecure-no-tls): API and peer traffic travel in plain text; peers are authenticated by the cluster secret only"),
        (None, None) => warn!("TLS is OFF (--insecure-no-tls) and peer authentication is OFF (--insecure-no-peer-auth): anyone who reaches the port can move leadership and write schedules"),
    }
}
