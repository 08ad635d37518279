//! The phases between start and check: the fixed workload and its warm-up, the faults and
//! operations for the duration, healing and settling past the cutoff, and collecting every
//! delivery once the outbox has drained.
//!
//! Invariant: the cutoff is recorded before anything after it is paused, so no checked
//! instant is affected by the harness's own final pause. Must not judge what it collects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::system::{heal, System};
use super::{now, RunError};
use crate::api::Api;
use crate::celery::Worker;
use crate::consumer::Arrival;
use crate::history::{incident, OpKind, SharedHistory};
use crate::nemesis::{self, Nemesis, Targets};
use crate::workload;
use belfry_kit::Consumer;

/// Everything Redis and the worker received, read after the run.
pub(super) struct Evidence {
    pub(super) arrivals: Vec<Arrival>,
    pub(super) malformed: Vec<String>,
    /// Task ids whose push receipt Redis held after the run.
    pub(super) receipts: HashSet<String>,
    /// When each slow run ended, by task id.
    pub(super) slow_finishes: HashMap<String, DateTime<Utc>>,
}

/// Creates the fixed workload, before any fault, and waits until it is running.
pub(super) async fn fixed_workload(system: &System) -> Result<(), RunError> {
    let targets = &system.targets;
    let t0 = workload::aligned_after(TimeDelta::seconds(6));
    for def in workload::fixed(t0, !system.workers.is_empty()) {
        if !workload::create(&targets.api, &targets.history, &def).await {
            return Err(RunError::Usage(format!("could not create {}", def.name)));
        }
    }
    let warm = (t0 + TimeDelta::seconds(3) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(warm).await;
    Ok(())
}

/// Runs both nemesis tracks and the workload's operations for `duration`.
pub(super) async fn faults_and_operations(
    targets: &Targets,
    kinds: &[Nemesis],
    seed: u64,
    duration: Duration,
) {
    let history = &targets.history;
    let started = Utc::now();
    history.lock().unwrap_or_else(|e| e.into_inner()).started = Some(started);
    println!(
        "{}  faults begin: {}",
        now(),
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let until = tokio::time::Instant::now() + duration;
    let (env, cl): (Vec<Nemesis>, Vec<Nemesis>) = kinds.iter().partition(|k| k.is_environment());
    let tracks = vec![
        tokio::spawn(nemesis::run_track(targets.clone(), cl, seed, until)),
        tokio::spawn(nemesis::run_track(
            targets.clone(),
            env,
            seed.rotate_left(17) ^ 0xe4f1,
            until,
        )),
        tokio::spawn(workload::drive(
            targets.api.clone(),
            history.clone(),
            seed,
            until,
        )),
        tokio::spawn(workload::controls::drive(
            targets.api.clone(),
            history.clone(),
            until,
        )),
    ];
    for track in tracks {
        let _ = track.await;
    }
}

/// Heals everything, records the cutoff `settle` after, and waits until it has passed.
pub(super) async fn heal_and_settle(targets: &Targets, settle: Duration) -> DateTime<Utc> {
    heal(targets).await;
    let healed = Utc::now();
    let cutoff = healed + TimeDelta::from_std(settle).unwrap_or_default();
    {
        let mut h = targets.history.lock().unwrap_or_else(|e| e.into_inner());
        h.healed = Some(healed);
        h.cutoff = Some(cutoff);
    }
    println!(
        "{}  healed; checking occurrences up to {}",
        now(),
        cutoff.format("%H:%M:%S")
    );
    let wait = (cutoff + TimeDelta::seconds(3) - Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    cutoff
}

/// Quiets the cluster, waits for the outbox to drain, and reads every delivery.
pub(super) async fn collect_evidence(system: &mut System, cutoff: DateTime<Utc>) -> Evidence {
    let targets = &system.targets;
    // With intents committed a second ahead, a running schedule always has some in the
    // outbox: pausing everything (after the cutoff, so no checked instant is affected) lets
    // a healthy cluster drain it to zero.
    pause_all(&targets.api, &targets.history).await;
    drain(targets, &system.consumer, &system.workers, cutoff).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    system.consumer.stop();
    let mut evidence = Evidence {
        arrivals: system.consumer.arrivals(),
        malformed: system.consumer.malformed(),
        receipts: HashSet::new(),
        slow_finishes: HashMap::new(),
    };
    for worker in &system.workers {
        let (ran, bad) = worker.executions();
        evidence.arrivals.extend(ran);
        evidence.malformed.extend(bad);
    }
    if !system.workers.is_empty() {
        match crate::celery::slow_finishes(&system.backend) {
            Ok(ends) => evidence.slow_finishes = ends,
            Err(err) => eprintln!("{}  cannot read the slow runs' ends: {err}", now()),
        }
        match crate::celery::push_receipts(&system.broker) {
            Ok(read) => evidence.receipts = read,
            // Without receipts nothing is excused: a lost message then counts as missing.
            Err(err) => eprintln!("{}  cannot read belfry's push receipts: {err}", now()),
        }
    }
    evidence
}

/// The names alive at the end, per the run's own operations.
pub(super) fn live_names(history: &SharedHistory) -> Vec<String> {
    let h = history.lock().unwrap_or_else(|e| e.into_inner());
    let mut live: BTreeMap<&str, bool> = BTreeMap::new();
    for op in &h.ops {
        match op.kind {
            OpKind::Delete => live.insert(&op.schedule, false),
            OpKind::Create { .. } => live.insert(&op.schedule, true),
            _ => None,
        };
    }
    live.into_iter()
        .filter(|(_, alive)| *alive)
        .map(|(name, _)| name.to_string())
        .collect()
}

async fn pause_all(api: &Api, history: &SharedHistory) {
    for name in live_names(history) {
        let paused = api
            .call(Duration::from_secs(60), |mut c| {
                let name = name.clone();
                async move {
                    c.schedules
                        .pause_schedule(belfry::api::pb::ScheduleName { name })
                        .await
                }
            })
            .await;
        if let Err(err) = paused {
            incident(history, format!("final pause of {name}: {err}"));
        }
    }
}

/// Waits for the outbox to drain and for deliveries to pass the cutoff.
async fn drain(t: &Targets, consumer: &Consumer, workers: &[Worker], cutoff: DateTime<Utc>) {
    let limit = Duration::from_secs(180);
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let frontier = consumer.arrivals().iter().map(|a| a.scheduled_at).max();
        match t.api.status(Duration::from_secs(10)).await {
            Ok(status) => {
                let passed = frontier.is_some_and(|f| f >= cutoff);
                if status.outbox_depth == 0 && passed && workers.iter().all(Worker::idle) {
                    return;
                }
                last = format!(
                    "outbox depth {}, newest delivery {:?}",
                    status.outbox_depth, frontier
                );
            }
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    incident(
        &t.history,
        format!("HANG: the outbox did not drain within {limit:?} of healing ({last})"),
    );
}

pub(super) fn write_arrivals(dir: &Path, arrivals: &[Arrival]) {
    let lines: Vec<String> = arrivals
        .iter()
        .filter_map(|a| serde_json::to_string(a).ok())
        .collect();
    let _ = std::fs::write(dir.join("arrivals.jsonl"), lines.join("\n"));
}
