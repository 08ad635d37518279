//! The processes of `belfry dev`'s cluster, on the test kit (`belfry_kit`): its own
//! `redis-server` (installed from Debian's packages if missing), three `belfry server` nodes
//! sharing a random cluster secret, and the reading of their logs (`node<id>.log` in the dev
//! directory) for leadership changes and problems.
//!
//! Invariant: every process started is stopped when `Procs` is dropped: nodes first (all told
//! at once, each bounded), then the worker, Redis last. Owns choosing how those processes run
//! and following their logs: it must not watch the queues.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use belfry_kit::logs::{leadership_of, Leadership, LogTail};
use belfry_kit::{Cluster, ClusterOptions, Placement, RedisOptions, RedisServer};

use super::output::Output;
use super::DevError;

/// The file in the data directory holding the nodes' cluster secret.
const SECRET_FILE: &str = "cluster-secret";

/// Writes a fresh random cluster secret, readable by the owner only.
pub(super) fn write_cluster_secret(dir: &Path) -> Result<(), DevError> {
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
pub(super) struct Procs {
    pub cluster: Option<Cluster>,
    pub redis: Option<RedisServer>,
    pub worker: Option<Child>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        // Nodes first, so nothing is dispatched that the worker will not see; then the
        // worker, while Redis is still there for its warm shutdown; Redis last.
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.shutdown(Duration::from_secs(25));
        }
        if let Some(worker) = self.worker.as_mut() {
            super::worker::stop(worker);
        }
        self.redis = None;
    }
}

pub(super) fn ensure_redis_server() -> Result<(), DevError> {
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

/// Starts the dev Redis on `port` (nothing kept on disk) and waits until it accepts
/// connections.
pub(super) fn start_redis(port: u16, dir: &Path) -> Result<RedisServer, DevError> {
    RedisServer::launch(RedisOptions {
        dir: Some(dir.to_path_buf()),
        port: Some(port),
        ..RedisOptions::default()
    })
    .map_err(DevError::Kit)
}

/// The three nodes at `addrs`, with their files in `dir` (the sample schedules file among
/// them), not started yet.
pub(super) fn prepare_nodes(
    bin: &Path,
    dir: &Path,
    addrs: &[String],
    redis_url: &str,
    schedules: &str,
) -> Result<Cluster, DevError> {
    let mut options = ClusterOptions::new(bin, addrs.len(), redis_url)
        // Even on loopback, other local users must not steer the cluster: its peers share
        // a secret made for this run.
        .arg("--cluster-secret-file")
        .arg(dir.join(SECRET_FILE))
        // A throwaway cluster on loopback: no tokens, no certificates.
        .arg("--insecure-no-auth")
        .arg("--insecure-no-tls");
    options.dir = Some(dir.to_path_buf());
    options.schedules = Some(schedules.to_string());
    options.console = true;
    options.placements = addrs
        .iter()
        .map(|addr| Placement {
            addr: addr.clone(),
            listen: addr.clone(),
            wrapper: Vec::new(),
        })
        .collect();
    Cluster::prepare(options).map_err(DevError::Kit)
}

/// Warnings about what `belfry dev` chose for its loopback cluster, said once in its intro
/// rather than by every node.
const DEV_CHOICES: [&str; 2] = ["API authentication is OFF", "TLS is OFF"];

/// Follows the nodes' logs (node `i + 1` writes `logs[i]`) from a thread of its own until
/// `stop`: prints their noteworthy lines and tracks who leads (a node id, 0 for none).
pub(super) fn follow_logs(
    logs: Vec<PathBuf>,
    leader: Arc<AtomicUsize>,
    output: Arc<Output>,
    stop: Arc<AtomicBool>,
) {
    let mut tails: Vec<LogTail> = logs.into_iter().map(LogTail::new).collect();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            for (i, tail) in tails.iter_mut().enumerate() {
                for line in tail.new_lines() {
                    note(i + 1, &line, &leader, &output);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// Prints one log line of node `id` if it is worth it, and tracks who leads.
fn note(id: usize, line: &str, leader: &AtomicUsize, output: &Output) {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else {
        return;
    };
    let message = json["fields"]["message"].as_str().unwrap_or_default();
    let term = json["fields"]["term"].as_u64().unwrap_or_default();
    match leadership_of(&json) {
        Some(Leadership::Became(_)) => {
            leader.store(id, Ordering::SeqCst);
            output.note(&format!("  ** node {id} is the leader (term {term})"));
        }
        Some(Leadership::Lost) => output.note(&format!("  ** node {id} stopped leading")),
        None if DEV_CHOICES.iter().any(|chosen| message.starts_with(chosen)) => {}
        None if json["target"]
            .as_str()
            .is_some_and(|t| t.starts_with("belfry"))
            && (json["level"] == "ERROR"
                || json["level"] == "WARN"
                || message.starts_with("schedules file")) =>
        {
            output.note(&format!("  node {id}: {message}"))
        }
        None => {}
    }
}
