//! A Sentinel-managed Redis: a master, its replicas and three `redis-sentinel` processes
//! (quorum 2) watching it, tuned to notice a dead master within a second; SIGKILLing the
//! master and waiting for the sentinels' failover; bringing a killed server back as a replica
//! of the new master, so that the next failover has a candidate. Optionally the sentinels
//! require a password, and servers and sentinels also listen with TLS.
//!
//! Invariant: every server and sentinel listens on 127.0.0.1, where the kit asks its own
//! questions over plain TCP whatever clients use, and on the topology's host address (with
//! TLS: on a TLS port there), which is what the sentinels name and clients reach. A server keeps
//! its slot (index into the servers) and its ports for the topology's life, dead or alive, and
//! every process is killed when the topology is dropped, the sentinels first. Owns the
//! processes and their configuration: it must not read the queues, nor decide when a master
//! fails (callers do).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

use crate::ports::loopback_port;
use crate::wait::poll;
use crate::{KitError, RedisOptions, RedisServer};

/// The master's name the sentinels watch, unless the options give another.
pub const MASTER_NAME: &str = "belfrymaster";

/// How long a failover, a resynchronisation or the sentinels' discovery may take.
const WAIT: Duration = Duration::from_secs(60);

/// The certificate, key and CA every server and sentinel presents and trusts on its TLS port
/// (clients need no certificate of their own).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// What to start.
#[derive(Clone, Debug)]
pub struct SentinelOptions {
    /// Replicas of the master (at least one, for a failover to have a candidate).
    pub replicas: usize,
    pub master_name: String,
    /// The address the sentinels name servers by and clients connect to, besides 127.0.0.1
    /// (e.g. the host's address on a link to other network namespaces).
    pub host: String,
    /// The sentinels' `requirepass` (and the password they give each other).
    pub sentinel_password: Option<String>,
    /// TLS ports besides the plain ones: replication and the sentinels' links use them, and
    /// the sentinels name them.
    pub tls: Option<TlsFiles>,
    /// Where the processes' directories go (`server-<slot>/`, `sentinel-<i>/`, each with its
    /// log); a temporary directory, removed on drop, when `None`.
    pub dir: Option<PathBuf>,
    pub redis_bin: PathBuf,
    pub sentinel_bin: PathBuf,
}

impl SentinelOptions {
    /// A master with `replicas` replicas on 127.0.0.1, sentinels without a password, no TLS.
    pub fn new(replicas: usize) -> SentinelOptions {
        SentinelOptions {
            replicas,
            master_name: MASTER_NAME.into(),
            host: "127.0.0.1".into(),
            sentinel_password: None,
            tls: None,
            dir: None,
            redis_bin: PathBuf::from("redis-server"),
            sentinel_bin: PathBuf::from("redis-sentinel"),
        }
    }
}

/// One data server of the topology.
pub struct DataServer {
    pub redis: RedisServer,
    /// Its TLS port, when the topology has TLS.
    pub tls_port: Option<u16>,
}

impl DataServer {
    /// The port the sentinels name it by: its TLS port when it has one.
    pub fn named_port(&self) -> u16 {
        self.tls_port.unwrap_or(self.redis.port)
    }
}

