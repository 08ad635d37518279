//! Reads every message that reaches a queue list in Redis, as a Celery worker would, and
//! timestamps its arrival.
//!
//! Reliable across Redis crashes: each message is moved (BLMOVE) into a processing list,
//! recorded, then removed from it; after reconnecting, whatever is left in the processing list
//! is recorded (once: by its exact payload). Owns the decoding of kombu envelopes; must not
//! judge them (the checker does).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// One message as it reached Redis.
#[derive(Clone, Debug, Serialize)]
pub struct Arrival {
    pub task_id: String,
    pub schedule: String,
    pub scheduled_at: DateTime<Utc>,
    pub arrived_at: DateTime<Utc>,
    pub queue: String,
    /// `belfry-<node id>@<host>`: which node pushed it.
    pub origin: String,
    /// A manual trigger (`belfry_trigger: manual`), not an occurrence of the schedule.
    pub manual: bool,
}

/// Why a payload is not a well-formed belfry message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("envelope is not JSON: {0}")]
    Envelope(serde_json::Error),
    #[error("body is not padded base64 of a JSON [args, kwargs, embed] triple")]
    Body,
    #[error("header {0} is missing or malformed")]
    Header(&'static str),
}

/// Decodes a kombu envelope; the body must decode too (a malformed one would poison workers).
pub fn decode(
    queue: &str,
    payload: &str,
    arrived_at: DateTime<Utc>,
) -> Result<Arrival, DecodeError> {
    let envelope: serde_json::Value =
        serde_json::from_str(payload).map_err(DecodeError::Envelope)?;
    let headers = &envelope["headers"];
    let body = envelope["body"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .ok_or(DecodeError::Body)?;
    if body.as_array().map(Vec::len) != Some(3) {
        return Err(DecodeError::Body);
    }
    let text = |name: &'static str| {
        headers[name]
            .as_str()
            .map(str::to_string)
            .ok_or(DecodeError::Header(name))
    };
    let scheduled_at = DateTime::parse_from_rfc3339(&text("belfry_scheduled_at")?)
        .map_err(|_| DecodeError::Header("belfry_scheduled_at"))?
        .to_utc();
    Ok(Arrival {
        task_id: text("id")?,
        schedule: text("belfry_schedule")?,
        scheduled_at,
        arrived_at,
        queue: queue.to_string(),
        origin: headers["origin"].as_str().unwrap_or_default().to_string(),
        manual: headers["belfry_trigger"].as_str() == Some("manual"),
    })
}

/// What the consumer saw: decoded arrivals and payloads it could not decode.
#[derive(Default)]
pub struct Seen {
    pub arrivals: Vec<Arrival>,
    pub malformed: Vec<String>,
}

/// Drains one queue from a background thread.
pub struct Consumer {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Consumer {
    pub fn start(redis_url: &str, queue: &str) -> Consumer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (url, queue) = (redis_url.to_string(), queue.to_string());
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || consume(&url, &queue, &seen2, &stop2));
        Consumer {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything recorded so far.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .arrivals
            .clone()
    }

    pub fn malformed(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .malformed
            .clone()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn record(seen: &Mutex<Seen>, queue: &str, payload: &str) {
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    match decode(queue, payload, Utc::now()) {
        Ok(arrival) => seen.arrivals.push(arrival),
        Err(err) => seen.malformed.push(format!("{err}: {payload:.200}")),
    }
}

fn consume(url: &str, queue: &str, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let processing = format!("{queue}:chaos-consumer-processing");
    // Payloads recorded but perhaps not yet removed from the processing list when Redis died.
    let mut recorded_unremoved: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = redis::Client::open(url).and_then(|c| c.get_connection()) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let leftover: Vec<String> = redis::cmd("LRANGE")
            .arg(&processing)
            .arg(0)
            .arg(-1)
            .query(&mut conn)
            .unwrap_or_default();
        for payload in leftover {
            if !recorded_unremoved.remove(&payload) {
                record(seen, queue, &payload);
            }
            let _: Result<i64, _> = redis::cmd("LREM")
                .arg(&processing)
                .arg(1)
                .arg(&payload)
                .query(&mut conn);
        }
        recorded_unremoved.clear();
        while !stop.load(Ordering::Relaxed) {
            let moved: Result<Option<String>, _> = redis::cmd("BLMOVE")
                .arg(queue)
                .arg(&processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(0.2)
                .query(&mut conn);
            let Ok(moved) = moved else { break };
            let Some(payload) = moved else { continue };
            record(seen, queue, &payload);
            let removed: Result<i64, _> = redis::cmd("LREM")
                .arg(&processing)
                .arg(1)
                .arg(&payload)
                .query(&mut conn);
            if removed.is_err() {
                recorded_unremoved.insert(payload);
                break;
            }
        }
    }
}
