//! `belfry server` configuration: a TOML file, overridden by flags, overridden by nothing
//! else; every flag also reads a `BELFRY_*` environment variable.
//!
//! Owns parsing and defaults, and refuses an incomplete or contradictory configuration with a
//! message naming the setting. It must not start anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::raft::peer_auth::{ClusterSecret, PeerAuth};
use crate::raft::NodeId;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
}

fn invalid(setting: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting,
        reason: reason.into(),
    }
}

/// Flags of `belfry server` (each also read from its `BELFRY_*` variable).
#[derive(Args, Debug, Default, Clone)]
pub struct ServerArgs {
    /// TOML configuration file; flags and variables override it.
    #[arg(long, env = "BELFRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// This node's id (a positive integer, unique in the cluster).
    #[arg(long, env = "BELFRY_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address the gRPC server binds, e.g. 0.0.0.0:7400.
    #[arg(long, env = "BELFRY_LISTEN")]
    pub listen: Option<String>,
    /// Address peers reach this node at (defaults to --listen).
    #[arg(long, env = "BELFRY_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the Raft log, vote and snapshots.
    #[arg(long, env = "BELFRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The initial members, every node given the same list: `1=host:7400,2=host:7400,3=host:7400`.
    #[arg(long, env = "BELFRY_PEERS")]
    pub peers: Option<String>,
    /// Names the cluster; task ids and Raft traffic are scoped by it.
    #[arg(long, env = "BELFRY_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Redis URL of the Celery broker (redis:// or rediss://).
    #[arg(long, env = "BELFRY_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Redis password (overrides the URL's).
    #[arg(long, env = "BELFRY_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,
    /// Schedules declared in a TOML file, reconciled on leadership and on SIGHUP.
    #[arg(long, env = "BELFRY_SCHEDULES")]
    pub schedules: Option<PathBuf>,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "BELFRY_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Raft election timeout range in milliseconds, `min-max` (e.g. 500-900).
    #[arg(long, env = "BELFRY_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<String>,
    /// Log format: `text` (default) or `json`.
    #[arg(long, env = "BELFRY_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Derive the node id from the host name's trailing ordinal (`belfry-0` is node 1), as
    /// in a Kubernetes StatefulSet.
    #[arg(long, env = "BELFRY_NODE_ID_FROM_HOSTNAME")]
    pub node_id_from_hostname: bool,
    /// API addresses (comma-separated) a node that is not an initial member asks to add it.
    #[arg(long, env = "BELFRY_JOIN")]
    pub join: Option<String>,
    /// A file holding admin API tokens, one per line.
    #[arg(long, env = "BELFRY_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// An admin API token.
    #[arg(long, env = "BELFRY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A file holding read-only API tokens, one per line.
    #[arg(long, env = "BELFRY_READONLY_TOKEN_FILE")]
    pub readonly_token_file: Option<PathBuf>,
    /// A read-only API token.
    #[arg(long, env = "BELFRY_READONLY_TOKEN", hide_env_values = true)]
    pub readonly_token: Option<String>,
    /// Serve the API without authentication (every caller is an admin).
    #[arg(long, env = "BELFRY_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// PEM certificate (chain) of this node, for the API and for peers.
    #[arg(long, env = "BELFRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "BELFRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA that signs every node's certificate: peers must present one (mutual TLS).
    #[arg(long, env = "BELFRY_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve and talk to peers in plain text.
    #[arg(long, env = "BELFRY_INSECURE_NO_TLS")]
    pub insecure_no_tls: bool,
    /// A file holding the cluster secret every peer call carries (one per line: the first is
    /// sent, any is accepted). Required without TLS.
    #[arg(long, env = "BELFRY_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// The cluster secret every peer call carries.
    #[arg(long, env = "BELFRY_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Accept peer calls from anyone who reaches the port (neither TLS nor a cluster secret):
    /// they can then move leadership and write schedules.
    #[arg(long, env = "BELFRY_INSECURE_NO_PEER_AUTH")]
    pub insecure_no_peer_auth: bool,
    /// Address of the HTTP server for `/metrics`, `/healthz` and `/readyz` (`off` disables it).
    #[arg(long, env = "BELFRY_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
}

/// PEM material for TLS, read at start-up.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