/// One `redis-sentinel` process.
pub struct Sentinel {
    /// Its plain port on 127.0.0.1 and the host address.
    pub port: u16,
    pub tls_port: Option<u16>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Sentinel {
    /// The port clients use: its TLS port when it has one.
    pub fn client_port(&self) -> u16 {
        self.tls_port.unwrap_or(self.port)
    }

    /// Its working directory (and log, `sentinel.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A master, its replicas and three sentinels. Fields drop in declaration order: the sentinels
/// stop before the servers, so none starts a failover while they go.
pub struct SentinelTopology {
    sentinels: Vec<Sentinel>,
    servers: Vec<DataServer>,
    options: SentinelOptions,
    base: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl SentinelTopology {
    /// Starts the master, its replicas (returning once each is in sync) and the sentinels
    /// (returning once each sees every replica and the other two sentinels).
    pub fn start(options: SentinelOptions) -> Result<SentinelTopology, KitError> {
        let (base, temp) = match &options.dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let temp = tempfile::tempdir().map_err(KitError::io("a sentinel topology"))?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut topology = SentinelTopology {
            sentinels: Vec::new(),
            servers: Vec::new(),
            options,
            base,
            _temp: temp,
        };
        let master = topology.start_server(0, None)?;
        let master_port = master.named_port();
        topology.servers.push(master);
        for slot in 1..=topology.options.replicas {
            let replica = topology.start_server(slot, Some(master_port))?;
            topology.servers.push(replica);
        }
        // Replicas in sync before anything is written, so a failover has a candidate.
        for slot in 1..topology.servers.len() {
            topology.wait_in_sync(slot)?;
        }
        for i in 0..3 {
            let sentinel = topology.start_sentinel(i, master_port)?;
            topology.sentinels.push(sentinel);
        }
        topology.wait_until_sentinels_know()?;
        Ok(topology)
    }

    /// kombu's URL for these sentinels (their TLS ports with TLS), with database `db`.
    pub fn url(&self, db: u8) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("sentinel://{}:{}/{db}", self.options.host, s.client_port()))
            .collect::<Vec<_>>()
            .join(";")
    }

    pub fn master_name(&self) -> &str {
        &self.options.master_name
    }

    pub fn sentinels(&self) -> &[Sentinel] {
        &self.sentinels
    }

    pub fn servers(&self) -> &[DataServer] {
        &self.servers
    }

    /// The slot of the server the sentinels name as master now.
    pub fn master(&self) -> Result<usize, KitError> {
        let port = self
            .named_master_port()
            .ok_or_else(|| KitError::Sentinel("no sentinel names a master".into()))?;
        self.slot_of(port)
    }

    /// The port the first sentinel that answers names the master by.
    pub fn named_master_port(&self) -> Option<u16> {
        (0..self.sentinels.len()).find_map(|i| self.named_by(i))
    }

    /// A function naming the master now as `redis://127.0.0.1:<plain port>/<db>`, asked afresh
    /// at every call: for a consumer that follows the master (`Consumer::following`).
    pub fn master_locator(&self, db: u8) -> impl Fn() -> Option<String> + Send + Sync + 'static {
        let asker = self.asker();
        let ports: Vec<(u16, u16)> = self
            .servers
            .iter()
            .map(|s| (s.named_port(), s.redis.port))
            .collect();
        move || {
            let named = (0..asker.sentinels.len()).find_map(|i| asker.named_by(i))?;
            let plain = ports.iter().find(|(n, _)| *n == named)?.1;
            Some(format!("redis://127.0.0.1:{plain}/{db}"))
        }
    }

    /// Waits until every sentinel names the same master other than `old`, it answers as
    /// master (a sentinel learns of a failover another one led a moment later), and the
    /// sentinels' view of it has settled (see `wait_until_settled`). Its slot.
    pub fn wait_for_new_master(&self, old: usize) -> Result<usize, KitError> {
        let old_port = self.servers.get(old).map(DataServer::named_port);
        let port = poll("every sentinel to name a new master", WAIT, || {
            let named: Vec<Option<u16>> = (0..self.sentinels.len())
                .map(|i| self.named_by(i))
                .collect();
            let first = named.first().copied().flatten()?;
            (Some(first) != old_port && named.iter().all(|p| *p == Some(first))).then_some(first)
        })?;
        let slot = self.slot_of(port)?;
        let plain = self.servers[slot].redis.port;
        poll("the new master to take writes", WAIT, || {
            info(plain, "replication")
                .contains("role:master")
                .then_some(())
        })?;
        self.wait_until_settled()
    }

    /// Waits until, for `SETTLED` in a row, every sentinel names the same master, has had an
    /// answer from it within two seconds (it pings once a second), and neither holds it down
    /// nor fails it over;
    /// returns its slot. Right after a switch a sentinel can lose its new link's first pings
    /// (seen over TLS), hold the new master down and fail it over again, to any replica it
    /// knows: one restarted empty and still in its first sync would be promoted, and what the
    /// master held lost. Nothing is restarted before the view has settled.
    fn wait_until_settled(&self) -> Result<usize, KitError> {
        const SETTLED: Duration = Duration::from_secs(3);
        let asker = self.asker();
        let mut since: Option<(Instant, u16)> = None;
        let port = poll("the sentinels' view of the master to settle", WAIT, || {
            let agreed = (0..self.sentinels.len())
                .map(|i| {
                    let mut conn = asker.conn(i)?;
                    let row: Vec<String> = redis::cmd("SENTINEL")
                        .arg("master")
                        .arg(&asker.master_name)
                        .query(&mut conn)
                        .ok()?;
                    let answered: u64 = field(&row, "last-ok-ping-reply")?.parse().ok()?;
                    (field(&row, "flags") == Some("master") && answered < 2_000)
                        .then(|| field(&row, "port")?.parse::<u16>().ok())
                        .flatten()
                })
                .collect::<Option<Vec<u16>>>()
                .filter(|ports| ports.windows(2).all(|w| w[0] == w[1]))
                .and_then(|ports| ports.first().copied());
            match (agreed, since) {
                (Some(port), Some((start, held))) if held == port => {
                    (start.elapsed() >= SETTLED).then_some(port)
                }
                (Some(port), _) => {
                    since = Some((Instant::now(), port));
                    None
                }
                (None, _) => {
                    since = None;
                    None
                }
            }
        })?;
        self.slot_of(port)
    }

