//! The page shell: head (the stylesheet and the one script, nothing inline), the header with
//! the navigation, the node, the role and "Log out", and the flash message.
//!
//! Invariant: every page of a logged-in visitor is wrapped here, and the shell shows the role.
//! It must not hold page content.

use std::fmt::Write;

use super::html::{Esc, Page};
use super::web::Ctx;

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Schedules,
    Cluster,
}

/// The whole document around `body`.
pub(crate) fn shell(
    ctx: &Ctx,
    node_id: u64,
    title: &str,
    nav: Nav,
    flash: Option<(bool, String)>,
    body: &str,
) -> String {
    let mut page = Page::new();
    head(&mut page, title);
    let current = |n: Nav| if n == nav { " aria-current=page" } else { "" };
    let _ = write!(
        page,
        "<header class=top><a class=brand href=/schedules>belfry</a>\
         <nav aria-label=Main><a href=/schedules{}>Schedules</a> <a href=/cluster{}>Cluster</a></nav>\
         <span class=who>node {node_id} · <span id=role>{}</span></span>\
         <form method=post action=/logout class=inline><input type=hidden name=csrf value=\"{}\">\
         <button type=submit>Log out</button></form></header><main id=main>",
        current(Nav::Schedules),
        current(Nav::Cluster),
        ctx.role_label(),
        Esc(&ctx.csrf),
    );
    if let Some((error, text)) = flash {
        let (class, role) = if error {
            ("flash error", "alert")
        } else {
            ("flash", "status")
        };
        let _ = write!(page, "<p class=\"{class}\" role={role}>{}</p>", Esc(&text));
    }
    page.raw(body);
    page.raw("</main></body></html>");
    page.into_string()
}

/// `<!doctype>` to `<body>`, with the CSRF token in a meta tag for `console.js`.
pub(crate) fn head(page: &mut Page, title: &str) {
    let _ = write!(
        page,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>{} · belfry</title>\
         <link rel=stylesheet href=/static/console.css>\
         <link rel=icon href=\"data:,\">\
         <script src=/static/console.js defer></script></head><body>\
         <a class=skip href=#main>Skip to content</a>",
        Esc(title)
    );
}
