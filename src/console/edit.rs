//! Creating and editing a schedule: the form, its live validation (`POST /api/validate`, the
//! API's own checks and preview), and saving through the API's create and update handlers.
//!
//! Invariant: a form becomes a `ScheduleSpec` in one place (`Fields::to_spec`), checked by the
//! API's validation (`schedule_def` + `validate_def`) and previewed by its `PreviewSchedule`;
//! an edit changes only the form's fields of the stored definition, at the revision shown.
//! Errors name the form's field. It must not write except through `SchedulesApi`.

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use tonic::Code;

use super::html::{Esc, Page, Url};
use super::layout::{shell, Nav};
use super::web::{html, json, page_error, redirect, Ctx, Form, Refused};
use super::Console;
use crate::api::pb;
use crate::api::pb::schedules_server::Schedules;
use crate::api::ApiError;

/// The form's fields, as typed.
#[derive(Default)]
pub(crate) struct Fields {
    name: String,
    task: String,
    kind: String,
    spec: String,
    timezone: String,
    latitude: String,
    longitude: String,
    args: String,
    kwargs: String,
    queue: String,
    labels: String,
    revision: String,
}

/// An error for one field of the form: shown as "field: reason".
pub(crate) struct FieldError {
    field: &'static str,
    reason: String,
}

impl FieldError {
    fn new(field: &'static str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field,
            reason: reason.into(),
        }
    }

    fn text(&self) -> String {
        format!("{}: {}", self.field, self.reason)
    }

    /// The form field an API error names.
    fn from_api(err: &ApiError) -> FieldError {
        let ApiError::InvalidArgument { field, reason } = err else {
            return FieldError::new("form", err.to_string());
        };
        let to = match field.as_str() {
            "name" | "schedule" => "name",
            "task" => "task",
            "args" | "args_json" => "args",
            "kwargs" | "kwargs_json" => "kwargs",
            "tz" | "timezone" | "spec.timezone" => "timezone",
            "latitude" | "spec.latitude" => "latitude",
            "longitude" | "spec.longitude" => "longitude",
            f if f.starts_with("labels") => "labels",
            f if f.starts_with("options.queue") => "queue",
            _ => "spec",
        };
        FieldError::new(to, reason.clone())
    }
}

impl Fields {
    fn get(&self, field: &str) -> &str {
        match field {
            "name" => &self.name,
            "task" => &self.task,
            "kind" => &self.kind,
            "spec" => &self.spec,
            "timezone" => &self.timezone,
            "latitude" => &self.latitude,
            "longitude" => &self.longitude,
            "args" => &self.args,
            "kwargs" => &self.kwargs,
            "queue" => &self.queue,
            "labels" => &self.labels,
            _ => &self.revision,
        }
    }

    fn from_pairs(get: impl Fn(&str) -> String) -> Fields {
        Fields {
            name: get("name"),
            task: get("task"),
            kind: get("kind"),
            spec: get("spec"),
            timezone: get("timezone"),
            latitude: get("latitude"),
            longitude: get("longitude"),
            args: get("args"),
            kwargs: get("kwargs"),
            queue: get("queue"),
            labels: get("labels"),
            revision: get("revision"),
        }
    }

    /// The fields of a stored definition.
    fn from_def(def: &pb::ScheduleSpec, revision: u64) -> Fields {
        let spec = def.spec.clone().unwrap_or_default();
        let (kind, text) = if !spec.every.is_empty() {
            ("every", spec.every.clone())
        } else if !spec.once.is_empty() {
            ("once", spec.once.clone())
        } else if !spec.solar.is_empty() {
            ("solar", spec.solar.clone())
        } else if !spec.crontab.is_empty() {
            ("cron", spec.crontab.clone())
        } else {
            ("cron", spec.cron.clone())
        };
        let mut labels: Vec<_> = def.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        Fields {
            name: def.name.clone(),
            task: def.task.clone(),
            kind: kind.into(),
            spec: text,
            timezone: spec.timezone.clone(),
            latitude: spec.latitude.map(|v| v.to_string()).unwrap_or_default(),
            longitude: spec.longitude.map(|v| v.to_string()).unwrap_or_default(),
            args: def.args_json.clone(),
            kwargs: def.kwargs_json.clone(),
            queue: def
                .options
                .as_ref()
                .and_then(|o| o.queue.clone())
                .unwrap_or_default(),
            labels: labels.join(", "),
            revision: revision.to_string(),
        }
    }