/// The API's and the peers' security settings.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `None`: authentication explicitly off.
    pub tokens: Option<crate::api::auth::Tokens>,
    /// `None`: TLS explicitly off.
    pub tls: Option<TlsFiles>,
    /// Sent with and demanded of every peer call. `None` with TLS off: peer authentication
    /// explicitly off (`--insecure-no-peer-auth`).
    pub cluster_secret: Option<ClusterSecret>,
}

impl Security {
    /// What an incoming peer call must present.
    pub fn peer_auth(&self) -> PeerAuth {
        PeerAuth {
            require_certificate: self.tls.is_some(),
            secret: self.cluster_secret.clone(),
        }
    }
}

/// Bounds on the API/peer port's connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_streams_per_connection: u32,
    /// A connection that has not sent its first bytes by then is closed.
    pub handshake_timeout: Duration,
    /// HTTP/2 pings and TCP keepalive probes on quiet connections, so a vanished client's
    /// connection is closed.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            max_streams_per_connection: 256,
            handshake_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

/// Reads tokens or secrets, one per line (blank lines and `#` comments ignored). A file that
/// holds none is refused: it would configure nothing, or worse, an empty credential.
fn read_tokens(setting: &'static str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(setting, format!("{}: {e}", path.display())))?;
    let tokens: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if tokens.is_empty() {
        return Err(invalid(
            setting,
            format!(
                "{} is empty (or only blank lines and comments)",
                path.display()
            ),
        ));
    }
    Ok(tokens)
}

/// A token given directly (flag or variable): set but blank is refused, never an empty token
/// that `authorization: Bearer ` would match.
fn direct_token(
    setting: &'static str,
    token: Option<&String>,
) -> Result<Option<String>, ConfigError> {
    match token.map(|t| t.trim()) {
        Some("") => Err(invalid(
            setting,
            "is set but empty or only whitespace; unset it or give a token",
        )),
        Some(token) => Ok(Some(token.to_string())),
        None => Ok(None),
    }
}

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    PrivateKey,
}

/// Reads a PEM file and checks that it holds what `kind` says, so a wrong or damaged file is
/// named at start rather than reported as a bare "transport error" later.
fn read_pem(setting: &'static str, path: &Path, kind: Pem) -> Result<Vec<u8>, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| invalid(setting, format!("{shown}: {e}")))?;
    match kind {
        Pem::Certificates => {
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(setting, format!("{shown}: not a PEM certificate: {e}")))?;
            if certs.is_empty() {
                return Err(invalid(
                    setting,
                    format!("{shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"),
                ));
            }
        }
        Pem::PrivateKey => {
            PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| invalid(setting, format!("{shown}: no PEM private key found: {e}")))?;
        }
    }
    Ok(pem)
}

/// The node id from a StatefulSet host name: `belfry-0` → 1.
pub fn node_id_from_hostname(hostname: &str) -> Result<NodeId, ConfigError> {
    let ordinal = hostname
        .split('.')
        .next()
        .and_then(|h| h.rsplit_once('-'))
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .ok_or_else(|| {
            invalid(
                "node_id_from_hostname",
                format!("host name {hostname:?} does not end in -<ordinal>"),
            )
        })?;
    Ok(ordinal + 1)
}

fn security(args: &ServerArgs, file: &FileSecurity) -> Result<Security, ConfigError> {
    let tokens = if args.insecure_no_auth || file.insecure_no_auth {
        None
    } else {
        let mut tokens = crate::api::auth::Tokens::default();
        if let Some(path) = args
            .admin_token_file
            .as_ref()
            .or(file.admin_token_file.as_ref())
        {
            tokens.admin = read_tokens("admin_token_file", path)?;
        }
        tokens
            .admin
            .extend(direct_token("admin_token", args.admin_token.as_ref())?);
        if let Some(path) = args
            .readonly_token_file
            .as_ref()
            .or(file.readonly_token_file.as_ref())
        {
            tokens.readonly = read_tokens("readonly_token_file", path)?;
        }
        tokens.readonly.extend(direct_token(
            "readonly_token",
            args.readonly_token.as_ref(),
        )?);
        if tokens.admin.is_empty() {
            return Err(invalid(
                "admin_token",
                "no admin token configured (--admin-token-file or BELFRY_ADMIN_TOKEN); \
                 --insecure-no-auth turns authentication off",
            ));
        }
        Some(tokens)
    };
    let tls = if args.insecure_no_tls || file.insecure_no_tls {
        None
    } else {
        let cert = args.tls_cert.as_ref().or(file.tls_cert.as_ref());
        let key = args.tls_key.as_ref().or(file.tls_key.as_ref());
        let ca = args.tls_client_ca.as_ref().or(file.tls_client_ca.as_ref());
        match (cert, key, ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert: read_pem("tls_cert", cert, Pem::Certificates)?,
                key: read_pem("tls_key", key, Pem::PrivateKey)?,
                ca: read_pem("tls_client_ca", ca, Pem::Certificates)?,
            }),
            _ => {
                return Err(invalid(
                    "tls_cert",
                    "TLS needs --tls-cert, --tls-key and --tls-client-ca; \
                     --insecure-no-tls turns it off",
                ))
            }
        }
    };
    let cluster_secret = cluster_secret(args, file, tls.is_some())?;
    Ok(Security {
        tokens,
        tls,
        cluster_secret,
    })
}

