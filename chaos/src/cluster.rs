//! The `belfry server` processes of a run: start (inside a node's namespace, with a
//! controllable clock when libfaketime is available), signal, restart from the same data
//! directory, wipe, and follow who leads from the nodes' own JSON logs.
//!
//! Owns processes, their files and their clocks; must not decide when to do any of it (the
//! nemeses do) and must not judge what the nodes dispatched (the checker does).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use belfry::api::client::{ApiClient, ClientConfig};

use crate::net::{Network, NODE_PORT};

/// The secret the harness's nodes authenticate peer calls with: they run without TLS, on
/// loopback or in network namespaces of their own.
const CLUSTER_SECRET: &str = "belfry-chaos-cluster-secret-0123456789";

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot start node {id}: {source}")]
    Spawn {
        id: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("no free loopback port for node {id}: {source}")]
    Port {
        id: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("files of node {id}: {source}")]
    Files {
        id: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("network: {0}")]
    Net(#[from] crate::net::NetError),
    #[error("unknown node {0}")]
    Unknown(u64),
}

/// One node's process and files.
pub struct Node {
    pub id: u64,
    /// host:port of its gRPC server, as peers and the runner reach it.
    pub addr: String,
    listen: String,
    data_dir: PathBuf,
    pub log: PathBuf,
    clock_file: PathBuf,
    child: Option<Child>,
    pub stopped: bool,
    /// False once removed from the membership (its process is gone for good).
    pub member: bool,
    /// Joined after the start: it is given `--join` instead of being an initial member.
    joiner: bool,
    log_offset: u64,
    partial: String,
    /// The term this node dispatches in, per its own log (None once it said it stopped).
    leading_term: Option<u64>,
    pub clock_offset_ms: i64,
}

/// Settings shared by every node.
pub struct ClusterConfig {
    pub belfry_bin: PathBuf,
    pub dir: PathBuf,
    pub redis_url: String,
    /// `LD_PRELOAD` library of libfaketime; clock offsets need it.
    pub faketime_lib: Option<PathBuf>,
    pub extra_config: String,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    pub net: Network,
    config: ClusterConfig,
    config_path: PathBuf,
    initial_peers: String,
}

