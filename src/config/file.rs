//! The configuration file's shape: every section as the TOML file may write it.
//!
//! Invariant: unknown keys are refused; values are checked where they are resolved, not here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) node_id: Option<u64>,
    pub(super) listen: Option<String>,
    pub(super) advertise: Option<String>,
    pub(super) data_dir: Option<PathBuf>,
    pub(super) peers: Option<BTreeMap<String, String>>,
    pub(super) cluster_name: Option<String>,
    pub(super) schedules: Option<PathBuf>,
    pub(super) log_format: Option<String>,
    pub(super) join: Option<Vec<String>>,
    pub(super) metrics_listen: Option<String>,
    pub(super) console_listen: Option<String>,
    pub(super) flower_url: Option<String>,
    #[serde(default)]
    pub(super) redis: FileRedis,
    #[serde(default)]
    pub(super) raft: FileRaft,
    #[serde(default)]
    pub(super) security: FileSecurity,
    #[serde(default)]
    pub(super) connections: FileConnections,
    #[serde(default)]
    pub(super) results: FileResults,
}

/// `[results]`: Celery's result backend, read for task outcomes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileResults {
    /// A `redis://`, `rediss://` or `sentinel://` URL, as Celery's `result_backend`.
    pub(super) backend: Option<String>,
    /// With `sentinel://`: the master's name.
    pub(super) master_name: Option<String>,
    /// Celery's `global_keyprefix` of the result backend's transport options.
    pub(super) key_prefix: Option<String>,
    /// Runs older than this (seconds) are not followed any more (default 6 hours).
    pub(super) horizon_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSecurity {
    pub(super) admin_token_file: Option<PathBuf>,
    pub(super) readonly_token_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure_no_auth: bool,
    pub(super) tls_cert: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
    pub(super) tls_client_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure_no_tls: bool,
    pub(super) cluster_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure_no_peer_auth: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConnections {
    pub(super) max_connections: Option<usize>,
    pub(super) max_streams_per_connection: Option<u32>,
    pub(super) handshake_timeout_ms: Option<u64>,
    pub(super) keepalive_interval_secs: Option<u64>,
    pub(super) keepalive_timeout_secs: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRedis {
    pub(super) url: Option<String>,
    pub(super) db: Option<i64>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) key_prefix: Option<String>,
    pub(super) marker_ttl_secs: Option<u64>,
    pub(super) tls_ca_file: Option<PathBuf>,
    pub(super) kombu_global_keyprefix: Option<String>,
    pub(super) master_name: Option<String>,
    pub(super) sentinel_password: Option<String>,
    pub(super) sentinel_password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) sentinel_tls: bool,
    #[serde(default)]
    pub(super) tls: bool,
    pub(super) min_replicas: Option<u32>,
    pub(super) replica_timeout_ms: Option<u64>,
    pub(super) max_outbox: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRaft {
    pub(super) heartbeat_ms: Option<u64>,
    pub(super) election_timeout_min_ms: Option<u64>,
    pub(super) election_timeout_max_ms: Option<u64>,
    pub(super) snapshot_every_logs: Option<u64>,
    pub(super) keep_logs_after_snapshot: Option<u64>,
    pub(super) max_clock_offset_ms: Option<u64>,
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
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
