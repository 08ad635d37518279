//! The command line: argument parsing, subcommand dispatch and exit codes.
//!
//! Invariant: every run ends in one exit code (0, or the code of the failure's kind: 2 for bad
//! input, like clap's own usage errors) and an error is one line on stderr; help and version go
//! to stdout with success. Owns what the user types and sees: it must not hold scheduling logic
//! of its own.

mod backfill;
mod cluster;
mod data;
mod dev;
mod preview;
mod remote;
mod render;
mod schedule;
mod schedule_create;
mod server;
mod spec_flags;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for bad input (the same as clap's own usage errors).
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "belfry",
    version,
    about = "A highly available periodic task scheduler for Celery"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a cluster node.
    Server(Box<crate::config::ServerArgs>),
    /// Run a local three-node cluster with Redis and a sample schedule, showing dispatches (without
    /// consuming them) and a failover, until Ctrl-C; `--worker` also runs a real Celery worker.
    Dev(dev::DevArgs),
    /// Print the next occurrences of a spec, offline (no server needed).
    Preview(preview::PreviewArgs),
    /// Manage schedules through the API.
    Schedule(schedule::ScheduleArgs),
    /// Cluster status, membership and leadership through the API.
    Cluster(cluster::ClusterArgs),
    /// Offline work on a stopped node's data directory.
    Data(data::DataArgs),
}

/// Parses the command line, runs the subcommand and turns its outcome into an exit code.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    match cli.command {
        Command::Server(args) => server::run(*args),
        Command::Dev(args) => dev::run(args),
        Command::Preview(args) => preview::run(args),
        Command::Schedule(args) => remote::run_remote(schedule::run(args)),
        Command::Cluster(args) => remote::run_remote(cluster::run(args)),
        Command::Data(args) => data::run(args),
    }
}

/// Help and version go to stdout with success; anything else is one line on stderr.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    let rendered = err.render().to_string();
    let first = rendered
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("error: invalid arguments");
    eprintln!("{}", first.trim_end());
    ExitCode::from(EXIT_USAGE)
}

/// Prints a one-line error and returns the usage exit code.
pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}
