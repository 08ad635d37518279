//! Typed reads of the applied state for the API and the schedules file: one schedule, a page
//! of schedules, a schedule's runs and upcoming occurrences, and leadership facts.
//!
//! Invariant: reads only, each under the state's read lock for as short as the read itself; a
//! caller that needs a linearizable read calls `read_barrier` first. Must not parse protobuf:
//! callers map records to their own types.

use std::collections::HashMap;
use std::ops::Bound;

use chrono::{DateTime, Utc};
use openraft::ServerState;

use super::search::{SearchPage, SearchQuery};
use super::Control;
use crate::api::error::ApiError;
use crate::raft::NodeId;
use crate::raft::StateHandle;
use crate::state::{RunRecord, ScheduleRecord};

/// Which schedules a page holds.
pub struct PageQuery<'a> {
    pub name_prefix: &'a str,
    /// Only schedules carrying all of these labels.
    pub labels: &'a HashMap<String, String>,
    /// The last name of the previous page; empty for the first.
    pub after: &'a str,
    pub size: usize,
}

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("schedule {name:?} not found"))
}

impl Control {
    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// True while this node hands its leadership over (dispatch stops as if it were lost).
    pub fn handover_watch(&self) -> tokio::sync::watch::Receiver<bool> {
        self.handing_over.subscribe()
    }

    /// Whether Raft says this node leads (a claim until a quorum confirms it).
    pub fn claims_leadership(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// Confirms this node's leadership with a quorum: every entry of earlier terms is applied.
    pub async fn confirm_leadership(&self) -> bool {
        self.raft.ensure_linearizable().await.is_ok()
    }

    /// Raft's metrics, to wait for leadership changes.
    pub fn raft_metrics(
        &self,
    ) -> tokio::sync::watch::Receiver<openraft::RaftMetrics<NodeId, openraft::BasicNode>> {
        self.raft.metrics()
    }

    /// The applied state, for work done off the runtime (the schedules file's diff).
    pub fn state(&self) -> StateHandle {
        self.state.clone()
    }

    /// `f` of the schedule named `name`.
    pub async fn schedule<T>(
        &self,
        name: &str,
        f: impl FnOnce(&ScheduleRecord) -> T,
    ) -> Result<T, ApiError> {
        let applied = self.state.read().await;
        applied
            .data
            .schedules()
            .get(name)
            .map(|record| f(record))
            .ok_or_else(|| not_found(name))
    }

    /// A page of schedules in name order, each mapped by `f`, and the token of the next page
    /// (empty after the last).
    pub async fn schedules_page<T>(
        &self,
        query: &PageQuery<'_>,
        f: impl Fn(&ScheduleRecord) -> T,
    ) -> (Vec<T>, String) {
        let applied = self.state.read().await;
        let start = if query.after.is_empty() {
            Bound::Included(query.name_prefix)
        } else {
            Bound::Excluded(query.after)
        };
        let mut page = Vec::new();
        let mut last = "";
        for (name, record) in applied
            .data
            .schedules()
            .range::<str, _>((start, Bound::Unbounded))
        {
            if !name.starts_with(query.name_prefix) {
                break;
            }
            let selected = query
                .labels
                .iter()
                .all(|(k, v)| record.def.labels.get(k) == Some(v));
            if !selected {
                continue;
            }
            if page.len() == query.size {
                return (page, last.to_string());
            }
            page.push(f(record));
            last = name;
        }
        (page, String::new())
    }

    /// A page of a console search (`search`), each row mapped by `f`: one pass at most over
    /// the state, under its read lock.
    pub async fn schedules_search<T>(
        &self,
        query: &SearchQuery,
        f: impl Fn(&ScheduleRecord) -> T,
    ) -> SearchPage<T> {
        let applied = self.state.read().await;
        query.page(&applied.data, f)
    }

    /// The schedule's recent runs, newest first.
    pub async fn runs(&self, name: &str) -> Result<Vec<RunRecord>, ApiError> {
        self.schedule(name, |record| {
            record.history.iter().rev().cloned().collect()
        })
        .await
    }

    /// Up to `count` occurrences of the stored schedule after `after` (none when faulted).
    pub async fn upcoming(
        &self,
        name: &str,
        after: DateTime<Utc>,
        count: usize,
    ) -> Result<Vec<DateTime<Utc>>, ApiError> {
        self.schedule(name, |record| {
            record
                .spec()
                .map(|spec| spec.upcoming(after, count))
                .unwrap_or_default()
        })
        .await
    }
}
