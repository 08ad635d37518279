//! `belfry schedule create`: one schedule from flags, sent as a `CreateSchedule` call.
//!
//! Invariant: the flags map one to one onto the API's `ScheduleSpec` fields (a spec kind and
//! its bounds, the task, its arguments, the catch-up policy, `last_run_at`), and the server
//! judges them: errors come back naming the field. It must not validate more than the shape of
//! a flag, nor change anything but through the API.

use clap::{ArgGroup, Args, ValueEnum};

use super::remote::{key_value, Failure, Output};
use crate::api::pb;
use crate::schedule::parse_every;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("kind").required(true).args(["cron", "crontab", "every", "once", "solar"])))]
pub(super) struct CreateArgs {
    name: String,
    /// The registered Celery task name.
    #[arg(long)]
    task: String,
    /// A standard five-field cron string (Vixie meaning).
    #[arg(long)]
    cron: Option<String>,
    /// Celery crontab fields in cron order.
    #[arg(long)]
    crontab: Option<String>,
    /// An anchored interval such as 30s, 15m, 1h30m or 2d.
    #[arg(long)]
    every: Option<String>,
    /// A single instant (RFC 3339).
    #[arg(long)]
    once: Option<String>,
    /// A solar event (sunrise, sunset, solar_noon, dawn_/dusk_ civil, nautical,
    /// astronomical); needs --lat and --lon.
    #[arg(long)]
    solar: Option<String>,
    /// Latitude in degrees, north positive (with --solar).
    #[arg(long, allow_hyphen_values = true)]
    lat: Option<f64>,
    /// Longitude in degrees, east positive (with --solar).
    #[arg(long, allow_hyphen_values = true)]
    lon: Option<f64>,
    /// The interval's anchor (RFC 3339).
    #[arg(long)]
    anchor: Option<String>,
    /// IANA time zone of a cron or crontab expression (default UTC).
    #[arg(long)]
    tz: Option<String>,
    #[arg(long)]
    start_at: Option<String>,
    #[arg(long)]
    end_at: Option<String>,
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
    let text = |v: Option<String>| v.unwrap_or_default();
    Ok(pb::ScheduleSpec {
        name: a.name,
        task: a.task,
        spec: Some(pb::Spec {
            every: text(a.every),
            anchor: text(a.anchor),
            crontab: text(a.crontab),
            cron: text(a.cron),
            once: text(a.once),
            timezone: text(a.tz),
            start_at: text(a.start_at),
            end_at: text(a.end_at),
            solar: text(a.solar),
            latitude: a.lat,
            longitude: a.lon,
        }),
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
        last_run_at: text(a.last_run_at),
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
