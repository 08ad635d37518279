//! `belfry server` configuration: a TOML file, overridden by flags, overridden by nothing
//! else; every flag also reads a `BELFRY_*` environment variable. Resolved section by section.
//!
//! Invariant: a configuration is returned only complete and checked; every refusal names the
//! setting (or the file, with the parser's message). It must not start anything: no listener,
//! no storage, no task.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::raft::NodeId;

mod args;
mod connections;
mod file;
mod raft;
mod redis;
mod results;
mod security;

pub use args::ServerArgs;
pub use connections::ConnectionLimits;
pub use raft::RaftTimings;
pub use security::{Security, TlsFiles};

use file::{read_file, FileConfig};

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
    /// Committed occurrences held while Redis takes none, beyond which planning pauses.
    pub max_outbox: usize,
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
    /// `None`: no web console.
    pub console_listen: Option<String>,
    /// Flower's base URL, without a trailing `/`, for the console's task links.
    pub flower_url: Option<String>,
    /// Celery's result backend, when task outcomes are followed.
    pub results: Option<crate::dispatch::ResultsConfig>,
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
    if crate::raft::network::is_host_port(addr) {
        Ok(())
    } else {
        Err(invalid(setting, format!("{addr:?} is not host:port")))
    }
}

impl NodeConfig {
    /// Merges the file (if any) under the flags and checks the result, section by section.
    pub fn resolve(args: &ServerArgs) -> Result<NodeConfig, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let node_id = resolve_node_id(args, file.node_id)?;
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
        let (peers, join) = resolve_membership(args, file.peers, file.join, node_id, &advertise)?;
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
            kombu_global_keyprefix: file
                .redis
                .kombu_global_keyprefix
                .clone()
                .unwrap_or_default(),
            max_outbox: redis::max_outbox(&file.redis)?,
            redis: redis::resolve(args, file.redis)?,
            results: results::resolve(args, file.results)?,
            schedules: args.schedules.clone().or(file.schedules),
            raft: raft::resolve(args, &file.raft)?,
            json_logs: resolve_log_format(args.log_format.clone().or(file.log_format))?,
            join,
            security: security::security(args, &file.security)?,
            connections: file.connections.resolve()?,
            metrics_listen: resolve_metrics_listen(
                args.metrics_listen.clone().or(file.metrics_listen),
            )?,
            console_listen: resolve_console_listen(
                args.console_listen.clone().or(file.console_listen),
            )?,
            flower_url: resolve_flower_url(args.flower_url.clone().or(file.flower_url))?,
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

/// The node id: given, or from a StatefulSet host name; never 0.
fn resolve_node_id(args: &ServerArgs, from_file: Option<u64>) -> Result<NodeId, ConfigError> {
    let node_id = match (args.node_id.or(from_file), args.node_id_from_hostname) {
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
    Ok(node_id)
}

/// The initial members (a single-node cluster of this node when none are given) and the
/// addresses to join through; a node outside the initial members must be given the latter.
fn resolve_membership(
    args: &ServerArgs,
    file_peers: Option<BTreeMap<String, String>>,
    file_join: Option<Vec<String>>,
    node_id: NodeId,
    advertise: &str,
) -> Result<(BTreeMap<NodeId, String>, Vec<String>), ConfigError> {
    let peers = match (&args.peers, file_peers) {
        (Some(text), _) => parse_peers(text)?,
        (None, Some(map)) => {
            let joined = map
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            parse_peers(&joined)?
        }
        (None, None) => BTreeMap::from([(node_id, advertise.to_string())]),
    };
    let join: Vec<String> = match (&args.join, file_join) {
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
    Ok((peers, join))
}

/// `text` (the default) or `json`: whether logs are JSON.
fn resolve_log_format(given: Option<String>) -> Result<bool, ConfigError> {
    match given.as_deref().unwrap_or("text") {
        "text" => Ok(false),
        "json" => Ok(true),
        other => Err(invalid(
            "log_format",
            format!("{other:?} is neither text nor json"),
        )),
    }
}

/// The metrics address (`0.0.0.0:9400` by default), or `None` for `off`.
fn resolve_metrics_listen(given: Option<String>) -> Result<Option<String>, ConfigError> {
    match given.unwrap_or_else(|| "0.0.0.0:9400".into()) {
        off if off == "off" => Ok(None),
        addr => {
            check_addr("metrics_listen", &addr)?;
            Ok(Some(addr))
        }
    }
}

/// The console's address, or `None` when unset (or `off`).
fn resolve_console_listen(given: Option<String>) -> Result<Option<String>, ConfigError> {
    match given {
        None => Ok(None),
        Some(off) if off == "off" => Ok(None),
        Some(addr) => {
            check_addr("console_listen", &addr)?;
            Ok(Some(addr))
        }
    }
}

/// Flower's base URL: `http://` or `https://`, kept without its trailing `/`.
fn resolve_flower_url(given: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(url) = given else { return Ok(None) };
    let url = url.trim().trim_end_matches('/');
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    let clean = !url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '"');
    if !scheme_ok || !clean || url.len() > 2_048 {
        return Err(invalid(
            "flower_url",
            format!("{url:?} is not an http:// or https:// URL"),
        ));
    }
    Ok(Some(url.to_string()))
}

#[cfg(test)]
mod tests;
