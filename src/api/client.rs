//! A client of the API, shared by the CLI, a node joining a cluster, tests and benchmarks: one
//! lazily connected channel for both services.
//!
//! Invariant: every call carries the bearer token when one is given, and an `https://` endpoint
//! is reached over TLS that trusts the given CA (refused without one). It must not interpret
//! answers: callers do.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use super::pb::cluster_client::ClusterClient;
use super::pb::schedules_client::SchedulesClient;
use super::MAX_API_MESSAGE_BYTES;

/// Why a client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("token: {0}")]
    Token(String),
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Intercepted = InterceptedService<Channel, BearerToken>;

/// Both services over one channel.
#[derive(Clone)]
pub struct ApiClient {
    pub schedules: SchedulesClient<Intercepted>,
    pub cluster: ClusterClient<Intercepted>,
}

/// How to reach the API.
#[derive(Clone, Debug, Default)]
pub struct ClientConfig {
    /// `host:port`, `http://host:port` or `https://host:port`.
    pub endpoint: String,
    pub token: Option<String>,
    /// PEM CA for `https://` endpoints.
    pub tls_ca: Option<Vec<u8>>,
    /// Per-call deadline.
    pub timeout: Option<Duration>,
}

impl ApiClient {
    /// A client whose channel connects lazily (on the first call, and again after a failure).
    pub fn new(config: &ClientConfig) -> Result<ApiClient, ClientError> {
        let fail = |reason: String| ClientError::Endpoint {
            endpoint: config.endpoint.clone(),
            reason,
        };
        let uri = if config.endpoint.contains("://") {
            config.endpoint.clone()
        } else if config.tls_ca.is_some() {
            format!("https://{}", config.endpoint)
        } else {
            format!("http://{}", config.endpoint)
        };
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| fail(e.to_string()))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true);
        if let Some(timeout) = config.timeout {
            endpoint = endpoint.timeout(timeout);
        }
        if uri.starts_with("https://") {
            let ca = config.tls_ca.as_ref().ok_or_else(|| {
                fail("an https endpoint needs the cluster's CA (--tls-ca)".into())
            })?;
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                .map_err(|e| fail(e.to_string()))?;
        }
        let token = config
            .token
            .as_ref()
            .map(|t| {
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| ClientError::Token("must be printable ASCII".into()))
            })
            .transpose()?;
        let channel = endpoint.connect_lazy();
        let auth = BearerToken(token);
        Ok(ApiClient {
            schedules: SchedulesClient::with_interceptor(channel.clone(), auth.clone())
                .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_API_MESSAGE_BYTES),
            cluster: ClusterClient::with_interceptor(channel, auth),
        })
    }
}
