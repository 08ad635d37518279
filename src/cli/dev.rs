//! `belfry dev`: a local three-node cluster as separate processes, with its own `redis-server`
//! (installed from Debian's packages if missing) and a sample schedule. It prints dispatches as
//! they reach Redis, kills the leader once to show a failover, and runs until Ctrl-C. Its nodes
//! authenticate each other with a random cluster secret written into its directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use super::ports::loopback_port;

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Seconds after start at which the leader is killed (0: never).
    #[arg(long, default_value_t = 20)]
    kill_leader_after: u64,
    /// Where the nodes keep their data (a temporary directory by default).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const SAMPLE: &str = r#"# belfry dev: a sample of schedules.
[[schedule]]
name = "heartbeat"
task = "tasks.heartbeat"
every = "2s"
args = ["ping"]

[[schedule]]
name = "report-every-minute"
task = "reports.build"
cron = "* * * * *"
kwargs = { region = "eu" }
options = { priority = 3 }

[[schedule]]
name = "business-hours-15m"
task = "reports.digest"
crontab = "*/15 9-17 * * mon-fri"
tz = "Europe/Paris"
"#;

/// The file in the data directory holding the nodes' cluster secret.
const SECRET_FILE: &str = "cluster-secret";

/// Writes a fresh random cluster secret, readable by the owner only.
fn write_cluster_secret(dir: &Path) -> Result<(), String> {
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
        .map_err(|e| format!("{}: {e}", path.display()))
}

struct Procs {
    children: Vec<Option<Child>>,
    redis: Option<Child>,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        if let Some(redis) = self.redis.as_mut() {
            let _ = redis.kill();
            let _ = redis.wait();
        }
    }
}

fn ensure_redis_server() -> Result<(), String> {
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
        Err(
            "could not install redis-server; install it (apt-get install redis-server) and retry"
                .into(),
        )
    }
}

fn start_node(
    bin: &Path,
    dir: &Path,
    id: usize,
    addr: &str,
    peers: &str,
    redis_url: &str,
) -> std::io::Result<Child> {
    Command::new(bin)
        .arg("server")
        .args([
            "--node-id",
            &id.to_string(),
            "--listen",
            addr,
            "--peers",
            peers,
        ])
        .arg("--data-dir")
        .arg(dir.join(format!("node{id}")))
        .args(["--redis-url", redis_url, "--log-format", "json"])
        .arg("--schedules")
        .arg(dir.join("schedules.toml"))
        // Even on loopback, other local users must not steer the cluster: its peers share a
        // secret made for this run.
        .arg("--cluster-secret-file")
        .arg(dir.join(SECRET_FILE))
        // A throwaway cluster on loopback: no tokens, no certificates.
        .args([
            "--insecure-no-auth",
            "--insecure-no-tls",
            "--metrics-listen",
            "off",
        ])
        .env("RUST_LOG", "info,openraft=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
}

/// Prints a node's noteworthy log lines and tracks who leads.
fn follow_logs(child: &mut Child, id: usize, leader: Arc<AtomicUsize>) {
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
            if message.starts_with("became leader") {
                leader.store(id, Ordering::SeqCst);
                println!("  ** node {id} is the leader (term {term})");
            } else if message.starts_with("no longer leader") {
                println!("  ** node {id} stopped leading");
            } else if json["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("belfry"))
                && (json["level"] == "ERROR"
                    || json["level"] == "WARN"
                    || message.starts_with("schedules file"))
            {
                println!("  node {id}: {message}");
            }
        }
    });
}

pub fn run(args: DevArgs) -> ExitCode {
    match run_dev(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => super::fail(err),
    }
}

