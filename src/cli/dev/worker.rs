//! `belfry dev --worker`: a real Celery worker on the bundled `tasks` module (the sample
//! schedules' tasks), from a virtualenv with `celery[redis]` that is created when missing.
//!
//! Invariant: the worker's log is kept whole in the dev directory, and only its task lines,
//! readiness and problems are shown among the dispatches. Owns the virtualenv, the worker
//! process and the reading of its log: it must not touch the queues itself (the worker
//! consumes them as any user's worker would).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::output::Output;

/// The bundled module; its task names match the sample schedules.
pub(super) const TASKS_PY: &str = include_str!("tasks.py");
/// What is installed into a new virtualenv.
const REQUIREMENT: &str = "celery[redis]>=5.3,<6";

/// Why the worker could not be started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not create a virtualenv at {0} (on Debian: apt-get install python3-venv)")]
    Venv(PathBuf),
    #[error("could not install {REQUIREMENT} into {0}")]
    Install(PathBuf),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WorkerError {
    let what = what.into();
    move |source| WorkerError::Io { what, source }
}

/// The virtualenv to run the worker from: `$BELFRY_VENV`; else `./.venv` when it already has
/// Celery (`scripts/test.sh` makes one); else `belfry/dev-venv` in the user's cache directory.
/// The path is absolute, because the worker runs in the dev directory.
pub(super) fn venv_dir() -> PathBuf {
    let absolute = |dir: PathBuf| std::path::absolute(&dir).unwrap_or(dir);
    if let Some(dir) = std::env::var_os("BELFRY_VENV").filter(|d| !d.is_empty()) {
        return absolute(PathBuf::from(dir));
    }
    let local = absolute(PathBuf::from(".venv"));
    if has_celery(&local) {
        return local;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    absolute(cache.join("belfry").join("dev-venv"))
}

fn python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

fn has_celery(venv: &Path) -> bool {
    Command::new(python(venv))
        .args(["-c", "import celery, redis"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure `venv` can run a Celery worker, creating it and installing Celery if not.
pub(super) fn ensure_venv(venv: &Path, output: &Output) -> Result<(), WorkerError> {
    if has_celery(venv) {
        return Ok(());
    }
    if !python(venv).exists() {
        output.note(&format!(
            "  worker: creating a virtualenv at {}",
            venv.display()
        ));
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv)
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            return Err(WorkerError::Venv(venv.to_path_buf()));
        }
    }
    output.note(&format!(
        "  worker: installing {REQUIREMENT} from PyPI into {}",
        venv.display()
    ));
    let installed = Command::new(python(venv))
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .arg(REQUIREMENT)
        .status()
        .is_ok_and(|s| s.success());
    if installed && has_celery(venv) {
        Ok(())
    } else {
        Err(WorkerError::Install(venv.to_path_buf()))
    }
}

/// The command a user runs to attach a worker of their own, from `dir`.
pub(super) fn command_line(redis_url: &str) -> String {
    format!("celery -A tasks --broker {redis_url} worker --loglevel INFO")
}

/// Writes the bundled module into `dir`, so any worker started there can import it.
pub(super) fn write_tasks_module(dir: &Path) -> Result<(), WorkerError> {
    let path = dir.join("tasks.py");
    std::fs::write(&path, TASKS_PY).map_err(io(path.display().to_string()))
}

/// Starts the worker in `dir` (where `tasks.py` is). Everything it writes goes to
/// `dir/worker.log`; its log lines are also shown through `output`.
pub(super) fn start(
    venv: &Path,
    dir: &Path,
    redis_url: &str,
    output: Arc<Output>,
) -> Result<Child, WorkerError> {
    let log_path = dir.join("worker.log");
    let open_log = || {
        File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io(log_path.display().to_string()))
    };
    let banner = open_log()?;
    let mut log = open_log()?;
    let mut child = Command::new(python(venv))
        .args([
            "-m", "celery", "-A", "tasks", "--broker", redis_url, "worker",
        ])
        // One process is plenty for the sample tasks; gossip, mingle and heartbeats only
        // concern clusters of workers and slow the start.
        .args(["--pool", "solo", "--loglevel", "INFO", "--without-gossip"])
        .args(["--without-mingle", "--without-heartbeat"])
        .args(["--hostname", "belfry-dev@%h"])
        .current_dir(dir)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(banner)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io(format!("starting {}", python(venv).display())))?;
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some((task_id, text)) = shown(&line) {
                    let now = chrono::Utc::now().format("%H:%M:%S%.3f");
                    output.worker(task_id, &format!("{now}    worker: {text}"));
                }
                output.flush_stale();
            }
        });
    }
    Ok(child)
}

/// Whether a worker log line is shown, and if so the task id it is about and its text without
/// Celery's `[time: LEVEL/process]` prefix. Shown: a task's received / succeeded / failed /
/// retry lines, connection and readiness, and every warning or error.
pub(super) fn shown(line: &str) -> Option<(Option<&str>, &str)> {
    let rest = line.strip_prefix('[')?;
    let (prefix, text) = rest.split_once("] ")?;
    let level = prefix.rsplit(": ").next()?.split('/').next()?;
    if let Some(task) = text.strip_prefix("Task ") {
        let id = task.split_once('[')?.1.split_once(']')?.0;
        return Some((Some(id), text));
    }
    let noteworthy = matches!(level, "WARNING" | "ERROR" | "CRITICAL")
        || text.starts_with("Connected to")
        || text.ends_with(" ready.");
    noteworthy.then_some((None, text))
}

/// Stops the worker with SIGTERM (a warm shutdown), then SIGKILL if it lingers.
pub(super) fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_lines_are_shown_with_their_id() {
        let received = "[2026-12-07 12:33:52,945: INFO/MainProcess] Task tasks.heartbeat\
                        [b5b0b20b-1c2d-5e6f-8a9b-0c1d2e3f4a5b] received";
        assert_eq!(
            shown(received),
            Some((
                Some("b5b0b20b-1c2d-5e6f-8a9b-0c1d2e3f4a5b"),
                "Task tasks.heartbeat[b5b0b20b-1c2d-5e6f-8a9b-0c1d2e3f4a5b] received"
            ))
        );
    }

    #[test]
    fn readiness_and_problems_are_shown_and_chatter_is_not() {
        let ready = "[2026-12-07 12:33:50,100: INFO/MainProcess] belfry-dev@vm ready.";
        assert_eq!(shown(ready), Some((None, "belfry-dev@vm ready.")));
        let warn = "[2026-12-07 12:33:50,100: WARNING/MainProcess] something odd";
        assert_eq!(shown(warn), Some((None, "something odd")));
        let chatter = "[2026-12-07 12:33:50,100: INFO/MainProcess] mingle: searching";
        assert_eq!(shown(chatter), None);
        assert_eq!(shown(" -------------- celery@vm v5.7.0"), None);
    }
}
