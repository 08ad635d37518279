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

/// The API's security settings.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// `None`: authentication explicitly off.
    pub tokens: Option<crate::api::auth::Tokens>,
    /// `None`: TLS explicitly off.
    pub tls: Option<TlsFiles>,
}

/// Reads tokens, one per line (blank lines and `#` comments ignored).
fn read_tokens(setting: &'static str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(setting, format!("{}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn read_pem(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(setting, format!("{}: {e}", path.display())))
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
    ordinal.checked_add(1).ok_or_else(|| {
        invalid(
            "node_id_from_hostname",
            format!("host name {hostname:?}: ordinal {ordinal} is too large"),
        )
    })
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
        tokens.admin.extend(args.admin_token.clone());
        if let Some(path) = args
            .readonly_token_file
            .as_ref()
            .or(file.readonly_token_file.as_ref())
        {
            tokens.readonly = read_tokens("readonly_token_file", path)?;
        }
        tokens.readonly.extend(args.readonly_token.clone());
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
                cert: read_pem("tls_cert", cert)?,
                key: read_pem("tls_key", key)?,
                ca: read_pem("tls_client_ca", ca)?,
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
    Ok(Security { tokens, tls })
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
    /// `None`: no metrics server.
    pub metrics_listen: Option<String>,
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

pub fn check_addr(setting: &'static str, addr: &str) -> Result<(), ConfigError> {
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
        let config = NodeConfig::resolve(&ServerArgs {
            insecure_no_tls: true,
            readonly_token: Some("r".into()),
            ..with_token
        })
        .unwrap();
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
    fn the_largest_ordinal_is_refused_not_overflowed() {
        // Found by fuzzing the configuration: `ordinal + 1` overflowed (a panic with overflow
        // checks, node id 0 without).
        let err = node_id_from_hostname("belfry-18446744073709551615").unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        assert_eq!(
            node_id_from_hostname("belfry-18446744073709551614").unwrap(),
            u64::MAX
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
