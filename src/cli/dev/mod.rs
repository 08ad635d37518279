//! `belfry dev`: a local three-node cluster as separate processes, with its own `redis-server`
//! and a sample schedule (and, with `--worker`, a real Celery worker), printing each dispatch;
//! it kills the leader once to show a failover, and runs until Ctrl-C (or for `--duration`).
//!
//! Invariant: nothing is taken from the queues, so any worker pointed at that Redis receives
//! every task. Owns the dev session (its directory, the order things start in, the failover and
//! the stop): it must not consume the queues.

mod cluster;
mod monitor;
mod output;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;

use belfry_kit::ports::loopback_port;

use self::cluster::Procs;
use self::output::Output;

#[derive(Args, Debug)]
pub(super) struct DevArgs {
    /// Seconds after start at which the leader is killed (0: never).
    #[arg(long, default_value_t = 20)]
    kill_leader_after: u64,
    /// Where the nodes keep their data (a temporary directory by default).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also run a real Celery worker on the sample tasks (from `$BELFRY_VENV`, else `./.venv`
    /// if it has Celery, else a virtualenv created in ~/.cache/belfry/dev-venv) and show what
    /// it receives and runs.
    #[arg(long)]
    worker: bool,
    /// Stop by itself after this many seconds (0: run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    duration: u64,
}

/// Seconds after the leader is killed at which it is started again from its data directory.
const RESTART_AFTER: Duration = Duration::from_secs(10);

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

/// Why the dev session could not run.
#[derive(Debug, thiserror::Error)]
pub(super) enum DevError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not install redis-server; install it (apt-get install redis-server) and retry")]
    RedisInstall,
    #[error(transparent)]
    Kit(belfry_kit::KitError),
    #[error(transparent)]
    Monitor(#[from] monitor::MonitorError),
    #[error(transparent)]
    Worker(#[from] worker::WorkerError),
}

impl DevError {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DevError {
        let what = what.into();
        move |source| DevError::Io { what, source }
    }
}

pub(super) fn run(args: DevArgs) -> ExitCode {
    match run_dev(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => super::fail(err),
    }
}

/// The running session's parts the main loop works with.
struct Session {
    procs: Procs,
    leader: Arc<AtomicUsize>,
    output: Arc<Output>,
}

fn run_dev(args: DevArgs) -> Result<(), DevError> {
    cluster::ensure_redis_server()?;
    let output = Arc::new(Output::default());
    // The virtualenv comes first: creating one takes a while and must not eat into the
    // timeline of the failover.
    let venv = worker::venv_dir();
    if args.worker {
        worker::ensure_venv(&venv, &output)?;
    }
    let temp = dev_dir(args.dir.clone())?;
    let dir = temp.path.clone();
    cluster::write_cluster_secret(&dir)?;
    worker::write_tasks_module(&dir)?;
    let bin = std::env::current_exe().map_err(DevError::io("locating belfry"))?;
    let port = |_| loopback_port().map_err(DevError::io("choosing a port"));
    let redis_port = port(())?;
    let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
    let addrs: Vec<String> = (0..3)
        .map(|_| port(()).map(|p| format!("127.0.0.1:{p}")))
        .collect::<Result<_, _>>()?;
    let nodes = cluster::prepare_nodes(&bin, &dir, &addrs, &redis_url, SAMPLE)?;
    print_intro(&output, &redis_url, &nodes.peers(), &addrs, &dir);
    for node in &nodes.nodes {
        if let Some(console) = &node.console_addr {
            output.note(&format!(
                "web console of node {}: http://{console}/",
                node.id
            ));
        }
    }

    let mut procs = Procs::default();
    procs.redis = Some(cluster::start_redis(redis_port, &dir)?);
    let stop = Arc::new(AtomicBool::new(false));
    ctrlc_thread(stop.clone());
    // Watching starts before any node does, so not even the first dispatch is missed.
    let deadline = Instant::now() + Duration::from_secs(5);
    monitor::watch(
        &format!("127.0.0.1:{redis_port}"),
        output.clone(),
        stop.clone(),
        deadline,
    )?;
    if args.worker {
        procs.worker = Some(worker::start(&venv, &dir, &redis_url, output.clone())?);
    }
    let leader = Arc::new(AtomicUsize::new(0));
    let logs = nodes.nodes.iter().map(|n| n.log.clone()).collect();
    cluster::follow_logs(logs, leader.clone(), output.clone(), stop.clone());
    let nodes = procs.cluster.insert(nodes);
    for i in 0..addrs.len() {
        nodes.spawn(i).map_err(DevError::Kit)?;
    }
    let mut session = Session {
        procs,
        leader,
        output,
    };
    let result = main_loop(&args, &mut session, &stop);
    stop.store(true, Ordering::SeqCst);
    session.output.note("stopping");
    drop(session);
    result
}

fn print_intro(output: &Output, redis_url: &str, peers: &str, addrs: &[String], dir: &Path) {
    output.note(&format!(
        "belfry dev: Redis at {redis_url}, nodes {peers}, data in {}",
        dir.display()
    ));
    output.note("loopback only: no API tokens, no TLS; peers share a secret made for this run");
    output.note(&format!(
        "schedules: {}",
        dir.join("schedules.toml").display()
    ));
    if let Some(first) = addrs.first() {
        output.note(&format!(
            "try, in another shell: belfry schedule list --endpoint {first}"
        ));
    }
    output.note(&format!(
        "attach your own worker: cd {} && {}",
        dir.display(),
        worker::command_line(redis_url)
    ));
}

/// Kills the leader once, restarts it later, and waits for Ctrl-C or the end of `--duration`.
fn main_loop(args: &DevArgs, session: &mut Session, stop: &AtomicBool) -> Result<(), DevError> {
    let started = Instant::now();
    let mut failover = Failover::default();
    let mut worker_gone = false;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        session.output.flush_stale();
        if args.duration > 0 && started.elapsed() >= Duration::from_secs(args.duration) {
            break;
        }
        if args.kill_leader_after > 0
            && started.elapsed() >= Duration::from_secs(args.kill_leader_after)
        {
            failover.step(session)?;
        }
        if let Some(child) = session.procs.worker.as_mut() {
            if !worker_gone && matches!(child.try_wait(), Ok(Some(_))) {
                worker_gone = true;
                session
                    .output
                    .note("  worker: exited (its whole log is worker.log)");
            }
        }
    }
    Ok(())
}

