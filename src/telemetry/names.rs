//! Every metric name belfry exports, in one place so dashboards and alerts have one source.
//!
//! Invariant: a metric is recorded only under a name defined here. Names only: it must not
//! record anything.

pub(crate) const IS_LEADER: &str = "belfry_is_leader";
pub(crate) const RAFT_TERM: &str = "belfry_raft_term";
pub(crate) const LEADER_CHANGES: &str = "belfry_leader_changes_total";
pub(crate) const RAFT_COMMIT_INDEX: &str = "belfry_raft_commit_index";
pub(crate) const RAFT_APPLIED_INDEX: &str = "belfry_raft_applied_index";
pub(crate) const RAFT_FOLLOWER_LAG: &str = "belfry_raft_follower_lag_entries";
pub(crate) const RAFT_LOG_ENTRIES: &str = "belfry_raft_log_entries";
pub(crate) const RAFT_SNAPSHOT_INDEX: &str = "belfry_raft_snapshot_index";
pub(crate) const SCHEDULES: &str = "belfry_schedules";
pub(crate) const DISPATCHES: &str = "belfry_dispatches_total";
pub(crate) const DISPATCH_LATENESS: &str = "belfry_dispatch_lateness_seconds";
pub(crate) const SKIPPED_OCCURRENCES: &str = "belfry_skipped_occurrences_total";
pub(crate) const OUTBOX_DEPTH: &str = "belfry_outbox_depth";
/// 1 while the leader's planning is paused because the outbox is full.
pub(crate) const PLANNING_PAUSED: &str = "belfry_planning_paused";
pub(crate) const OUTBOX_OLDEST_AGE: &str = "belfry_outbox_oldest_age_seconds";
/// Dispatcher tasks (`task`: planner, pusher) restarted after failing while leading.
pub(crate) const DISPATCHER_RESTARTS: &str = "belfry_dispatcher_restarts_total";
/// Each peer's wall clock minus this node's (`peer`), from the best recent round trip.
pub(crate) const CLOCK_OFFSET: &str = "belfry_clock_offset_seconds";
/// This node's wall clock minus the quorum's (the median over a majority of voters).
pub(crate) const CLOCK_OFFSET_FROM_QUORUM: &str = "belfry_clock_offset_from_quorum_seconds";
/// 1 while a majority of voters agrees on the time (the offset from the quorum is known).
pub(crate) const CLOCK_QUORUM_KNOWN: &str = "belfry_clock_quorum_known";
/// Steps of the wall clock against the monotonic clock (`direction`: forward, backward).
pub(crate) const CLOCK_STEPS: &str = "belfry_clock_steps_total";
/// Task outcomes committed by the leader, by state (SUCCESS, FAILURE, …, LOST).
pub(crate) const TASK_OUTCOMES: &str = "belfry_task_outcomes_total";
/// Result keys read from the result backend.
pub(crate) const OUTCOME_READS: &str = "belfry_outcome_reads_total";
/// Dispatched runs the leader follows for an outcome.
pub(crate) const OUTCOMES_FOLLOWED: &str = "belfry_outcomes_followed";
pub(crate) const REDIS_ERRORS: &str = "belfry_redis_errors_total";
pub(crate) const REDIS_PUSH_DURATION: &str = "belfry_redis_push_duration_seconds";
/// The Redis master pushes go to (1), and masters left behind (0); with Sentinel.
pub(crate) const REDIS_MASTER: &str = "belfry_redis_master";
pub(crate) const REDIS_MASTER_CHANGES: &str = "belfry_redis_master_changes_total";
pub(crate) const REDIS_WAIT_TIMEOUTS: &str = "belfry_redis_replica_wait_timeouts_total";
pub(crate) const REDIS_REPLICA_ACK: &str = "belfry_redis_replica_ack_seconds";
pub(crate) const API_REQUESTS: &str = "belfry_api_requests_total";
pub(crate) const API_REQUEST_DURATION: &str = "belfry_api_request_duration_seconds";
pub(crate) const HEAP_ALLOCATED: &str = "belfry_heap_allocated_bytes";
pub(crate) const HEAP_FREE: &str = "belfry_heap_free_bytes";
/// The Prometheus convention's name, so standard process dashboards find it.
pub(crate) const RESIDENT_MEMORY: &str = "process_resident_memory_bytes";

/// `outcome` values of [`DISPATCHES`].
pub(crate) mod outcome {
    /// Written to the Celery queue by this push.
    pub(crate) const PUSHED: &str = "pushed";
    /// Found already in Redis (pushed before a failover): not written twice.
    pub(crate) const ALREADY_SENT: &str = "already_sent";
    /// In a batch Redis refused; it stays in the outbox and is retried.
    pub(crate) const FAILED: &str = "failed";
    /// Not dispatched, by the catch-up policy (see [`super::SKIPPED_OCCURRENCES`]).
    pub(crate) const SKIPPED: &str = "skipped";
}
