//! The schedule page's actions: pause, resume, trigger now, delete (after a confirmation
//! page, with the revision shown), backfill; each a POST answered 303 with a flash message.
//!
//! Invariant: each action checks the session's CSRF token, then calls the gRPC API's own
//! handler with the session's role, so the role check, validation and forwarding to the leader
//! are the API's; a refused role is a 403. It must not write by any other way.

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use tonic::{Code, Status};

use super::html::{Esc, Page, Url};
use super::layout::{shell, Nav};
use super::web::{html, page_error, redirect, Ctx, Form, Refused};
use super::Console;
use crate::api::pb;
use crate::api::pb::schedules_server::Schedules;

/// The session and the form of a change, or the refusal to send instead.
fn prelude(console: &Console, headers: &HeaderMap, body: &Bytes) -> Result<(Ctx, Form), Refused> {
    let ctx = console.ctx(headers)?;
    let form = Form::parse(body);
    console.check_csrf(&ctx, headers, Some(&form))?;
    Ok((ctx, form))
}

fn schedule_link(name: &str) -> String {
    format!("/schedule?name={}", Url(name))
}

/// The answer to an action: a refused role is a 403 page; otherwise 303 back to `back` with
/// the outcome (or the error) as a flash message.
fn finish(console: &Console, ctx: &Ctx, back: &str, outcome: Result<String, Status>) -> Response {
    match outcome {
        Ok(message) => {
            console.flash(ctx, false, message);
            redirect(back, None)
        }
        Err(status)
            if matches!(
                status.code(),
                Code::PermissionDenied | Code::Unauthenticated
            ) =>
        {
            page_error(StatusCode::FORBIDDEN, status.message())
        }
        Err(status) => {
            console.flash(ctx, true, status.message().to_string());
            redirect(back, None)
        }
    }
}

/// `POST /schedule/pause`.
pub(crate) async fn pause(State(c): State<Arc<Console>>, h: HeaderMap, body: Bytes) -> Response {
    set_enabled(&c, &h, &body, false).await
}

/// `POST /schedule/resume`.
pub(crate) async fn resume(State(c): State<Arc<Console>>, h: HeaderMap, body: Bytes) -> Response {
    set_enabled(&c, &h, &body, true).await
}

async fn set_enabled(console: &Console, headers: &HeaderMap, body: &Bytes, on: bool) -> Response {
    let (ctx, form) = match prelude(console, headers, body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let name = form.get("name").to_string();
    let request = ctx.request(pb::ScheduleName { name: name.clone() });
    let outcome = if on {
        console
            .api
            .resume_schedule(request)
            .await
            .map(|_| "Resumed.".to_string())
    } else {
        console
            .api
            .pause_schedule(request)
            .await
            .map(|_| "Paused.".to_string())
    };
    finish(console, &ctx, &schedule_link(&name), outcome)
}

/// `POST /schedule/trigger`: "Triggered: task id <uuid>".
pub(crate) async fn trigger(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = match prelude(&console, &headers, &body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let name = form.get("name").to_string();
    let outcome = console
        .api
        .trigger_schedule(ctx.request(pb::ScheduleName { name: name.clone() }))
        .await
        .map(|r| format!("Triggered: task id {}", r.into_inner().task_id));
    finish(&console, &ctx, &schedule_link(&name), outcome)
}

/// `POST /schedule/backfill` (`from`, `to`: RFC 3339 instants).
pub(crate) async fn backfill(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = match prelude(&console, &headers, &body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let name = form.get("name").to_string();
    let request = pb::BackfillRequest {
        name: name.clone(),
        from: form.get("from").trim().to_string(),
        to: form.get("to").trim().to_string(),
        ..Default::default()
    };
    let outcome = console
        .api
        .backfill_schedule(ctx.request(request))
        .await
        .map(|r| format!("Backfill started: {} occurrences.", r.into_inner().total));
    finish(&console, &ctx, &schedule_link(&name), outcome)
}

/// `GET /schedule/delete?name=NAME&revision=N`: the confirmation (admins only).
pub(crate) async fn confirm_delete(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    if !ctx.admin() {
        return page_error(
            StatusCode::FORBIDDEN,
            "this token is read-only; the operation needs an admin token",
        );
    }
    let query = Form::query(&raw);
    let (name, revision) = (query.get("name"), query.get("revision"));
    let mut page = Page::new();
    let _ = write!(
        page,
        "<h1>Delete {}?</h1><p>The schedule is removed from the cluster, at revision {}: \
         nothing more is sent for it.</p>\
         <form method=post action=/schedule/delete class=actions>\
         <input type=hidden name=csrf value=\"{}\"><input type=hidden name=name value=\"{}\">\
         <input type=hidden name=revision value=\"{}\">\
         <button type=submit class=danger>Delete</button> <a href=\"{}\">Cancel</a></form>",
        Esc(name),
        Esc(revision),
        Esc(&ctx.csrf),
        Esc(name),
        Esc(revision),
        schedule_link(name),
    );
    let body = shell(
        &ctx,
        console.control.node_id(),
        "Delete",
        Nav::Schedules,
        None,
        &page.into_string(),
    );
    html(StatusCode::OK, Some(&ctx), body)
}

/// `POST /schedule/delete` (`revision`: the one the user saw; a later edit makes it fail).
pub(crate) async fn delete(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (ctx, form) = match prelude(&console, &headers, &body) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let name = form.get("name").to_string();
    let expected_revision = match form.get("revision") {
        "" => None,
        text => match text.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                let status = Status::invalid_argument("revision: must be a number");
                return finish(&console, &ctx, &schedule_link(&name), Err(status));
            }
        },
    };
    let request = pb::DeleteScheduleRequest {
        name: name.clone(),
        expected_revision,
    };
    match console.api.delete_schedule(ctx.request(request)).await {
        Ok(_) => finish(&console, &ctx, "/schedules", Ok(format!("Deleted {name}."))),
        Err(status) => finish(&console, &ctx, &schedule_link(&name), Err(status)),
    }
}
