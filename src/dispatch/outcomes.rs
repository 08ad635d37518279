//! The leader's outcome follower: reads Celery's result keys (`celery-task-meta-<task id>`)
//! for dispatched runs and commits what it learns as `Outcomes`, and commits `LOST` for runs an
//! overlap policy counts that outlived their `max_runtime`.
//!
//! Invariant: it reads in batches (`MGET` of at most `READ_BATCH` keys), only runs still in
//! their schedule's history or open, each on a doubling gap (`watch`), so the cost is bounded
//! by the number of recent runs, not by time; it changes state only through committed commands,
//! and only while its term is confirmed (`gate`). It must not push, plan, or decide what an
//! outcome means (that is `state`).

mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, NaiveDateTime, Utc};
use metrics::{counter, gauge};
use tracing::{info, warn};
use uuid::Uuid;

use super::broker::Broker;
use super::leader::DispatchContext;
use super::sink::{SinkConfig, SinkError};
use crate::state::control::{OutcomeItem, TaskState};
use crate::state::{Command, StateData, MAX_COMMANDS_PER_ENTRY};
use crate::telemetry::names;
pub(crate) use watch::{ToRead, Watchlist};

/// Keys per `MGET`.
const READ_BATCH: usize = 1_000;
/// The most runs read in one round.
const ROUND_LIMIT: usize = 20_000;
/// How long a proposed `LOST` is not proposed again while it is being committed.
const LOST_PROPOSAL_HOLD: StdDuration = StdDuration::from_secs(10);

/// Where task outcomes are read from.
#[derive(Clone, Debug)]
pub struct ResultsConfig {
    /// The result backend's connection (URL, Sentinel master name).
    pub backend: SinkConfig,
    /// Celery's `global_keyprefix`, before `celery-task-meta-`.
    pub key_prefix: String,
    /// Runs older than this are not followed.
    pub horizon: StdDuration,
}

/// A connection to the result backend.
pub(crate) struct ResultBackend {
    broker: Broker,
    key_prefix: String,
    horizon: StdDuration,
}

/// What a result key says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Observed {
    pub state: TaskState,
    pub date_done: Option<DateTime<Utc>>,
}

impl ResultBackend {
    /// Builds the reader without connecting (inside a Tokio runtime).
    pub(crate) fn new(config: &ResultsConfig) -> Result<ResultBackend, SinkError> {
        Ok(ResultBackend {
            broker: Broker::new(&config.backend)?,
            key_prefix: config.key_prefix.clone(),
            horizon: config.horizon,
        })
    }

    fn key(&self, task_id: Uuid) -> String {
        format!(
            "{}celery-task-meta-{}",
            self.key_prefix,
            task_id.hyphenated()
        )
    }

    /// Reads the result keys of `task_ids`, one `MGET` per `READ_BATCH`.
    pub(crate) async fn read(&self, task_ids: &[Uuid]) -> Result<Vec<Option<Observed>>, SinkError> {
        let mut observed = Vec::with_capacity(task_ids.len());
        for chunk in task_ids.chunks(READ_BATCH) {
            let keys: Vec<String> = chunk.iter().map(|id| self.key(*id)).collect();
            let mut conn = self.broker.connection().await?;
            let values: Vec<Option<Vec<u8>>> =
                match redis::cmd("MGET").arg(&keys).query_async(&mut conn).await {
                    Ok(values) => values,
                    Err(err) => {
                        self.broker.failed(&err).await;
                        return Err(err.into());
                    }
                };
            counter!(names::OUTCOME_READS).increment(chunk.len() as u64);
            observed.extend(values.iter().map(|v| v.as_deref().and_then(parse_meta)));
        }
        Ok(observed)
    }
}

/// Reads a result key's JSON: its `status` and `date_done` (Celery writes ISO 8601, with an
/// offset since 5.x and without one before).
pub(crate) fn parse_meta(bytes: &[u8]) -> Option<Observed> {
    #[derive(serde::Deserialize)]
    struct Meta<'a> {
        status: &'a str,
        #[serde(default)]
        date_done: Option<&'a str>,
    }
    let meta: Meta = serde_json::from_slice(bytes).ok()?;
    let state = TaskState::from_celery(meta.status)?;
    let date_done = meta.date_done.and_then(|text| {
        DateTime::parse_from_rfc3339(text)
            .map(|at| at.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                    .ok()
                    .map(|at| at.and_utc())
            })
    });
    Some(Observed {
        state,
        date_done: date_done.filter(|_| state.is_final()),
    })
}

/// Runs the pusher reports as dispatched, for the follower to take in. Shared by one term's
/// tasks, so a restarted follower or pusher loses nothing.
#[derive(Clone, Default)]
pub(crate) struct Dispatched(Arc<Mutex<Vec<DispatchedRun>>>);