    /// SIGKILLs the master and waits for the failover: (the killed slot, the new master's).
    pub fn kill_master_and_wait_for_failover(&mut self) -> Result<(usize, usize), KitError> {
        let old = self.master()?;
        self.servers[old].redis.kill();
        let new = self.wait_for_new_master(old)?;
        Ok((old, new))
    }

    /// Starts the (killed) server in `slot` again, empty, as a replica of the master the
    /// sentinels name, and returns once it is in sync and every sentinel counts it as a
    /// healthy replica: the next failover may promote it.
    pub fn restart_as_replica(&mut self, slot: usize) -> Result<(), KitError> {
        let master = self.master()?;
        if master == slot {
            return Err(KitError::Sentinel(format!(
                "server {slot} is still the master; nothing to restart it as a replica of"
            )));
        }
        let master_port = self.servers[master].named_port();
        let args = self.server_args(Some(master_port), self.servers[slot].tls_port);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.servers[slot].redis.restart_with(&args)?;
        self.wait_in_sync(slot)?;
        self.wait_until_sentinels_know()
    }

    /// The slot of the server the sentinels name by `port`.
    fn slot_of(&self, port: u16) -> Result<usize, KitError> {
        self.servers
            .iter()
            .position(|s| s.named_port() == port)
            .ok_or_else(|| KitError::Sentinel(format!("the sentinels name port {port}, not ours")))
    }

    fn named_by(&self, i: usize) -> Option<u16> {
        self.asker().named_by(i)
    }

    fn asker(&self) -> Asker {
        Asker {
            sentinels: self.sentinels.iter().map(|s| s.port).collect(),
            password: self.options.sentinel_password.clone(),
            master_name: self.options.master_name.clone(),
        }
    }

    /// The further `redis-server` arguments of a server (a replica of `replica_of`).
    fn server_args(&self, replica_of: Option<u16>, tls_port: Option<u16>) -> Vec<String> {
        let host = &self.options.host;
        let mut args: Vec<String> = Vec::new();
        if host != "127.0.0.1" {
            args.extend(["--bind".into(), host.clone(), "127.0.0.1".into()]);
        }
        args.extend(["--replica-announce-ip".into(), host.clone()]);
        if let (Some(tls), Some(port)) = (&self.options.tls, tls_port) {
            args.extend([
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                tls.cert.display().to_string(),
                "--tls-key-file".into(),
                tls.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                tls.ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-replication".into(),
                "yes".into(),
            ]);
        }
        if let Some(port) = replica_of {
            args.extend(["--replicaof".into(), host.clone(), port.to_string()]);
        }
        args
    }

    fn start_server(&self, slot: usize, replica_of: Option<u16>) -> Result<DataServer, KitError> {
        let tls_port = match self.options.tls {
            Some(_) => Some(loopback_port().map_err(KitError::io("a TLS port for redis"))?),
            None => None,
        };
        let redis = RedisServer::launch(RedisOptions {
            bin: self.options.redis_bin.clone(),
            dir: Some(self.base.join(format!("server-{slot}"))),
            port: None,
            persist: false,
            args: self.server_args(replica_of, tls_port),
        })?;
        Ok(DataServer { redis, tls_port })
    }

    fn wait_in_sync(&self, slot: usize) -> Result<(), KitError> {
        let port = self.servers[slot].redis.port;
        poll(&format!("replica {slot} in sync"), WAIT, || {
            info(port, "replication")
                .contains("master_link_status:up")
                .then_some(())
        })
    }

    /// Waits until every sentinel sees the other two and counts every running server but the
    /// master as a replica with its link to the master up.
    fn wait_until_sentinels_know(&self) -> Result<(), KitError> {
        let master = self.master()?;
        let replicas: Vec<u16> = (0..self.servers.len())
            .filter(|slot| *slot != master && self.servers[*slot].redis.is_running())
            .map(|slot| self.servers[slot].named_port())
            .collect();
        let asker = self.asker();
        for i in 0..self.sentinels.len() {
            poll("a sentinel to see the replicas and its peers", WAIT, || {
                let mut conn = asker.conn(i)?;
                let seen = sentinel_table(&mut conn, "replicas", &asker.master_name)?;
                let peers = sentinel_table(&mut conn, "sentinels", &asker.master_name)?;
                let healthy = |port: u16| {
                    seen.iter().any(|r| {
                        field(r, "port") == Some(port.to_string().as_str())
                            && field(r, "flags") == Some("slave")
                            && field(r, "master-link-status") == Some("ok")
                    })
                };
                (peers.len() >= 2 && replicas.iter().all(|p| healthy(*p))).then_some(())
            })?;
        }
        Ok(())
    }

