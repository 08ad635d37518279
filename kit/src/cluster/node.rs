//! One `belfry server` process of a cluster: its addresses, files, command line and signals.
//!
//! Invariant: at most one process per node, and `child` is `None` once it has been reaped;
//! `stopped` is true only while a running process is frozen by SIGSTOP. Must not know about
//! the other nodes beyond the peer and join lists it is given.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{apply_leadership, ClusterOptions};
use crate::logs::{leadership, LogTail};
use crate::ports::loopback_port;
use crate::KitError;

/// Where a node listens and how its process is launched.
#[derive(Clone, Debug)]
pub struct Placement {
    /// host:port of its gRPC server, as peers and clients reach it (`--advertise`).
    pub addr: String,
    /// host:port it binds (`--listen`); usually `addr`.
    pub listen: String,
    /// A command the server is started under, e.g. `["ip", "netns", "exec", "ns1"]`.
    pub wrapper: Vec<OsString>,
}

impl Placement {
    /// A free loopback port.
    pub fn loopback() -> Result<Placement, KitError> {
        let port = loopback_port().map_err(KitError::io("choosing a port for a node"))?;
        let addr = format!("127.0.0.1:{port}");
        Ok(Placement {
            listen: addr.clone(),
            addr,
            wrapper: Vec::new(),
        })
    }
}

/// The signals the kit sends to nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Term,
    Kill,
    Stop,
    Cont,
    Hup,
    Int,
}

impl Signal {
    fn number(self) -> libc::c_int {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
            Signal::Hup => libc::SIGHUP,
            Signal::Int => libc::SIGINT,
        }
    }
}

/// One node's process and files.
pub struct Node {
    pub id: u64,
    /// host:port of its gRPC server, as peers and clients reach it.
    pub addr: String,
    pub listen: String,
    /// Where it serves `/metrics`, `/healthz` and `/readyz` (`off` without metrics).
    pub metrics_addr: String,
    /// Where it serves the web console, if it does.
    pub console_addr: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub clock_file: PathBuf,
    wrapper: Vec<OsString>,
    child: Option<Child>,
    /// How many times it was started (each start appends to the same log).
    pub starts: u32,
    /// The open-files limit (`ulimit -n`) it is started with, if not the caller's own.
    pub files_limit: Option<u64>,
    /// Frozen by SIGSTOP.
    pub stopped: bool,
    /// False once retired from the membership.
    pub member: bool,
    /// Not an initial member: started with `--join`.
    pub joiner: bool,
    pub clock_offset_ms: i64,
    tail: LogTail,
    /// The term this node dispatches in, per its log (None once it said it stopped).
    pub(super) leading_term: Option<u64>,
}

/// Which HTTP ports a node gets besides its API port.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ports {
    pub metrics: bool,
    pub console: bool,
}

impl Node {
    pub(super) fn new(
        id: u64,
        placement: Placement,
        dir: &Path,
        ports: Ports,
        joiner: bool,
    ) -> Result<Node, KitError> {
        let console_addr = if ports.console {
            let port = loopback_port().map_err(KitError::io("choosing a console port"))?;
            Some(format!("127.0.0.1:{port}"))
        } else {
            None
        };
        let metrics_addr = if ports.metrics {
            let port = loopback_port().map_err(KitError::io("choosing a metrics port"))?;
            format!("127.0.0.1:{port}")
        } else {
            "off".to_string()
        };
        let log = dir.join(format!("node{id}.log"));
        Ok(Node {
            id,
            addr: placement.addr,
            listen: placement.listen,
            metrics_addr,
            console_addr,
            data_dir: dir.join(format!("node{id}")),
            tail: LogTail::new(&log),
            log,
            clock_file: dir.join(format!("node{id}.clock")),
            wrapper: placement.wrapper,
            child: None,
            starts: 0,
            files_limit: None,
            stopped: false,
            member: true,
            joiner,
            clock_offset_ms: 0,
            leading_term: None,
        })
    }

    /// The command line, before the options' arguments and environment.
    fn command(&self, options: &ClusterOptions) -> Command {
        let mut program: Vec<OsString> = self.wrapper.clone();
        if let Some(limit) = self.files_limit {
            // prlimit sets the limit, then executes belfry in its own process.
            program.extend([
                "prlimit".into(),
                format!("--nofile={limit}:{limit}").into(),
                "--".into(),
            ]);
        }
        program.push(options.bin.clone().into());
        let mut command = Command::new(&program[0]);
        command.args(&program[1..]);
        command
    }

