//! The `[results]` section and `--result-backend`: where Celery's result backend keeps task
//! outcomes (a `redis://` or `sentinel://` URL, as Celery's `result_backend`).
//!
//! Invariant: a backend URL the reader could not use is refused here, before anything starts;
//! no backend means no outcome tracking (and no overlap limits: the leader refuses them). It
//! must not connect.

use std::time::Duration;

use super::args::ServerArgs;
use super::file::FileResults;
use super::{invalid, ConfigError};
use crate::dispatch::{sentinel, ResultsConfig, SinkConfig};

/// The default horizon: runs older than this are not followed any more.
const DEFAULT_HORIZON_SECS: u64 = 6 * 3600;

/// The result backend's settings, or `None` when no backend is given.
pub(super) fn resolve(
    args: &ServerArgs,
    file: FileResults,
) -> Result<Option<ResultsConfig>, ConfigError> {
    let Some(url) = args.result_backend.clone().or(file.backend) else {
        return Ok(None);
    };
    if sentinel::is_sentinel_url(&url) {
        sentinel::parse(&url).map_err(|e| invalid("results.backend", e))?;
        if file.master_name.is_none() {
            return Err(invalid(
                "results.master_name",
                "required with a sentinel:// result backend (Celery's \
                 result_backend_transport_options master_name)",
            ));
        }
    } else {
        use redis::IntoConnectionInfo;
        url.as_str()
            .into_connection_info()
            .map_err(|e| invalid("results.backend", format!("not a Redis URL: {e}")))?;
    }
    let mut backend = SinkConfig::new(url);
    backend.master_name = file.master_name;
    let horizon_secs = file.horizon_secs.unwrap_or(DEFAULT_HORIZON_SECS);
    if horizon_secs == 0 {
        return Err(invalid("results.horizon_secs", "must be positive"));
    }
    Ok(Some(ResultsConfig {
        backend,
        key_prefix: file.key_prefix.unwrap_or_default(),
        horizon: Duration::from_secs(horizon_secs),
    }))
}