/// The cluster secret: from the flag or variable, or from a file, never both. Without TLS a
/// node needs one, or an explicit `--insecure-no-peer-auth`.
fn cluster_secret(
    args: &ServerArgs,
    file: &FileSecurity,
    tls: bool,
) -> Result<Option<ClusterSecret>, ConfigError> {
    let path = args
        .cluster_secret_file
        .as_ref()
        .or(file.cluster_secret_file.as_ref());
    let secret = match (&args.cluster_secret, path) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "cluster_secret",
                "given both directly (--cluster-secret or BELFRY_CLUSTER_SECRET) and as a \
                 file (cluster_secret_file); give one",
            ))
        }
        (Some(secret), None) => Some(
            ClusterSecret::new(std::slice::from_ref(secret))
                .map_err(|e| invalid("cluster_secret", format!("the cluster secret {e}")))?,
        ),
        (None, Some(path)) => {
            let secrets = read_tokens("cluster_secret_file", path)?;
            Some(ClusterSecret::new(&secrets).map_err(|e| {
                invalid(
                    "cluster_secret_file",
                    format!("{}: a secret in it {e}", path.display()),
                )
            })?)
        }
        (None, None) => None,
    };
    let no_peer_auth = args.insecure_no_peer_auth || file.insecure_no_peer_auth;
    match (&secret, no_peer_auth) {
        (Some(_), true) => Err(invalid(
            "insecure_no_peer_auth",
            "contradicts the cluster secret that is also given; drop one of them",
        )),
        (None, false) if !tls => Err(invalid(
            "cluster_secret",
            "peer calls would be unauthenticated: without TLS every node needs the same \
             cluster secret (--cluster-secret-file, BELFRY_CLUSTER_SECRET_FILE or \
             BELFRY_CLUSTER_SECRET); --insecure-no-peer-auth lets anyone who reaches the port \
             move leadership and write schedules",
        )),
        _ => Ok(secret),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    node_id: Option<u64>,
    listen: Option<String>,
    advertise: Option<String>,
    data_dir: Option<PathBuf>,
    peers: Option<BTreeMap<String, String>>,
    cluster_name: Option<String>,
    schedules: Option<PathBuf>,
    log_format: Option<String>,
    join: Option<Vec<String>>,
    metrics_listen: Option<String>,
    #[serde(default)]
    redis: FileRedis,
    #[serde(default)]
    raft: FileRaft,
    #[serde(default)]
    security: FileSecurity,
    #[serde(default)]
    connections: FileConnections,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSecurity {
    admin_token_file: Option<PathBuf>,
    readonly_token_file: Option<PathBuf>,
    #[serde(default)]
    insecure_no_auth: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    #[serde(default)]
    insecure_no_tls: bool,
    cluster_secret_file: Option<PathBuf>,
    #[serde(default)]
    insecure_no_peer_auth: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConnections {
    max_connections: Option<usize>,
    max_streams_per_connection: Option<u32>,
    handshake_timeout_ms: Option<u64>,
    keepalive_interval_secs: Option<u64>,
    keepalive_timeout_secs: Option<u64>,
}

impl FileConnections {
    /// The defaults overridden by the file; every value must be positive.
    fn resolve(&self) -> Result<ConnectionLimits, ConfigError> {
        let defaults = ConnectionLimits::default();
        Ok(ConnectionLimits {
            max_connections: positive("connections.max_connections", self.max_connections)?
                .unwrap_or(defaults.max_connections),
            max_streams_per_connection: positive(
                "connections.max_streams_per_connection",
                self.max_streams_per_connection,
            )?
            .unwrap_or(defaults.max_streams_per_connection),
            handshake_timeout: positive(
                "connections.handshake_timeout_ms",
                self.handshake_timeout_ms,
            )?
            .map_or(defaults.handshake_timeout, Duration::from_millis),
            keepalive_interval: positive(
                "connections.keepalive_interval_secs",
                self.keepalive_interval_secs,
            )?
            .map_or(defaults.keepalive_interval, Duration::from_secs),
            keepalive_timeout: positive(
                "connections.keepalive_timeout_secs",
                self.keepalive_timeout_secs,
            )?
            .map_or(defaults.keepalive_timeout, Duration::from_secs),
        })
    }
}

/// Refuses a zero: no limit or timeout here means anything at zero.
fn positive<T: Copy + Default + PartialEq>(
    setting: &'static str,
    value: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match value {
        Some(v) if v == T::default() => Err(invalid(setting, "must be positive")),
        other => Ok(other),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRedis {
    url: Option<String>,
    db: Option<i64>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    key_prefix: Option<String>,
    marker_ttl_secs: Option<u64>,
    tls_ca_file: Option<PathBuf>,
    kombu_global_keyprefix: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileRaft {
    heartbeat_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every_logs: Option<u64>,
    keep_logs_after_snapshot: Option<u64>,
}

/// Raft timings; the defaults give a failover under two seconds without flapping on a busy
/// two-core machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Build a snapshot (and purge the log before it) after this many entries.
    pub snapshot_every_logs: u64,
    /// Entries kept before the last snapshot, so a briefly lagging peer catches up from the log.
    pub keep_logs_after_snapshot: u64,
}

impl Default for RaftTimings {
    fn default() -> Self {
        RaftTimings {
            heartbeat: Duration::from_millis(100),
            election_min: Duration::from_millis(500),
            election_max: Duration::from_millis(900),
            snapshot_every_logs: 20_000,
            keep_logs_after_snapshot: 1_000,
        }
    }
}

/// A complete, checked node configuration.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    pub listen: String,
    pub advertise: String,
    pub data_dir: PathBuf,
    /// Initial members: node id → advertised address.
    pub peers: BTreeMap<NodeId, String>,
    pub cluster_name: String,
    pub redis: crate::dispatch::SinkConfig,
    pub kombu_global_keyprefix: String,
    pub schedules: Option<PathBuf>,
    pub raft: RaftTimings,
    pub json_logs: bool,
    /// API addresses to ask for membership when this node is not an initial member.
    pub join: Vec<String>,
    pub security: Security,
    pub connections: ConnectionLimits,
    /// `None`: no metrics server.
    pub metrics_listen: Option<String>,
}

/// Parses `1=host:port,2=host:port`. A node id or an address listed twice is refused: two
/// members at one address would be one node voting twice.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers: BTreeMap<NodeId, String> = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("{item:?} is not id=host:port")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| invalid("peers", format!("{id:?} is not a node id")))?;
        check_addr("peers", addr.trim())?;
        if let Some((other, _)) = peers.iter().find(|(_, a)| a.as_str() == addr.trim()) {
            return Err(invalid(
                "peers",
                format!("nodes {other} and {id} are both listed at {}", addr.trim()),
            ));
        }
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

pub fn check_addr(setting: &'static str, addr: &str) -> Result<(), ConfigError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(invalid(setting, format!("{addr:?} is not host:port"))),
    }
}

/// Parses the Redis URL the way the sink will, so a bad one is refused before anything starts.
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    use redis::IntoConnectionInfo;
    url.into_connection_info()
        .map(|_| ())
        // The URL itself is not repeated: it may hold a password.
        .map_err(|e| invalid("redis_url", format!("not a Redis URL: {e}")))
}

fn parse_election(text: &str) -> Result<(u64, u64), ConfigError> {
    let (min, max) = text.split_once('-').ok_or_else(|| {
        invalid(
            "election_timeout_ms",
            format!("{text:?} is not min-max, e.g. 500-900"),
        )
    })?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| invalid("election_timeout_ms", format!("{v:?} is not a number")))
    };
    Ok((parse(min)?, parse(max)?))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::File {
        path: shown,
        message: e.to_string().lines().collect::<Vec<_>>().join(" "),
    })
}

