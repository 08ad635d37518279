//! How API answers look on the terminal: aligned tables for people, JSON for scripts.
//!
//! Invariant: JSON output is built as `serde_json` values, so it is valid JSON whatever the
//! values hold, with instants in RFC 3339 UTC; table columns are padded to their widest cell. It
//! must not call the API: it formats what it is given.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::api::pb;

pub(super) fn instant(ts: &Option<prost_types::Timestamp>) -> Option<String> {
    ts.as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn or_dash(text: Option<String>) -> String {
    text.filter(|t| !t.is_empty()).unwrap_or_else(|| "-".into())
}

/// Prints rows with columns padded to their widest cell.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

pub(super) fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

pub(super) fn spec_text(spec: &Option<pb::Spec>) -> String {
    spec.as_ref()
        .map_or_else(|| "-".into(), |s| crate::api::spec_input(s).written())
}

fn spec_json(spec: &Option<pb::Spec>) -> Value {
    let Some(s) = spec else { return Value::Null };
    let mut map = Map::new();
    for (key, value) in [
        ("every", &s.every),
        ("anchor", &s.anchor),
        ("crontab", &s.crontab),
        ("cron", &s.cron),
        ("once", &s.once),
        ("timezone", &s.timezone),
        ("start_at", &s.start_at),
        ("end_at", &s.end_at),
        ("solar", &s.solar),
    ] {
        if !value.is_empty() {
            map.insert(key.into(), value.clone().into());
        }
    }
    for (key, value) in [("latitude", s.latitude), ("longitude", s.longitude)] {
        if let Some(degrees) = value {
            map.insert(key.into(), degrees.into());
        }
    }
    Value::Object(map)
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn options_json(options: &Option<pb::TaskOptions>) -> Value {
    let Some(o) = options else { return json!({}) };
    let mut map = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            map.insert(k.into(), v);
        }
    };
    put("queue", json!(o.queue));
    put("routing_key", json!(o.routing_key));
    put("priority", json!(o.priority));
    put("expires_after_seconds", json!(o.expires_after_seconds));
    if !o.expires_at.is_empty() {
        put("expires_at", json!(o.expires_at));
    }
    if !o.headers_json.is_empty() {
        put("headers", parsed(&o.headers_json));
    }
    put("time_limit", json!(o.time_limit));
    put("soft_time_limit", json!(o.soft_time_limit));
    put("ignore_result", json!(o.ignore_result));
    Value::Object(map)
}

fn rule_name(rule: i32) -> &'static str {
    match pb::CatchupRule::try_from(rule) {
        Ok(pb::CatchupRule::Latest) => "latest",
        Ok(pb::CatchupRule::None) => "none",
        _ => "all",
    }
}

pub(super) fn schedule_json(s: &pb::Schedule) -> Value {
    let d = s.definition.clone().unwrap_or_default();
    let catchup = d.catchup.unwrap_or_default();
    json!({
        "name": d.name,
        "task": d.task,
        "spec": spec_json(&d.spec),
        "args": parsed(&d.args_json),
        "kwargs": parsed(&d.kwargs_json),
        "options": options_json(&d.options),
        "catchup": {"rule": rule_name(catchup.rule), "window_seconds": catchup.window_seconds},
        "enabled": d.enabled.unwrap_or(true),
        "labels": d.labels,
        "description": d.description,
        "last_run_at": (!d.last_run_at.is_empty()).then_some(&d.last_run_at),
        "revision": s.revision,
        "incarnation": s.incarnation,
        "created_at": instant(&s.created_at),
        "updated_at": instant(&s.updated_at),
        "last_run": instant(&s.last_run),
        "next_run": instant(&s.next_run),
        "fired": s.fired_count,
        "skipped": s.skipped_count,
        "delivered": s.delivered_count,
        "fault": if s.fault.is_empty() { Value::Null } else { s.fault.clone().into() },
        "control": d.control.as_ref().map(|c| json!({
            "overlap": if c.overlap.is_empty() { "allow" } else { c.overlap.as_str() },
            "max_concurrent": c.max_concurrent,
            "max_runtime_seconds": c.max_runtime_seconds,
            "pause_after_failures": c.pause_after_failures,
            "jitter_seconds": c.jitter_seconds,
        })),
        "open_runs": s.open_runs,
        "held_run": instant(&s.held_run),
        "consecutive_failures": s.consecutive_failures,
        "paused_reason": (!s.paused_reason.is_empty()).then_some(&s.paused_reason),
        "paused_until": instant(&s.paused_until),
        "pause_note": (!s.pause_note.is_empty()).then_some(&s.pause_note),
        "skip_next": s.skip_next,
        "skip_occurrences": s.skip_occurrences.iter().map(|t| instant(&Some(*t))).collect::<Vec<_>>(),
        "remaining_runs": s.remaining_runs,
        "backfill": s.backfill.as_ref().map(|b| json!({
            "from": instant(&b.from), "to": instant(&b.to), "total": b.total, "done": b.done,
            "sent": b.sent, "finished_at": instant(&b.finished_at),
        })),
    })
}