fn run_dev(args: DevArgs) -> Result<(), String> {
    ensure_redis_server()?;
    let temp = tempfile_dir(args.dir)?;
    let dir = temp.path.clone();
    std::fs::write(dir.join("schedules.toml"), SAMPLE).map_err(|e| e.to_string())?;
    write_cluster_secret(&dir)?;
    let bin = std::env::current_exe().map_err(|e| e.to_string())?;
    let redis_port = loopback_port().map_err(|e| e.to_string())?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let mut procs = Procs {
        children: Vec::new(),
        redis: None,
    };
    procs.redis = Some(
        Command::new("redis-server")
            .args([
                "--port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?,
    );
    let addrs: Vec<String> = (0..3)
        .map(|_| loopback_port().map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let peers = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    println!(
        "belfry dev: Redis at {redis_url}, nodes {peers}, data in {}",
        dir.display()
    );
    println!("schedules: {}", dir.join("schedules.toml").display());
    if let Some(first) = addrs.first() {
        println!("try, in another shell: belfry schedule list --endpoint {first}");
    }
    let leader = Arc::new(AtomicUsize::new(0));
    for (i, addr) in addrs.iter().enumerate() {
        let mut child =
            start_node(&bin, &dir, i + 1, addr, &peers, &redis_url).map_err(|e| e.to_string())?;
        follow_logs(&mut child, i + 1, leader.clone());
        procs.children.push(Some(child));
    }

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        ctrlc_thread(stop);
    }
    watch_dispatches(&redis_url, stop.clone());

    let started = Instant::now();
    let mut killed: Option<(usize, Instant)> = None;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        let current = leader.load(Ordering::SeqCst);
        if args.kill_leader_after > 0
            && killed.is_none()
            && current > 0
            && started.elapsed() >= Duration::from_secs(args.kill_leader_after)
        {
            if let Some(mut child) = procs.children[current - 1].take() {
                println!("  !! killing the leader, node {current}, with SIGKILL");
                let _ = child.kill();
                let _ = child.wait();
                leader.store(0, Ordering::SeqCst);
                killed = Some((current, Instant::now()));
            }
        }
        if let Some((id, at)) = killed {
            if at.elapsed() >= Duration::from_secs(10) && procs.children[id - 1].is_none() {
                println!("  .. restarting node {id} from its data directory");
                let mut child = start_node(&bin, &dir, id, &addrs[id - 1], &peers, &redis_url)
                    .map_err(|e| e.to_string())?;
                follow_logs(&mut child, id, leader.clone());
                procs.children[id - 1] = Some(child);
            }
        }
    }
    println!("stopping");
    drop(procs);
    Ok(())
}

/// Prints every message that reaches the default queues, with its lateness.
fn watch_dispatches(redis_url: &str, stop: Arc<AtomicBool>) {
    let url = redis_url.to_string();
    std::thread::spawn(move || {
        let keys = [
            "celery",
            "celery\x06\x163",
            "celery\x06\x166",
            "celery\x06\x169",
        ];
        while !stop.load(Ordering::SeqCst) {
            let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
            else {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            };
            while !stop.load(Ordering::SeqCst) {
                let popped: Result<Option<(String, String)>, _> =
                    redis::cmd("BRPOP").arg(&keys[..]).arg(0.5).query(&mut conn);
                let Ok(popped) = popped else { break };
                let Some((_, payload)) = popped else { continue };
                let now = chrono::Utc::now();
                let Ok(envelope) = serde_json::from_str::<serde_json::Value>(&payload) else {
                    continue;
                };
                let h = &envelope["headers"];
                let scheduled = h["belfry_scheduled_at"].as_str().unwrap_or_default();
                let lateness = chrono::DateTime::parse_from_rfc3339(scheduled)
                    .map(|t| (now - t.to_utc()).num_milliseconds())
                    .unwrap_or_default();
                println!(
                    "{}  {:<22} {:<16} due {}  late {:>5} ms  id {}",
                    now.format("%H:%M:%S%.3f"),
                    h["belfry_schedule"].as_str().unwrap_or_default(),
                    h["task"].as_str().unwrap_or_default(),
                    scheduled,
                    lateness,
                    h["id"].as_str().unwrap_or_default()
                );
            }
        }
    });
}

fn ctrlc_thread(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
        stop.store(true, Ordering::SeqCst);
    });
}

/// A directory that is removed at the end unless the user chose it.
struct DevDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for DevDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn tempfile_dir(chosen: Option<PathBuf>) -> Result<DevDir, String> {
    match chosen {
        Some(path) => {
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(DevDir {
                path,
                remove: false,
            })
        }
        None => {
            let path = std::env::temp_dir().join(format!("belfry-dev-{}", std::process::id()));
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(DevDir { path, remove: true })
        }
    }
}