    /// The definition the form describes, over `base` (the stored one, when editing).
    fn to_spec(&self, base: pb::ScheduleSpec) -> Result<pb::ScheduleSpec, FieldError> {
        let mut def = base;
        def.name = self.name.trim().to_string();
        def.task = self.task.trim().to_string();
        let old = def.spec.take().unwrap_or_default();
        let mut spec = pb::Spec {
            anchor: old.anchor.clone(),
            start_at: old.start_at.clone(),
            end_at: old.end_at.clone(),
            timezone: self.timezone.trim().to_string(),
            ..Default::default()
        };
        let text = self.spec.trim().to_string();
        if text.is_empty() {
            return Err(FieldError::new("spec", "required"));
        }
        match self.kind.as_str() {
            "cron" if !old.crontab.is_empty() => spec.crontab = text,
            "cron" => spec.cron = text,
            "every" => spec.every = text,
            "once" => spec.once = text,
            "solar" => {
                spec.solar = text;
                spec.latitude = Some(degrees("latitude", &self.latitude)?);
                spec.longitude = Some(degrees("longitude", &self.longitude)?);
            }
            other => {
                return Err(FieldError::new(
                    "kind",
                    format!("{other:?} is not cron, every, once or solar"),
                ))
            }
        }
        def.spec = Some(spec);
        def.args_json = self.args.trim().to_string();
        def.kwargs_json = self.kwargs.trim().to_string();
        let queue = self.queue.trim();
        let mut options = def.options.take().unwrap_or_default();
        options.queue = (!queue.is_empty()).then(|| queue.to_string());
        def.options = Some(options);
        def.labels = labels(&self.labels)?;
        Ok(def)
    }
}

fn degrees(field: &'static str, text: &str) -> Result<f64, FieldError> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| FieldError::new(field, "must be a number of degrees"))
}

/// `k=v, k=v`.
fn labels(text: &str) -> Result<std::collections::HashMap<String, String>, FieldError> {
    let mut labels = std::collections::HashMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| FieldError::new("labels", format!("{item:?} is not key=value")))?;
        labels.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(labels)
}

/// The API's checks of a definition, then its preview of the next occurrences.
async fn check(
    console: &Console,
    ctx: &Ctx,
    def: &pb::ScheduleSpec,
) -> Result<Vec<String>, FieldError> {
    let parsed = crate::api::schedule_def(def).map_err(|e| FieldError::from_api(&e))?;
    crate::state::validate::validate_def(&parsed, Utc::now())
        .map_err(|e| FieldError::from_api(&ApiError::from(e)))?;
    let request = pb::PreviewScheduleRequest {
        target: Some(pb::preview_schedule_request::Target::Spec(
            def.spec.clone().unwrap_or_default(),
        )),
        count: 5,
        after: String::new(),
    };
    let zone = super::schedule::zone_of(&parsed);
    let reply = console
        .api
        .preview_schedule(ctx.request(request))
        .await
        .map_err(|s| FieldError::new("spec", s.message().to_string()))?;
    Ok(reply
        .into_inner()
        .occurrences
        .iter()
        .filter_map(|ts| chrono::DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32))
        .map(|at| super::schedule::both(at, zone))
        .collect())
}

fn input(
    page: &mut Page,
    f: &Fields,
    id: &str,
    label: &str,
    error: Option<&FieldError>,
    extra: &str,
) {
    let _ = write!(
        page,
        "<div class=field data-field={id}><label for={id}>{label}</label>\
         <input id={id} name={id} value=\"{}\"{extra}>",
        Esc(f.get(id))
    );
    if let Some(e) = error.filter(|e| e.field == id) {
        let _ = write!(page, "<p class=error role=alert>{}</p>", Esc(e.text()));
    }
    page.raw("</div>");
}

