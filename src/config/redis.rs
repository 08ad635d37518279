//! The `[redis]` section and `--redis-url` / `--redis-password`: where and how dispatches are
//! pushed.
//!
//! Invariant: a URL the sink could not use is refused here, before anything starts.

use std::time::Duration;

use super::args::ServerArgs;
use super::file::FileRedis;
use super::{invalid, ConfigError};
use crate::dispatch::SinkConfig;

/// Parses the Redis URL the way the sink will, so a bad one is refused before anything starts.
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    use redis::IntoConnectionInfo;
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
        .or(file.url)
        .unwrap_or_else(|| "redis://127.0.0.1:6379/0".into());
    check_redis_url(&redis_url)?;
    let mut redis = SinkConfig::new(redis_url);
    redis.db = file.db;
    redis.password = match (&args.redis_password, file.password, &file.password_file) {
        (Some(p), _, _) => Some(p.clone()),
        (None, Some(p), _) => Some(p),
        (None, None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| invalid("redis.password_file", format!("{}: {e}", path.display())))?
                .trim_end()
                .to_string(),
        ),
        (None, None, None) => None,
    };
    if let Some(prefix) = file.key_prefix {
        redis.key_prefix = prefix;
    }
    if let Some(ttl) = file.marker_ttl_secs {
        redis.marker_ttl = Duration::from_secs(ttl.max(1));
    }
    redis.tls_ca_file = file.tls_ca_file;
    Ok(redis)
}
