//! Installs the process-wide Prometheus recorder, with descriptions and histogram buckets.
//!
//! Invariant: one recorder per process: a second `install` returns the first one's handle. It
//! must not serve the metrics (that is `http`).

use std::sync::Mutex;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::names::*;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot install the metrics recorder: {0}")]
    Recorder(String),
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// Lateness from the scheduled instant to the message being in Redis: milliseconds matter.
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
const PUSH_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];
const API_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// The recorder's handle, installing it on first use (one per process).
pub(crate) fn install() -> Result<PrometheusHandle, TelemetryError> {
    let mut installed = HANDLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder_error =
        |e: metrics_exporter_prometheus::BuildError| TelemetryError::Recorder(e.to_string());
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(DISPATCH_LATENESS.into()), LATENESS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(REDIS_PUSH_DURATION.into()), PUSH_BUCKETS)
        })
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(API_REQUEST_DURATION.into()), API_BUCKETS)
        })
        .map_err(recorder_error)?
        .install_recorder()
        .map_err(recorder_error)?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    describe_gauge!(
        IS_LEADER,
        "1 if this node is the Raft leader (and dispatches), else 0"
    );
    describe_gauge!(RAFT_TERM, "Current Raft term");
    describe_counter!(
        LEADER_CHANGES,
        "Times this node saw a new leader (or none) take over"
    );
    describe_gauge!(RAFT_COMMIT_INDEX, "Highest log index known committed");
    describe_gauge!(
        RAFT_APPLIED_INDEX,
        "Highest log index applied to the state machine"
    );
    describe_gauge!(
        RAFT_FOLLOWER_LAG,
        "On the leader: log entries each follower is behind"
    );
    describe_gauge!(
        RAFT_LOG_ENTRIES,
        "Entries in the local log (not yet purged)"
    );
    describe_gauge!(RAFT_SNAPSHOT_INDEX, "Log index of the latest snapshot");
    describe_gauge!(
        SCHEDULES,
        "Schedules by state (enabled, paused, faulted, finished)"
    );
    describe_counter!(
        DISPATCHER_RESTARTS,
        "Dispatcher tasks restarted after failing while leading, by task"
    );
    describe_counter!(DISPATCHES, "Occurrences dispatched, by outcome");
    describe_histogram!(
        DISPATCH_LATENESS,
        Unit::Seconds,
        "From an occurrence's scheduled instant to its message being in Redis"
    );
    describe_counter!(SKIPPED_OCCURRENCES, "Occurrences not dispatched, by reason");
    describe_gauge!(
        OUTBOX_DEPTH,
        "Committed occurrences not yet confirmed in Redis"
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest due occurrence still in the outbox"
    );
    describe_counter!(
        REDIS_ERRORS,
        "Failed Redis pushes (the outbox holds and retries)"
    );
    describe_histogram!(
        REDIS_PUSH_DURATION,
        Unit::Seconds,
        "Duration of one batched push to Redis"
    );
    describe_counter!(API_REQUESTS, "gRPC API requests, by method and status code");
    describe_histogram!(
        API_REQUEST_DURATION,
        Unit::Seconds,
        "gRPC API request duration, by method"
    );
    describe_broker();
}

/// The broker's side: Sentinel's master, replica confirmations, the outbox bound.
fn describe_broker() {
    describe_gauge!(
        REDIS_MASTER,
        "1 for the Redis master pushes go to (by address), 0 for masters left behind"
    );
    describe_counter!(
        REDIS_MASTER_CHANGES,
        "Redis masters found through Sentinel (the first one included)"
    );
    describe_counter!(
        REDIS_WAIT_TIMEOUTS,
        "Pushed batches min_replicas replicas did not confirm in time (pushed again)"
    );
    describe_histogram!(
        REDIS_REPLICA_ACK,
        Unit::Seconds,
        "From a batch's push to its confirmation by min_replicas replicas"
    );
    describe_gauge!(
        PLANNING_PAUSED,
        "1 while the leader plans nothing because the outbox is full (max_outbox)"
    );
}
