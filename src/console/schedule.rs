//! `GET /schedule?name=NAME`: one schedule: its spec as written and in words, zone, the next 10
//! occurrences in its zone and in UTC, run history and its timeline, and the admin's actions.
//!
//! Invariant: one read of the schedule (after the read barrier) and one of its upcoming
//! occurrences; action forms appear only for an admin, each with the CSRF token. It must not
//! change anything.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::html::{Esc, Page, Url};
use super::layout::{shell, Nav};
use super::svg::{timeline, Mark};
use super::web::{html, page_error, seconds, stale_note, utc, zoned, Ctx, Form};
use super::words::spec_words;
use super::Console;
use crate::api::control::ScheduleState;
use crate::state::{RunOutcome, RunRecord, ScheduleDef, ScheduleRecord};

/// Lateness beyond which a run is drawn late (the planner's grace).
const LATE_AFTER_MS: i64 = 2_000;

/// What the page shows, copied out under the read lock.
pub(crate) struct View {
    pub def: Arc<ScheduleDef>,
    pub revision: u64,
    pub state: ScheduleState,
    pub next: Option<DateTime<Utc>>,
    pub last: Option<DateTime<Utc>>,
    pub counts: (u64, u64, u64),
    pub fault: Option<String>,
    pub paused_reason: Option<String>,
    pub history: Vec<RunRecord>,
    pub backfill: Option<String>,
}

pub(crate) fn view(record: &ScheduleRecord) -> View {
    let control = record.control.as_deref();
    View {
        def: record.def.clone(),
        revision: record.revision,
        state: ScheduleState::of(record),
        next: record.next,
        last: record.last_fire,
        counts: (record.fired, record.skipped, record.delivered),
        fault: record.fault.as_ref().map(|f| f.to_string()),
        paused_reason: control.and_then(|c| c.paused_reason.clone()),
        history: record.history.iter().rev().cloned().collect(),
        backfill: control.and_then(|c| c.backfill.as_ref()).map(|job| {
            format!(
                "{} to {}: {} of {} done{}",
                utc(job.spec.from),
                utc(job.spec.to),
                job.done,
                job.spec.total,
                if job.finished_at.is_some() {
                    " (finished)"
                } else {
                    ""
                }
            )
        }),
    }
}

pub(crate) fn zone_of(def: &ScheduleDef) -> Tz {
    def.spec
        .tz
        .as_deref()
        .and_then(|name| name.parse::<Tz>().ok())
        .unwrap_or(Tz::UTC)
}

/// `GET /schedule?name=NAME`.
pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let name = Form::query(&raw).get("name").to_string();
    let stale = console.barrier().await;
    let view = match console.control.schedule(&name, view).await {
        Ok(view) => view,
        Err(err) => return page_error(StatusCode::NOT_FOUND, &err.to_string()),
    };
    let now = Utc::now();
    let upcoming = console
        .control
        .upcoming(&name, now, 10)
        .await
        .unwrap_or_default();
    let mut page = Page::new();
    stale_note(&mut page, &stale);
    summary(&mut page, &view);
    if ctx.admin() {
        actions(&mut page, &ctx, &view);
    }
    upcoming_table(&mut page, &upcoming, zone_of(&view.def));
    runs_table(&mut page, &view, console.flower_url.as_deref(), now);
    let flash = console.take_flash(&ctx);
    let body = shell(
        &ctx,
        console.control.node_id(),
        &name,
        Nav::Schedules,
        flash,
        &page.into_string(),
    );
    html(StatusCode::OK, Some(&ctx), body)
}

/// An instant in the schedule's zone, and in UTC when the zone is another.
pub(crate) fn both(at: DateTime<Utc>, zone: Tz) -> String {
    if zone == Tz::UTC {
        utc(at)
    } else {
        format!("{} ({})", zoned(at, zone), utc(at))
    }
}

