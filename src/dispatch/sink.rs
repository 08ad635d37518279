//! The idempotent Redis push: a Lua script sets, for each message, `<prefix>sent:<task_id>` with
//! `SET NX PX <ttl>`, pipelined in batches over one lazy, reconnecting connection to the master
//! (`broker`: one server, or the one Redis Sentinel names). With `min_replicas`, a batch counts
//! as pushed only once that many replicas confirm it (`WAIT`).
//!
//! Invariant: a message is pushed (LPUSH) only if its marker was new, atomically, so however
//! many nodes or retries push an occurrence within the marker's TTL, its queue receives it once.
//! It must not retry a push on its own (it only reloads a script Redis forgot, before anything
//! ran): a failed batch is reported and the dispatcher decides when to try again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use redis::Script;
use uuid::Uuid;

use super::broker::Broker;
use crate::telemetry::names;

/// For each message i: KEYS[2i-1] = its marker, KEYS[2i] = its list, ARGV[i+1] = its envelope;
/// ARGV[1] = marker TTL in ms. Returns 1 (pushed) or 0 (marker existed) per message. One call
/// carries a group of messages so Redis enters Lua once per group, not once per message.
const PUSH_SCRIPT: &str = r"
local ttl = ARGV[1]
local pushed = {}
for i = 1, #KEYS, 2 do
  local n = (i + 1) / 2
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', ttl) then
    redis.call('LPUSH', KEYS[i + 1], ARGV[n + 1])
    pushed[n] = 1
  else
    -- A write even so: a WAIT after this call then also covers the earlier push that set the
    -- marker (replication is in order), whichever connection made it.
    redis.call('PEXPIRE', KEYS[i], ttl)
    pushed[n] = 0
  end
end
return pushed
";

/// Messages per script call: large enough to amortise entering Lua, small enough that one
/// call never holds Redis for long.
const MESSAGES_PER_CALL: usize = 64;

/// What follows the key prefix in a marker key: `<prefix>sent:<task_id>`.
pub const MARKER_INFIX: &str = "sent:";

/// Where and how to push.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://` for TLS, or kombu's
    /// `sentinel://[:password@]host:port[/db]` (several joined by `;`) with `master_name`.
    pub url: String,
    /// The master's name the sentinels know (with a `sentinel://` URL).
    pub master_name: Option<String>,
    /// The sentinels' own password (kombu's `sentinel_kwargs`); the URL's is the master's.
    pub sentinel_password: Option<String>,
    /// Connect to the sentinels over TLS.
    pub sentinel_tls: bool,
    /// Connect to the Sentinel-named master over TLS (a `rediss://` URL says so itself).
    pub tls: bool,
    /// Replicas that must confirm each pushed batch (`WAIT`) before it counts as pushed; 0 =
    /// the master's reply is enough.
    pub min_replicas: u32,
    /// How long `WAIT` waits for them; a batch not confirmed in time is pushed again.
    pub replica_timeout: Duration,
    /// Database number; overrides the URL's.
    pub db: Option<i64>,
    /// Password; overrides the URL's (keeps secrets out of command lines).
    pub password: Option<String>,
    /// Prefix of belfry's own keys: markers are `<prefix>sent:<task_id>`.
    pub key_prefix: String,
    /// How long a marker outlives its push. Re-pushes of one occurrence happen within the time
    /// an acknowledgement takes to commit, so a day is ample.
    pub marker_ttl: Duration,
    /// Bound on one connection attempt and on one batch's round trip.
    pub timeout: Duration,
    /// PEM file of the CA that signed a `rediss://` server's certificate, when it is not one
    /// the system trusts.
    pub tls_ca_file: Option<PathBuf>,
}

impl SinkConfig {
    pub fn new(url: impl Into<String>) -> Self {
        SinkConfig {
            url: url.into(),
            master_name: None,
            sentinel_password: None,
            sentinel_tls: false,
            tls: false,
            min_replicas: 0,
            replica_timeout: Duration::from_millis(500),
            db: None,
            password: None,
            key_prefix: "belfry:".into(),
            marker_ttl: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }
}

/// Why a push did not complete. Every variant is retryable by pushing the batch again.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid Redis configuration: {0}")]
    Config(String),
    #[error("Redis unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    #[error("Redis refused the push: {0}")]
    Refused(#[source] redis::RedisError),
    #[error("no Redis master: {0}")]
    NoMaster(String),
    #[error("{acked} of the {wanted} replicas required confirmed the batch in time")]
    NotReplicated { acked: u32, wanted: u32 },
}

impl From<redis::RedisError> for SinkError {
    fn from(err: redis::RedisError) -> Self {
        if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
        {
            SinkError::Unavailable(err)
        } else {
            SinkError::Refused(err)
        }
    }
}

/// One message to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Push {
    pub task_id: Uuid,
    pub list_key: String,
    pub payload: String,
}