    pub(super) fn spawn(
        &mut self,
        options: &ClusterOptions,
        peers: &str,
        join: &[String],
        (config, schedules): &(PathBuf, PathBuf),
    ) -> Result<(), KitError> {
        let what = |what: &str| format!("{what} of node {}", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(KitError::io(what("the log")))?;
        let mut command = self.command(options);
        command
            .arg("server")
            .args(["--node-id", &self.id.to_string(), "--listen", &self.listen])
            .args(["--peers", peers])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--redis-url", &options.redis_url, "--log-format", "json"])
            .args(["--metrics-listen", &self.metrics_addr]);
        if self.addr != self.listen {
            command.args(["--advertise", &self.addr]);
        }
        if let Some(console) = &self.console_addr {
            command.args(["--console-listen", console]);
        }
        if options.config.is_some() {
            command.arg("--config").arg(config);
        }
        if options.schedules.is_some() {
            command.arg("--schedules").arg(schedules);
        }
        if self.joiner {
            command.args(["--join", &join.join(",")]);
        }
        command
            .args(&options.args)
            .envs(options.env.iter().cloned());
        if let Some(lib) = &options.faketime {
            // The offset file is re-read every second: clock changes need no restart.
            // Monotonic clocks stay real, so timers and Raft timeouts are unaffected.
            write_clock_file(&self.clock_file, self.clock_offset_ms)
                .map_err(KitError::io(what("the clock file")))?;
            command
                .env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &self.clock_file)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
            .env("RUST_LOG", &options.rust_log)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| KitError::Spawn {
                what: format!("node {}", self.id),
                source,
            })?;
        self.child = Some(child);
        self.starts += 1;
        self.stopped = false;
        self.leading_term = None;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` if the process runs; whether it was sent.
    pub(super) fn signal(&mut self, signal: Signal) -> bool {
        let Some(pid) = self.pid().and_then(|p| libc::pid_t::try_from(p).ok()) else {
            return false;
        };
        // SAFETY: kill(2) on a child we spawned and have not reaped, so the pid is ours.
        let sent = unsafe { libc::kill(pid, signal.number()) } == 0;
        match signal {
            Signal::Stop if sent => self.stopped = true,
            Signal::Cont => self.stopped = false,
            _ => {}
        }
        sent
    }

    /// SIGKILL (after SIGCONT) and reap.
    pub(super) fn kill(&mut self) {
        self.signal(Signal::Cont);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stopped = false;
        self.leading_term = None;
    }

    /// SIGTERM (after SIGCONT), then the exit status within `grace`, or SIGKILL and `None`.
    pub(super) fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::Cont);
        self.signal(Signal::Term);
        let deadline = Instant::now() + grace;
        self.child.as_ref()?;
        let status = loop {
            if let Some(status) = self.exited() {
                break Some(status);
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.kill();
        status
    }

    /// The exit status if the process has exited (it is reaped then), else `None`.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok().flatten()?;
        self.child = None;
        self.stopped = false;
        self.leading_term = None;
        Some(status)
    }

    pub(super) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Reads what the node logged since the last call and updates the term it says it leads.
    pub(super) fn refresh_leadership(&mut self) {
        for line in self.tail.new_lines() {
            if let Some(change) = leadership(&line) {
                apply_leadership(&mut self.leading_term, change);
            }
        }
    }

    /// The last `n` lines of its log.
    pub(super) fn log_tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub(super) fn set_clock(&mut self, offset_ms: i64) -> Result<(), KitError> {
        self.clock_offset_ms = offset_ms;
        write_clock_file(&self.clock_file, offset_ms)
            .map_err(KitError::io(format!("the clock file of node {}", self.id)))
    }
}

/// libfaketime's relative format: "+1.500" or "-2.000" seconds, replaced atomically.
fn write_clock_file(path: &Path, offset_ms: i64) -> std::io::Result<()> {
    let text = format!("{:+.3}\n", offset_ms as f64 / 1000.0);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, path)
}