fn json_text(value: &serde_json::Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn summary(page: &mut Page, v: &View) {
    let def = &v.def;
    let zone = zone_of(def);
    let _ = write!(
        page,
        "<h1>{}</h1><p class=lead>State: <strong id=state class=\"state {}\">{}</strong></p><dl class=facts>\
         <dt>Task</dt><dd id=task>{}</dd>\
         <dt>Spec</dt><dd><code id=spec>{}</code></dd>\
         <dt>In words</dt><dd id=words>{}</dd>\
         <dt>Zone</dt><dd id=zone>{}</dd>\
         <dt>Next run</dt><dd>{}</dd><dt>Last run</dt><dd>{}</dd>\
         <dt>Args</dt><dd><code>{}</code></dd><dt>Kwargs</dt><dd><code>{}</code></dd>\
         <dt>Queue</dt><dd>{}</dd><dt>Labels</dt><dd id=labels>",
        Esc(&def.name),
        v.state.label(),
        v.state.label(),
        Esc(&def.task),
        Esc(def.spec.written()),
        Esc(spec_words(&def.spec)),
        Esc(zone.name()),
        Esc(v.next.map_or("-".into(), |t| both(t, zone))),
        Esc(v.last.map_or("-".into(), |t| both(t, zone))),
        Esc(json_text(&serde_json::Value::Array(def.args.clone()))),
        Esc(json_text(&serde_json::Value::Object(def.kwargs.clone()))),
        Esc(def.options.queue.as_deref().unwrap_or("celery (default)")),
    );
    if def.labels.is_empty() {
        page.raw("-");
    }
    for (k, val) in def.labels.iter() {
        let _ = write!(page, "<span class=label>{}={}</span> ", Esc(k), Esc(val));
    }
    let (fired, skipped, delivered) = v.counts;
    let _ = write!(
        page,
        "</dd><dt>Revision</dt><dd id=revision>{}</dd><dt>Counts</dt><dd>{fired} fired, {skipped} \
         skipped, {delivered} delivered</dd>",
        v.revision
    );
    for (label, value) in [
        ("Fault", &v.fault),
        ("Paused because", &v.paused_reason),
        ("Backfill", &v.backfill),
    ] {
        if let Some(value) = value {
            let _ = write!(page, "<dt>{label}</dt><dd>{}</dd>", Esc(value));
        }
    }
    if !def.description.is_empty() {
        let _ = write!(
            page,
            "<dt>Description</dt><dd>{}</dd>",
            Esc(&def.description)
        );
    }
    page.raw("</dl>");
}

fn hidden(page: &mut Page, ctx: &Ctx, name: &str) {
    let _ = write!(
        page,
        "<input type=hidden name=csrf value=\"{}\"><input type=hidden name=name value=\"{}\">",
        Esc(&ctx.csrf),
        Esc(name)
    );
}

fn actions(page: &mut Page, ctx: &Ctx, v: &View) {
    let name = &*v.def.name;
    page.raw("<section aria-label=Actions class=actions>");
    let (path, label) = if v.def.enabled {
        ("/schedule/pause", "Pause")
    } else {
        ("/schedule/resume", "Resume")
    };
    let _ = write!(page, "<form method=post action={path} class=inline>");
    hidden(page, ctx, name);
    let _ = write!(page, "<button type=submit>{label}</button></form>");
    page.raw("<form method=post action=/schedule/trigger class=inline>");
    hidden(page, ctx, name);
    page.raw("<button type=submit>Trigger now</button></form>");
    let _ = write!(
        page,
        "<a class=button href=\"/schedule/edit?name={}\">Edit</a>\
         <form method=get action=/schedule/delete class=inline>\
         <input type=hidden name=name value=\"{}\"><input type=hidden name=revision value={}>\
         <button type=submit class=danger>Delete</button></form>",
        Url(name),
        Esc(name),
        v.revision
    );
    page.raw("<form method=post action=/schedule/backfill class=backfill>");
    hidden(page, ctx, name);
    page.raw(
        "<div class=field><label for=from>From</label><input id=from name=from required \
         placeholder=\"2026-01-01T00:00:00Z\"></div>\
         <div class=field><label for=to>To</label><input id=to name=to required \
         placeholder=\"2026-01-02T00:00:00Z\"></div>\
         <button type=submit>Backfill</button></form></section>",
    );
}

fn upcoming_table(page: &mut Page, upcoming: &[DateTime<Utc>], zone: Tz) {
    let _ = write!(
        page,
        "<h2>Next occurrences</h2><div class=scroll><table id=upcoming><thead><tr>\
         <th scope=col>In its zone ({})</th><th scope=col>In UTC</th></tr></thead><tbody>",
        Esc(zone.name())
    );
    if upcoming.is_empty() {
        page.raw("<tr><td colspan=2>None ahead.</td></tr>");
    }
    for at in upcoming {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td></tr>",
            Esc(zoned(*at, zone)),
            Esc(utc(*at))
        );
    }
    page.raw("</tbody></table></div>");
}