/// What happened to one message of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The marker was new: the message is now in its queue.
    Delivered,
    /// The marker existed: an earlier push delivered it, nothing was added.
    AlreadySent,
}

/// A handle on the broker. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct RedisSink {
    broker: Arc<Broker>,
    script: Script,
    key_prefix: String,
    marker_ttl_ms: u64,
    min_replicas: u32,
    replica_timeout_ms: u64,
}

impl RedisSink {
    /// Builds the sink without connecting: the connection is made on first use and re-made
    /// after failures, so a node starts even while Redis is down.
    /// Must be called inside a Tokio runtime (the connection lives on it).
    pub fn new(config: &SinkConfig) -> Result<Self, SinkError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(SinkError::Config(
                "the Redis sink must be created inside a Tokio runtime".into(),
            ));
        }
        if config.min_replicas > 0 && config.replica_timeout >= config.timeout {
            return Err(SinkError::Config(format!(
                "redis replica timeout ({} ms) must be shorter than the Redis timeout ({} ms)",
                config.replica_timeout.as_millis(),
                config.timeout.as_millis()
            )));
        }
        let to_ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        Ok(RedisSink {
            broker: Arc::new(Broker::new(config)?),
            script: Script::new(PUSH_SCRIPT),
            key_prefix: config.key_prefix.clone(),
            marker_ttl_ms: to_ms(config.marker_ttl),
            min_replicas: config.min_replicas,
            replica_timeout_ms: to_ms(config.replica_timeout),
        })
    }

    /// The marker key of a task id.
    pub fn marker_key(&self, task_id: Uuid) -> String {
        format!("{}{MARKER_INFIX}{}", self.key_prefix, task_id.hyphenated())
    }

    /// Pushes a batch in one pipeline and reports each message's outcome, in order. On error
    /// nothing is known about which messages went out; pushing the batch again is safe. With
    /// `min_replicas`, a batch the replicas did not confirm in time is an error too.
    pub async fn push_batch(&self, batch: &[Push]) -> Result<Vec<PushOutcome>, SinkError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let mut conn = self.broker.connection().await?;
        let pushed = match self.run_pipeline(&mut conn, batch).await {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                // A restarted or flushed Redis forgot the script: load it and go again. No
                // EVALSHA ran, so nothing was pushed.
                self.script.prepare_invoke().load_async(&mut conn).await?;
                self.run_pipeline(&mut conn, batch).await
            }
            other => other,
        };
        let (outcomes, replicas) = match pushed {
            Ok(pushed) => pushed,
            Err(err) => {
                self.broker.failed(&err).await;
                return Err(err.into());
            }
        };
        if let Some(acked) = replicas {
            if acked < self.min_replicas {
                counter!(names::REDIS_WAIT_TIMEOUTS).increment(1);
                return Err(SinkError::NotReplicated {
                    acked,
                    wanted: self.min_replicas,
                });
            }
            histogram!(names::REDIS_REPLICA_ACK).record(started.elapsed().as_secs_f64());
        }
        Ok(outcomes)
    }

    /// The batch's script calls, then (with `min_replicas`) a `WAIT` in the same pipeline, so
    /// it waits on the connection that made the writes. Returns the outcomes and how many
    /// replicas confirmed them.
    async fn run_pipeline(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        batch: &[Push],
    ) -> Result<(Vec<PushOutcome>, Option<u32>), redis::RedisError> {
        let mut pipe = redis::pipe();
        for group in batch.chunks(MESSAGES_PER_CALL) {
            let call = pipe
                .cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(group.len() * 2);
            for push in group {
                call.arg(self.marker_key(push.task_id)).arg(&push.list_key);
            }
            call.arg(self.marker_ttl_ms);
            for push in group {
                call.arg(&push.payload);
            }
        }
        if self.min_replicas > 0 {
            pipe.cmd("WAIT")
                .arg(self.min_replicas)
                .arg(self.replica_timeout_ms);
        }
        let mut replies: Vec<redis::Value> = pipe.query_async(conn).await?;
        let replicas = if self.min_replicas > 0 {
            let wait = replies.pop().unwrap_or(redis::Value::Nil);
            Some(redis::from_redis_value::<u32>(wait)?)
        } else {
            None
        };
        let mut outcomes = Vec::with_capacity(batch.len());
        for reply in replies {
            for pushed in redis::from_redis_value::<Vec<i64>>(reply)? {
                outcomes.push(if pushed == 1 {
                    PushOutcome::Delivered
                } else {
                    PushOutcome::AlreadySent
                });
            }
        }
        Ok((outcomes, replicas))
    }

    /// Round-trips a PING; used for readiness and to measure latency.
    pub async fn ping(&self) -> Result<(), SinkError> {
        let mut conn = self.broker.connection().await?;
        if let Err(err) = redis::cmd("PING").query_async::<String>(&mut conn).await {
            self.broker.failed(&err).await;
            return Err(err.into());
        }
        Ok(())
    }
}
