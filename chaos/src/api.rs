//! The runner's use of belfry's gRPC API: any live node will do, a call that fails for want
//! of a leader or a reachable node is retried on the next node until a deadline.
//!
//! Retried writes are idempotent by construction (pause, resume), or their repeat answers
//! with a code that means the first try took effect (ALREADY_EXISTS after a create,
//! NOT_FOUND after a delete); the callers decide that. Owns retrying and node rotation; must
//! not keep any schedule state.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use belfry::api::client::ApiClient;
use belfry::api::pb;
use tonic::{Code, Status};

use crate::cluster::client_for;

/// Why a call gave up.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{code:?}: {message}")]
    Refused { code: Code, message: String },
    #[error("no node answered within {0:?}; last error: {1}")]
    Timeout(Duration, String),
}

/// Codes that say nothing about the request itself: no leader, node unreachable, deadline.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

/// Node addresses to try, kept current by the runner as membership changes.
#[derive(Clone)]
pub struct Api {
    addrs: Arc<Mutex<Vec<String>>>,
    next: Arc<Mutex<usize>>,
}

impl Api {
    pub fn new(addrs: Vec<String>) -> Api {
        Api {
            addrs: Arc::new(Mutex::new(addrs)),
            next: Arc::new(Mutex::new(0)),
        }
    }

    pub fn set_addrs(&self, addrs: Vec<String>) {
        *self.addrs.lock().unwrap_or_else(|e| e.into_inner()) = addrs;
    }

    fn pick(&self, attempt: usize) -> Option<ApiClient> {
        let addrs = self.addrs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if addrs.is_empty() {
            return None;
        }
        let start = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        client_for(&addrs[(start + attempt) % addrs.len()])
    }

    /// Calls `f` on node after node until it answers with something other than a retryable
    /// status, or `deadline` passes. Returns the answer and how many attempts it took.
    pub async fn call<T, F, Fut>(&self, deadline: Duration, f: F) -> Result<(T, u32), ApiError>
    where
        F: Fn(ApiClient) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut attempt = 0usize;
        let mut last = String::from("no node address");
        loop {
            if let Some(client) = self.pick(attempt) {
                match tokio::time::timeout(Duration::from_secs(5), f(client)).await {
                    Ok(Ok(response)) => {
                        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
                        *next += attempt;
                        return Ok((response.into_inner(), attempt as u32 + 1));
                    }
                    Ok(Err(status)) if !retryable(&status) => {
                        return Err(ApiError::Refused {
                            code: status.code(),
                            message: status.message().to_string(),
                        })
                    }
                    Ok(Err(status)) => last = format!("{:?}: {}", status.code(), status.message()),
                    Err(_) => last = "no answer within 5 s".into(),
                }
            }
            attempt += 1;
            if started.elapsed() > deadline {
                return Err(ApiError::Timeout(deadline, last));
            }
            let nodes = self.addrs.lock().map(|a| a.len().max(1)).unwrap_or(1);
            if attempt.is_multiple_of(nodes) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    pub async fn get(&self, name: &str, deadline: Duration) -> Result<pb::Schedule, ApiError> {
        let name = name.to_string();
        self.call(deadline, |mut c| {
            let name = name.clone();
            async move {
                c.schedules
                    .get_schedule(pb::GetScheduleRequest { name })
                    .await
            }
        })
        .await
        .map(|(s, _)| s)
    }

    pub async fn status(&self, deadline: Duration) -> Result<pb::ClusterStatus, ApiError> {
        self.call(deadline, |mut c| async move {
            c.cluster.get_status(pb::GetStatusRequest {}).await
        })
        .await
        .map(|(s, _)| s)
    }

    pub async fn runs(&self, name: &str, deadline: Duration) -> Result<Vec<pb::Run>, ApiError> {
        let name = name.to_string();
        self.call(deadline, |mut c| {
            let name = name.clone();
            async move { c.schedules.list_runs(pb::ListRunsRequest { name }).await }
        })
        .await
        .map(|(r, _)| r.runs)
    }

    /// Occurrences belfry's preview gives for a spec after `after`.
    pub async fn preview(
        &self,
        spec: pb::Spec,
        after: chrono::DateTime<chrono::Utc>,
        count: u32,
        deadline: Duration,
    ) -> Result<Vec<chrono::DateTime<chrono::Utc>>, ApiError> {
        let (response, _) = self
            .call(deadline, |mut c| {
                let spec = spec.clone();
                async move {
                    c.schedules
                        .preview_schedule(pb::PreviewScheduleRequest {
                            target: Some(pb::preview_schedule_request::Target::Spec(spec)),
                            count,
                            after: after.to_rfc3339(),
                        })
                        .await
                }
            })
            .await?;
        Ok(response
            .occurrences
            .iter()
            .filter_map(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
            .collect())
    }
}
