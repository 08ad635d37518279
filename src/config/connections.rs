//! The `[connections]` section: bounds on the API/peer port's connections.
//!
//! Invariant: every limit and timeout is positive.

use std::time::Duration;

use super::file::FileConnections;
use super::{invalid, ConfigError};

/// Bounds on the API/peer port's connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_streams_per_connection: u32,
    /// A connection that has not sent its first bytes by then is closed.
    pub handshake_timeout: Duration,
    /// HTTP/2 pings and TCP keepalive probes on quiet connections, so a vanished client's
    /// connection is closed.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            max_streams_per_connection: 256,
            handshake_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl FileConnections {
    /// The defaults overridden by the file; every value must be positive.
    pub(super) fn resolve(&self) -> Result<ConnectionLimits, ConfigError> {
        let defaults = ConnectionLimits::default();
        Ok(ConnectionLimits {
            max_connections: positive("connections.max_connections", self.max_connections)?
                .unwrap_or(defaults.max_connections),
            max_streams_per_connection: positive(
                "connections.max_streams_per_connection",
                self.max_streams_per_connection,
            )?
            .unwrap_or(defaults.max_streams_per_connection),
            handshake_timeout: positive(
                "connections.handshake_timeout_ms",
                self.handshake_timeout_ms,
            )?
            .map_or(defaults.handshake_timeout, Duration::from_millis),
            keepalive_interval: positive(
                "connections.keepalive_interval_secs",
                self.keepalive_interval_secs,
            )?
            .map_or(defaults.keepalive_interval, Duration::from_secs),
            keepalive_timeout: positive(
                "connections.keepalive_timeout_secs",
                self.keepalive_timeout_secs,
            )?
            .map_or(defaults.keepalive_timeout, Duration::from_secs),
        })
    }
}

/// Refuses a zero: no limit or timeout here means anything at zero.
fn positive<T: Copy + Default + PartialEq>(
    setting: &'static str,
    value: Option<T>,
) -> Result<Option<T>, ConfigError> {
    match value {
        Some(v) if v == T::default() => Err(invalid(setting, "must be positive")),
        other => Ok(other),
    }
}
