//! Reads every message belfry pushes onto a Redis list, as a Celery worker would, and
//! timestamps its arrival; decodes the kombu envelope into what tests, benchmarks and the
//! fault-injection checker compare.
//!
//! Two modes. One by one ([`Consumer::start`]), reliable across Redis crashes: each message is
//! moved (BLMOVE) into a processing list, recorded, then removed from it; after reconnecting,
//! whatever is left in the processing list is recorded (once: by its exact payload). A plain
//! BRPOP loses the message it was popping when Redis dies. In batches ([`Consumer::batch`]),
//! for benchmarks: up to 1,000 messages per round trip, decoded only when asked, so it never
//! limits the rate it measures; a message popped as the connection drops is lost to it.
//!
//! Invariant: every payload taken is recorded exactly once, as an arrival or as malformed.
//! Owns the decoding of envelopes: it must not judge them (callers do).

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
    /// A run of a backfill (`belfry_trigger: backfill`).
    pub backfill: bool,
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
        backfill: headers["belfry_trigger"].as_str() == Some("backfill"),
    })
}

/// What the consumer took: decoded arrivals, malformed payloads, and (batch mode) payloads
/// not decoded yet.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Arrival>,
    malformed: Vec<String>,
    raw: Vec<(String, DateTime<Utc>)>,
}

impl Seen {
    fn record(&mut self, queue: &str, payload: &str, at: DateTime<Utc>) {
        match decode(queue, payload, at) {
            Ok(arrival) => self.arrivals.push(arrival),
            Err(err) => self.malformed.push(format!("{err}: {payload:.200}")),
        }
    }

    /// Decodes what batch mode popped.
    fn decode_raw(&mut self, queue: &str) {
        for (payload, at) in std::mem::take(&mut self.raw) {
            self.record(queue, &payload, at);
        }
    }
}

/// Drains one queue from a background thread until stopped or dropped.
pub struct Consumer {
    seen: Arc<Mutex<Seen>>,
    queue: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Consumer {
    /// Takes messages one by one, reliably across Redis crashes.
    pub fn start(redis_url: &str, queue: &str) -> Consumer {
        Self::run(fixed(redis_url), queue, consume)
    }

    /// Takes messages in batches of up to 1,000, decoding them only when asked.
    pub fn batch(redis_url: &str, queue: &str) -> Consumer {
        Self::run(fixed(redis_url), queue, consume_batches)
    }

    /// Takes messages one by one from whichever server `locate` names each time it
    /// (re)connects: the master a set of sentinels names, through a failover.
    pub fn following(
        locate: impl Fn() -> Option<String> + Send + Sync + 'static,
        queue: &str,
    ) -> Consumer {
        Self::run(Arc::new(locate), queue, consume_replicated)
    }

    fn run(
        locate: Locate,
        queue: &str,
        body: fn(&Locate, &str, &Mutex<Seen>, &AtomicBool),
    ) -> Consumer {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let list = queue.to_string();
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || body(&locate, &list, &seen2, &stop2));
        Consumer {
            seen,
            queue: queue.to_string(),
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.decode_raw(&self.queue);
        seen
    }

    /// Every well-formed message recorded so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.seen().arrivals.clone()
    }

    /// Every payload that did not decode (with the reason), so far.
    pub fn malformed(&self) -> Vec<String> {
        self.seen().malformed.clone()
    }

    /// Stops taking messages and waits for the thread.
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

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|e| e.into_inner())
}

/// Names the Redis URL to connect to, asked at every (re)connection.
type Locate = Arc<dyn Fn() -> Option<String> + Send + Sync>;

fn fixed(url: &str) -> Locate {
    let url = url.to_string();
    Arc::new(move || Some(url.clone()))
}

fn connect(locate: &Locate) -> Option<redis::Connection> {
    let conn = match locate() {
        Some(url) => redis::Client::open(url).and_then(|c| c.get_connection()),
        None => Err(redis::RedisError::from(std::io::Error::other(
            "no server to connect to",
        ))),
    };
    if conn.is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    conn.ok()
}

fn consume(locate: &Locate, queue: &str, seen: &Mutex<Seen>, stop: &AtomicBool) {
    consume_with(locate, queue, seen, stop, false)
}

/// `consume` against a master whose replicas may replace it: each pop and each removal counts
/// only once a replica has it (`WAIT`), so a promoted replica never hands back a message
/// already recorded, nor loses one taken but not yet recorded.
fn consume_replicated(locate: &Locate, queue: &str, seen: &Mutex<Seen>, stop: &AtomicBool) {
    consume_with(locate, queue, seen, stop, true)
}

/// True when a replica has everything this connection wrote (always, without replicas).
fn replicated(conn: &mut redis::Connection, wait: bool) -> bool {
    !wait
        || redis::cmd("WAIT")
            .arg(1)
            .arg(1_000)
            .query::<i64>(conn)
            .is_ok_and(|n| n >= 1)
}

fn consume_with(locate: &Locate, queue: &str, seen: &Mutex<Seen>, stop: &AtomicBool, wait: bool) {
    let processing = format!("{queue}:kit-consumer-processing");
    // Payloads recorded but perhaps not yet removed from the processing list when Redis died.
    let mut recorded_unremoved: HashSet<String> = HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(mut conn) = connect(locate) else {
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
                lock(seen).record(queue, &payload, Utc::now());
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
            if !replicated(&mut conn, wait) {
                // Recorded from the processing list once a master is known to have it.
                break;
            }
            lock(seen).record(queue, &payload, Utc::now());
            let removed: Result<i64, _> = redis::cmd("LREM")
                .arg(&processing)
                .arg(1)
                .arg(&payload)
                .query(&mut conn);
            if removed.is_err() || !replicated(&mut conn, wait) {
                recorded_unremoved.insert(payload);
                break;
            }
        }
    }
}

fn consume_batches(locate: &Locate, queue: &str, seen: &Mutex<Seen>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(mut conn) = connect(locate) else {
            continue;
        };
        while !stop.load(Ordering::Relaxed) {
            let many: Result<Option<Vec<String>>, _> =
                redis::cmd("RPOP").arg(queue).arg(1000).query(&mut conn);
            let batch = match many {
                Ok(Some(batch)) if !batch.is_empty() => batch,
                Ok(_) => {
                    // Empty: block for the next one instead of spinning.
                    let one: Result<Option<(String, String)>, _> =
                        redis::cmd("BRPOP").arg(queue).arg(0.2).query(&mut conn);
                    match one {
                        Ok(Some((_, payload))) => vec![payload],
                        Ok(None) => continue,
                        Err(_) => break,
                    }
                }
                Err(_) => break,
            };
            let now = Utc::now();
            lock(seen).raw.extend(batch.into_iter().map(|p| (p, now)));
        }
    }
}