impl Cluster {
    /// Creates `n` nodes (namespaces, directories) and starts them.
    pub fn start(n: u64, mut net: Network, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        std::fs::create_dir_all(&config.dir)
            .map_err(|source| ClusterError::Files { id: 0, source })?;
        let config_path = config.dir.join("belfry.toml");
        std::fs::write(&config_path, &config.extra_config)
            .map_err(|source| ClusterError::Files { id: 0, source })?;
        let mut nodes = BTreeMap::new();
        for id in 1..=n {
            net.add_node(id)?;
            nodes.insert(id, Self::new_node(&net, &config, id, false)?);
        }
        let initial_peers = nodes
            .values()
            .map(|n: &Node| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            nodes,
            net,
            config,
            config_path,
            initial_peers,
        };
        let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
        for id in ids {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn new_node(
        net: &Network,
        config: &ClusterConfig,
        id: u64,
        joiner: bool,
    ) -> Result<Node, ClusterError> {
        let (addr, listen) = if net.is_netns() {
            let addr = format!("{}:{NODE_PORT}", net.node_ip(id));
            (addr.clone(), addr)
        } else {
            let port = belfry::cli::ports::loopback_port()
                .map_err(|source| ClusterError::Port { id, source })?;
            let addr = format!("127.0.0.1:{port}");
            (addr.clone(), addr)
        };
        Ok(Node {
            id,
            addr,
            listen,
            data_dir: config.dir.join(format!("node{id}")),
            log: config.dir.join(format!("node{id}.log")),
            clock_file: config.dir.join(format!("node{id}.clock")),
            child: None,
            stopped: false,
            member: true,
            joiner,
            log_offset: 0,
            partial: String::new(),
            leading_term: None,
            clock_offset_ms: 0,
        })
    }

    /// Starts node `id` from its data directory.
    pub fn spawn(&mut self, id: u64) -> Result<(), ClusterError> {
        let join: Vec<String> = self
            .nodes
            .values()
            // Every current member: after membership changes the initial ones may be gone.
            .filter(|n| n.member && n.id != id)
            .map(|n| n.addr.clone())
            .collect();
        let ns = self.net.node_ns(id);
        let node = self.nodes.get_mut(&id).ok_or(ClusterError::Unknown(id))?;
        let files = |source| ClusterError::Files { id, source };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(files)?;
        let mut command = match &ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.config.belfry_bin);
                c
            }
            None => Command::new(&self.config.belfry_bin),
        };
        command
            .arg("server")
            .arg("--config")
            .arg(&self.config_path)
            .args(["--node-id", &id.to_string(), "--listen", &node.listen])
            .args(["--advertise", &node.addr, "--peers", &self.initial_peers])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args([
                "--redis-url",
                &self.config.redis_url,
                "--log-format",
                "json",
            ])
            .args([
                "--insecure-no-tls",
                "--insecure-no-auth",
                "--metrics-listen",
                "off",
            ])
            // Peers authenticate with a shared secret (the harness runs them without TLS).
            .env("BELFRY_CLUSTER_SECRET", CLUSTER_SECRET)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log);
        if node.joiner {
            command.args(["--join", &join.join(",")]);
        }
        if let Some(lib) = &self.config.faketime_lib {
            // The offset file is re-read every second: clock changes need no restart.
            // Monotonic clocks stay real, so timers and Raft timeouts are unaffected.
            write_clock_file(&node.clock_file, node.clock_offset_ms).map_err(files)?;
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &node.clock_file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .spawn()
            .map_err(|source| ClusterError::Spawn { id, source })?;
        node.child = Some(child);
        node.stopped = false;
        node.leading_term = None;
        Ok(())
    }

    /// Adds a node that was not an initial member: it asks the members to add it (`--join`).
    pub fn spawn_joiner(&mut self) -> Result<u64, ClusterError> {
        let id = self.nodes.keys().max().copied().unwrap_or(0) + 1;
        self.net.add_node(id)?;
        let node = Self::new_node(&self.net, &self.config, id, true)?;
        self.nodes.insert(id, node);
        self.spawn(id)?;
        Ok(id)
    }

    fn pid(&self, id: u64) -> Option<i32> {
        self.nodes
            .get(&id)
            .and_then(|n| n.child.as_ref())
            .map(|c| c.id() as i32)
    }

    fn signal(&self, id: u64, signal: i32) {
        if let Some(pid) = self.pid(id) {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        if let Some(node) = self.nodes.get_mut(&id) {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            node.stopped = false;
            node.leading_term = None;
        }
    }

    pub fn stop(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.stopped = node.child.is_some();
        }
    }

    pub fn cont(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.stopped = false;
        }
    }

    /// SIGTERM, then waits for the exit; SIGKILL after `grace`. Returns whether it exited by
    /// itself in time.
    pub fn terminate(&mut self, id: u64, grace: Duration) -> bool {
        self.signal(id, libc::SIGCONT);
        self.signal(id, libc::SIGTERM);
        let deadline = Instant::now() + grace;
        let Some(node) = self.nodes.get_mut(&id) else {
            return true;
        };
        let Some(child) = node.child.as_mut() else {
            return true;
        };
        let clean = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !clean {
            let _ = child.kill();
            let _ = child.wait();
        }
        node.child = None;
        node.stopped = false;
        node.leading_term = None;
        clean
    }

    /// Kills node `id` and deletes its data directory.
    pub fn wipe(&mut self, id: u64) -> Result<(), ClusterError> {
        self.kill(id);
        let node = self.nodes.get(&id).ok_or(ClusterError::Unknown(id))?;
        match std::fs::remove_dir_all(&node.data_dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ClusterError::Files { id, source }),
        }
    }

    /// A removed node's process stops for good and its namespace goes.
    pub fn retire(&mut self, id: u64) {
        self.kill(id);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.member = false;
        }
        self.net.remove_node(id);
    }

    pub fn is_running(&mut self, id: u64) -> bool {
        self.nodes
            .get_mut(&id)
            .and_then(|n| n.child.as_mut())
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Members whose process is running and not stopped.
    pub fn live_members(&mut self) -> Vec<u64> {
        let ids: Vec<u64> = self
            .nodes
            .values()
            .filter(|n| n.member && !n.stopped)
            .map(|n| n.id)
            .collect();
        ids.into_iter().filter(|id| self.is_running(*id)).collect()
    }

    pub fn members(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.member)
            .map(|n| n.id)
            .collect()
    }

    /// Reads what the nodes logged since the last call and updates who says it leads.
    pub fn refresh_leadership(&mut self) {
        for node in self.nodes.values_mut() {
            let Ok(mut file) = std::fs::File::open(&node.log) else {
                continue;
            };
            if file.seek(SeekFrom::Start(node.log_offset)).is_err() {
                continue;
            }
            let mut text = String::new();
            let Ok(n) = file.read_to_string(&mut text) else {
                continue;
            };
            node.log_offset += n as u64;
            node.partial.push_str(&text);
            let complete = match node.partial.rfind('\n') {
                Some(end) => node.partial[..=end].to_string(),
                None => continue,
            };
            node.partial.drain(..complete.len());
            for line in complete.lines() {
                // Cheap filter first: most lines are pushes.
                if !line.contains("leader") {
                    continue;
                }
                let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let message = value["fields"]["message"].as_str().unwrap_or("");
                if message.starts_with("became leader") {
                    node.leading_term = value["fields"]["term"].as_u64();
                } else if message.starts_with("no longer leader") {
                    node.leading_term = None;
                }
            }
        }
    }

    /// The node dispatching now: the newest term claimed by a running, unfrozen node.
    pub fn leader(&mut self) -> Option<u64> {
        self.refresh_leadership();
        let live = self.live_members();
        self.nodes
            .values()
            .filter(|n| live.contains(&n.id))
            .filter_map(|n| n.leading_term.map(|t| (t, n.id)))
            .max()
            .map(|(_, id)| id)
    }

    /// Sets node `id`'s wall clock to real time plus `offset_ms` (libfaketime re-reads it).
    pub fn set_clock(&mut self, id: u64, offset_ms: i64) -> Result<(), ClusterError> {
        let node = self.nodes.get_mut(&id).ok_or(ClusterError::Unknown(id))?;
        node.clock_offset_ms = offset_ms;
        write_clock_file(&node.clock_file, offset_ms)
            .map_err(|source| ClusterError::Files { id, source })
    }

    pub fn has_clock_control(&self) -> bool {
        self.config.faketime_lib.is_some()
    }

    pub fn addr(&self, id: u64) -> Option<String> {
        self.nodes.get(&id).map(|n| n.addr.clone())
    }

    /// Stops every process (SIGCONT first, so frozen ones can die).
    pub fn kill_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// An API client for `addr`, with a short deadline so a partitioned node fails fast.
pub fn client_for(addr: &str) -> Option<ApiClient> {
    ApiClient::new(&ClientConfig {
        endpoint: addr.to_string(),
        token: None,
        tls_ca: None,
        timeout: Some(Duration::from_secs(4)),
    })
    .ok()
}

fn write_clock_file(path: &Path, offset_ms: i64) -> std::io::Result<()> {
    // libfaketime's relative format: "+1.5" or "-2" seconds.
    let text = format!("{:+.3}\n", offset_ms as f64 / 1000.0);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}