/// A pushed run: its task id, schedule and instant.
pub(crate) type DispatchedRun = (Uuid, Arc<str>, DateTime<Utc>);

impl Dispatched {
    pub(crate) fn add(&self, runs: impl IntoIterator<Item = DispatchedRun>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(runs);
    }

    fn take(&self) -> Vec<DispatchedRun> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Follows outcomes for as long as this node leads `term`.
pub(crate) async fn follow_loop(
    ctx: Arc<DispatchContext>,
    backend: Arc<ResultBackend>,
    term: u64,
    dispatched: Dispatched,
) {
    let horizon = chrono::Duration::from_std(backend.horizon).unwrap_or(chrono::Duration::MAX);
    let mut list = Watchlist::new(horizon);
    let mut lost_proposed: HashMap<Uuid, std::time::Instant> = HashMap::new();
    let mut first_round = true;
    let mut backoff = StdDuration::from_millis(100);
    loop {
        let Some(now) = super::gate::quorum_gate(&ctx, term).await else {
            return;
        };
        let (reads, lost) = {
            let applied = ctx.state.read().await;
            let data = &applied.data;
            if std::mem::take(&mut first_round) {
                follow_history(&mut list, data, now, horizon);
                info!(term, followed = list.len(), "following task outcomes");
            }
            for (task_id, schedule, at) in dispatched.take() {
                let counted = counted_by_policy(data, &schedule);
                list.follow(task_id, schedule, at, None, counted, now);
            }
            let due = list.due(now, ROUND_LIMIT);
            let reads = still_kept(&mut list, data, due);
            lost_proposed.retain(|_, at| at.elapsed() < LOST_PROPOSAL_HOLD);
            (reads, lost_runs(data, now, &mut lost_proposed))
        };
        gauge!(names::OUTCOMES_FOLLOWED).set(list.len() as f64);
        let mut items = lost;
        if !reads.is_empty() {
            let ids: Vec<Uuid> = reads.iter().map(|(r, _)| r.task_id).collect();
            match backend.read(&ids).await {
                Ok(observed) => {
                    backoff = StdDuration::from_millis(100);
                    for ((read, incarnation), seen) in reads.into_iter().zip(observed) {
                        let state = seen.map(|o| o.state);
                        if let Some(state) = list.read(read.task_id, state, now) {
                            items.push(OutcomeItem {
                                schedule: read.schedule.to_string(),
                                incarnation,
                                task_id: read.task_id,
                                state,
                                date_done: seen.and_then(|o| o.date_done),
                            });
                        }
                    }
                }
                Err(err) => {
                    warn!(term, %err, retry_in_ms = backoff.as_millis() as u64, "cannot read task outcomes from the result backend");
                    for (read, _) in reads {
                        list.read(read.task_id, None, now);
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(StdDuration::from_secs(5));
                }
            }
        }
        commit(&ctx, term, &mut list, items, now).await;
        let wait = list
            .next_read()
            .map(|at| (at - now).to_std().unwrap_or_default())
            .unwrap_or(StdDuration::from_secs(1))
            .clamp(StdDuration::from_millis(50), StdDuration::from_secs(1));
        tokio::time::sleep(wait).await;
    }
}

/// At taking office: every run in a history that awaits its outcome, within the horizon.
fn follow_history(
    list: &mut Watchlist,
    data: &StateData,
    now: DateTime<Utc>,
    horizon: chrono::Duration,
) {
    for (name, record) in data.schedules() {
        for run in record.history.iter().filter(|r| r.awaits_outcome()) {
            if now - run.scheduled_at > horizon {
                continue;
            }
            if let Some(task_id) = run.task_id {
                let counted = record.def.run_control().limits_overlap();
                list.follow(
                    task_id,
                    name.clone(),
                    run.scheduled_at,
                    run.task_state,
                    counted,
                    now,
                );
            }
        }
    }
}

/// Whether `schedule`'s overlap policy waits for its runs' ends.
fn counted_by_policy(data: &StateData, schedule: &str) -> bool {
    data.schedules()
        .get(schedule)
        .is_some_and(|r| r.def.run_control().limits_overlap())
}

/// Of the runs due for a read, those still in their schedule's history or open (with the
/// schedule's incarnation); the others are forgotten: nothing could record their outcome.
fn still_kept(list: &mut Watchlist, data: &StateData, due: Vec<ToRead>) -> Vec<(ToRead, Uuid)> {
    let mut kept = Vec::with_capacity(due.len());
    for read in due {
        let record = data.schedules().get(&read.schedule);
        let found = record.filter(|r| {
            r.history
                .iter()
                .any(|run| run.task_id == Some(read.task_id))
                || r.control
                    .as_ref()
                    .is_some_and(|c| c.open.iter().any(|o| o.task_id == read.task_id))
        });
        match found {
            Some(record) => kept.push((read, record.incarnation)),
            None => list.forget(read.task_id),
        }
    }
    kept
}

/// Open runs past their schedule's `max_runtime` by the quorum's time, not proposed already.
fn lost_runs(
    data: &StateData,
    now: DateTime<Utc>,
    proposed: &mut HashMap<Uuid, std::time::Instant>,
) -> Vec<OutcomeItem> {
    let mut lost = Vec::new();
    for name in data.with_open_runs() {
        let Some(record) = data.schedules().get(name) else {
            continue;
        };
        let policy = record.def.run_control();
        let Some(state) = record.control.as_ref() else {
            continue;
        };
        for open in &state.open {
            if policy.lost_after(open.since) > now || proposed.contains_key(&open.task_id) {
                continue;
            }
            proposed.insert(open.task_id, std::time::Instant::now());
            lost.push(OutcomeItem {
                schedule: name.to_string(),
                incarnation: record.incarnation,
                task_id: open.task_id,
                state: TaskState::Lost,
                date_done: None,
            });
        }
    }
    lost
}

/// Commits what was learned, in entries of at most `MAX_COMMANDS_PER_ENTRY` outcomes; what
/// does not commit is read (or found lost) again.
async fn commit(
    ctx: &DispatchContext,
    term: u64,
    list: &mut Watchlist,
    items: Vec<OutcomeItem>,
    now: DateTime<Utc>,
) {
    if items.is_empty() {
        return;
    }
    if let Some(behind) = members_behind(ctx) {
        warn!(term, nodes = %behind, "task outcomes need log entry format 3, which some members do not read yet: upgrade every node; they are read again");
        for item in &items {
            let schedule: Arc<str> = item.schedule.as_str().into();
            list.forget(item.task_id);
            list.follow(item.task_id, schedule, now, None, false, now);
        }
        return;
    }
    for chunk in items.chunks(MAX_COMMANDS_PER_ENTRY) {
        let command = Command::Outcomes {
            items: chunk.to_vec(),
            at: now,
        };
        match ctx.raft.client_write(command).await {
            Ok(_) => {
                for item in chunk {
                    counter!(names::TASK_OUTCOMES, "state" => item.state.label()).increment(1);
                }
            }
            Err(err) => {
                warn!(term, %err, "could not commit task outcomes: they are read again");
                for item in chunk {
                    if item.state.is_final() {
                        let schedule: Arc<str> = item.schedule.as_str().into();
                        list.follow(item.task_id, schedule, now, None, false, now);
                    } else {
                        list.commit_failed(item.task_id);
                    }
                }
            }
        }
    }
}

/// The members (other than this node) that do not advertise format 3, if any.
fn members_behind(ctx: &DispatchContext) -> Option<String> {
    let advertised = ctx.network.advertised_formats();
    let (me, members): (u64, Vec<u64>) = {
        let metrics = ctx.raft.metrics();
        let m = metrics.borrow();
        let ids = m.membership_config.membership().nodes().map(|(id, _)| *id);
        (m.id, ids.collect())
    };
    let behind: Vec<String> = members
        .into_iter()
        .filter(|id| *id != me && advertised.get(id).copied().unwrap_or(1) < 3)
        .map(|id| id.to_string())
        .collect();
    (!behind.is_empty()).then(|| behind.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celery_result_keys_read_as_states_and_instants() {
        let done = parse_meta(
            br#"{"status": "SUCCESS", "result": 4, "traceback": null, "children": [],
                "date_done": "2026-12-07T18:00:01.250000+00:00", "task_id": "x"}"#,
        )
        .unwrap();
        assert_eq!(done.state, TaskState::Success);
        assert_eq!(
            done.date_done.unwrap().to_rfc3339(),
            "2026-12-07T18:00:01.250+00:00"
        );
        // Without an offset (Celery 4), read as UTC.
        let old =
            parse_meta(br#"{"status": "FAILURE", "date_done": "2026-12-07T18:00:01.5"}"#).unwrap();
        assert_eq!(old.state, TaskState::Failure);
        assert!(old.date_done.is_some());
        // STARTED carries no date_done; PENDING and garbage are no outcome.
        let started = parse_meta(br#"{"status": "STARTED", "date_done": null}"#).unwrap();
        assert_eq!(
            (started.state, started.date_done),
            (TaskState::Started, None)
        );
        assert_eq!(parse_meta(br#"{"status": "PENDING"}"#), None);
        assert_eq!(parse_meta(b"not json"), None);
    }
}
