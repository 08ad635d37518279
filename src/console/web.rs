//! What every console handler shares: the visitor's session (`Ctx`), the CSRF check, form and
//! query decoding, responses (pages, redirects, refusals), the security headers on every
//! response, the embedded assets, and how instants are written.
//!
//! Invariant: a handler gets a `Ctx` only for a live session (or, with authentication off, a
//! session made on the spot); every response leaves through `security_headers`. It must not
//! decide what a role may do: the API's handlers do.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::html::{Esc, Page};
use super::session::{cookie, set_cookie, SESSION_COOKIE, SESSION_TTL};
use super::Console;
use crate::api::auth::Role;

pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; \
form-action 'self'";

/// The response a handler sends instead of going on (boxed: a `Response` is large).
pub(crate) type Refused = Box<Response>;

/// The visitor: a live session and its role.
pub(crate) struct Ctx {
    pub role: Role,
    pub sid: String,
    pub csrf: String,
    /// A cookie to set with this response (a session made on the spot).
    pub set_cookie: Option<String>,
}

impl Ctx {
    pub(crate) fn admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub(crate) fn role_label(&self) -> &'static str {
        match self.role {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        }
    }

    /// A gRPC request carrying this visitor's role, as the API's interceptor would make it.
    pub(crate) fn request<T>(&self, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        request.extensions_mut().insert(self.role);
        request
    }
}

/// Decoded `application/x-www-form-urlencoded` pairs (a form body or a query string).
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(bytes: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(crate) fn query(raw: &Option<String>) -> Form {
        Form::parse(raw.as_deref().unwrap_or("").as_bytes())
    }

    /// The first value of `name`, or "".
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

impl Console {
    /// The visitor's session, or the response to give instead (to the login page).
    pub(crate) fn ctx(&self, headers: &HeaderMap) -> Result<Ctx, Refused> {
        let cookies = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(sid) = cookie(cookies, SESSION_COOKIE) {
            if let Some(role) = self.sessions.role(sid) {
                return Ok(Ctx {
                    role,
                    csrf: self.sessions.csrf("session", sid),
                    sid: sid.to_string(),
                    set_cookie: None,
                });
            }
        }
        if self.tokens.is_some() {
            return Err(Box::new(redirect("/login", None)));
        }
        // Authentication is off: every visitor is an admin, with a session for CSRF's sake.
        let sid = self
            .sessions
            .create(Role::Admin)
            .map_err(|e| page_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()))?;
        Ok(Ctx {
            role: Role::Admin,
            csrf: self.sessions.csrf("session", &sid),
            set_cookie: Some(set_cookie(SESSION_COOKIE, &sid, SESSION_TTL, self.secure)),
            sid,
        })
    }

    /// Refuses a change without the session's CSRF token (form field `csrf` or header
    /// `x-csrf-token`).
    pub(crate) fn check_csrf(
        &self,
        ctx: &Ctx,
        headers: &HeaderMap,
        form: Option<&Form>,
    ) -> Result<(), Refused> {
        let given = form
            .map(|f| f.get("csrf"))
            .filter(|v| !v.is_empty())
            .or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
        match given {
            Some(token) if self.sessions.csrf_ok("session", &ctx.sid, token) => Ok(()),
            _ => Err(Box::new(page_error(
                StatusCode::FORBIDDEN,
                "Missing or wrong CSRF token: reload the page and try again.",
            ))),
        }
    }

    /// Keeps a message for the visitor's next page.
    pub(crate) fn flash(&self, ctx: &Ctx, error: bool, text: String) {
        self.sessions.set_flash(&ctx.sid, error, text);
    }

    pub(crate) fn take_flash(&self, ctx: &Ctx) -> Option<(bool, String)> {
        self.sessions.take_flash(&ctx.sid)
    }
}

/// An HTML page, with the session cookie when one was made for it.
pub(crate) fn html(status: StatusCode, ctx: Option<&Ctx>, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = ctx.and_then(|c| c.set_cookie.as_deref()) {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// A JSON body.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 303 See Other to `to` (a path this console built), setting `cookie` if given.
pub(crate) fn redirect(to: &str, cookie: Option<&str>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(value) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A bare page with a message, for refusals and errors.
pub(crate) fn page_error(status: StatusCode, message: &str) -> Response {
    let mut page = Page::new();
    let _ = std::fmt::Write::write_fmt(
        &mut page,
        format_args!(
            "<!doctype html><html lang=en><head><meta charset=utf-8>\
             <meta name=viewport content=\"width=device-width, initial-scale=1\">\
             <title>{status} · belfry</title><link rel=stylesheet href=/static/console.css>\
             </head><body><main><h1>{status}</h1><p role=alert>{}</p>\
             <p><a href=/schedules>Schedules</a></p></main></body></html>",
            Esc(message),
            status = status.as_u16()
        ),
    );
    html(status, None, page.into_string())
}

/// Adds the console's security headers to every response.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

pub(crate) async fn home() -> Response {
    redirect("/schedules", None)
}

pub(crate) async fn not_found() -> Response {
    page_error(StatusCode::NOT_FOUND, "No such page.")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

pub(crate) async fn css() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("static/console.css"),
    )
}

pub(crate) async fn js() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("static/console.js"),
    )
}

/// `2026-12-07 21:00:00 UTC`.
pub(crate) fn utc(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `2026-12-07 22:00:00 Europe/Paris`.
pub(crate) fn zoned(at: DateTime<Utc>, tz: Tz) -> String {
    if tz == Tz::UTC {
        return utc(at);
    }
    format!(
        "{} {}",
        at.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S"),
        tz.name()
    )
}

/// A duration in seconds, short: `850 ms`, `4.2 s`, `3 min 5 s`.
pub(crate) fn seconds(secs: f64) -> String {
    if !secs.is_finite() {
        return "-".into();
    }
    let abs = secs.abs();
    if abs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if abs < 120.0 {
        format!("{secs:.1} s")
    } else {
        let whole = secs.round() as i64;
        format!("{} min {} s", whole / 60, whole % 60)
    }
}

/// How long a page waits for the leader to confirm a read before showing local state.
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Console {
    /// Makes the page's read linearizable (as the API's reads are); when no leader confirms it
    /// in time, the page shows this node's own state under the returned warning.
    pub(crate) async fn barrier(&self) -> Option<String> {
        match tokio::time::timeout(BARRIER_WAIT, self.control.read_barrier()).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(format!(
                "Shown from this node's copy, which may be behind: {err}"
            )),
            Err(_) => Some(
                "Shown from this node's copy, which may be behind: no leader confirmed the read \
                 in time"
                    .into(),
            ),
        }
    }
}

/// A warning paragraph, or nothing.
pub(crate) fn stale_note(page: &mut Page, stale: &Option<String>) {
    if let Some(note) = stale {
        let _ = std::fmt::Write::write_fmt(
            page,
            format_args!("<p class=\"flash warn\" role=status>{}</p>", Esc(note)),
        );
    }
}
