//! Real `belfry server` processes for scenario tests: start, signal (KILL, STOP, CONT, TERM),
//! restart from the same data directory, wipe, and find the leader from their JSON logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, wait_for};

/// One node's process and files.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    /// Where it serves `/metrics`, `/healthz` and `/readyz`.
    pub metrics_addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    /// How many times it was started (each start appends to the same log).
    pub starts: u32,
    /// The open-files limit (`ulimit -n`) it is started with, if not the test's own.
    pub files_limit: Option<u64>,
    /// Extra environment variables it is started with.
    pub env: Vec<(String, String)>,
}

/// A cluster of `belfry server` processes sharing one config file layout.
pub struct ProcCluster {
    pub nodes: Vec<NodeProc>,
    pub redis_url: String,
    pub schedules: PathBuf,
    pub config: PathBuf,
    /// The first `initial` nodes are the static initial members; later ones join.
    initial: usize,
    /// The config file sets up TLS; otherwise nodes run with `--insecure-no-tls`, and peers
    /// authenticate with `CLUSTER_SECRET`.
    tls: bool,
    /// The config file names a cluster secret of its own.
    own_secret: bool,
    dir: tempfile::TempDir,
}

/// The tokens every test cluster accepts.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";
pub const READONLY_TOKEN: &str = "readonly-token-for-tests";
/// The cluster secret of every test cluster without TLS.
pub const CLUSTER_SECRET: &str = "cluster-secret-for-tests-0123456789";

/// Adds the test clusters' secret to a peer call made by hand.
#[allow(dead_code)]
pub fn with_cluster_secret<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    request.metadata_mut().insert(
        belfry::raft::peer_auth::SECRET_METADATA,
        CLUSTER_SECRET.parse().expect("an ASCII secret"),
    );
    request
}

/// A peer network that sends the test clusters' secret.
#[allow(dead_code)]
pub fn peer_network() -> belfry::raft::network::PeerNetwork {
    belfry::raft::network::PeerNetwork::new("belfry").with_secret(
        belfry::raft::peer_auth::ClusterSecret::new(&[CLUSTER_SECRET]).expect("a valid secret"),
    )
}

/// The `belfry` binary the process tests run: this build's, or the one `BELFRY_TEST_BIN` names
/// (an earlier release's, to see a regression test fail there).
pub fn belfry_bin() -> &'static str {
    static BIN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::env::var("BELFRY_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_belfry").into())
    });
    &BIN
}

impl ProcCluster {
    /// Writes `schedules_toml` and a config, then starts `n` nodes.
    pub fn start(n: u64, redis_url: &str, schedules_toml: &str, extra_config: &str) -> ProcCluster {
        let mut cluster = ProcCluster::prepare(n, redis_url, schedules_toml, extra_config);
        for i in 0..cluster.nodes.len() {
            cluster.spawn(i);
        }
        cluster
    }

    /// Writes the files `start` writes but starts no node, so that a test can prepare data
    /// directories first and then start nodes with `spawn`.
    pub fn prepare(
        n: u64,
        redis_url: &str,
        schedules_toml: &str,
        extra_config: &str,
    ) -> ProcCluster {
        let dir = tempfile::tempdir().expect("cluster temp dir");
        let schedules = dir.path().join("schedules.toml");
        std::fs::write(&schedules, schedules_toml).expect("write schedules");
        let config = dir.path().join("belfry.toml");
        std::fs::write(&config, extra_config).expect("write config");
        let nodes: Vec<NodeProc> = (1..=n)
            .map(|id| NodeProc {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                metrics_addr: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(format!("node{id}")),
                log: dir.path().join(format!("node{id}.log")),
                child: None,
                starts: 0,
                files_limit: None,
                env: Vec::new(),
            })
            .collect();
        ProcCluster {
            nodes,
            redis_url: redis_url.to_string(),
            schedules,
            config,
            initial: n as usize,
            tls: extra_config.contains("tls_cert"),
            own_secret: extra_config.contains("cluster_secret"),
            dir,
        }
    }

    /// Waits up to `timeout` for node `i` to exit by itself: its exit status, or `None` if it
    /// is still running (it is left running).
    #[allow(dead_code)]
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let child = self.nodes[i].child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.nodes[i].child = None;
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn peers(&self) -> String {
        self.nodes[..self.initial]
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Adds a node that is not an initial member: it asks node 1 to add it (`--join`).
    #[allow(dead_code)]
    pub fn spawn_joiner(&mut self) -> usize {
        let id = self.nodes.len() as u64 + 1;
        self.nodes.push(NodeProc {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            metrics_addr: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("node{id}")),
            log: self.dir.path().join(format!("node{id}.log")),
            child: None,
            starts: 0,
            files_limit: None,
            env: Vec::new(),
        });
        let i = self.nodes.len() - 1;
        self.spawn(i);
        i
    }

