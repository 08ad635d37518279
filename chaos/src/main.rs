//! `belfry-chaos`: runs a real belfry cluster under seeded faults and proves from the outside
//! that every occurrence reached Redis exactly once. See chaos/README.md.
//!
//! This file owns the command line only; `run` drives a run.

mod api;
mod broker;
mod celery;
mod checker;
mod cluster;
mod expect;
mod history;
mod nemesis;
mod net;
mod plot;
mod proxy;
mod report;
mod run;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use belfry_kit::consumer;
use clap::Parser;

/// Fault-injection harness and history checker for belfry.
#[derive(Parser, Debug, Clone)]
#[command(name = "belfry-chaos", version)]
pub struct Args {
    /// Number of belfry nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// How long faults are injected (e.g. 90s, 3m, 30m); setup and the final check add about
    /// a minute.
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of every random choice (printed; pass it again to replay the same faults).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Nemeses, comma-separated, or `all`: kill-leader, kill-follower, kill-majority,
    /// pause-leader, partition-leader, partition-split, partition-oneway, rolling-restart,
    /// membership, wipe, redis-kill, redis-slow, redis-failover (with --sentinel), clock.
    #[arg(long, default_value = "all")]
    pub nemesis: String,
    /// The `belfry` binary (default: `belfry` next to this binary).
    #[arg(long)]
    pub belfry: Option<PathBuf>,
    /// The `redis-server` binary.
    #[arg(long, default_value = "redis-server")]
    pub redis_server: PathBuf,
    /// Redis as a master, a replica and three sentinels: the nodes push through a
    /// `sentinel://` URL with `min_replicas = 1`, the harness's consumer follows the master,
    /// and the Redis fault is `redis-failover` (in place of redis-kill and redis-slow).
    #[arg(long)]
    pub sentinel: bool,
    /// The `redis-sentinel` binary (with --sentinel).
    #[arg(long, default_value = "redis-sentinel")]
    pub redis_sentinel: PathBuf,
    /// Output directory (default: chaos/out/<time>-<nodes>n-seed<seed> from the repository root,
    /// else chaos-out/…).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// `netns` (partitions; needs root), `loopback` (no partitions) or `auto`.
    #[arg(long, default_value = "auto")]
    pub net: String,
    /// A Python with `celery[redis]`: also runs a real Celery worker on some schedules.
    #[arg(long)]
    pub celery_python: Option<PathBuf>,
    /// libfaketime's preload library, for the clock nemesis.
    #[arg(
        long,
        default_value = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    )]
    pub faketime_lib: PathBuf,
    /// A TrueType font for the plot's text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub font: PathBuf,
    /// How long after healing the cutoff of checked occurrences lies.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub settle: Duration,
}

/// `90`, `90s`, `3m`, `1h`, `1m30s`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(format!("{text:?}: use s, m or h, e.g. 90s or 30m")),
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?}: a number must precede each unit"))?;
        total += n * unit;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("{text:?}: a number at the end has no unit"));
    }
    Ok(Duration::from_secs(total))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("belfry-chaos: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run::run(args) => outcome,
            _ = tokio::signal::ctrl_c() => Err(run::RunError::Interrupted),
        }
    });
    // Dropping the runtime drops every task and with them the processes and namespaces.
    drop(runtime);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("belfry-chaos: {err}");
            ExitCode::from(2)
        }
    }
}