/// The one leader kill of a session and the restart that follows.
#[derive(Default)]
struct Failover {
    /// The node killed (an id) and when.
    killed: Option<(usize, Instant)>,
    restarted: bool,
}

impl Failover {
    /// Kills the leader if none was killed yet, and restarts it `RESTART_AFTER` later.
    fn step(&mut self, session: &mut Session) -> Result<(), DevError> {
        let Some(nodes) = session.procs.cluster.as_mut() else {
            return Ok(());
        };
        let current = session.leader.load(Ordering::SeqCst);
        if self.killed.is_none() && current > 0 && nodes.is_running(current - 1) {
            session.output.note(&format!(
                "  !! killing the leader, node {current}, with SIGKILL"
            ));
            nodes.kill(current - 1);
            session.leader.store(0, Ordering::SeqCst);
            self.killed = Some((current, Instant::now()));
        }
        if let Some((id, at)) = self.killed {
            if !self.restarted && at.elapsed() >= RESTART_AFTER {
                session.output.note(&format!(
                    "  .. restarting node {id} from its data directory"
                ));
                nodes.spawn(id - 1).map_err(DevError::Kit)?;
                self.restarted = true;
            }
        }
        Ok(())
    }
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

fn dev_dir(chosen: Option<PathBuf>) -> Result<DevDir, DevError> {
    let (path, remove) = match chosen {
        Some(path) => (path, false),
        None => (
            std::env::temp_dir().join(format!("belfry-dev-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&path).map_err(DevError::io(path.display().to_string()))?;
    Ok(DevDir { path, remove })
}
