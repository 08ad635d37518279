//! `GET /schedules`: search by name, task and `key=value` labels, filters by state and kind,
//! three orders, pages of 50, through `Control::schedules_search`.
//!
//! Invariant: one search per request (one pass over the state at most, see
//! `api::control::search`), and pages past `MAX_PAGE` are refused, which bounds the top-k heap.
//! It must not sort or copy the whole set itself.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{Esc, Page, Url};
use super::layout::{shell, Nav};
use super::web::{html, stale_note, utc, Form};
use super::Console;
use crate::api::control::{ScheduleState, SearchQuery, SortBy, SpecKind};
use crate::state::ScheduleRecord;

const PAGE_SIZE: usize = 50;
/// The last page that can be asked for (2,000 pages of 50: 100,000 schedules in).
const MAX_PAGE: usize = 2_000;

/// What a row shows, copied out under the read lock.
struct Row {
    name: String,
    task: String,
    state: &'static str,
    spec: String,
    next: Option<String>,
    labels: String,
}

fn row(record: &ScheduleRecord) -> Row {
    Row {
        name: record.def.name.to_string(),
        task: record.def.task.to_string(),
        state: ScheduleState::of(record).label(),
        spec: record.def.spec.written(),
        next: record.next.map(utc),
        labels: record
            .def
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The page's parameters, as given (to refill the form and build links) and as a query.
struct Params {
    q: String,
    state: String,
    kind: String,
    sort: String,
    page: usize,
}

impl Params {
    fn from(form: &Form) -> Result<Params, String> {
        let page = match form.get("page") {
            "" => 1,
            text => text
                .parse::<usize>()
                .ok()
                .filter(|p| (1..=MAX_PAGE).contains(p))
                .ok_or_else(|| format!("page: must be a number from 1 to {MAX_PAGE}"))?,
        };
        Ok(Params {
            q: form.get("q").chars().take(200).collect(),
            state: form.get("state").to_string(),
            kind: form.get("kind").to_string(),
            sort: form.get("sort").to_string(),
            page,
        })
    }

    fn query(&self) -> Result<SearchQuery, String> {
        let mut query = SearchQuery {
            sort: match self.sort.as_str() {
                "" | "name" => SortBy::Name,
                "next" => SortBy::Next,
                "task" => SortBy::Task,
                other => return Err(format!("sort: {other:?} is not name, next or task")),
            },
            state: match self.state.as_str() {
                "" => None,
                "active" => Some(ScheduleState::Active),
                "paused" => Some(ScheduleState::Paused),
                "finished" => Some(ScheduleState::Finished),
                "faulted" => Some(ScheduleState::Faulted),
                other => return Err(format!("state: {other:?} is not a state")),
            },
            kind: match self.kind.as_str() {
                "" => None,
                "cron" => Some(SpecKind::Cron),
                "every" => Some(SpecKind::Every),
                "once" => Some(SpecKind::Once),
                "solar" => Some(SpecKind::Solar),
                other => return Err(format!("kind: {other:?} is not a kind")),
            },
            offset: (self.page - 1) * PAGE_SIZE,
            size: PAGE_SIZE,
            ..SearchQuery::default()
        };
        for word in self.q.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if !k.is_empty() => query.labels.push((k.into(), v.into())),
                _ => query.words.push(word.to_ascii_lowercase()),
            }
        }
        Ok(query)
    }

    /// This page's link with another page number.
    fn link(&self, page: usize) -> String {
        format!(
            "/schedules?q={}&amp;state={}&amp;kind={}&amp;sort={}&amp;page={page}",
            Url(&self.q),
            Url(&self.state),
            Url(&self.kind),
            Url(&self.sort)
        )
    }
}

