//! Real parts for integration tests, on top of the test kit (`belfry_kit`: clusters of server
//! processes, `redis-server`, the queue consumer): a real Celery worker from the test
//! virtualenv, blocking gRPC calls, the repository's files. Each process is stopped when
//! dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[allow(unused_imports)]
pub use belfry_kit::{wait_for, RedisServer};

/// Blocks on a unary gRPC call from synchronous code inside a multi-threaded tokio test (such as
/// a `wait_for` check): the reply, or `None` on any error.
pub fn block<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(call)
            .ok()
            .map(|r| r.into_inner())
    })
}

/// A free TCP port on 127.0.0.1, outside the ephemeral range and never handed out twice by
/// this test binary (see `belfry_kit::ports`).
pub fn free_port() -> u16 {
    belfry_kit::ports::loopback_port().expect("a free loopback port")
}

/// The resident size of process `pid` in KiB, as the OS reports it (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The largest resident size process `pid` has had, in KiB (0 if it cannot be read).
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user and system) process `pid` has used (0 if it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are the 12th and 13th, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

/// A schedules file of `n` intervals `s0`, `s1`, … of `every_secs` running `bench.tick` on
/// `queue`, starting at `t0`, their anchors spread evenly over one interval when `spread`.
pub fn interval_schedules(
    n: usize,
    every_secs: i64,
    (t0, spread): (chrono::DateTime<chrono::Utc>, bool),
    queue: &str,
) -> String {
    (0..n)
        .map(|i| {
            let offset_ms = if spread {
                (i as i64 * every_secs * 1000) / n as i64
            } else {
                0
            };
            belfry_kit::Schedule::new(&format!("s{i}"), "bench.tick")
                .every(&format!("{every_secs}s"))
                .start_at(t0 + chrono::TimeDelta::milliseconds(offset_ms))
                .queue(queue)
                .to_toml()
        })
        .collect()
}

/// A bench's own arguments (options aside), or `None` when `cargo test` runs the bench target
/// without `--bench`: it then has nothing to do.
pub fn bench_args() -> Option<Vec<String>> {
    if !std::env::args().any(|a| a == "--bench") {
        return None;
    }
    Some(
        std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect(),
    )
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the test virtualenv (`BELFRY_TEST_PYTHON`, or `.venv/bin/python`).
pub fn test_python() -> PathBuf {
    let python = std::env::var_os("BELFRY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python with Celery at {}: run scripts/test.sh, which creates it",
        python.display()
    );
    python
}

/// A real `celery worker` running `tests/celery_app/belfry_test_app.py`.
pub struct CeleryWorker {
    child: Child,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

impl CeleryWorker {
    /// Starts a solo-pool worker consuming `queues`, with the broker in `broker_url` and
    /// results stored in `backend_url`.
    pub fn start(broker_url: &str, backend_url: &str, queues: &[&str]) -> Self {
        Self::start_with(broker_url, backend_url, queues, &[])
    }

    /// `start`, with extra environment for the app (`BELFRY_TEST_MASTER_NAME` for Sentinel).
    pub fn start_with(
        broker_url: &str,
        backend_url: &str,
        queues: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for celery");
        let log = dir.path().join("worker.log");
        let log_file = std::fs::File::create(&log).expect("worker log file");
        let child = Command::new(test_python())
            .args(["-m", "celery", "-A", "belfry_test_app", "worker"])
            .args([
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
            ])
            .args(["--without-heartbeat", "--hostname"])
            .arg(format!("belfry-test-{}@localhost", std::process::id()))
            .args(["--queues", &queues.join(",")])
            .current_dir(repo_root().join("tests/celery_app"))
            .env("BELFRY_TEST_BROKER", broker_url)
            .env("BELFRY_TEST_BACKEND", backend_url)
            .env("PYTHONUNBUFFERED", "1")
            .envs(env.iter().copied())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .expect("start the celery worker");
        CeleryWorker {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the worker with SIGTERM (a warm shutdown), then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for CeleryWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Reads a file relative to the repository root.
pub fn read_repo_file(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(repo_root().join(path)).expect("read repository file")
}

/// A private CA and a certificate it signs for localhost and 127.0.0.1 (RSA keys from the
/// `openssl` command, as a Redis operator would make them), written into `dir`.
pub fn openssl_pki(dir: &Path) -> belfry_kit::sentinel::TlsFiles {
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=belfry test CA",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.pem"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ]);
    std::fs::write(
        path("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write ext.cnf");
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.pem"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &path("ext.cnf"),
        "-out",
        &path("server.pem"),
    ]);
    belfry_kit::sentinel::TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        ca: dir.join("ca.pem"),
    }
}

pub mod http;
pub mod metrics;
pub mod procs;