pub(super) fn schedule_rows(schedules: &[pb::Schedule]) -> Vec<Vec<String>> {
    schedules
        .iter()
        .map(|s| {
            let d = s.definition.clone().unwrap_or_default();
            vec![
                d.name.clone(),
                d.task.clone(),
                spec_text(&d.spec),
                if !s.fault.is_empty() {
                    "faulted"
                } else if d.enabled.unwrap_or(true) {
                    "yes"
                } else {
                    "paused"
                }
                .into(),
                or_dash(instant(&s.next_run)),
                or_dash(instant(&s.last_run)),
                s.fired_count.to_string(),
                s.revision.to_string(),
            ]
        })
        .collect()
}

pub(super) const SCHEDULE_HEADER: [&str; 8] = [
    "NAME", "TASK", "SPEC", "ENABLED", "NEXT RUN", "LAST RUN", "FIRED", "REV",
];

/// `key: value` lines for one schedule.
pub(super) fn schedule_details(s: &pb::Schedule) {
    let value = schedule_json(s);
    if let Value::Object(map) = value {
        for (key, v) in map {
            let shown = match v {
                Value::String(text) => text,
                Value::Null => "-".into(),
                other => other.to_string(),
            };
            println!("{key:<21} {shown}");
        }
    }
}

fn outcome_name(outcome: i32) -> &'static str {
    match pb::RunOutcome::try_from(outcome) {
        Ok(pb::RunOutcome::Pending) => "pending",
        Ok(pb::RunOutcome::Sent) => "sent",
        Ok(pb::RunOutcome::AlreadySent) => "already_sent",
        Ok(pb::RunOutcome::Skipped) => "skipped",
        Ok(pb::RunOutcome::Held) => "held",
        _ => "unknown",
    }
}

pub(super) fn run_json(r: &pb::Run) -> Value {
    json!({
        "scheduled_at": instant(&r.scheduled_at),
        "dispatched_at": instant(&r.dispatched_at),
        "task_id": r.task_id,
        "outcome": outcome_name(r.outcome),
        "skip_reason": r.skip_reason,
        "manual": r.manual,
        "task_state": (!r.task_state.is_empty()).then_some(&r.task_state),
        "finished_at": instant(&r.finished_at),
        "duration_seconds": r.duration_seconds,
        "trigger": r.trigger,
    })
}

/// A run's task state and duration, for the table: `SUCCESS 4.2s`, `STARTED`, or `-`.
fn task_state_text(r: &pb::Run) -> String {
    match (r.task_state.as_str(), r.duration_seconds) {
        ("", _) => "-".into(),
        (state, Some(secs)) => format!("{state} {secs:.1}s"),
        (state, None) => state.into(),
    }
}

pub(super) fn run_rows(runs: &[pb::Run]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            vec![
                or_dash(instant(&r.scheduled_at)),
                or_dash(instant(&r.dispatched_at)),
                outcome_name(r.outcome).into(),
                task_state_text(r),
                or_dash(Some(r.skip_reason.clone())),
                or_dash(Some(r.task_id.clone())),
                match r.trigger.as_str() {
                    "schedule" => "",
                    other => other,
                }
                .into(),
            ]
        })
        .collect()
}

fn role_name(role: i32) -> &'static str {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Leader) => "leader",
        Ok(pb::Role::Follower) => "follower",
        Ok(pb::Role::Learner) => "learner",
        _ => "unknown",
    }
}

pub(super) fn status_json(s: &pb::ClusterStatus) -> Value {
    json!({
        "cluster_name": s.cluster_name,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "last_log_index": s.last_log_index,
        "outbox_depth": s.outbox_depth,
        "schedules": s.schedules,
        "node_id": s.node_id,
        "members": s.members.iter().map(|m| json!({
            "id": m.id,
            "address": m.address,
            "role": role_name(m.role),
            "matched_index": m.matched_index,
            "lag": m.lag,
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn status_table(s: &pb::ClusterStatus) {
    println!(
        "cluster {}  leader {}  term {}  commit {}  applied {}  schedules {}  outbox {}",
        s.cluster_name,
        s.leader_id,
        s.term,
        s.commit_index,
        s.applied_index,
        s.schedules,
        s.outbox_depth
    );
    let rows: Vec<Vec<String>> = s
        .members
        .iter()
        .map(|m| {
            vec![
                m.id.to_string(),
                m.address.clone(),
                role_name(m.role).into(),
                m.matched_index.to_string(),
                m.lag.to_string(),
            ]
        })
        .collect();
    table(&["ID", "ADDRESS", "ROLE", "MATCHED", "LAG"], &rows);
}
