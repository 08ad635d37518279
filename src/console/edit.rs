//! Creating and editing a schedule: the form's handlers, its live validation (`POST /api/validate`, the
//! API's own checks and preview), and saving through the API's create and update handlers.
//!
//! Invariant: a form becomes a `ScheduleSpec` in one place (`Fields::to_spec`), checked by the
//! API's validation (`schedule_def` + `validate_def`) and previewed by its `PreviewSchedule`;
//! an edit changes only the form's fields of the stored definition, at the revision shown.
//! Errors name the form's field. It must not write except through `SchedulesApi`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use tonic::Code;

use super::fields::{FieldError, Fields};
use super::form::form_page;
use super::html::Url;

use super::web::{html, json, page_error, redirect, Ctx, Form, Refused};
use super::Console;
use crate::api::pb;
use crate::api::pb::schedules_server::Schedules;
use crate::api::ApiError;

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