impl NodeConfig {
    /// Merges the file (if any) under the flags and checks the result.
    pub fn resolve(args: &ServerArgs) -> Result<NodeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let node_id = match (args.node_id.or(file.node_id), args.node_id_from_hostname) {
            (Some(id), _) => id,
            (None, true) => {
                let host = std::env::var("HOSTNAME")
                    .ok()
                    .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                    .unwrap_or_default();
                node_id_from_hostname(host.trim())?
            }
            (None, false) => {
                return Err(invalid(
                    "node_id",
                    "required (--node-id, BELFRY_NODE_ID or --node-id-from-hostname)",
                ))
            }
        };
        if node_id == 0 {
            return Err(invalid("node_id", "must be positive"));
        }
        let listen = args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| "0.0.0.0:7400".into());
        check_addr("listen", &listen)?;
        let advertise = args
            .advertise
            .clone()
            .or(file.advertise)
            .unwrap_or_else(|| listen.clone());
        check_addr("advertise", &advertise)?;
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .ok_or_else(|| invalid("data_dir", "required (--data-dir or BELFRY_DATA_DIR)"))?;
        let peers = match (&args.peers, file.peers) {
            (Some(text), _) => parse_peers(text)?,
            (None, Some(map)) => {
                let joined = map
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",");
                parse_peers(&joined)?
            }
            (None, None) => BTreeMap::from([(node_id, advertise.clone())]),
        };
        let join: Vec<String> = match (&args.join, file.join) {
            (Some(text), _) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            (None, Some(list)) => list,
            (None, None) => Vec::new(),
        };
        if !peers.contains_key(&node_id) && join.is_empty() {
            return Err(invalid(
                "peers",
                format!(
                    "node {node_id} is not among the initial members; give --join addresses \
                     of the cluster to join it"
                ),
            ));
        }
        let security = security(args, &file.security)?;
        let metrics_listen = match args
            .metrics_listen
            .clone()
            .or(file.metrics_listen)
            .unwrap_or_else(|| "0.0.0.0:9400".into())
        {
            off if off == "off" => None,
            addr => {
                check_addr("metrics_listen", &addr)?;
                Some(addr)
            }
        };
        let mut raft = RaftTimings::default();
        if let Some(ms) = args.heartbeat_ms.or(file.raft.heartbeat_ms) {
            raft.heartbeat = Duration::from_millis(ms);
        }
        let (min, max) = match &args.election_timeout_ms {
            Some(text) => parse_election(text)?,
            None => (
                file.raft
                    .election_timeout_min_ms
                    .unwrap_or(raft.election_min.as_millis() as u64),
                file.raft
                    .election_timeout_max_ms
                    .unwrap_or(raft.election_max.as_millis() as u64),
            ),
        };
        raft.election_min = Duration::from_millis(min);
        raft.election_max = Duration::from_millis(max);
        if !(raft.heartbeat < raft.election_min && raft.election_min < raft.election_max) {
            return Err(invalid(
                "election_timeout_ms",
                "need heartbeat < election minimum < election maximum",
            ));
        }
        if let Some(n) = file.raft.snapshot_every_logs {
            raft.snapshot_every_logs = n.max(1);
        }
        if let Some(n) = file.raft.keep_logs_after_snapshot {
            raft.keep_logs_after_snapshot = n;
        }
        let redis_url = args
            .redis_url
            .clone()
            .or(file.redis.url)
            .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
        check_redis_url(&redis_url)?;
        let mut redis = crate::dispatch::SinkConfig::new(redis_url);
        redis.db = file.redis.db;
        redis.password = match (
            &args.redis_password,
            file.redis.password,
            &file.redis.password_file,
        ) {
            (Some(p), _, _) => Some(p.clone()),
            (None, Some(p), _) => Some(p),
            (None, None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        invalid("redis.password_file", format!("{}: {e}", path.display()))
                    })?
                    .trim_end()
                    .to_string(),
            ),
            (None, None, None) => None,
        };
        if let Some(prefix) = file.redis.key_prefix {
            redis.key_prefix = prefix;
        }
        if let Some(ttl) = file.redis.marker_ttl_secs {
            redis.marker_ttl = Duration::from_secs(ttl.max(1));
        }
        redis.tls_ca_file = file.redis.tls_ca_file;
        let log_format = args
            .log_format
            .clone()
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let json_logs = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(invalid(
                    "log_format",
                    format!("{other:?} is neither text nor json"),
                ))
            }
        };
        Ok(NodeConfig {
            node_id,
            listen,
            advertise,
            data_dir,
            peers,
            cluster_name: args
                .cluster_name
                .clone()
                .or(file.cluster_name)
                .unwrap_or_else(|| "belfry".into()),
            redis,
            kombu_global_keyprefix: file.redis.kombu_global_keyprefix.unwrap_or_default(),
            schedules: args.schedules.clone().or(file.schedules),
            raft,
            json_logs,
            join,
            security,
            connections: file.connections.resolve()?,
            metrics_listen,
        })
    }

    /// The cluster id task ids are derived from: stable for a cluster name.
    pub fn cluster_id(&self) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("belfry:{}", self.cluster_name).as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServerArgs {
        ServerArgs {
            node_id: Some(2),
            data_dir: Some("/tmp/x".into()),
            insecure_no_auth: true,
            insecure_no_tls: true,
            insecure_no_peer_auth: true,
            ..Default::default()
        }
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "node_id = 1\nlisten = \"127.0.0.1:7401\"\ndata_dir = \"/var/lib/belfry\"\n[peers]\n1 = \"a:7400\"\n2 = \"b:7400\"\n[redis]\nurl = \"redis://r:6379/2\"\n[raft]\nheartbeat_ms = 50\n",
        )
        .unwrap();
        let config = NodeConfig::resolve(&ServerArgs {
            config: Some(path),
            ..args()
        })
        .unwrap();
        assert_eq!(config.node_id, 2);
        assert_eq!(config.listen, "127.0.0.1:7401");
        assert_eq!(config.advertise, "127.0.0.1:7401");
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.redis.url, "redis://r:6379/2");
        assert_eq!(config.raft.heartbeat, Duration::from_millis(50));
        assert_eq!(config.raft.election_max, Duration::from_millis(900));
    }

    #[test]
    fn refusals_name_the_setting() {
        let setting = |a: ServerArgs| match NodeConfig::resolve(&a).unwrap_err() {
            ConfigError::Invalid { setting, .. } => setting,
            other => panic!("{other}"),
        };
        assert_eq!(
            setting(ServerArgs {
                node_id: None,
                ..args()
            }),
            "node_id"
        );
        assert_eq!(
            setting(ServerArgs {
                data_dir: None,
                ..args()
            }),
            "data_dir"
        );
        assert_eq!(
            setting(ServerArgs {
                peers: Some("1=a:1,3=b:2".into()),
                ..args()
            }),
            "peers"
        );
        assert_eq!(
            setting(ServerArgs {
                peers: Some("2=nohostport".into()),
                ..args()
            }),
            "peers"
        );
        assert_eq!(
            setting(ServerArgs {
                listen: Some("7400".into()),
                ..args()
            }),
            "listen"
        );
        assert_eq!(
            setting(ServerArgs {
                election_timeout_ms: Some("900-500".into()),
                ..args()
            }),
            "election_timeout_ms"
        );
        assert_eq!(
            setting(ServerArgs {
                log_format: Some("xml".into()),
                ..args()
            }),
            "log_format"
        );
    }

    #[test]
    fn security_is_off_only_when_asked() {
        let secure = ServerArgs {
            insecure_no_auth: false,
            insecure_no_tls: false,
            insecure_no_peer_auth: false,
            ..args()
        };
        let setting = |a: &ServerArgs| match NodeConfig::resolve(a).unwrap_err() {
            ConfigError::Invalid { setting, .. } => setting,
            other => panic!("{other}"),
        };
        assert_eq!(setting(&secure), "admin_token");
        let with_token = ServerArgs {
            admin_token: Some("t".into()),
            ..secure
        };
        assert_eq!(setting(&with_token), "tls_cert");
        let plain = ServerArgs {
            insecure_no_tls: true,
            readonly_token: Some("r".into()),
            ..with_token
        };
        assert_eq!(setting(&plain), "cluster_secret");
        let config = NodeConfig::resolve(&ServerArgs {
            cluster_secret: Some("0123456789abcdef".into()),
            ..plain
        })
        .unwrap();
        assert!(config.security.cluster_secret.is_some());
        let tokens = config.security.tokens.unwrap();
        assert_eq!((tokens.admin.len(), tokens.readonly.len()), (1, 1));
        assert!(config.security.tls.is_none());
    }

    #[test]
    fn node_ids_follow_statefulset_ordinals() {
        assert_eq!(node_id_from_hostname("belfry-0").unwrap(), 1);
        assert_eq!(node_id_from_hostname("belfry-12.belfry-peers").unwrap(), 13);
        assert!(node_id_from_hostname("belfry").is_err());
    }

    #[test]
    fn an_unknown_file_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(&path, "node_id = 1\nnode_idd = 2\n").unwrap();
        let err = NodeConfig::resolve(&ServerArgs {
            config: Some(path),
            ..args()
        })
        .unwrap_err();
        assert!(err.to_string().contains("node_idd"), "{err}");
    }

    /// The setting a refused configuration names, and its message.
    fn refusal(args: &ServerArgs) -> (&'static str, String) {
        match NodeConfig::resolve(args).unwrap_err() {
            ConfigError::Invalid { setting, reason } => (setting, reason),
            other => panic!("{other}"),
        }
    }

    fn with_tokens() -> ServerArgs {
        ServerArgs {
            insecure_no_auth: false,
            admin_token: Some("adm".into()),
            ..args()
        }
    }

    #[test]
    fn blank_tokens_are_refused() {
        for blank in ["", "   ", "\t"] {
            let (setting, reason) = refusal(&ServerArgs {
                admin_token: Some(blank.into()),
                ..with_tokens()
            });
            assert_eq!(setting, "admin_token", "{blank:?}: {reason}");
            assert!(reason.contains("empty"), "{reason}");
            let (setting, _) = refusal(&ServerArgs {
                readonly_token: Some(blank.into()),
                ..with_tokens()
            });
            assert_eq!(setting, "readonly_token", "{blank:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("tokens");
        std::fs::write(&empty, "# rotated out\n\n   \n").unwrap();
        let (setting, reason) = refusal(&ServerArgs {
            readonly_token_file: Some(empty.clone()),
            ..with_tokens()
        });
        assert_eq!(setting, "readonly_token_file");
        assert!(reason.contains(&empty.display().to_string()), "{reason}");
        // A real token is kept without its surrounding whitespace.
        let config = NodeConfig::resolve(&ServerArgs {
            admin_token: Some(" adm \n".into()),
            ..with_tokens()
        })
        .unwrap();
        assert_eq!(
            config.security.tokens.unwrap().admin,
            vec!["adm".to_string()]
        );
    }

    fn plain() -> ServerArgs {
        ServerArgs {
            insecure_no_peer_auth: false,
            ..args()
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn without_tls_peers_need_a_secret_or_an_explicit_flag() {
        assert_eq!(refusal(&plain()).0, "cluster_secret");
        let with_flag = NodeConfig::resolve(&args()).unwrap();
        assert!(with_flag.security.cluster_secret.is_none());
        let from_value = NodeConfig::resolve(&ServerArgs {
            cluster_secret: Some(SECRET.into()),
            ..plain()
        })
        .unwrap();
        let auth = from_value.security.peer_auth();
        assert!(auth.secret.is_some() && !auth.require_certificate);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster-secret");
        std::fs::write(&file, format!("# current\n{SECRET}\n")).unwrap();
        let from_file = ServerArgs {
            cluster_secret_file: Some(file.clone()),
            ..plain()
        };
        assert!(NodeConfig::resolve(&from_file).is_ok());
        assert_eq!(
            refusal(&ServerArgs {
                cluster_secret: Some(SECRET.into()),
                ..from_file.clone()
            })
            .0,
            "cluster_secret"
        );
        assert_eq!(
            refusal(&ServerArgs {
                insecure_no_peer_auth: true,
                ..from_file
            })
            .0,
            "insecure_no_peer_auth"
        );
    }

    #[test]
    fn blank_or_short_secrets_are_refused() {
        for (bad, words) in [("", "empty"), ("  \t ", "empty"), ("short", "at least 16")] {
            let (setting, reason) = refusal(&ServerArgs {
                cluster_secret: Some(bad.into()),
                ..plain()
            });
            assert_eq!(setting, "cluster_secret", "{bad:?}");
            assert!(reason.contains(words), "{bad:?}: {reason}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster-secret");
        std::fs::write(&file, " \n\n").unwrap();
        let (setting, reason) = refusal(&ServerArgs {
            cluster_secret_file: Some(file.clone()),
            ..plain()
        });
        assert_eq!(setting, "cluster_secret_file");
        assert!(reason.contains(&file.display().to_string()), "{reason}");
        std::fs::write(&file, format!("{SECRET}\nnot long\n")).unwrap();
        assert_eq!(
            refusal(&ServerArgs {
                cluster_secret_file: Some(file),
                ..plain()
            })
            .0,
            "cluster_secret_file"
        );
    }

    #[test]
    fn a_peer_address_listed_twice_is_refused() {
        let err = parse_peers("1=a:7400,2=b:7400,3=a:7400").unwrap_err();
        assert!(err.to_string().contains("a:7400"), "{err}");
        assert!(parse_peers("1=a:7400,1=b:7400").is_err());
        assert_eq!(parse_peers("1=a:7400, 2=a:7401").unwrap().len(), 2);
    }

    #[test]
    fn a_bad_redis_url_is_refused() {
        for url in ["localhost:6379", "http://r:6379/0", "redis://r:6379/notadb"] {
            assert_eq!(
                refusal(&ServerArgs {
                    redis_url: Some(url.into()),
                    ..args()
                })
                .0,
                "redis_url",
                "{url}"
            );
        }
    }

    #[test]
    fn tls_files_must_hold_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let (cert, key, garbage, empty) = (
            write("cert.pem", &cert.pem()),
            write("key.pem", &key.serialize_pem()),
            write("garbage.pem", "not a pem file\n"),
            write("empty.pem", ""),
        );
        let tls = |c: &Path, k: &Path, ca: &Path| ServerArgs {
            insecure_no_tls: false,
            insecure_no_peer_auth: false,
            tls_cert: Some(c.to_path_buf()),
            tls_key: Some(k.to_path_buf()),
            tls_client_ca: Some(ca.to_path_buf()),
            ..args()
        };
        let config = NodeConfig::resolve(&tls(&cert, &key, &cert)).unwrap();
        // Mutual TLS authenticates peers: no secret is needed.
        let auth = config.security.peer_auth();
        assert!(auth.require_certificate && auth.secret.is_none());
        for (args, setting, file) in [
            (tls(&garbage, &key, &cert), "tls_cert", &garbage),
            (tls(&key, &key, &cert), "tls_cert", &key),
            (tls(&cert, &garbage, &cert), "tls_key", &garbage),
            (tls(&cert, &cert, &cert), "tls_key", &cert),
            (tls(&cert, &key, &empty), "tls_client_ca", &empty),
            (
                tls(&cert, &key, &dir.path().join("missing.pem")),
                "tls_client_ca",
                &dir.path().join("missing.pem"),
            ),
        ] {
            let (named, reason) = refusal(&args);
            assert_eq!(named, setting, "{reason}");
            assert!(reason.contains(&file.display().to_string()), "{reason}");
        }
    }

    #[test]
    fn connection_limits_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("belfry.toml");
        std::fs::write(
            &path,
            "[connections]\nmax_connections = 64\nhandshake_timeout_ms = 1500\n",
        )
        .unwrap();
        let config = NodeConfig::resolve(&ServerArgs {
            config: Some(path.clone()),
            ..args()
        })
        .unwrap();
        assert_eq!(config.connections.max_connections, 64);
        assert_eq!(
            config.connections.handshake_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(config.connections.max_streams_per_connection, 256);
        assert_eq!(
            NodeConfig::resolve(&args()).unwrap().connections,
            ConnectionLimits::default()
        );
        std::fs::write(&path, "[connections]\nmax_streams_per_connection = 0\n").unwrap();
        assert_eq!(
            refusal(&ServerArgs {
                config: Some(path),
                ..args()
            })
            .0,
            "connections.max_streams_per_connection"
        );
    }
}
