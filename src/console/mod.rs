//! The web console every node serves on a port of its own (`--console-listen`): server-rendered
//! pages over the API's read path and actions through the gRPC API's own handlers, behind a
//! login with an API token, for a person in a browser.
//!
//! Invariant: a page reads through `api::control`'s reads and a change goes through the
//! `belfry.v1` handlers (`SchedulesApi`), called with the session's role, so it is validated,
//! authorised and forwarded to the leader exactly as a gRPC call is; every POST carries the
//! session's CSRF token; every response carries the security headers; every value from a
//! schedule is escaped (`html::Esc`). It must not touch Raft or the state by another way, nor
//! load anything from the network.

mod actions;
mod cluster;
mod edit;
mod fields;
mod form;
mod html;
mod layout;
mod list;
mod login;
mod schedule;
mod session;
mod svg;
mod tls;
mod web;
mod words;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::api::auth::Tokens;
use crate::api::{ClusterApi, Control, SchedulesApi};
use crate::config::TlsFiles;
use crate::telemetry::window::Window;
use crate::telemetry::Readiness;

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConsoleError {
    #[error("console_listen: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("console TLS (tls_cert / tls_key): {0}")]
    Tls(String),
    #[error(transparent)]
    Random(#[from] session::RandomError),
}

/// What the console is given by the node.
pub(crate) struct ConsoleSettings {
    pub listen: String,
    /// The API's certificate and key: the console is served over HTTPS with them.
    pub tls: Option<TlsFiles>,
    /// `None`: authentication off, every visitor is an admin.
    pub tokens: Option<Tokens>,
    pub flower_url: Option<String>,
    pub window: Arc<Window>,
    pub readiness: Readiness,
}

/// Shared by every handler.
pub(crate) struct Console {
    control: Arc<Control>,
    api: SchedulesApi,
    cluster_api: ClusterApi,
    tokens: Option<Tokens>,
    sessions: session::Sessions,
    /// Served over TLS: cookies are `Secure`.
    secure: bool,
    flower_url: Option<String>,
    window: Arc<Window>,
    readiness: Readiness,
}

/// Binds the console's port (failing at once if it cannot) and serves until the task is
/// aborted.
pub(crate) async fn serve(
    settings: ConsoleSettings,
    control: Arc<Control>,
) -> Result<tokio::task::JoinHandle<()>, ConsoleError> {
    let acceptor = settings.tls.as_ref().map(tls::acceptor).transpose()?;
    let listener = TcpListener::bind(&settings.listen)
        .await
        .map_err(|source| ConsoleError::Listen {
            addr: settings.listen.clone(),
            source,
        })?;
    let console = Arc::new(Console {
        api: SchedulesApi::new(control.clone()),
        cluster_api: ClusterApi::new(control.clone()),
        control,
        tokens: settings.tokens,
        sessions: session::Sessions::new()?,
        secure: acceptor.is_some(),
        flower_url: settings.flower_url,
        window: settings.window,
        readiness: settings.readiness,
    });
    let app = router(console);
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    info!(listen = %settings.listen, %scheme, "serving the web console");
    Ok(tokio::spawn(async move {
        let served = match acceptor {
            Some(acceptor) => axum::serve(tls::TlsListener::new(listener, acceptor), app).await,
            None => axum::serve(listener, app).await,
        };
        if let Err(err) = served {
            warn!(%err, "the console server stopped");
        }
    }))
}

fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(web::home))
        .route("/static/console.css", get(web::css))
        .route("/static/console.js", get(web::js))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/schedules", get(list::page))
        .route("/schedules/new", get(edit::new_form).post(edit::create))
        .route("/schedule", get(schedule::page))
        .route("/schedule/edit", get(edit::edit_form).post(edit::update))
        .route("/schedule/pause", post(actions::pause))
        .route("/schedule/resume", post(actions::resume))
        .route("/schedule/trigger", post(actions::trigger))
        .route(
            "/schedule/delete",
            get(actions::confirm_delete).post(actions::delete),
        )
        .route("/schedule/backfill", post(actions::backfill))
        .route("/api/validate", post(edit::validate))
        .route("/cluster", get(cluster::page))
        .route("/cluster/status.json", get(cluster::status_json))
        .fallback(web::not_found)
        .layer(axum::middleware::from_fn(web::security_headers))
        .with_state(console)
}
