//! `belfry server`: resolve the configuration, set up logging, run a node until SIGTERM/SIGINT.
//!
//! Invariant: the signal handlers are installed before anything starts, so a signal that
//! arrives while the node opens its storage or bootstraps is kept, not fatal. It must not wire
//! the node itself: that is `node`.

use std::future::Future;
use std::process::ExitCode;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::error;

use super::fail;
use crate::config::{NodeConfig, ServerArgs};

pub(super) fn run(args: ServerArgs) -> ExitCode {
    let config = match NodeConfig::resolve(&args) {
        Ok(config) => config,
        Err(err) => return fail(err),
    };
    init_logging(config.json_logs);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    // The handlers are installed before anything starts: a signal that arrives while the node
    // is still opening its storage or bootstrapping is then kept, where the default action
    // would end the process at once (SIGTERM, SIGINT) or for nothing (SIGHUP).
    let (shutdown, hangup) = {
        let _entered = runtime.enter();
        match install_signals() {
            Ok(signals) => signals,
            Err(err) => {
                eprintln!("error: cannot install signal handlers: {err}");
                return ExitCode::FAILURE;
            }
        }
    };
    match runtime.block_on(crate::node::run(config, shutdown, hangup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(%err, "node failed");
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, human-readable unless `json`; `RUST_LOG` filters (default `info`).
pub(super) fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Installs the handlers (inside the runtime) and returns what completes on SIGTERM or SIGINT,
/// and the SIGHUP stream (reload the schedules file).
fn install_signals() -> std::io::Result<(impl Future<Output = ()>, Signal)> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let hangup = signal(SignalKind::hangup())?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
    };
    Ok((shutdown, hangup))
}
