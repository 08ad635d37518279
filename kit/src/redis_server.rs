//! A real `redis-server` on a loopback port: started, SIGKILLed and restarted on the same port.
//!
//! Invariant: the server listens on 127.0.0.1 (and on any further address its arguments bind
//! it to: a Sentinel topology reached from other network namespaces), a start returns once it
//! accepts connections on 127.0.0.1 (or fails with the tail of its log), and the process is
//! killed when the value is dropped. With `persist`, every write is fsynced to an append-only file (`appendfsync
//! always`, as a production broker should), so a restart finds what it was told; without it a
//! restart is empty. Owns the process and its directory only: it must not read the queues.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::loopback_port;
use crate::KitError;

/// How to run the server.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// The `redis-server` binary (from `PATH` by default).
    pub bin: PathBuf,
    /// Its working directory; a temporary one (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    /// Its port; a free loopback port when `None`.
    pub port: Option<u16>,
    /// Keep every write in an fsynced append-only file, so that a restart keeps them.
    pub persist: bool,
    /// Further `redis-server` arguments, e.g. `["--requirepass", "s3cret"]`.
    pub args: Vec<String>,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            bin: PathBuf::from("redis-server"),
            dir: None,
            port: None,
            persist: false,
            args: Vec::new(),
        }
    }
}

/// A running (or killed, and restartable) `redis-server`.
pub struct RedisServer {
    pub port: u16,
    options: RedisOptions,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl RedisServer {
    /// A server on a free port in a temporary directory, keeping nothing on disk.
    pub fn start() -> Result<RedisServer, KitError> {
        Self::launch(RedisOptions::default())
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments.
    pub fn start_with(args: &[&str]) -> Result<RedisServer, KitError> {
        Self::launch(RedisOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..RedisOptions::default()
        })
    }

    pub fn launch(options: RedisOptions) -> Result<RedisServer, KitError> {
        let port = match options.port {
            Some(port) => port,
            None => loopback_port().map_err(KitError::io("choosing a port for redis-server"))?,
        };
        let (dir, temp) = match &options.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::tempdir().map_err(KitError::io("a directory for redis"))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut server = RedisServer {
            port,
            options,
            dir,
            _temp: temp,
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), KitError> {
        std::fs::create_dir_all(&self.dir).map_err(KitError::io(self.dir.display().to_string()))?;
        let log = self.dir.join("redis.log");
        let persist: &[&str] = if self.options.persist {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let child = Command::new(&self.options.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(persist)
            .args(["--protected-mode", "no", "--logfile"])
            .arg(&log)
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.options.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| KitError::Spawn {
                what: self.options.bin.display().to_string(),
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
                return Err(KitError::RedisExited {
                    status: status.to_string(),
                    log: log_tail(&log),
                });
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(KitError::RedisNotReady {
                    port: self.port,
                    log: log_tail(&log),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `redis://127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// A blocking connection to `db`.
    pub fn conn(&self, db: u8) -> redis::RedisResult<redis::Connection> {
        self.conn_with_password(db, None)
    }

    /// A blocking connection to `db`, with `password` when the server requires one.
    pub fn conn_with_password(
        &self,
        db: u8,
        password: Option<&str>,
    ) -> redis::RedisResult<redis::Connection> {
        let url = match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/{db}", self.port),
            None => self.url(db),
        };
        redis::Client::open(url)?.get_connection()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: only what was fsynced survives.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (from its append-only file when persisting).
    pub fn restart(&mut self) -> Result<(), KitError> {
        self.kill();
        self.spawn()
    }

    /// Starts it again on the same port with `args` in place of the further arguments it was
    /// started with (e.g. `--replicaof` a new master).
    pub fn restart_with(&mut self, args: &[&str]) -> Result<(), KitError> {
        self.options.args = args.iter().map(|a| a.to_string()).collect();
        self.restart()
    }

    /// The process id while it runs (or until it is reaped, after a signal from elsewhere).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its working directory (and log, `redis.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
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
