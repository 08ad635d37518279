//! The `[redis]` section and `--redis-url` / `--redis-password`: where and how dispatches are
//! pushed.
//!
//! Invariant: a URL the sink could not use is refused here, before anything starts, and so is a
//! `sentinel://` URL without its master's name.

use std::time::Duration;

use super::args::ServerArgs;
use super::file::FileRedis;
use super::{invalid, ConfigError};
use crate::dispatch::{sentinel, SinkConfig};

/// Parses the Redis URL the way the sink will, so a bad one is refused before anything starts.
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    use redis::IntoConnectionInfo;
    if sentinel::is_sentinel_url(url) {
        return sentinel::parse(url)
            .map(|_| ())
            .map_err(|e| invalid("redis_url", e));
    }
    url.into_connection_info()
        .map(|_| ())
        // The URL itself is not repeated: it may hold a password.
        .map_err(|e| invalid("redis_url", format!("not a Redis URL: {e}")))
}

/// The sink's settings from the flags over the file over the defaults.
pub(super) fn resolve(args: &ServerArgs, file: FileRedis) -> Result<SinkConfig, ConfigError> {
    let redis_url = args
        .redis_url
        .clone()
        .or(file.url.clone())
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    check_redis_url(&redis_url)?;
    let mut redis = SinkConfig::new(redis_url);
    redis.db = file.db;
    redis.password = match (
        &args.redis_password,
        file.password.clone(),
        &file.password_file,
    ) {
        (Some(p), _, _) => Some(p.clone()),
        (None, Some(p), _) => Some(p),
        (None, None, Some(path)) => Some(read_secret(path, "redis.password_file")?),
        (None, None, None) => None,
    };
    let file = FileRedis {
        master_name: args.redis_master_name.clone().or(file.master_name),
        min_replicas: args.redis_min_replicas.or(file.min_replicas),
        ..file
    };
    resolve_sentinel(&mut redis, &file)?;
    resolve_replicas(&mut redis, &file)?;
    if let Some(prefix) = file.key_prefix {
        redis.key_prefix = prefix;
    }
    if let Some(ttl) = file.marker_ttl_secs {
        redis.marker_ttl = Duration::from_secs(ttl.max(1));
    }
    redis.tls_ca_file = file.tls_ca_file;
    Ok(redis)
}

/// The outbox bound: at least one occurrence (planning would never run otherwise).
pub(super) fn max_outbox(file: &FileRedis) -> Result<usize, ConfigError> {
    match file.max_outbox {
        None => Ok(crate::dispatch::planner::DEFAULT_MAX_OUTBOX),
        Some(0) => Err(invalid("redis.max_outbox", "must be at least 1")),
        Some(n) => Ok(n),
    }
}

fn read_secret(path: &std::path::Path, field: &'static str) -> Result<String, ConfigError> {
    Ok(std::fs::read_to_string(path)
        .map_err(|e| invalid(field, format!("{}: {e}", path.display())))?
        .trim_end()
        .to_string())
}

/// `master_name` and the sentinels' credentials, which only a `sentinel://` URL may have.
fn resolve_sentinel(redis: &mut SinkConfig, file: &FileRedis) -> Result<(), ConfigError> {
    let sentinel = sentinel::is_sentinel_url(&redis.url);
    match (&file.master_name, sentinel) {
        (None, true) => {
            return Err(invalid(
                "redis.master_name",
                "a sentinel:// URL needs the name of the master the sentinels watch",
            ))
        }
        (Some(name), true) if name.trim().is_empty() => {
            return Err(invalid("redis.master_name", "must not be empty"))
        }
        (Some(_), false) => {
            return Err(invalid(
                "redis.master_name",
                "only a sentinel:// URL has a master name",
            ))
        }
        _ => {}
    }
    let sentinel_only = file.sentinel_password.is_some()
        || file.sentinel_password_file.is_some()
        || file.sentinel_tls
        || file.tls;
    if sentinel_only && !sentinel {
        return Err(invalid(
            "redis",
            "sentinel_password, sentinel_password_file, sentinel_tls and tls are for a sentinel:// URL (a redis:// URL says rediss:// for TLS)",
        ));
    }
    redis.master_name = file.master_name.clone();
    redis.sentinel_password = match (&file.sentinel_password, &file.sentinel_password_file) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(path)) => Some(read_secret(path, "redis.sentinel_password_file")?),
        (None, None) => None,
    };
    redis.sentinel_tls = file.sentinel_tls;
    redis.tls = file.tls;
    Ok(())
}

/// `min_replicas` and the time `WAIT` may take, which must fit inside a push's timeout.
fn resolve_replicas(redis: &mut SinkConfig, file: &FileRedis) -> Result<(), ConfigError> {
    redis.min_replicas = file.min_replicas.unwrap_or(0);
    if let Some(ms) = file.replica_timeout_ms {
        if ms == 0 || Duration::from_millis(ms) >= redis.timeout {
            return Err(invalid(
                "redis.replica_timeout_ms",
                format!(
                    "must be between 1 and {} ms (the Redis timeout)",
                    redis.timeout.as_millis() - 1
                ),
            ));
        }
        redis.replica_timeout = Duration::from_millis(ms);
    }
    Ok(())
}
