//! `belfry schedule create`: one schedule from flags, sent as a `CreateSchedule` call.
//!
//! Invariant: the flags map one to one onto the API's `ScheduleSpec` fields (a spec kind and
//! its bounds, the task, its arguments, the catch-up policy, `last_run_at`), and the server
//! judges them: errors come back naming the field. It must not validate more than the shape of
//! a flag, nor change anything but through the API.

use clap::{Args, ValueEnum};

use super::remote::{key_value, Failure, Output};
use super::spec_flags::SpecFlags;
use crate::api::pb;
use crate::schedule::parse_every;

#[derive(Args, Debug)]
pub(super) struct CreateArgs {
    name: String,
    /// The registered Celery task name.
    #[arg(long)]
    task: String,
    #[command(flatten)]
    spec: SpecFlags,
    /// Positional arguments, a JSON array.
    #[arg(long, default_value = "")]
    args: String,
    /// Keyword arguments, a JSON object.
    #[arg(long, default_value = "")]
    kwargs: String,
    /// The Celery queue (default `celery`).
    #[arg(long)]
    queue: Option<String>,
    #[arg(long, value_enum, default_value_t = Catchup::All)]
    catchup: Catchup,
    /// Missed occurrences older than this are skipped (e.g. 1h; default 1h).
    #[arg(long)]
    catchup_window: Option<String>,
    /// When the previous scheduler (Celery beat) last sent this schedule (RFC 3339): nothing at
    /// or before it is sent, what it missed since follows --catchup.
    #[arg(long)]
    last_run_at: Option<String>,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
    /// A label (key=value, repeatable).
    #[arg(long, value_parser = key_value)]
    label: Vec<(String, String)>,
    #[arg(long, default_value = "")]
    description: String,
    /// What to do with an occurrence due while earlier runs are unfinished (needs a result
    /// backend for skip and buffer_one).
    #[arg(long, value_enum)]
    overlap: Option<OverlapFlag>,
    /// With --overlap skip or buffer_one: how many runs may be unfinished at once.
    #[arg(long)]
    max_concurrent: Option<u32>,
    /// After this long (e.g. 30m) an unfinished run counts as lost.
    #[arg(long)]
    max_runtime: Option<String>,
    /// Pause the schedule after this many consecutive failures.
    #[arg(long)]
    pause_after_failures: Option<u32>,
    /// Delay each occurrence by up to this long (e.g. 30s), the same on every leader.
    #[arg(long)]
    jitter: Option<String>,
    /// The schedule finishes after this many scheduled runs.
    #[arg(long)]
    max_runs: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OverlapFlag {
    Allow,
    Skip,
    BufferOne,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Catchup {
    All,
    Latest,
    None,
}

/// The API's definition of the flags.
fn schedule_spec(a: CreateArgs) -> Result<pb::ScheduleSpec, Failure> {
    let window_seconds = match &a.catchup_window {
        Some(text) => parse_every(text)
            .map_err(|e| Failure::usage(format!("--catchup-window: {}", e.reason)))?
            .num_seconds()
            .unsigned_abs(),
        None => 0,
    };
    let max_runtime_seconds = a
        .max_runtime
        .as_deref()
        .map(|text| {
            parse_every(text)
                .map(|d| d.num_seconds().unsigned_abs())
                .map_err(|e| Failure::usage(format!("--max-runtime: {}", e.reason)))
        })
        .transpose()?;
    let jitter_seconds = a
        .jitter
        .as_deref()
        .map(|text| {
            parse_every(text)
                .map(|d| d.num_seconds().unsigned_abs() as f64)
                .map_err(|e| Failure::usage(format!("--jitter: {}", e.reason)))
        })
        .transpose()?;
    let control = (a.overlap.is_some()
        || a.max_concurrent.is_some()
        || max_runtime_seconds.is_some()
        || a.pause_after_failures.is_some()
        || jitter_seconds.is_some()
        || a.max_runs.is_some())
    .then(|| pb::RunControl {
        overlap: match a.overlap {
            None | Some(OverlapFlag::Allow) => "allow",
            Some(OverlapFlag::Skip) => "skip",
            Some(OverlapFlag::BufferOne) => "buffer_one",
        }
        .to_string(),
        max_concurrent: a.max_concurrent,
        max_runtime_seconds,
        pause_after_failures: a.pause_after_failures,
        jitter_seconds,
        max_runs: a.max_runs,
    });
    Ok(pb::ScheduleSpec {
        name: a.name,
        task: a.task,
        spec: Some(a.spec.into_pb()),
        args_json: a.args,
        kwargs_json: a.kwargs,
        options: Some(pb::TaskOptions {
            queue: a.queue,
            ..Default::default()
        }),
        catchup: Some(pb::CatchupPolicy {
            rule: match a.catchup {
                Catchup::All => pb::CatchupRule::All,
                Catchup::Latest => pb::CatchupRule::Latest,
                Catchup::None => pb::CatchupRule::None,
            } as i32,
            window_seconds,
        }),
        enabled: Some(!a.paused),
        labels: a.label.into_iter().collect(),
        description: a.description,
        last_run_at: a.last_run_at.unwrap_or_default(),
        control,
    })
}

pub(super) async fn create(
    api: &mut super::schedule::Api,
    output: Output,
    args: CreateArgs,
) -> Result<(), Failure> {
    let schedule = Some(schedule_spec(args)?);
    let created = api
        .create_schedule(pb::CreateScheduleRequest { schedule })
        .await?;
    super::schedule::show_schedule(&created.into_inner(), output);
    Ok(())
}