/// The form page.
fn form_page(
    console: &Console,
    ctx: &Ctx,
    f: &Fields,
    editing: bool,
    error: Option<&FieldError>,
    preview: &[String],
) -> String {
    let mut page = Page::new();
    let (title, action) = if editing {
        (format!("Edit {}", f.name), "/schedule/edit")
    } else {
        ("New schedule".to_string(), "/schedules/new")
    };
    let _ = write!(
        page,
        "<h1>{}</h1><form method=post action={action} id=schedule-form class=card novalidate>\
         <input type=hidden name=csrf value=\"{}\"><input type=hidden name=revision value=\"{}\">",
        Esc(&title),
        Esc(&ctx.csrf),
        Esc(&f.revision),
    );
    if let Some(e) = error.filter(|e| e.field == "form") {
        let _ = write!(
            page,
            "<p class=\"flash error\" role=alert>{}</p>",
            Esc(&e.reason)
        );
    }
    input(
        &mut page,
        f,
        "name",
        "Name",
        error,
        if editing {
            " readonly required"
        } else {
            " required"
        },
    );
    input(
        &mut page,
        f,
        "task",
        "Task",
        error,
        " required placeholder=\"app.tasks.report\"",
    );
    page.raw(
        "<div class=field data-field=kind><label for=kind>Kind</label><select id=kind name=kind>",
    );
    for kind in ["cron", "every", "once", "solar"] {
        let selected = if f.kind == kind { " selected" } else { "" };
        let _ = write!(page, "<option value={kind}{selected}>{kind}</option>");
    }
    page.raw("</select>");
    if let Some(e) = error.filter(|e| e.field == "kind") {
        let _ = write!(page, "<p class=error role=alert>{}</p>", Esc(e.text()));
    }
    page.raw("</div>");
    input(
        &mut page,
        f,
        "spec",
        "Spec",
        error,
        " required aria-describedby=spec-hint",
    );
    page.raw("<p class=hint id=spec-hint>cron: <code>0 9 * * 1-5</code>; every: <code>30s</code>, <code>1h</code>; once: <code>2030-01-01T09:00:00Z</code>; solar: <code>sunrise</code>, <code>dusk_civil</code>…</p>");
    input(
        &mut page,
        f,
        "timezone",
        "Timezone",
        error,
        " placeholder=\"UTC or Europe/Paris\"",
    );
    page.raw("<div class=solar-only>");
    input(
        &mut page,
        f,
        "latitude",
        "Latitude",
        error,
        " inputmode=decimal",
    );
    input(
        &mut page,
        f,
        "longitude",
        "Longitude",
        error,
        " inputmode=decimal",
    );
    page.raw("</div>");
    input(
        &mut page,
        f,
        "args",
        "Args (JSON)",
        error,
        " placeholder=\"[1, 2]\"",
    );
    input(
        &mut page,
        f,
        "kwargs",
        "Kwargs (JSON)",
        error,
        " placeholder=\"{&quot;key&quot;: 1}\"",
    );
    input(&mut page, f, "queue", "Queue", error, " placeholder=celery");
    input(
        &mut page,
        f,
        "labels",
        "Labels",
        error,
        " placeholder=\"team=data, env=prod\"",
    );
    page.raw("<h2 id=preview-title>Next occurrences</h2><ol id=preview aria-labelledby=preview-title aria-live=polite>");
    for at in preview {
        let _ = write!(page, "<li>{}</li>", Esc(at));
    }
    page.raw("</ol><button type=submit>Save</button></form>");
    shell(
        ctx,
        console.control.node_id(),
        &title,
        Nav::Schedules,
        None,
        &page.into_string(),
    )
}

fn admin_only(ctx: &Ctx) -> Result<(), Refused> {
    if ctx.admin() {
        Ok(())
    } else {
        Err(Box::new(page_error(
            StatusCode::FORBIDDEN,
            "this token is read-only; the operation needs an admin token",
        )))
    }
}

/// `GET /schedules/new`.
pub(crate) async fn new_form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let ctx = match console
        .ctx(&headers)
        .and_then(|ctx| admin_only(&ctx).map(|()| ctx))
    {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let fields = Fields {
        kind: "cron".into(),
        ..Fields::default()
    };
    html(
        StatusCode::OK,
        Some(&ctx),
        form_page(&console, &ctx, &fields, false, None, &[]),
    )
}

/// The stored definition and revision of `name`, as the API gives it.
async fn stored(console: &Console, name: &str) -> Result<(pb::ScheduleSpec, u64), ApiError> {
    console
        .control
        .schedule(name, |r| (crate::api::convert_def(&r.def), r.revision))
        .await
}

