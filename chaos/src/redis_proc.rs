//! The real `redis-server` of a run: started, SIGKILLed and restarted on the same port.
//!
//! It persists every write (`appendfsync always`), as a production broker should: belfry's
//! idempotency markers and the queued messages survive a crash, so a restart tests belfry and
//! not a Redis that forgot what it was told. Owns the process only; never reads messages.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: String,
        #[source]
        source: std::io::Error,
    },
    #[error("redis-server did not accept connections on port {port} within 10 s; its log:\n{log}")]
    NotReady { port: u16, log: String },
    #[error("redis-server exited at start ({status}); its log:\n{log}")]
    Exited { status: String, log: String },
}

pub struct RedisProc {
    pub port: u16,
    bin: PathBuf,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisProc {
    pub fn start(bin: &Path, dir: &Path, port: u16) -> Result<RedisProc, RedisError> {
        let mut redis = RedisProc {
            port,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            child: None,
        };
        redis.spawn()?;
        Ok(redis)
    }

    fn spawn(&mut self) -> Result<(), RedisError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| RedisError::Spawn {
            bin: self.bin.display().to_string(),
            source,
        })?;
        let log = self.dir.join("redis.log");
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--protected-mode", "no", "--logfile"])
            .arg(&log)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| RedisError::Spawn {
                bin: self.bin.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(RedisError::Exited {
                    status: status.to_string(),
                    log: log_tail(&log),
                });
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(RedisError::NotReady {
                    port: self.port,
                    log: log_tail(&log),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: whatever was fsynced survives.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port from its append-only file.
    pub fn restart(&mut self) -> Result<(), RedisError> {
        self.kill();
        self.spawn()
    }

    /// `redis://127.0.0.1:<port>/<db>`: the direct address (not through the proxy).
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }
}

/// The last lines of Redis' log, for an error that must say why it did not start.
fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(15)..].join("\n")
        }
        Err(err) => format!("(no log at {}: {err})", log.display()),
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.kill();
    }
}