    fn start_sentinel(&self, i: usize, master_port: u16) -> Result<Sentinel, KitError> {
        let port = loopback_port().map_err(KitError::io("a port for redis-sentinel"))?;
        let dir = self.base.join(format!("sentinel-{i}"));
        std::fs::create_dir_all(&dir).map_err(KitError::io(dir.display().to_string()))?;
        let o = &self.options;
        let name = &o.master_name;
        let bind = if o.host == "127.0.0.1" {
            "127.0.0.1".to_string()
        } else {
            format!("{} 127.0.0.1", o.host)
        };
        let mut config = format!(
            "port {port}\nbind {bind}\nprotected-mode no\ndir {dir}\nlogfile {log}\n",
            dir = dir.display(),
            log = dir.join("sentinel.log").display()
        );
        if let Some(password) = &o.sentinel_password {
            config.push_str(&format!(
                "requirepass {password}\nsentinel sentinel-pass {password}\n"
            ));
        }
        let tls_port = match &o.tls {
            Some(tls) => {
                let tls_port = loopback_port().map_err(KitError::io("a TLS port for sentinel"))?;
                config.push_str(&format!(
                    "tls-port {tls_port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                    tls.cert.display(),
                    tls.key.display(),
                    tls.ca.display()
                ));
                Some(tls_port)
            }
            None => None,
        };
        config.push_str(&format!(
            "sentinel monitor {name} {host} {master_port} 2\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n\
             sentinel parallel-syncs {name} 1\n",
            host = o.host
        ));
        // A sentinel rewrites its configuration file, so each has its own.
        let path = dir.join("sentinel.conf");
        std::fs::write(&path, config).map_err(KitError::io(path.display().to_string()))?;
        let child = Command::new(&o.sentinel_bin)
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| KitError::Spawn {
                what: format!(
                    "{} (Debian's redis-sentinel package)",
                    o.sentinel_bin.display()
                ),
                source,
            })?;
        let mut sentinel = Sentinel {
            port,
            tls_port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = sentinel
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                return Err(KitError::Sentinel(format!(
                    "redis-sentinel on port {port} did not start; see {}",
                    sentinel.dir.join("sentinel.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(sentinel)
    }
}

/// Asks the sentinels on 127.0.0.1 (plain ports) where the master is.
struct Asker {
    sentinels: Vec<u16>,
    password: Option<String>,
    master_name: String,
}

impl Asker {
    fn conn(&self, i: usize) -> Option<redis::Connection> {
        let port = *self.sentinels.get(i)?;
        let mut settings = RedisConnectionInfo::default();
        if let Some(password) = &self.password {
            settings = settings.set_password(password);
        }
        let info = ConnectionAddr::Tcp("127.0.0.1".into(), port)
            .into_connection_info()
            .ok()?
            .set_redis_settings(settings);
        redis::Client::open(info).ok()?.get_connection().ok()
    }

    /// The port sentinel `i` names the master by.
    fn named_by(&self, i: usize) -> Option<u16> {
        let mut conn = self.conn(i)?;
        let (_, port): (String, String) = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&self.master_name)
            .query(&mut conn)
            .ok()?;
        port.parse().ok()
    }
}

/// `SENTINEL <what> <master>` as a list of field/value rows.
fn sentinel_table(
    conn: &mut redis::Connection,
    what: &str,
    master: &str,
) -> Option<Vec<Vec<String>>> {
    redis::cmd("SENTINEL")
        .arg(what)
        .arg(master)
        .query(conn)
        .ok()
}

/// The value of `name` in a row of alternating fields and values.
fn field<'a>(row: &'a [String], name: &str) -> Option<&'a str> {
    row.chunks(2)
        .find(|pair| pair.first().map(String::as_str) == Some(name))
        .and_then(|pair| pair.get(1))
        .map(String::as_str)
}

/// `INFO <section>` of the server on 127.0.0.1:`port` (empty if it does not answer).
pub fn info(port: u16, section: &str) -> String {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .and_then(|c| c.get_connection())
        .and_then(|mut conn| redis::cmd("INFO").arg(section).query(&mut conn))
        .unwrap_or_default()
}

/// SIGKILLs process `pid` (a server another thread holds, at the moment a test chooses).
pub fn sigkill(pid: u32) -> Result<(), KitError> {
    let pid = i32::try_from(pid).map_err(|_| KitError::Sentinel(format!("pid {pid}")))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(KitError::io(format!("kill -KILL {pid}"))(
            std::io::Error::last_os_error(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_read_from_alternating_rows() {
        let row: Vec<String> = ["name", "r1", "flags", "slave", "port"]
            .map(String::from)
            .to_vec();
        assert_eq!(field(&row, "flags"), Some("slave"));
        assert_eq!(field(&row, "name"), Some("r1"));
        assert_eq!(field(&row, "port"), None);
        assert_eq!(field(&row, "r1"), None);
    }
}
