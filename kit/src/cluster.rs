//! A cluster of real `belfry server` processes: each node's ports, data directory, log file and
//! (with libfaketime) wall clock; starting, signalling, restarting from the same data, wiping,
//! nodes that join later, and who leads per the nodes' own JSON logs.
//!
//! Invariant: node `i` (index into `nodes`) has id `i + 1`, and keeps its addresses, data
//! directory and log (appended to by every start) for the cluster's life; every process still
//! running is SIGKILLed when the cluster is dropped (SIGCONT first, so frozen ones die too).
//! Owns the processes and their files: it must not decide when to fault a node (callers do),
//! and knows belfry only by its command line and logs.

mod node;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use self::node::{Node, Placement, Signal};
use crate::logs::Leadership;
use crate::wait::poll;
use crate::KitError;

/// What every node of a cluster runs with.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// The `belfry` binary.
    pub bin: PathBuf,
    /// How many initial (static) members to create.
    pub nodes: usize,
    /// Where the files go (`node<id>/`, `node<id>.log`, `belfry.toml`, `schedules.toml`); a
    /// temporary directory, removed on drop, when `None`.
    pub dir: Option<PathBuf>,
    pub redis_url: String,
    /// A config file's text, written to `belfry.toml` and passed with `--config`.
    pub config: Option<String>,
    /// A schedules file's text, written to `schedules.toml` and passed with `--schedules`.
    pub schedules: Option<String>,
    /// A metrics port per node; `--metrics-listen off` otherwise.
    pub metrics: bool,
    /// A web console port per node (`--console-listen`); none otherwise.
    pub console: bool,
    /// Arguments every node gets after the kit's own (e.g. `--insecure-no-tls`).
    pub args: Vec<OsString>,
    /// Environment every node gets.
    pub env: Vec<(OsString, OsString)>,
    /// libfaketime's `LD_PRELOAD` library: each node's wall clock then follows its clock file,
    /// offset with [`Cluster::set_clock`].
    pub faketime: Option<PathBuf>,
    /// Where the initial nodes listen; free loopback ports when empty.
    pub placements: Vec<Placement>,
    /// `RUST_LOG` of every node.
    pub rust_log: String,
    /// A node found to have exited by itself fails (panics) when the cluster is dropped, with
    /// the end of its log: for tests, where nothing expects that.
    pub report_exits: bool,
}