/// `GET /schedules`.
pub(crate) async fn page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let form = Form::query(&raw);
    let parsed = Params::from(&form).and_then(|p| p.query().map(|q| (p, q)));
    let mut page = Page::new();
    let status = match parsed {
        Ok((params, query)) => {
            let stale = console.barrier().await;
            let result = console.control.schedules_search(&query, row).await;
            filters(&mut page, &params, &ctx);
            stale_note(&mut page, &stale);
            table(&mut page, &result.rows, result.total);
            pager(&mut page, &params, result.more);
            StatusCode::OK
        }
        Err(message) => {
            let params = Params {
                q: form.get("q").into(),
                state: String::new(),
                kind: String::new(),
                sort: String::new(),
                page: 1,
            };
            filters(&mut page, &params, &ctx);
            let _ = write!(
                page,
                "<p class=\"flash error\" role=alert>{}</p>",
                Esc(&message)
            );
            StatusCode::BAD_REQUEST
        }
    };
    let flash = console.take_flash(&ctx);
    let body = shell(
        &ctx,
        console.control.node_id(),
        "Schedules",
        Nav::Schedules,
        flash,
        &page.into_string(),
    );
    html(status, Some(&ctx), body)
}

fn select(page: &mut Page, id: &str, label: &str, current: &str, options: &[(&str, &str)]) {
    let _ = write!(
        page,
        "<div class=field><label for={id}>{label}</label><select id={id} name={id}>"
    );
    for (value, text) in options {
        let selected = if *value == current { " selected" } else { "" };
        let _ = write!(page, "<option value=\"{value}\"{selected}>{text}</option>");
    }
    page.raw("</select></div>");
}

fn filters(page: &mut Page, params: &Params, ctx: &super::web::Ctx) {
    page.raw("<div class=titlebar><h1>Schedules</h1>");
    if ctx.admin() {
        page.raw("<a class=button href=/schedules/new>New schedule</a>");
    }
    let _ = write!(
        page,
        "</div><form method=get action=/schedules class=filters role=search>\
         <div class=field><label for=q>Search</label>\
         <input type=search id=q name=q value=\"{}\" placeholder=\"name, task or key=value\"></div>",
        Esc(&params.q)
    );
    let any = ("", "any");
    select(
        page,
        "state",
        "State",
        &params.state,
        &[
            any,
            ("active", "active"),
            ("paused", "paused"),
            ("finished", "finished"),
            ("faulted", "faulted"),
        ],
    );
    select(
        page,
        "kind",
        "Kind",
        &params.kind,
        &[
            any,
            ("cron", "cron"),
            ("every", "every"),
            ("once", "once"),
            ("solar", "solar"),
        ],
    );
    select(
        page,
        "sort",
        "Sort",
        &params.sort,
        &[("name", "name"), ("next", "next run"), ("task", "task")],
    );
    page.raw("<button type=submit>Apply</button></form>");
}

fn table(page: &mut Page, rows: &[Row], total: usize) {
    let _ = write!(
        page,
        "<p class=hint>{total} schedules in all.</p><div class=scroll><table id=schedules>\
         <thead><tr><th scope=col>Name</th><th scope=col>Task</th><th scope=col>State</th>\
         <th scope=col>Spec</th><th scope=col>Next run</th><th scope=col>Labels</th></tr></thead><tbody>"
    );
    if rows.is_empty() {
        page.raw("<tr><td colspan=6>No schedule matches.</td></tr>");
    }
    for r in rows {
        let _ = write!(
            page,
            "<tr><td><a href=\"/schedule?name={}\">{}</a></td><td>{}</td>\
             <td><span class=\"state {}\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            Url(&r.name),
            Esc(&r.name),
            Esc(&r.task),
            r.state,
            r.state,
            Esc(&r.spec),
            Esc(r.next.as_deref().unwrap_or("-")),
            Esc(&r.labels),
        );
    }
    page.raw("</tbody></table></div>");
}

fn pager(page: &mut Page, params: &Params, more: bool) {
    page.raw("<nav class=pager aria-label=Pages>");
    if params.page > 1 {
        let _ = write!(
            page,
            "<a href=\"{}\" rel=prev>Previous page</a>",
            params.link(params.page - 1)
        );
    }
    let _ = write!(page, " <span>page {}</span> ", params.page);
    if more && params.page < MAX_PAGE {
        let _ = write!(
            page,
            "<a href=\"{}\" rel=next>Next page</a>",
            params.link(params.page + 1)
        );
    }
    page.raw("</nav>");
}
