//! The idempotent Redis push: a Lua script sets, for each message, `<prefix>sent:<task_id>` with
//! `SET NX PX <ttl>`, pipelined in batches over one lazy, reconnecting connection.
//!
//! Invariant: a message is pushed (LPUSH) only if its marker was new, atomically, so however
//! many nodes or retries push an occurrence within the marker's TTL, its queue receives it once.
//! It must not retry a push on its own (it only reloads a script Redis forgot, before anything
//! ran): a failed batch is reported and the dispatcher decides when to try again.

use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, IntoConnectionInfo, Script};
use uuid::Uuid;

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
    /// `redis://[[user]:password@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: String,
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
    conn: ConnectionManager,
    script: Script,
    key_prefix: String,
    marker_ttl_ms: u64,
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
        let mut info = config
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| SinkError::Config(format!("redis url: {e}")))?;
        let mut settings = info.redis_settings().clone();
        if let Some(db) = config.db {
            settings = settings.set_db(db);
        }
        if let Some(password) = &config.password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = match &config.tls_ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path).map_err(|e| {
                    SinkError::Config(format!("redis tls_ca_file {}: {e}", path.display()))
                })?;
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                };
                Client::build_with_tls(info, certs)
            }
            None => Client::open(info),
        }
        .map_err(|e| SinkError::Config(format!("redis url: {e}")))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| SinkError::Config(format!("redis connection: {e}")))?;
        let marker_ttl_ms = u64::try_from(config.marker_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Ok(RedisSink {
            conn,
            script: Script::new(PUSH_SCRIPT),
            key_prefix: config.key_prefix.clone(),
            marker_ttl_ms,
        })
    }

    /// The marker key of a task id.
    pub fn marker_key(&self, task_id: Uuid) -> String {
        format!("{}{MARKER_INFIX}{}", self.key_prefix, task_id.hyphenated())
    }

    /// Pushes a batch in one pipeline and reports each message's outcome, in order. On error
    /// nothing is known about which messages went out; pushing the batch again is safe.
    pub async fn push_batch(&self, batch: &[Push]) -> Result<Vec<PushOutcome>, SinkError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match self.run_pipeline(batch).await {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                // A restarted or flushed Redis forgot the script: load it and go again. No
                // EVALSHA ran, so nothing was pushed.
                let mut conn = self.conn.clone();
                self.script.prepare_invoke().load_async(&mut conn).await?;
                Ok(self.run_pipeline(batch).await?)
            }
            other => Ok(other?),
        }
    }

    async fn run_pipeline(&self, batch: &[Push]) -> Result<Vec<PushOutcome>, redis::RedisError> {
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
        let mut conn = self.conn.clone();
        let replies: Vec<Vec<i64>> = pipe.query_async(&mut conn).await?;
        Ok(replies
            .into_iter()
            .flatten()
            .map(|r| {
                if r == 1 {
                    PushOutcome::Delivered
                } else {
                    PushOutcome::AlreadySent
                }
            })
            .collect())
    }

    /// Round-trips a PING; used for readiness and to measure latency.
    pub async fn ping(&self) -> Result<(), SinkError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}
