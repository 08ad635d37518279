//! Real parts for integration tests: a `redis-server` per test on a free loopback port, and a
//! real Celery worker from the test virtualenv. Each is stopped when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
/// this test binary (see `belfry::cli::ports`).
pub fn free_port() -> u16 {
    belfry::cli::ports::loopback_port().expect("a free loopback port")
}

/// The resident size of process `pid` in KiB, as the OS reports it (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A `redis-server` owned by one test.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with extra `redis-server` arguments, e.g. `["--requirepass", "s3cret"]`.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir for redis"),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test.sh installs it)");
        self.child = Some(child);
        let port = self.port;
        wait_for(
            "redis-server to accept connections",
            Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
        );
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// A blocking connection to `db` (with `password` when the server requires one).
    pub fn conn(&self, db: u8) -> redis::Connection {
        self.conn_with_password(db, None)
    }

    pub fn conn_with_password(&self, db: u8, password: Option<&str>) -> redis::Connection {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None => self.url(db),
        };
        redis::Client::open(url)
            .and_then(|c| c.get_connection())
            .expect("connect to the test redis-server")
    }

    /// Kills the server (SIGKILL): nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
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
pub mod metrics;
pub mod procs;
pub mod sentinel;
