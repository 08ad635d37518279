//! belfry's own view after the run, to hold the run against: each live schedule's final
//! state and run records, its preview of every spec used, and every replica's schedules.
//!
//! Invariant: read only once the cluster is quiet (everything paused, the outbox drained),
//! so replicas that differ have diverged. Must not judge the views beyond reporting a
//! divergence or a failed read as an incident.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::phases::live_names;
use crate::api::Api;
use crate::checker::{Final, PreviewCheck};
use crate::expect::SpecDef;
use crate::history::{incident, OpKind, SharedHistory};
use crate::nemesis::Targets;

/// Final schedule views (live schedules) and preview cross-checks of every spec used.
pub(super) async fn final_views(
    api: &Api,
    history: &SharedHistory,
) -> (BTreeMap<String, Final>, Vec<PreviewCheck>) {
    let ops = history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ops
        .clone();
    let specs: Vec<(String, SpecDef)> = ops
        .iter()
        .filter_map(|op| match &op.kind {
            OpKind::Create { spec, .. } | OpKind::Edit { spec } => {
                Some((op.schedule.clone(), spec.clone()))
            }
            _ => None,
        })
        .collect();
    let mut finals = BTreeMap::new();
    for name in &live_names(history) {
        if let Some(fin) = final_of(api, history, name).await {
            finals.insert(name.clone(), fin);
        }
    }
    let mut previews = Vec::new();
    for (name, spec) in specs {
        if let Some(preview) = preview_check(api, history, name, spec).await {
            previews.push(preview);
        }
    }
    (finals, previews)
}

/// One live schedule's skip count and recent runs; `None` (an incident) when unreadable.
async fn final_of(api: &Api, history: &SharedHistory, name: &str) -> Option<Final> {
    let deadline = Duration::from_secs(30);
    let Ok(schedule) = api.get(name, deadline).await else {
        incident(history, format!("final read of {name} failed"));
        return None;
    };
    let runs = api.runs(name, deadline).await.unwrap_or_default();
    Some(Final {
        incarnation: schedule.incarnation.clone(),
        skipped: schedule.skipped_count,
        runs: runs.iter().filter_map(run_record).collect(),
    })
}

/// (instant, outcome name, manual) of one run record, if it has an instant.
fn run_record(r: &belfry::api::pb::Run) -> Option<(DateTime<Utc>, String, bool)> {
    use belfry::api::pb::RunOutcome;
    let at = r.scheduled_at.as_ref()?;
    let outcome = match RunOutcome::try_from(r.outcome) {
        Ok(RunOutcome::Sent) => "sent",
        Ok(RunOutcome::AlreadySent) => "already_sent",
        Ok(RunOutcome::Skipped) => "skipped",
        Ok(RunOutcome::Pending) => "pending",
        Ok(RunOutcome::Held) => "held",
        _ => "unknown",
    };
    Some((
        DateTime::from_timestamp(at.seconds, at.nanos as u32)?,
        outcome.to_string(),
        r.manual,
    ))
}

/// belfry's preview of `spec` beside the checker's own first instants of it; `None` (an
/// incident) when the preview fails.
async fn preview_check(
    api: &Api,
    history: &SharedHistory,
    name: String,
    spec: SpecDef,
) -> Option<PreviewCheck> {
    let after = match &spec {
        SpecDef::Every { anchor, .. } => *anchor - TimeDelta::seconds(1),
        SpecDef::Cron { start_at, .. } => *start_at - TimeDelta::seconds(1),
    };
    let ours: Vec<_> = spec
        .occurrences(after, after + TimeDelta::days(1))
        .into_iter()
        .take(30)
        .collect();
    match api
        .preview(
            spec.to_pb(),
            after,
            ours.len() as u32,
            Duration::from_secs(30),
        )
        .await
    {
        Ok(theirs) => Some(PreviewCheck {
            schedule: name,
            spec: spec.describe(),
            ours,
            theirs,
        }),
        Err(err) => {
            incident(history, format!("preview of {name}: {err}"));
            None
        }
    }
}

/// One node's view of every schedule: (incarnation, revision, last run, fired, skipped,
/// delivered) by name.
type Replica = BTreeMap<String, (String, u64, Option<i64>, u64, u64, u64)>;

async fn replica(addr: &str) -> Result<Replica, String> {
    let mut client = crate::cluster::client_for(addr).ok_or("no client")?;
    let mut out = Replica::new();
    let mut token = String::new();
    loop {
        let page = client
            .schedules
            .list_schedules(belfry::api::pb::ListSchedulesRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
            .into_inner();
        for s in page.schedules {
            let name = s
                .definition
                .as_ref()
                .map(|d| d.name.clone())
                .unwrap_or_default();
            out.insert(
                name,
                (
                    s.incarnation,
                    s.revision,
                    s.last_run
                        .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000)),
                    s.fired_count,
                    s.skipped_count,
                    s.delivered_count,
                ),
            );
        }
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Every member, read after a read barrier, must hold the same schedules and run counts:
/// the cluster is quiet (everything paused, the outbox drained), so any difference means the
/// replicas' logs diverged.
pub(super) async fn replicas_agree(t: &Targets) {
    let members: Vec<(u64, String)> = {
        let c = t.cluster.lock().await;
        c.members()
            .into_iter()
            .filter_map(|id| c.addr(id).map(|a| (id, a)))
            .collect()
    };
    let mut views: Vec<(u64, Replica)> = Vec::new();
    for (id, addr) in members {
        let mut last = String::new();
        let mut got = None;
        for _ in 0..20 {
            match replica(&addr).await {
                Ok(view) => {
                    got = Some(view);
                    break;
                }
                Err(err) => last = err,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match got {
            Some(view) => views.push((id, view)),
            None => incident(
                &t.history,
                format!("cannot read node {id}'s schedules: {last}"),
            ),
        }
    }
    let Some((first_id, first)) = views.first() else {
        return;
    };
    for (id, view) in &views[1..] {
        if view != first {
            let names: Vec<&String> = first
                .keys()
                .chain(view.keys())
                .filter(|n| first.get(*n) != view.get(*n))
                .collect();
            incident(
                &t.history,
                format!(
                    "DIVERGENCE: node {id} and node {first_id} disagree on {} schedule(s), e.g. {:?}: {:?} vs {:?}",
                    names.len(),
                    names.first(),
                    names.first().and_then(|n| view.get(*n)),
                    names.first().and_then(|n| first.get(*n)),
                ),
            );
        }
    }
}
