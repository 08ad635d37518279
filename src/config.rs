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
    #[serde(default)]
    redis: FileRedis,
    #[serde(default)]
    raft: FileRaft,
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
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("{item:?} is not id=host:port")))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| invalid("peers", format!("{id:?} is not a node id")))?;
        check_addr("peers", addr.trim())?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

fn check_addr(setting: &'static str, addr: &str) -> Result<(), ConfigError> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(invalid(setting, format!("{addr:?} is not host:port"))),
    }
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
        let node_id = args
            .node_id
            .or(file.node_id)
            .ok_or_else(|| invalid("node_id", "required (--node-id or BELFRY_NODE_ID)"))?;
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
        if !peers.contains_key(&node_id) {
            return Err(invalid(
                "peers",
                format!("the initial members must include this node ({node_id})"),
            ));
        }
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
            node_id: Some(2),
            ..Default::default()
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
}
