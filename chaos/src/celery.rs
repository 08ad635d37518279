//! An optional real Celery worker: it consumes the worker queue, and each task execution
//! appends itself to `chaos:executed` in the result backend's Redis.
//!
//! Afterwards every execution becomes a delivery for the checker (timestamped when it ran),
//! and each must also have a SUCCESS result in the backend. Owns the worker process and the
//! reading of its records; must not judge them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use chrono::DateTime;

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

pub struct Worker {
    child: Child,
    broker: String,
    queue: String,
}

impl Worker {
    pub fn start(
        python: &Path,
        dir: &Path,
        broker: &str,
        backend: &str,
        queue: &str,
    ) -> Result<Worker, CeleryError> {
        let files = |source, path: &PathBuf| CeleryError::Files {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| files(e, &dir.to_path_buf()))?;
        let app = dir.join("chaos_app.py");
        std::fs::write(&app, APP).map_err(|e| files(e, &app))?;
        let log_path = dir.join("worker.log");
        let log = std::fs::File::create(&log_path).map_err(|e| files(e, &log_path))?;
        let log2 = log.try_clone().map_err(|e| files(e, &log_path))?;
        let child = Command::new(python)
            .args([
                "-m",
                "celery",
                "-A",
                "chaos_app",
                "worker",
                "--pool",
                "solo",
            ])
            .args([
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
            ])
            .args(["--without-heartbeat", "--hostname", "chaos@localhost"])
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
            queue: queue.to_string(),
        })
    }

    /// True when nothing waits in the worker's queue.
    pub fn idle(&self) -> bool {
        redis::Client::open(self.broker.as_str())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("LLEN").arg(&self.queue).query::<i64>(&mut c))
            .is_ok_and(|n| n == 0)
    }

    /// Every execution the worker recorded, and problems with them (unparsable records,
    /// executions without a SUCCESS result).
    pub fn executions(&self, backend: &str) -> (Vec<Arrival>, Vec<String>) {
        let mut ran = Vec::new();
        let mut bad = Vec::new();
        let Ok(mut conn) = redis::Client::open(backend).and_then(|c| c.get_connection()) else {
            bad.push("cannot read the Celery result backend".into());
            return (ran, bad);
        };
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg("chaos:executed")
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap_or_default();
        for entry in entries {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&entry) else {
                bad.push(format!("worker record is not JSON: {entry:.200}"));
                continue;
            };
            let parse = |key: &str| {
                v[key]
                    .as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.to_utc())
            };
            let (Some(task_id), Some(scheduled_at), Some(executed_at)) = (
                v["task_id"].as_str(),
                parse("belfry_scheduled_at"),
                parse("executed_at"),
            ) else {
                bad.push(format!("worker record lacks a field: {entry:.200}"));
                continue;
            };
            let meta: Option<String> = redis::cmd("GET")
                .arg(format!("celery-task-meta-{task_id}"))
                .query(&mut conn)
                .unwrap_or(None);
            let success = meta
                .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
                .is_some_and(|m| m["status"] == "SUCCESS");
            if !success {
                bad.push(format!("task {task_id} ran but has no SUCCESS result"));
            }
            ran.push(Arrival {
                task_id: task_id.to_string(),
                schedule: v["belfry_schedule"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                scheduled_at,
                arrived_at: executed_at,
                queue: self.queue.clone(),
                origin: "celery worker".into(),
                manual: false,
            });
        }
        (ran, bad)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