    /// Starts node `i` (index into `nodes`) from its data directory.
    pub fn spawn(&mut self, i: usize) {
        let peers = self.peers();
        let join = if i >= self.initial {
            vec!["--join".to_string(), self.nodes[0].addr.clone()]
        } else {
            Vec::new()
        };
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        // prlimit sets the limit, then executes belfry in its own process.
        let mut command = match node.files_limit {
            Some(limit) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={limit}:{limit}"))
                    .arg("--")
                    .arg(belfry_bin());
                c
            }
            None => Command::new(belfry_bin()),
        };
        let child = command
            .arg("server")
            .arg("--config")
            .arg(&self.config)
            .args([
                "--node-id",
                &node.id.to_string(),
                "--listen",
                &node.addr,
                "--peers",
                &peers,
            ])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--redis-url", &self.redis_url, "--log-format", "json"])
            .arg("--schedules")
            .arg(&self.schedules)
            .args(["--metrics-listen", &node.metrics_addr])
            .args(if self.tls {
                &[][..]
            } else {
                &["--insecure-no-tls"][..]
            })
            .args(&join)
            .envs(
                (!self.tls && !self.own_secret)
                    .then_some(("BELFRY_CLUSTER_SECRET", CLUSTER_SECRET)),
            )
            .env("BELFRY_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("BELFRY_READONLY_TOKEN", READONLY_TOKEN)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(node.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start belfry server");
        node.child = Some(child);
        node.starts += 1;
    }

    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(child) = &self.nodes[i].child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success(), "kill -{signal} node {}", self.nodes[i].id);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self, i: usize) {
        self.signal(i, "TERM");
        if let Some(mut child) = self.nodes[i].child.take() {
            let status = wait_for(
                "a node to exit after SIGTERM",
                Duration::from_secs(20),
                || child.try_wait().ok().flatten(),
            );
            assert!(
                status.success(),
                "node {} exited with {status}",
                self.nodes[i].id
            );
        }
    }

    pub fn wipe(&mut self, i: usize) {
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.nodes[i].data_dir);
    }

    pub fn is_running(&mut self, i: usize) -> bool {
        self.nodes[i]
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Parsed JSON log lines of node `i`.
    pub fn log_lines(&self, i: usize) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.nodes[i].log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The index of the node currently dispatching (the latest "became leader" term among
    /// running nodes that has not been followed by "no longer leader").
    pub fn leader(&mut self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.nodes.len() {
            if !self.is_running(i) {
                continue;
            }
            let mut leading_term = None;
            for line in self.log_lines(i) {
                let message = line["fields"]["message"].as_str().unwrap_or("");
                if message.starts_with("became leader") {
                    leading_term = line["fields"]["term"].as_u64();
                } else if message.starts_with("no longer leader") {
                    leading_term = None;
                }
            }
            if let Some(term) = leading_term {
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    pub fn wait_for_leader(&mut self, timeout: Duration) -> usize {
        wait_for("a leader", timeout, || self.leader())
    }

    /// Waits for a leader other than `old`.
    pub fn wait_for_new_leader(&mut self, old: usize, timeout: Duration) -> usize {
        wait_for("a new leader", timeout, || {
            self.leader().filter(|i| *i != old)
        })
    }

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

    /// An API client of node `i` (lazy: connects on first call).
    #[allow(dead_code)]
    pub fn client(&self, i: usize, token: Option<&str>) -> belfry::api::client::ApiClient {
        belfry::api::client::ApiClient::new(&belfry::api::client::ClientConfig {
            endpoint: self.nodes[i].addr.clone(),
            token: token.map(str::to_string),
            tls_ca: None,
            timeout: Some(Duration::from_secs(30)),
        })
        .expect("api client")
    }

    pub fn pid(&self, i: usize) -> u32 {
        self.nodes[i].child.as_ref().map_or(0, |c| c.id())
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }
}

impl Drop for ProcCluster {
    /// Stops every node still owned. A node that had exited by itself fails the test (nothing
    /// in a test expects that), with the end of its log; not while the test is already failing,
    /// since a second panic would abort the test binary and hide the first.
    fn drop(&mut self) {
        let mut exited = Vec::new();
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            if let Some(Ok(Some(status))) = node.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                exited.push(format!(
                    "node {} had exited by itself ({status}); the end of its log:\n{}",
                    node.id,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            // SIGKILL ends a stopped (SIGSTOP) process too.
            self.kill(i);
        }
        if !exited.is_empty() && !std::thread::panicking() {
            panic!("{}", exited.join("\n"));
        }
    }
}

/// One message as it reached Redis.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub task_id: String,
    pub schedule: String,
    pub scheduled_at: chrono::DateTime<chrono::Utc>,
    pub arrived_at: chrono::DateTime<chrono::Utc>,
    pub queue: String,
    /// `belfry-<node id>@<host>`: which node pushed it.
    pub origin: String,
}

/// Drains a queue from a background thread, timestamping each message as it arrives. Reliable
/// across Redis restarts: each message is moved (BLMOVE) into a processing list, recorded, then
/// removed from it, and on reconnecting anything left in the processing list that was not yet
/// recorded is recorded then. (A plain BRPOP loses the message it was popping when Redis dies.)
pub struct Consumer {
    arrivals: std::sync::Arc<std::sync::Mutex<Vec<Arrival>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn decode_arrival(
    queue: &str,
    payload: &str,
    arrived_at: chrono::DateTime<chrono::Utc>,
) -> Arrival {
    use base64::Engine as _;
    let envelope: serde_json::Value = serde_json::from_str(payload).expect("envelope is JSON");
    let headers = &envelope["headers"];
    // The body must decode too: a malformed message would poison real workers.
    let body = base64::engine::general_purpose::STANDARD
        .decode(envelope["body"].as_str().expect("body"))
        .expect("body is padded base64");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("body is JSON");
    assert_eq!(body.as_array().map(Vec::len), Some(3));
    Arrival {
        task_id: headers["id"].as_str().unwrap_or_default().to_string(),
        schedule: headers["belfry_schedule"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        scheduled_at: chrono::DateTime::parse_from_rfc3339(
            headers["belfry_scheduled_at"].as_str().unwrap_or_default(),
        )
        .expect("belfry_scheduled_at")
        .to_utc(),
        arrived_at,
        queue: queue.to_string(),
        origin: headers["origin"].as_str().unwrap_or_default().to_string(),
    }
}

impl Consumer {
    pub fn start(redis_url: &str, queue: &str) -> Consumer {
        let arrivals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Arrival>::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = redis_url.to_string();
        let queue = queue.to_string();
        let processing = format!("{queue}:test-consumer-processing");
        let (arrivals2, stop2) = (arrivals.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut conn) =
                    redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
                else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                // Messages taken but not recorded before the connection (or Redis) was lost.
                let leftover: Vec<String> = redis::cmd("LRANGE")
                    .arg(&processing)
                    .arg(0)
                    .arg(-1)
                    .query(&mut conn)
                    .unwrap_or_default();
                for payload in leftover {
                    let arrival = decode_arrival(&queue, &payload, chrono::Utc::now());
                    let mut recorded = arrivals2.lock().expect("arrivals");
                    if !recorded.iter().any(|a| a.task_id == arrival.task_id) {
                        recorded.push(arrival);
                    }
                }
                let _: Result<(), _> = redis::cmd("DEL").arg(&processing).query(&mut conn);
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    let moved: Result<Option<String>, _> = redis::cmd("BLMOVE")
                        .arg(&queue)
                        .arg(&processing)
                        .arg("RIGHT")
                        .arg("LEFT")
                        .arg(0.2)
                        .query(&mut conn);
                    let Ok(moved) = moved else { break };
                    let Some(payload) = moved else { continue };
                    let arrival = decode_arrival(&queue, &payload, chrono::Utc::now());
                    arrivals2.lock().expect("arrivals").push(arrival);
                    let removed: Result<i64, _> = redis::cmd("LREM")
                        .arg(&processing)
                        .arg(1)
                        .arg(&payload)
                        .query(&mut conn);
                    if removed.is_err() {
                        break;
                    }
                }
            }
        });
        Consumer {
            arrivals,
            stop,
            thread: Some(thread),
        }
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().expect("arrivals").clone()
    }
}

/// A consumer for benchmarks: pops up to 1,000 messages per round trip and decodes them only
/// when asked, so it never limits the rate it measures. Not for tests that kill Redis (a
/// message popped as the connection drops is lost to it).
/// Raw payloads with the instant they were popped.
type Popped = std::sync::Arc<std::sync::Mutex<Vec<(String, chrono::DateTime<chrono::Utc>)>>>;

#[allow(dead_code)]
pub struct BatchConsumer {
    popped: Popped,
    queue: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[allow(dead_code)]
impl BatchConsumer {
    pub fn start(redis_url: &str, queue: &str) -> BatchConsumer {
        let popped: Popped = Popped::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (url, list) = (redis_url.to_string(), queue.to_string());
        let (popped2, stop2) = (popped.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut conn) =
                    redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
                else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    let many: Result<Option<Vec<String>>, _> =
                        redis::cmd("RPOP").arg(&list).arg(1000).query(&mut conn);
                    let batch = match many {
                        Ok(Some(batch)) if !batch.is_empty() => batch,
                        Ok(_) => {
                            // Empty: block for the next one instead of spinning.
                            let one: Result<Option<(String, String)>, _> =
                                redis::cmd("BRPOP").arg(&list).arg(0.2).query(&mut conn);
                            match one {
                                Ok(Some((_, payload))) => vec![payload],
                                Ok(None) => continue,
                                Err(_) => break,
                            }
                        }
                        Err(_) => break,
                    };
                    let now = chrono::Utc::now();
                    popped2
                        .lock()
                        .expect("popped")
                        .extend(batch.into_iter().map(|p| (p, now)));
                }
            }
        });
        BatchConsumer {
            popped,
            queue: queue.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    pub fn arrivals(&self) -> Vec<Arrival> {
        self.popped
            .lock()
            .expect("popped")
            .iter()
            .map(|(payload, at)| decode_arrival(&self.queue, payload, *at))
            .collect()
    }
}

impl Drop for BatchConsumer {
    fn drop(&mut self) {
        stop_and_join(&self.stop, &mut self.thread);
    }
}

/// Tells a consumer thread to stop and waits for it.
fn stop_and_join(
    stop: &std::sync::atomic::AtomicBool,
    thread: &mut Option<std::thread::JoinHandle<()>>,
) {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(thread) = thread.take() {
        let _ = thread.join();
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        stop_and_join(&self.stop, &mut self.thread);
    }
}

/// What the checker found for a window.
#[derive(Debug, Default)]
pub struct Report {
    pub expected: usize,
    pub delivered: usize,
    pub missing: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    pub duplicated: Vec<(String, chrono::DateTime<chrono::Utc>, usize)>,
    pub unexpected: Vec<(String, chrono::DateTime<chrono::Utc>)>,
    pub max_lateness: chrono::Duration,
    pub p99_lateness: chrono::Duration,
    /// Deliveries that reached Redis before their instant by more than `EARLY_TOLERANCE`:
    /// (schedule, instant, how early).
    pub early: Vec<(String, chrono::DateTime<chrono::Utc>, chrono::Duration)>,
}

/// How early a delivery may reach Redis: the error of the quorum's time on loopback, nothing
/// more, whatever any node's clock says.
pub const EARLY_TOLERANCE: chrono::Duration = chrono::Duration::milliseconds(50);

/// Compares arrivals with the expected occurrences (schedule → instants, computed by the test
/// itself) inside `[from, to]`.
pub fn check(
    arrivals: &[Arrival],
    expected: &BTreeMap<String, Vec<chrono::DateTime<chrono::Utc>>>,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Report {
    let mut seen: BTreeMap<(String, chrono::DateTime<chrono::Utc>), usize> = BTreeMap::new();
    let mut lateness = Vec::new();
    for a in arrivals
        .iter()
        .filter(|a| a.scheduled_at >= from && a.scheduled_at <= to)
    {
        *seen
            .entry((a.schedule.clone(), a.scheduled_at))
            .or_default() += 1;
        lateness.push(a.arrived_at - a.scheduled_at);
    }
    let mut report = Report::default();
    for a in arrivals
        .iter()
        .filter(|a| a.scheduled_at >= from && a.scheduled_at <= to)
        .filter(|a| a.arrived_at < a.scheduled_at - EARLY_TOLERANCE)
    {
        report.early.push((
            a.schedule.clone(),
            a.scheduled_at,
            a.scheduled_at - a.arrived_at,
        ));
    }
    for (schedule, instants) in expected {
        for at in instants.iter().filter(|t| **t >= from && **t <= to) {
            report.expected += 1;
            match seen.remove(&(schedule.clone(), *at)) {
                None => report.missing.push((schedule.clone(), *at)),
                Some(1) => report.delivered += 1,
                Some(n) => {
                    report.delivered += 1;
                    report.duplicated.push((schedule.clone(), *at, n));
                }
            }
        }
    }
    for ((schedule, at), n) in seen {
        if expected.contains_key(&schedule) {
            report.unexpected.push((schedule.clone(), at));
        }
        if n > 1 {
            report.duplicated.push((schedule, at, n));
        }
    }
    lateness.sort();
    if let Some(max) = lateness.last() {
        report.max_lateness = *max;
        report.p99_lateness = lateness[(lateness.len() * 99 / 100).min(lateness.len() - 1)];
    }
    report
}

impl Report {
    pub fn assert_exactly_once(&self, context: &str) {
        assert!(
            self.missing.is_empty()
                && self.duplicated.is_empty()
                && self.unexpected.is_empty()
                && self.early.is_empty()
                && self.expected > 0,
            "{context}: expected {}, delivered {}, missing {:?}, duplicated {:?}, unexpected {:?}, early {:?}",
            self.expected,
            self.delivered,
            self.missing,
            self.duplicated,
            self.unexpected,
            self.early
        );
    }
}
