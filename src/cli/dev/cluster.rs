//! The processes of `belfry dev`'s cluster: its own `redis-server` (installed from Debian's
//! packages if missing), three `belfry server` nodes sharing a random cluster secret, and the
//! reading of their logs for leadership changes and problems.
//!
//! Invariant: every process started is stopped when `Procs` is dropped: nodes first (all told
//! at once, each bounded), then the worker, Redis last. Owns starting, following and stopping
//! those processes: it must not watch the queues.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::output::Output;
use super::DevError;

/// The file in the data directory holding the nodes' cluster secret.
const SECRET_FILE: &str = "cluster-secret";

/// Writes a fresh random cluster secret, readable by the owner only.
pub fn write_cluster_secret(dir: &Path) -> Result<(), DevError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Two version-4 UUIDs: 244 bits from the operating system's random source.
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let path = dir.join(SECRET_FILE);
    let _ = std::fs::remove_file(&path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(format!("{secret}\n").as_bytes()))
        .map_err(DevError::io(path.display().to_string()))
}

/// Every process of the cluster; dropping it stops them all.
#[derive(Default)]
pub struct Procs {
    pub nodes: Vec<Option<Child>>,
    pub redis: Option<Child>,
    pub worker: Option<Child>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        // Nodes first, so nothing is dispatched that the worker will not see; then the
        // worker, while Redis is still there for its warm shutdown; Redis last.
        // All nodes are told at once: each one's shutdown is bounded, and they overlap.
        for child in self.nodes.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(25);
        for child in self.nodes.iter_mut().flatten() {
            while Instant::now() < deadline && !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(worker) = self.worker.as_mut() {
            super::worker::stop(worker);
        }
        if let Some(redis) = self.redis.as_mut() {
            let _ = redis.kill();
            let _ = redis.wait();
        }
    }
}

pub fn ensure_redis_server() -> Result<(), DevError> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return Ok(());
    }
    println!("redis-server is missing: installing it from Debian's packages");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root {
            cmd.arg("apt-get");
        }
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    let ok = apt(&["update", "-qq"]).is_ok_and(|s| s.success())
        && apt(&["install", "-y", "-qq", "redis-server"]).is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(DevError::RedisInstall)
    }
}

/// Starts the dev Redis on `port` and waits until it accepts connections.
pub fn start_redis(port: u16, dir: &Path) -> Result<Child, DevError> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .map_err(DevError::io("redis-server"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(DevError::RedisStart(port));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

/// Where one node runs and what it talks to.
pub struct NodeSpec<'a> {
    pub bin: &'a Path,
    pub dir: &'a Path,
    pub peers: &'a str,
    pub redis_url: &'a str,
}

impl NodeSpec<'_> {
    /// Starts node `id` listening on `addr`, and follows its log.
    pub fn start(
        &self,
        id: usize,
        addr: &str,
        leader: &Arc<AtomicUsize>,
        output: &Arc<Output>,
    ) -> Result<Child, DevError> {
        let mut child = Command::new(self.bin)
            .arg("server")
            .args(["--node-id", &id.to_string(), "--listen", addr])
            .args(["--peers", self.peers])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node{id}")))
            .args(["--redis-url", self.redis_url, "--log-format", "json"])
            .arg("--schedules")
            .arg(self.dir.join("schedules.toml"))
            // Even on loopback, other local users must not steer the cluster: its peers share
            // a secret made for this run.
            .arg("--cluster-secret-file")
            .arg(self.dir.join(SECRET_FILE))
            // A throwaway cluster on loopback: no tokens, no certificates.
            .args(["--insecure-no-auth", "--insecure-no-tls"])
            .args(["--metrics-listen", "off"])
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(DevError::io(format!("starting node {id}")))?;
        follow_logs(&mut child, id, leader.clone(), output.clone());
        Ok(child)
    }
}

/// Warnings about what `belfry dev` chose for its loopback cluster, said once in its intro
/// rather than by every node.
const DEV_CHOICES: [&str; 2] = ["API authentication is OFF", "TLS is OFF"];

/// Prints a node's noteworthy log lines and tracks who leads.
fn follow_logs(child: &mut Child, id: usize, leader: Arc<AtomicUsize>, output: Arc<Output>) {
    let Some(stderr) = child.stderr.take() else {
        return;
    };
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let message = json["fields"]["message"].as_str().unwrap_or_default();
            let term = json["fields"]["term"].as_u64().unwrap_or_default();
            if DEV_CHOICES.iter().any(|chosen| message.starts_with(chosen)) {
                continue;
            } else if message.starts_with("became leader") {
                leader.store(id, Ordering::SeqCst);
                output.note(&format!("  ** node {id} is the leader (term {term})"));
            } else if message.starts_with("no longer leader") {
                output.note(&format!("  ** node {id} stopped leading"));
            } else if json["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("belfry"))
                && (json["level"] == "ERROR"
                    || json["level"] == "WARN"
                    || message.starts_with("schedules file"))
            {
                output.note(&format!("  node {id}: {message}"));
            }
        }
    });
}
