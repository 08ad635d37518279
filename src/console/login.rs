//! Logging in with an API token and out: the login form (its CSRF token tied to a
//! pre-session cookie), the token checked against the API's tokens, a session made for its
//! role.
//!
//! Invariant: a session is made only for a known token, after the login form's CSRF token is
//! checked; the token itself is neither stored nor echoed. It must not decide roles: the
//! tokens' configuration does.

use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::html::{Esc, Page};
use super::layout::head;
use super::session::{cookie, set_cookie, PRESESSION_COOKIE, SESSION_COOKIE, SESSION_TTL};
use super::web::{html, page_error, redirect, Form};
use super::Console;

const PRESESSION_TTL: Duration = Duration::from_secs(3600);

fn cookies(headers: &HeaderMap) -> &str {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn login_page(csrf: &str, error: Option<&str>) -> String {
    let mut page = Page::new();
    head(&mut page, "Log in");
    let _ = write!(
        page,
        "<main id=main class=narrow><h1>belfry console</h1>\
         <form method=post action=/login class=card>\
         <input type=hidden name=csrf value=\"{}\">\
         <label for=token>API token</label>\
         <input id=token name=token type=password autocomplete=current-password required autofocus>",
        Esc(csrf)
    );
    if let Some(error) = error {
        let _ = write!(
            page,
            "<p class=\"flash error\" role=alert>{}</p>",
            Esc(error)
        );
    }
    page.raw(
        "<button type=submit>Log in</button></form>\
         <p class=hint>An admin token may change schedules; a read-only token only reads.</p>\
         </main></body></html>",
    );
    page.into_string()
}

/// `GET /login`.
pub(crate) async fn form(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if console.tokens.is_none() {
        return redirect("/schedules", None);
    }
    let (pre, new_cookie) = match cookie(cookies(&headers), PRESESSION_COOKIE) {
        Some(pre) if pre.len() == 64 => (pre.to_string(), None),
        _ => match console.sessions.random_id() {
            Ok(pre) => {
                let set = set_cookie(PRESESSION_COOKIE, &pre, PRESESSION_TTL, console.secure);
                (pre, Some(set))
            }
            Err(e) => return page_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
    };
    let mut response = html(
        StatusCode::OK,
        None,
        login_page(&console.sessions.csrf("login", &pre), None),
    );
    if let Some(value) = new_cookie.and_then(|c| c.parse().ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `POST /login`: a known token → a session and 303 to `/`; an unknown one → 401.
pub(crate) async fn submit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(tokens) = &console.tokens else {
        return redirect("/schedules", None);
    };
    let form = Form::parse(&body);
    let pre = cookie(cookies(&headers), PRESESSION_COOKIE).unwrap_or("");
    if pre.is_empty() || !console.sessions.csrf_ok("login", pre, form.get("csrf")) {
        return page_error(
            StatusCode::FORBIDDEN,
            "Missing or wrong CSRF token: reload the login page and try again.",
        );
    }
    let Some(role) = tokens.role_of(form.get("token").trim()) else {
        let page = login_page(&console.sessions.csrf("login", pre), Some("Unknown token"));
        return html(StatusCode::UNAUTHORIZED, None, page);
    };
    match console.sessions.create(role) {
        Ok(sid) => {
            let set = set_cookie(SESSION_COOKIE, &sid, SESSION_TTL, console.secure);
            redirect("/", Some(&set))
        }
        Err(e) => page_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `POST /logout`: the session ends; 303 to `/login`.
pub(crate) async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match console.ctx(&headers) {
        Ok(ctx) => ctx,
        Err(_) => return redirect("/login", None),
    };
    let form = Form::parse(&body);
    if let Err(refused) = console.check_csrf(&ctx, &headers, Some(&form)) {
        return *refused;
    }
    console.sessions.remove(&ctx.sid);
    let expired = set_cookie(SESSION_COOKIE, "", Duration::ZERO, console.secure);
    redirect("/login", Some(&expired))
}
