//! A Sentinel-managed Redis for one test: a master, its replicas and three `redis-sentinel`
//! processes (Debian's package), each on a free loopback port, all stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for, RedisServer};

pub const MASTER_NAME: &str = "belfrymaster";

pub struct Sentinel {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = &self.dir;
    }
}

/// A master, `replicas` replicas of it and three sentinels watching it (quorum 2), tuned to
/// notice a dead master within a second.
pub struct SentinelTopology {
    /// Every data server, the first started as master; a killed one stays in its slot, dead.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelTopology {
    pub fn start(replicas: usize) -> SentinelTopology {
        let master = RedisServer::start().expect("start redis-server");
        let master_port = master.port.to_string();
        let mut servers = vec![master];
        for _ in 0..replicas {
            servers.push(
                RedisServer::start_with(&[
                    "--replicaof",
                    "127.0.0.1",
                    &master_port,
                    "--replica-announce-ip",
                    "127.0.0.1",
                ])
                .expect("start redis-server"),
            );
        }
        // Replicas in sync before anything is written (so a failover has a candidate).
        for replica in &servers[1..] {
            let port = replica.port;
            wait_for("a replica in sync", Duration::from_secs(20), || {
                info(port, "replication")
                    .contains("master_link_status:up")
                    .then_some(())
            });
        }
        let sentinels = (0..3).map(|_| start_sentinel(servers[0].port)).collect();
        let topology = SentinelTopology { servers, sentinels };
        topology.wait_until_sentinels_know(replicas);
        topology
    }

    /// kombu's URL for these sentinels, with database `db`.
    pub fn url(&self, db: u8) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("sentinel://127.0.0.1:{}/{db}", s.port))
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The master's port, once every sentinel names the same one other than `old` (a
    /// sentinel learns of a failover another one led a moment later).
    pub fn wait_for_new_master(&self, old: u16) -> u16 {
        wait_for(
            "every sentinel to name the new master",
            Duration::from_secs(60),
            || {
                let named: Vec<Option<u16>> = (0..self.sentinels.len())
                    .map(|i| self.named_by(i))
                    .collect();
                let first = named.first().copied().flatten()?;
                (first != old && named.iter().all(|p| *p == Some(first))).then_some(first)
            },
        )
    }

    /// The master's port as the first sentinel that answers names it.
    pub fn master_port(&self) -> Option<u16> {
        (0..self.sentinels.len()).find_map(|i| self.named_by(i))
    }

    /// The master's port as sentinel `i` names it.
    fn named_by(&self, i: usize) -> Option<u16> {
        self.sentinels.get(i).and_then(|s| {
            let mut conn = redis::Client::open(format!("redis://127.0.0.1:{}", s.port))
                .and_then(|c| c.get_connection())
                .ok()?;
            let (_, port): (String, String) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(MASTER_NAME)
                .query(&mut conn)
                .ok()?;
            port.parse().ok()
        })
    }

    /// The slot of the server that is master now.
    pub fn master(&self) -> usize {
        let port = self.master_port().expect("the sentinels name a master");
        self.servers
            .iter()
            .position(|s| s.port == port)
            .expect("the master is one of ours")
    }

    /// SIGKILLs the master and waits until every sentinel names another server as master
    /// and it takes writes. Returns the new master's slot.
    pub fn kill_master_and_wait_for_failover(&mut self) -> usize {
        let old = self.master();
        self.servers[old].kill();
        let port = self.wait_for_new_master(self.servers[old].port);
        wait_for(
            "the new master to take writes",
            Duration::from_secs(60),
            || {
                info(port, "replication")
                    .contains("role:master")
                    .then_some(())
            },
        );
        self.master()
    }

    fn wait_until_sentinels_know(&self, replicas: usize) {
        for sentinel in &self.sentinels {
            let port = sentinel.port;
            wait_for(
                "a sentinel to see the replicas and its peers",
                Duration::from_secs(30),
                || {
                    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                        .and_then(|c| c.get_connection())
                        .ok()?;
                    let seen: Vec<Vec<String>> = redis::cmd("SENTINEL")
                        .arg("replicas")
                        .arg(MASTER_NAME)
                        .query(&mut conn)
                        .ok()?;
                    let peers: Vec<Vec<String>> = redis::cmd("SENTINEL")
                        .arg("sentinels")
                        .arg(MASTER_NAME)
                        .query(&mut conn)
                        .ok()?;
                    (seen.len() >= replicas && peers.len() >= 2).then_some(())
                },
            );
        }
    }
}

/// SIGKILLs the server on `port` by the process id it reports (it dies with nothing saved).
pub fn kill_server_on(port: u16) {
    let pid = info(port, "server")
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .map(|p| p.trim().to_string())
        .expect("the server reports its process id");
    let status = Command::new("kill").args(["-KILL", &pid]).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -KILL {pid}");
}

/// `INFO <section>` of the server on `port` (empty if it does not answer).
pub fn info(port: u16, section: &str) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut conn| redis::cmd("INFO").arg(section).query(&mut conn))
        .unwrap_or_default()
}

fn start_sentinel(master_port: u16) -> Sentinel {
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir for a sentinel");
    // A sentinel rewrites its configuration file, so each has its own.
    let config = dir.path().join("sentinel.conf");
    std::fs::write(
        &config,
        format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.path().display()
        ),
    )
    .expect("write sentinel.conf");
    let child = Command::new("redis-sentinel")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-sentinel must be installed (scripts/test.sh installs it)");
    wait_for(
        "redis-sentinel to accept connections",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    Sentinel {
        port,
        dir,
        child: Some(child),
    }
}