/// A run's outcome in words and how the timeline draws it.
pub(crate) fn outcome(run: &RunRecord) -> (String, Mark) {
    let failed = matches!(
        run.task_state,
        Some(crate::state::control::TaskState::Failure)
            | Some(crate::state::control::TaskState::Lost)
            | Some(crate::state::control::TaskState::Revoked)
    );
    let late = run
        .dispatched_at
        .is_some_and(|sent| (sent - run.scheduled_at).num_milliseconds() > LATE_AFTER_MS);
    let text = match run.outcome {
        RunOutcome::Pending => "pending",
        RunOutcome::Sent => "sent",
        RunOutcome::AlreadySent => "already sent",
        RunOutcome::Skipped(_) => "skipped",
        RunOutcome::Held => "held",
    };
    let text = match run.task_state {
        Some(state) => format!("{text}, {}", state.label()),
        None => text.to_string(),
    };
    let mark = if failed {
        Mark::Failed
    } else if matches!(run.outcome, RunOutcome::Skipped(_) | RunOutcome::Held) {
        Mark::Skipped
    } else if late {
        Mark::Late
    } else {
        Mark::Sent
    };
    (text, mark)
}

fn runs_table(page: &mut Page, v: &View, flower: Option<&str>, now: DateTime<Utc>) {
    let zone = zone_of(&v.def);
    let mut marks = Vec::new();
    page.raw(
        "<h2>Recent runs</h2><div class=scroll><table id=runs><thead><tr>\
         <th scope=col>Scheduled</th><th scope=col>Sent</th><th scope=col>Lateness</th>\
         <th scope=col>Trigger</th><th scope=col>Outcome</th><th scope=col>Duration</th>\
         <th scope=col>Skip reason</th><th scope=col>Task id</th></tr></thead><tbody>",
    );
    if v.history.is_empty() {
        page.raw("<tr><td colspan=8>No runs yet.</td></tr>");
    }
    for run in &v.history {
        let (text, mark) = outcome(run);
        let lateness = run
            .dispatched_at
            .map(|sent| seconds((sent - run.scheduled_at).num_milliseconds() as f64 / 1000.0));
        let duration = match (run.dispatched_at, run.finished_at) {
            (Some(sent), Some(done)) => {
                Some(seconds((done - sent).num_milliseconds() as f64 / 1000.0))
            }
            _ => None,
        };
        let skip = match (run.outcome, run.skip_cause) {
            (RunOutcome::Skipped(_), Some(cause)) => cause.label(),
            (RunOutcome::Skipped(reason), None) => reason.label(),
            _ => "",
        };
        let trigger = crate::celery::Trigger::of(run.manual, run.backfill).label();
        let _ = write!(
            page,
            "<tr class=\"run {}\"><td>{}</td><td>{}</td><td>{}</td><td>{trigger}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>",
            mark.label(),
            Esc(zoned(run.scheduled_at, zone)),
            Esc(run.dispatched_at.map_or("-".into(), |t| zoned(t, zone))),
            Esc(lateness.as_deref().unwrap_or("-")),
            Esc(&text),
            Esc(duration.as_deref().unwrap_or("-")),
            Esc(if skip.is_empty() { "-" } else { skip }),
        );
        match (run.task_id, flower) {
            (Some(id), Some(base)) => {
                let _ = write!(
                    page,
                    "<a href=\"{}/task/{id}\" rel=noreferrer>{id}</a>",
                    Esc(base)
                );
            }
            (Some(id), None) => {
                let _ = write!(page, "<code>{id}</code>");
            }
            (None, _) => {
                page.raw("-");
            }
        }
        page.raw("</td></tr>");
        marks.push((
            run.scheduled_at,
            mark,
            format!("{}: {text}", utc(run.scheduled_at)),
        ));
    }
    page.raw("</tbody></table></div><h2>Timeline</h2>");
    page.raw(&timeline(&marks, now));
}