/// `GET /schedule/edit?name=NAME`.
pub(crate) async fn edit_form(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let ctx = match console
        .ctx(&headers)
        .and_then(|ctx| admin_only(&ctx).map(|()| ctx))
    {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let _ = console.barrier().await;
    let name = Form::query(&raw).get("name").to_string();
    let (def, revision) = match stored(&console, &name).await {
        Ok(found) => found,
        Err(err) => return page_error(StatusCode::NOT_FOUND, &err.to_string()),
    };
    let fields = Fields::from_def(&def, revision);
    let preview = check(&console, &ctx, &def).await.unwrap_or_default();
    html(
        StatusCode::OK,
        Some(&ctx),
        form_page(&console, &ctx, &fields, true, None, &preview),
    )
}

/// `POST /schedules/new`.
pub(crate) async fn create(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    save(&console, &headers, &body, false).await
}

/// `POST /schedule/edit`.
pub(crate) async fn update(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    save(&console, &headers, &body, true).await
}

async fn save(console: &Console, headers: &HeaderMap, body: &Bytes, editing: bool) -> Response {
    let ctx = match console.ctx(headers) {
        Ok(ctx) => ctx,
        Err(response) => return *response,
    };
    let form = Form::parse(body);
    if let Err(refused) = console.check_csrf(&ctx, headers, Some(&form)) {
        return *refused;
    }
    if let Err(refused) = admin_only(&ctx) {
        return *refused;
    }
    let fields = Fields::from_pairs(|k| form.get(k).to_string());
    let invalid = |e: FieldError| {
        html(
            StatusCode::BAD_REQUEST,
            Some(&ctx),
            form_page(console, &ctx, &fields, editing, Some(&e), &[]),
        )
    };
    let base = if editing {
        match stored(console, fields.name.trim()).await {
            Ok((def, _)) => def,
            Err(err) => return invalid(FieldError::new("form", err.to_string())),
        }
    } else {
        pb::ScheduleSpec::default()
    };
    let def = match fields.to_spec(base) {
        Ok(def) => def,
        Err(e) => return invalid(e),
    };
    if let Err(e) = check(console, &ctx, &def).await {
        return invalid(e);
    }
    let name = def.name.clone();
    let outcome = if editing {
        let expected_revision = fields.revision.trim().parse::<u64>().ok();
        let request = pb::UpdateScheduleRequest {
            schedule: Some(pb::ScheduleSpec {
                enabled: None,
                ..def
            }),
            expected_revision,
        };
        console
            .api
            .update_schedule(ctx.request(request))
            .await
            .map(|_| "Saved.")
    } else {
        let request = pb::CreateScheduleRequest {
            schedule: Some(def),
        };
        console
            .api
            .create_schedule(ctx.request(request))
            .await
            .map(|_| "Created.")
    };
    match outcome {
        Ok(message) => {
            console.flash(&ctx, false, message.to_string());
            redirect(&format!("/schedule?name={}", Url(&name)), None)
        }
        Err(status) if status.code() == Code::PermissionDenied => {
            page_error(StatusCode::FORBIDDEN, status.message())
        }
        Err(status) => invalid(FieldError::new("form", status.message().to_string())),
    }
}

/// `POST /api/validate`: the form's fields as a JSON object (header `x-csrf-token`) →
/// `{"ok":true,"preview":[…]}` or `{"ok":false,"field":"spec","error":"spec: …"}`.
pub(crate) async fn validate(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(_) => {
            return json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"ok": false, "error": "log in again"}),
            )
        }
    };
    if console.check_csrf(&ctx, &headers, None).is_err() {
        return json(
            StatusCode::FORBIDDEN,
            &serde_json::json!({"ok": false, "error": "missing or wrong CSRF token"}),
        );
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(&body)
    else {
        return json(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"ok": false, "field": "form", "error": "the body must be a JSON object of the form's fields"}),
        );
    };
    let fields = Fields::from_pairs(|k| {
        map.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    });
    let editing = !fields.revision.is_empty();
    let base = if editing {
        stored(&console, fields.name.trim())
            .await
            .map(|(d, _)| d)
            .unwrap_or_default()
    } else {
        pb::ScheduleSpec::default()
    };
    let outcome = match fields.to_spec(base) {
        Ok(def) => check(&console, &ctx, &def).await,
        Err(e) => Err(e),
    };

    match outcome {
        Ok(preview) => json(
            StatusCode::OK,
            &serde_json::json!({"ok": true, "preview": preview}),
        ),
        Err(e) => json(
            StatusCode::OK,
            &serde_json::json!({"ok": false, "field": e.field, "error": e.text()}),
        ),
    }
}