impl ClusterOptions {
    pub fn new(bin: impl Into<PathBuf>, nodes: usize, redis_url: &str) -> ClusterOptions {
        ClusterOptions {
            bin: bin.into(),
            nodes,
            dir: None,
            redis_url: redis_url.to_string(),
            config: None,
            schedules: None,
            metrics: false,
            console: false,
            args: Vec::new(),
            env: Vec::new(),
            faketime: None,
            placements: Vec::new(),
            rust_log: "info,openraft=warn".into(),
            report_exits: false,
        }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// The processes and files of one cluster.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub redis_url: String,
    /// The schedules file (written only if the options held one).
    pub schedules: PathBuf,
    /// The config file (written only if the options held one).
    pub config: PathBuf,
    options: ClusterOptions,
    /// The first `initial` nodes are the static members; later ones join.
    initial: usize,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Writes the files and starts every initial node.
    pub fn start(options: ClusterOptions) -> Result<Cluster, KitError> {
        let mut cluster = Self::prepare(options)?;
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    /// Writes the files and chooses the nodes' addresses, but starts nothing, so that a caller
    /// can prepare data directories (or say where the nodes are) first.
    pub fn prepare(options: ClusterOptions) -> Result<Cluster, KitError> {
        let (dir, temp) = match &options.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::tempdir().map_err(KitError::io("a cluster directory"))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        std::fs::create_dir_all(&dir).map_err(KitError::io(dir.display().to_string()))?;
        let write = |name: &str, text: &Option<String>| -> Result<PathBuf, KitError> {
            let path = dir.join(name);
            if let Some(text) = text {
                std::fs::write(&path, text).map_err(KitError::io(path.display().to_string()))?;
            }
            Ok(path)
        };
        let config = write("belfry.toml", &options.config)?;
        let schedules = write("schedules.toml", &options.schedules)?;
        let mut placements = options.placements.clone();
        while placements.len() < options.nodes {
            placements.push(Placement::loopback()?);
        }
        let mut cluster = Cluster {
            nodes: Vec::new(),
            redis_url: options.redis_url.clone(),
            schedules,
            config,
            initial: placements.len(),
            options,
            dir,
            _temp: temp,
        };
        for placement in placements {
            cluster.push_node(placement, false)?;
        }
        Ok(cluster)
    }

    fn push_node(&mut self, placement: Placement, joiner: bool) -> Result<usize, KitError> {
        let id = self.nodes.len() as u64 + 1;
        let ports = self::node::Ports {
            metrics: self.options.metrics,
            console: self.options.console,
        };
        let node = Node::new(id, placement, &self.dir, ports, joiner)?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `id=addr,…` of the initial members.
    pub fn peers(&self) -> String {
        self.nodes[..self.initial]
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, i: usize) -> Result<&Node, KitError> {
        self.nodes.get(i).ok_or(KitError::UnknownNode(i))
    }

    fn node_mut(&mut self, i: usize) -> Result<&mut Node, KitError> {
        self.nodes.get_mut(i).ok_or(KitError::UnknownNode(i))
    }

    /// Starts node `i` from its data directory (a joiner asks every member to add it).
    pub fn spawn(&mut self, i: usize) -> Result<(), KitError> {
        let peers = self.peers();
        // Every current member, in id order: after membership changes the first may be gone.
        let join: Vec<String> = self
            .nodes
            .iter()
            .filter(|n| n.member && n.id != i as u64 + 1)
            .map(|n| n.addr.clone())
            .collect();
        let files = (self.config.clone(), self.schedules.clone());
        let options = &self.options;
        let node = self.nodes.get_mut(i).ok_or(KitError::UnknownNode(i))?;
        // Whatever the previous life logged is read now, so it is not taken for this one's.
        node.refresh_leadership();
        node.spawn(options, &peers, &join, &files)
    }

    /// Adds a node that is not an initial member (it will be started with `--join`), at
    /// `placement` or on free loopback ports; returns its index. It is not started.
    pub fn add_joiner(&mut self, placement: Option<Placement>) -> Result<usize, KitError> {
        let placement = match placement {
            Some(placement) => placement,
            None => Placement::loopback()?,
        };
        self.push_node(placement, true)
    }

    /// Adds a joiner on loopback ports and starts it; returns its index.
    pub fn spawn_joiner(&mut self) -> Result<usize, KitError> {
        let i = self.add_joiner(None)?;
        self.spawn(i)?;
        Ok(i)
    }

    /// Sends `signal` to node `i`, if it runs; tracks SIGSTOP and SIGCONT. Whether it was sent.
    pub fn signal(&mut self, i: usize, signal: Signal) -> bool {
        self.nodes.get_mut(i).is_some_and(|n| n.signal(signal))
    }

    /// SIGKILL (after SIGCONT) and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.kill();
        }
    }

    /// SIGTERM (after SIGCONT), then waits up to `grace` for the exit: its status, or `None`
    /// if it had to be killed (or was not running).
    pub fn terminate(&mut self, i: usize, grace: Duration) -> Option<ExitStatus> {
        self.nodes.get_mut(i)?.terminate(grace)
    }

    /// Waits up to `timeout` for node `i` to exit by itself: its exit status, or `None` if it
    /// is still running (it is left running) or was not.
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let node = self.nodes.get_mut(i)?;
        poll("a node to exit", timeout, || node.exited()).ok()
    }

