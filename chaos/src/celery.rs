//! Optional real Celery workers: one consumes the worker queue, and each task execution
//! appends itself to `chaos:executed` in the result backend's Redis; another (a thread pool)
//! runs the slow tasks of the overlap policies, recording starts in `chaos:slow:executed` and
//! ends in `chaos:slow:finished`.
//!
//! Afterwards every execution becomes a delivery for the checker (timestamped when it ran),
//! and each must also have a SUCCESS result in the backend. Owns the worker processes and the
//! reading of their records; must not judge them.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use chrono::{DateTime, Utc};

use crate::consumer::Arrival;

/// The Celery app, written next to the worker's log at run time.
const APP: &str = include_str!("../celery_app/chaos_app.py");

#[derive(Debug, thiserror::Error)]
pub enum CeleryError {
    #[error("{path}: {source}")]
    Files {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {python}: {source}")]
    Spawn {
        python: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which of the two workers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerKind {
    /// `chaos.record`, one at a time (`--pool solo`).
    Record,
    /// `chaos.slow`, several at once (`--pool threads`), so a run starts when it is pushed.
    Slow,
}

impl WorkerKind {
    fn records(self) -> &'static str {
        match self {
            WorkerKind::Record => "chaos:executed",
            WorkerKind::Slow => "chaos:slow:executed",
        }
    }

    fn pool(self) -> [&'static str; 4] {
        match self {
            WorkerKind::Record => ["--pool", "solo", "--concurrency", "1"],
            WorkerKind::Slow => ["--pool", "threads", "--concurrency", "8"],
        }
    }
}

pub struct Worker {
    child: Child,
    broker: String,
    backend: String,
    queue: String,
    kind: WorkerKind,
}

impl Worker {
    pub fn start(
        python: &Path,
        dir: &Path,
        broker: &str,
        backend: &str,
        (queue, kind): (&str, WorkerKind),
    ) -> Result<Worker, CeleryError> {
        let files = |source, path: &PathBuf| CeleryError::Files {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| files(e, &dir.to_path_buf()))?;
        let app = dir.join("chaos_app.py");
        std::fs::write(&app, APP).map_err(|e| files(e, &app))?;
        let log_path = dir.join(format!("worker-{queue}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| files(e, &log_path))?;
        let log2 = log.try_clone().map_err(|e| files(e, &log_path))?;
        let child = Command::new(python)
            .args(["-m", "celery", "-A", "chaos_app", "worker"])
            .args(kind.pool())
            .args([
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
            ])
            .args(["--without-heartbeat", "--hostname"])
            .arg(format!("{queue}@localhost"))
            .args(["--queues", queue])
            .current_dir(dir)
            .env("CHAOS_BROKER", broker)
            .env("CHAOS_BACKEND", backend)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| CeleryError::Spawn {
                python: python.display().to_string(),
                source,
            })?;
        Ok(Worker {
            child,
            broker: broker.to_string(),
            backend: backend.to_string(),
            queue: queue.to_string(),
            kind,
        })
    }

    /// True when nothing waits in the worker's queue and, for the slow worker, every run that
    /// started has ended.
    pub fn idle(&self) -> bool {
        let len = |url: &str, key: &str| {
            redis::Client::open(url)
                .and_then(|c| c.get_connection())
                .and_then(|mut c| redis::cmd("LLEN").arg(key).query::<i64>(&mut c))
        };
        let queued = len(&self.broker, &self.queue);
        match self.kind {
            WorkerKind::Record => queued.is_ok_and(|n| n == 0),
            WorkerKind::Slow => {
                let started = len(&self.backend, "chaos:slow:executed");
                let ended = len(&self.backend, "chaos:slow:finished");
                matches!((queued, started, ended), (Ok(0), Ok(s), Ok(e)) if s <= e)
            }
        }
    }

    /// Every execution the worker recorded, and problems with them (unparsable records,
    /// executions without a SUCCESS result).
    pub fn executions(&self) -> (Vec<Arrival>, Vec<String>) {
        let Ok(mut conn) =
            redis::Client::open(self.backend.as_str()).and_then(|c| c.get_connection())
        else {
            return (
                Vec::new(),
                vec!["cannot read the Celery result backend".into()],
            );
        };
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg(self.kind.records())
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap_or_default();
        let (ran, mut bad) = parse_records(&entries, &self.queue);
        for arrival in &ran {
            let meta: Option<String> = redis::cmd("GET")
                .arg(format!("celery-task-meta-{}", arrival.task_id))
                .query(&mut conn)
                .unwrap_or(None);
            let success = meta
                .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                .is_some_and(|m| m["status"] == "SUCCESS");
            if !success {
                bad.push(format!(
                    "task {} ran but has no SUCCESS result",
                    arrival.task_id
                ));
            }
        }
        (ran, bad)
    }
}

/// When each slow task ended, by task id (the first end recorded for it).
pub fn slow_finishes(backend: &str) -> Result<HashMap<String, DateTime<Utc>>, redis::RedisError> {
    let mut conn = redis::Client::open(backend)?.get_connection()?;
    let entries: Vec<String> = redis::cmd("LRANGE")
        .arg("chaos:slow:finished")
        .arg(0)
        .arg(-1)
        .query(&mut conn)?;
    let mut ends = HashMap::new();
    for entry in entries {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&entry) else {
            continue;
        };
        let end = v["finished_at"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok());
        if let (Some(task), Some(end)) = (v["task_id"].as_str(), end) {
            ends.entry(task.to_string()).or_insert(end.to_utc());
        }
    }
    Ok(ends)
}

/// belfry's push receipts in the broker: the task ids whose `belfry:sent:<id>` marker Redis
/// holds. The push script writes the marker and the message together, so a receipt proves a
/// message reached Redis even when the worker took it and lost it.
pub fn push_receipts(broker: &str) -> Result<HashSet<String>, redis::RedisError> {
    use belfry::dispatch::{sink::MARKER_INFIX, SinkConfig};
    let prefix = format!("{}{MARKER_INFIX}", SinkConfig::new(broker).key_prefix);
    let mut conn = redis::Client::open(broker)?.get_connection()?;
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(format!("{prefix}*"))
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(&mut conn)?
        .collect::<Result<_, _>>()?;
    Ok(keys
        .into_iter()
        .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
        .collect())
}

/// The executions in the worker's records, one per execution id: a record whose push was
/// retried after its reply was lost appears twice in the list but is one execution.
fn parse_records(entries: &[String], queue: &str) -> (Vec<Arrival>, Vec<String>) {
    let mut ran = Vec::new();
    let mut bad = Vec::new();
    let mut seen = HashSet::new();
    for entry in entries {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(entry) else {
            bad.push(format!("worker record is not JSON: {entry:.200}"));
            continue;
        };
        let parse = |key: &str| {
            v[key]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.to_utc())
        };
        let (Some(execution_id), Some(task_id), Some(scheduled_at), Some(executed_at)) = (
            v["execution_id"].as_str(),
            v["task_id"].as_str(),
            parse("belfry_scheduled_at"),
            parse("executed_at"),
        ) else {
            bad.push(format!("worker record lacks a field: {entry:.200}"));
            continue;
        };
        if !seen.insert(execution_id.to_string()) {
            continue;
        }
        ran.push(Arrival {
            task_id: task_id.to_string(),
            schedule: v["belfry_schedule"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            scheduled_at,
            arrived_at: executed_at,
            queue: queue.to_string(),
            origin: "celery worker".into(),
            manual: false,
            backfill: false,
        });
    }
    (ran, bad)
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::parse_records;

    fn record(execution_id: &str, task_id: &str) -> String {
        serde_json::json!({
            "execution_id": execution_id,
            "task_id": task_id,
            "belfry_schedule": "every1",
            "belfry_scheduled_at": "2026-01-01T00:00:01Z",
            "executed_at": "2026-01-01T00:00:01.004Z",
        })
        .to_string()
    }

    #[test]
    fn a_record_pushed_twice_is_one_execution() {
        let entries = [record("e1", "t1"), record("e1", "t1")];
        let (ran, bad) = parse_records(&entries, "q");
        assert_eq!(ran.len(), 1);
        assert!(bad.is_empty(), "{bad:?}");
    }

    #[test]
    fn two_executions_of_one_task_stay_two() {
        let entries = [record("e1", "t1"), record("e2", "t1")];
        let (ran, _) = parse_records(&entries, "q");
        assert_eq!(ran.len(), 2);
        assert!(ran.iter().all(|a| a.task_id == "t1" && a.queue == "q"));
    }

    #[test]
    fn records_without_an_execution_id_or_not_json_are_reported() {
        let without_id = serde_json::json!({
            "task_id": "t1",
            "belfry_scheduled_at": "2026-01-01T00:00:01Z",
            "executed_at": "2026-01-01T00:00:01Z",
        })
        .to_string();
        let (ran, bad) = parse_records(&[without_id, "{".into()], "q");
        assert!(ran.is_empty());
        assert_eq!(bad.len(), 2);
        assert!(bad[0].contains("lacks a field"), "{bad:?}");
        assert!(bad[1].contains("not JSON"), "{bad:?}");
    }
}
