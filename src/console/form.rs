//! The create-and-edit form, rendered: labelled inputs, each with its field-named error, the
//! kind selector, and the preview list `console.js` fills as the user types.
//!
//! Invariant: every value typed or stored is escaped (`Esc`) and every input has a label. It
//! must not check or save anything.

use std::fmt::Write;

use super::fields::{FieldError, Fields};
use super::html::{Esc, Page};
use super::layout::{shell, Nav};
use super::web::Ctx;
use super::Console;

/// The inputs after the kind selector: field, label and extra attributes, in page order.
/// `None` marks where the solar-only group opens and closes.
const INPUTS: &[Option<(&str, &str, &str)>] = &[
    Some(("spec", "Spec", " required aria-describedby=spec-hint")),
    Some((
        "timezone",
        "Timezone",
        " placeholder=\"UTC or Europe/Paris\"",
    )),
    None,
    Some(("latitude", "Latitude", " inputmode=decimal")),
    Some(("longitude", "Longitude", " inputmode=decimal")),
    None,
    Some(("args", "Args (JSON)", " placeholder=\"[1, 2]\"")),
    Some((
        "kwargs",
        "Kwargs (JSON)",
        " placeholder=\"{&quot;key&quot;: 1}\"",
    )),
    Some(("queue", "Queue", " placeholder=celery")),
    Some(("labels", "Labels", " placeholder=\"team=data, env=prod\"")),
];

const SPEC_HINT: &str = "<p class=hint id=spec-hint>cron: <code>0 9 * * 1-5</code>; every: \
    <code>30s</code>, <code>1h</code>; once: <code>2030-01-01T09:00:00Z</code>; solar: \
    <code>sunrise</code>, <code>dusk_civil</code>…</p>";

/// A field's error, if the error is about `field`.
fn field_error(page: &mut Page, error: Option<&FieldError>, field: &str) {
    if let Some(e) = error.filter(|e| e.field == field) {
        let _ = write!(page, "<p class=error role=alert>{}</p>", Esc(e.text()));
    }
}

fn input(
    page: &mut Page,
    f: &Fields,
    (id, label, extra): (&str, &str, &str),
    error: Option<&FieldError>,
) {
    let _ = write!(
        page,
        "<div class=field data-field={id}><label for={id}>{label}</label>\
         <input id={id} name={id} value=\"{}\"{extra}>",
        Esc(f.get(id))
    );
    field_error(page, error, id);
    page.raw("</div>");
}

fn kind_select(page: &mut Page, f: &Fields, error: Option<&FieldError>) {
    page.raw(
        "<div class=field data-field=kind><label for=kind>Kind</label><select id=kind name=kind>",
    );
    for kind in ["cron", "every", "once", "solar"] {
        let selected = if f.kind == kind { " selected" } else { "" };
        let _ = write!(page, "<option value={kind}{selected}>{kind}</option>");
    }
    page.raw("</select>");
    field_error(page, error, "kind");
    page.raw("</div>");
}

/// The form page.
pub(super) fn form_page(
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
    let name_attrs = if editing {
        " readonly required"
    } else {
        " required"
    };
    input(&mut page, f, ("name", "Name", name_attrs), error);
    input(
        &mut page,
        f,
        ("task", "Task", " required placeholder=\"app.tasks.report\""),
        error,
    );
    kind_select(&mut page, f, error);
    let mut solar_open = false;
    for entry in INPUTS {
        match entry {
            Some(field) => {
                input(&mut page, f, *field, error);
                if field.0 == "spec" {
                    page.raw(SPEC_HINT);
                }
            }
            None => {
                page.raw(if solar_open {
                    "</div>"
                } else {
                    "<div class=solar-only>"
                });
                solar_open = !solar_open;
            }
        }
    }
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
