//! The flags of `belfry server`, each also read from its `BELFRY_*` variable.
//!
//! Invariant: declares flags only; what they mean and how they combine with the file is
//! `config`'s to decide.

use std::path::PathBuf;

use clap::Args;

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
    /// Redis URL of the Celery broker: redis://, rediss://, or kombu's sentinel:// (several
    /// sentinels joined by ';', with --redis-master-name).
    #[arg(long, env = "BELFRY_REDIS_URL")]
    pub redis_url: Option<String>,
    /// The master's name the sentinels of a sentinel:// URL watch.
    #[arg(long, env = "BELFRY_REDIS_MASTER_NAME")]
    pub redis_master_name: Option<String>,
    /// Replicas that must confirm each pushed batch (Redis WAIT) before it counts as pushed.
    #[arg(long, env = "BELFRY_REDIS_MIN_REPLICAS")]
    pub redis_min_replicas: Option<u32>,
    /// Celery's result backend (a redis:// or sentinel:// URL): task outcomes are read from it.
    #[arg(long, env = "BELFRY_RESULT_BACKEND", hide_env_values = true)]
    pub result_backend: Option<String>,
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
    /// The largest offset (ms) of this node's wall clock from the quorum's at which it still
    /// dispatches and stands for election (default 250).
    #[arg(long, env = "BELFRY_MAX_CLOCK_OFFSET_MS")]
    pub max_clock_offset_ms: Option<u64>,
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
    /// Address of the web console (unset: no console). Served over HTTPS with the API's
    /// certificate when the node has TLS.
    #[arg(long, env = "BELFRY_CONSOLE_LISTEN")]
    pub console_listen: Option<String>,
    /// Flower's base URL (e.g. http://flower:5555): the console links each task id to its page.
    #[arg(long, env = "BELFRY_FLOWER_URL")]
    pub flower_url: Option<String>,
}