    /// Kills node `i` and deletes its data directory.
    pub fn wipe(&mut self, i: usize) -> Result<(), KitError> {
        self.kill(i);
        let dir = &self.node(i)?.data_dir;
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KitError::Io {
                what: dir.display().to_string(),
                source,
            }),
        }
    }

    /// A node removed from the membership: killed for good, and no longer given to joiners.
    pub fn retire(&mut self, i: usize) {
        if let Some(node) = self.nodes.get_mut(i) {
            node.kill();
            node.member = false;
        }
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes.get_mut(i).is_some_and(Node::is_running)
    }

    /// Members (not retired), running or not.
    pub fn members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].member)
            .collect()
    }

    /// Members whose process runs and is not stopped (SIGSTOP).
    pub fn live_members(&mut self) -> Vec<usize> {
        self.members()
            .into_iter()
            .filter(|i| !self.nodes[*i].stopped && self.nodes[*i].is_running())
            .collect()
    }

    /// The node dispatching now: the newest term claimed (and not given up since) in its log
    /// by a running, unfrozen node.
    pub fn leader(&mut self) -> Option<usize> {
        let live = self.live_members();
        live.into_iter()
            .filter_map(|i| {
                let node = &mut self.nodes[i];
                node.refresh_leadership();
                node.leading_term.map(|term| (term, i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Waits up to `timeout` for a leader.
    pub fn wait_for_leader(&mut self, timeout: Duration) -> Result<usize, KitError> {
        poll("a leader", timeout, || self.leader())
    }

    /// Waits up to `timeout` for a leader other than `old`.
    pub fn wait_for_new_leader(
        &mut self,
        old: usize,
        timeout: Duration,
    ) -> Result<usize, KitError> {
        poll("a new leader", timeout, || {
            self.leader().filter(|i| *i != old)
        })
    }

    /// Node `i`'s whole log, parsed (lines that are not JSON are left out).
    pub fn log_lines(&self, i: usize) -> Vec<serde_json::Value> {
        let Some(node) = self.nodes.get(i) else {
            return Vec::new();
        };
        std::fs::read_to_string(&node.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Every node's log, each under a `==== node <id> ====` heading.
    pub fn log_text(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "==== node {} ====\n{}",
                    n.id,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Node `i`'s process id (0 when it does not run).
    pub fn pid(&self, i: usize) -> u32 {
        self.nodes.get(i).and_then(Node::pid).unwrap_or(0)
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Sets node `i`'s wall clock to real time plus `offset_ms` (libfaketime re-reads its file
    /// every second, so a running node follows without a restart).
    pub fn set_clock(&mut self, i: usize, offset_ms: i64) -> Result<(), KitError> {
        self.node_mut(i)?.set_clock(offset_ms)
    }

    pub fn has_clock_control(&self) -> bool {
        self.options.faketime.is_some()
    }

    /// SIGKILLs every node (SIGCONT first, so frozen ones die too).
    pub fn kill_all(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }

    /// Stops every node gracefully: SIGTERM to all at once (each one's shutdown is bounded, and
    /// they overlap), then SIGKILL to any still running after `grace`.
    pub fn shutdown(&mut self, grace: Duration) {
        for node in &mut self.nodes {
            node.signal(Signal::Cont);
            node.signal(Signal::Term);
        }
        let deadline = Instant::now() + grace;
        for node in &mut self.nodes {
            while Instant::now() < deadline && node.exited().is_none() && node.pid().is_some() {
                std::thread::sleep(Duration::from_millis(20));
            }
            node.kill();
        }
    }
}

impl Drop for Cluster {
    /// Stops every node still running. With `report_exits`, a node that had exited by itself
    /// fails the test, with the end of its log; not while the thread is already panicking,
    /// since a second panic would abort and hide the first.
    fn drop(&mut self) {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(status) = node.exited() {
                exited.push(format!(
                    "node {} had exited by itself ({status}); the end of its log:\n{}",
                    node.id,
                    node.log_tail(10)
                ));
            }
            node.kill();
        }
        if self.options.report_exits && !exited.is_empty() && !std::thread::panicking() {
            panic!("{}", exited.join("\n"));
        }
    }
}

/// Applies a leadership line to a node's view of its own term.
fn apply_leadership(term: &mut Option<u64>, change: Leadership) {
    *term = match change {
        Leadership::Became(t) => Some(t),
        Leadership::Lost => None,
    };
}
