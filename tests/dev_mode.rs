//! `belfry dev` as a user runs it: the real binary as a child process, with real Celery
//! workers attached. Every dispatch it prints reaches a worker exactly once (nothing is taken
//! from the queues by `belfry dev` itself), across its leader kill, and every line it prints
//! keeps its documented shape.

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::procs::belfry_bin;
use support::{repo_root, test_python, wait_for};

/// A running `belfry dev`, in a process group of its own so that whatever it started is
/// stopped with it, even if the test fails half-way.
struct DevRun {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// When the test read each line (UTC), in the order of `lines`.
    read_at: Arc<Mutex<Vec<chrono::DateTime<chrono::Utc>>>>,
    dir: tempfile::TempDir,
}

impl DevRun {
    fn start(extra: &[&str]) -> DevRun {
        let dir = tempfile::tempdir().expect("dev dir");
        let venv = test_python()
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .expect("the test Python lives in <venv>/bin");
        let mut child = Command::new(belfry_bin())
            .args(["dev", "--kill-leader-after", "6", "--dir"])
            .arg(dir.path().join("dev"))
            .args(extra)
            .env("BELFRY_VENV", venv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start belfry dev");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let read_at = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sink, times) = (lines.clone(), read_at.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut sink = sink.lock().unwrap();
                times.lock().unwrap().push(chrono::Utc::now());
                sink.push(line);
            }
        });
        DevRun {
            child,
            lines,
            read_at,
            dir,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Each dispatch line was printed soon after Redis ran its push (the line's own time).
    fn assert_prompt(&self) {
        let lines = self.lines();
        let read_at = self.read_at.lock().unwrap().clone();
        for (line, read) in lines.iter().zip(read_at) {
            let Some(time) = dispatch_line(line).map(|_| &line[..12]) else {
                continue;
            };
            let pushed = chrono::NaiveTime::parse_from_str(time, "%H:%M:%S%.3f").unwrap();
            let delay = (read.time() - pushed)
                .num_milliseconds()
                .rem_euclid(86_400_000);
            assert!(delay < 500, "printed {delay} ms after the push: {line}");
        }
    }

    fn dev_dir(&self) -> PathBuf {
        self.dir.path().join("dev")
    }

    /// The Redis URL from the intro line.
    fn redis_url(&self) -> String {
        wait_for("the intro line", Duration::from_secs(30), || {
            self.lines().iter().find_map(|line| {
                let rest = line.strip_prefix("belfry dev: Redis at ")?;
                Some(rest.split_once(',')?.0.to_string())
            })
        })
    }

    /// Ctrl-C, as a user stops it; then whatever is left of its group is killed.
    fn stop(&mut self) {
        let pid = self.child.id().to_string();
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = Command::new("kill").args(["-INT", &pid]).status();
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for DevRun {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A Celery worker a user starts by hand on the bundled `tasks` module.
struct OwnWorker {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnWorker {
    fn start(redis_url: &str) -> OwnWorker {
        let dir = tempfile::tempdir().expect("worker dir");
        std::fs::copy(
            repo_root().join("src/cli/dev/tasks.py"),
            dir.path().join("tasks.py"),
        )
        .expect("copy tasks.py");
        let log = dir.path().join("worker.log");
        let file = std::fs::File::create(&log).expect("worker log");
        let child = Command::new(test_python())
            .args([
                "-m", "celery", "-A", "tasks", "--broker", redis_url, "worker",
            ])
            .args(["--pool", "solo", "--loglevel", "INFO", "--without-gossip"])
            .args(["--without-mingle", "--without-heartbeat"])
            .current_dir(dir.path())
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("start the celery worker");
        OwnWorker {
            child,
            log,
            _dir: dir,
        }
    }
}

impl Drop for OwnWorker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One dispatch line, taken apart.
#[derive(Debug)]
struct DispatchLine {
    schedule: String,
    task: String,
    id: String,
}

/// Parses a dispatch line, checking it is exactly the documented shape:
/// `HH:MM:SS.mmm  <schedule:<22> <task:<16> due <RFC 3339>  late <ms:>5> ms  id <uuid>`.
fn dispatch_line(line: &str) -> Option<DispatchLine> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [time, schedule, task, "due", due, "late", late, "ms", "id", id] = words[..] else {
        return None;
    };
    chrono::NaiveTime::parse_from_str(time, "%H:%M:%S%.3f").ok()?;
    chrono::DateTime::parse_from_rfc3339(due).ok()?;
    let late: i64 = late.parse().ok()?;
    uuid::Uuid::parse_str(id).ok()?;
    let rebuilt =
        format!("{time}  {schedule:<22} {task:<16} due {due}  late {late:>5} ms  id {id}");
    (time.len() == 12 && rebuilt == line).then(|| DispatchLine {
        schedule: schedule.into(),
        task: task.into(),
        id: id.into(),
    })
}

/// A worker line: `HH:MM:SS.mmm    worker: <Celery's message>`.
fn worker_line(line: &str) -> Option<&str> {
    let (time, text) = line.split_once("    worker: ")?;
    chrono::NaiveTime::parse_from_str(time, "%H:%M:%S%.3f").ok()?;
    (time.len() == 12).then_some(text)
}

/// `  ** node N is the leader (term T)` → (N, T).
fn leader_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("  ** node ")?;
    let (node, rest) = rest.split_once(" is the leader (term ")?;
    Some((node.parse().ok()?, rest.strip_suffix(')')?.parse().ok()?))
}

fn node_number(text: &str) -> bool {
    text.parse::<u64>().is_ok_and(|n| (1..=3).contains(&n))
}

/// Every line `belfry dev` prints has one of its documented shapes.
fn assert_shapes(lines: &[String]) {
    for line in lines {
        let known = dispatch_line(line).is_some()
            || worker_line(line).is_some()
            || leader_line(line).is_some()
            || line.starts_with("belfry dev: Redis at redis://127.0.0.1:")
            || line
                == "loopback only: no API tokens, no TLS; peers share a secret made for this run"
            || line.starts_with("schedules: ")
            || line
                .strip_prefix("web console of node ")
                .and_then(|r| r.split_once(": http://"))
                .is_some_and(|(n, _)| node_number(n))
            || line.starts_with("try, in another shell: belfry schedule list --endpoint ")
            || (line.starts_with("attach your own worker: cd ")
                && line.ends_with(" worker --loglevel INFO"))
            || line.starts_with("  worker: ")
            || line == "stopping"
            || line
                .strip_prefix("  ** node ")
                .and_then(|r| r.strip_suffix(" stopped leading"))
                .is_some_and(node_number)
            || line
                .strip_prefix("  !! killing the leader, node ")
                .and_then(|r| r.strip_suffix(", with SIGKILL"))
                .is_some_and(node_number)
            || line
                .strip_prefix("  .. restarting node ")
                .and_then(|r| r.strip_suffix(" from its data directory"))
                .is_some_and(node_number)
            || line
                .strip_prefix("  node ")
                .and_then(|r| r.split_once(": "))
                .is_some_and(|(n, _)| node_number(n));
        assert!(
            known,
            "a line of unknown shape: {line:?}\nall lines:\n{}",
            lines.join("\n")
        );
    }
}

/// Waits until the leader was killed, a new leader took over and `after` dispatches followed;
/// returns the dispatched ids and the index of the kill line.
fn run_past_the_failover(dev: &DevRun, after: usize) -> (Vec<String>, usize) {
    wait_for(
        "dispatches after the failover",
        Duration::from_secs(90),
        || {
            let lines = dev.lines();
            let kill = lines
                .iter()
                .position(|l| l.starts_with("  !! killing the leader"))?;
            let new_leader = lines[kill..]
                .iter()
                .position(|l| leader_line(l).is_some_and(|(_, term)| term >= 2))?;
            let later = lines[kill + new_leader..]
                .iter()
                .filter(|l| dispatch_line(l).is_some())
                .count();
            (later >= after).then(|| {
                let ids = lines.iter().filter_map(|l| dispatch_line(l)).map(|d| d.id);
                (ids.collect(), kill)
            })
        },
    )
}

/// How many times each task id appears in a Celery log as `Task <name>[<id>] <what>`.
fn count_in_log(log: &str, what: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in log.lines() {
        let Some((_, task)) = line.split_once("] Task ") else {
            continue;
        };
        let Some((id, rest)) = task.split_once('[').and_then(|(_, r)| r.split_once(']')) else {
            continue;
        };
        if rest.trim_start().starts_with(what) {
            *counts.entry(id.to_string()).or_default() += 1;
        }
    }
    counts
}

/// Every dispatched id ran exactly once, and the worker ran nothing that was not dispatched.
fn assert_exactly_once(dispatched: &[String], snapshot: &[String], log: &str) {
    let mut seen = std::collections::BTreeSet::new();
    for id in dispatched {
        assert!(seen.insert(id), "{id} was dispatched twice");
    }
    let received = count_in_log(log, "received");
    let succeeded = count_in_log(log, "succeeded");
    for id in snapshot {
        assert_eq!(received.get(id), Some(&1), "{id} received once\n{log}");
        assert_eq!(succeeded.get(id), Some(&1), "{id} succeeded once\n{log}");
    }
    for (id, n) in &received {
        assert!(
            seen.contains(id),
            "{id} ran but was never shown as dispatched"
        );
        assert_eq!(*n, 1, "{id} was received {n} times");
    }
}

#[test]
fn a_worker_of_your_own_receives_every_dispatch_once_across_the_leader_kill() {
    let mut dev = DevRun::start(&[]);
    let worker = OwnWorker::start(&dev.redis_url());
    let (snapshot, kill) = run_past_the_failover(&dev, 3);
    let all_succeeded = || {
        let log = std::fs::read_to_string(&worker.log).unwrap_or_default();
        let done = count_in_log(&log, "succeeded");
        snapshot
            .iter()
            .all(|id| done.contains_key(id))
            .then_some(())
    };
    wait_for(
        "the worker to run every dispatch",
        Duration::from_secs(30),
        all_succeeded,
    );
    dev.stop();
    dev.assert_prompt();
    let lines = dev.lines();
    assert_shapes(&lines);
    let dispatches: Vec<DispatchLine> = lines.iter().filter_map(|l| dispatch_line(l)).collect();
    assert!(dispatches
        .iter()
        .any(|d| d.schedule == "heartbeat" && d.task == "tasks.heartbeat"));
    let after_kill = lines[kill..]
        .iter()
        .filter(|l| dispatch_line(l).is_some())
        .count();
    assert!(after_kill >= 3, "dispatches after the leader kill");
    let ids: Vec<String> = dispatches.into_iter().map(|d| d.id).collect();
    let log = std::fs::read_to_string(&worker.log).unwrap_or_default();
    assert_exactly_once(&ids, &snapshot, &log);
}

#[test]
fn dev_worker_shows_each_dispatch_then_its_received_and_succeeded_lines() {
    let mut dev = DevRun::start(&["--worker"]);
    let (snapshot, _) = run_past_the_failover(&dev, 3);
    let shown_done = || {
        let lines = dev.lines();
        let done: Vec<&str> = lines.iter().filter_map(|l| worker_line(l)).collect();
        snapshot
            .iter()
            .all(|id| {
                done.iter()
                    .any(|t| t.contains(id.as_str()) && t.contains("] succeeded"))
            })
            .then_some(())
    };
    wait_for(
        "the worker lines of every dispatch",
        Duration::from_secs(30),
        shown_done,
    );
    dev.stop();
    dev.assert_prompt();
    let lines = dev.lines();
    assert_shapes(&lines);
    for id in &snapshot {
        let at = |what: &str| {
            lines.iter().position(|l| match worker_line(l) {
                Some(text) => text.contains(&format!("[{id}] {what}")),
                None => what == "dispatch" && dispatch_line(l).is_some_and(|d| &d.id == id),
            })
        };
        let (d, r, s) = (at("dispatch"), at("received"), at("succeeded"));
        assert!(
            d.is_some() && d < r && r < s,
            "{id}: dispatch {d:?}, received {r:?}, succeeded {s:?}"
        );
    }
    let ids: Vec<String> = lines
        .iter()
        .filter_map(|l| dispatch_line(l))
        .map(|d| d.id)
        .collect();
    let log = std::fs::read_to_string(dev.dev_dir().join("worker.log")).expect("worker.log");
    assert_exactly_once(&ids, &snapshot, &log);
}
