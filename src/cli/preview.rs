//! `belfry preview`: the next occurrences of a spec, computed offline with the time engine.
//!
//! Invariant: the occurrences are the ones a node would compute for the same spec (the same
//! `Spec::parse`, bounds check and `upcoming`), and an invalid spec is refused naming its flag.
//! It must not reach a server.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use clap::{ArgGroup, Args};

use super::fail;
use crate::schedule::{parse_bounded_instant, Spec, SpecInput};

/// The most occurrences one call prints.
const MAX_COUNT: usize = 100_000;

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("kind").required(true).args(["cron", "crontab", "every", "once", "solar"])))]
pub(super) struct PreviewArgs {
    /// A standard five-field cron string (Vixie meaning), or @hourly/@daily/@weekly/@monthly/@yearly.
    #[arg(long)]
    cron: Option<String>,
    /// Celery crontab fields in cron order: minute hour day_of_month month_of_year day_of_week.
    #[arg(long)]
    crontab: Option<String>,
    /// An anchored interval such as 30s, 15m, 1h30m or 2d.
    #[arg(long, allow_hyphen_values = true)]
    every: Option<String>,
    /// A single instant (RFC 3339).
    #[arg(long)]
    once: Option<String>,
    /// The interval's anchor (RFC 3339); defaults to --start-at, then to now.
    #[arg(long)]
    anchor: Option<String>,
    /// A solar event (Celery's names: sunrise, sunset, solar_noon, dawn_civil, dusk_civil,
    /// dawn_nautical, dusk_nautical, dawn_astronomical, dusk_astronomical); needs --lat and --lon.
    #[arg(long)]
    solar: Option<String>,
    /// Latitude in degrees, north positive (with --solar).
    #[arg(long, allow_hyphen_values = true)]
    lat: Option<f64>,
    /// Longitude in degrees, east positive (with --solar).
    #[arg(long, allow_hyphen_values = true)]
    lon: Option<f64>,
    /// IANA time zone the expression's wall-clock times are read in (default UTC; not with
    /// --solar, whose instants are absolute).
    #[arg(long)]
    tz: Option<String>,
    /// No occurrence before this instant (RFC 3339).
    #[arg(long)]
    start_at: Option<String>,
    /// No occurrence at or after this instant (RFC 3339).
    #[arg(long)]
    end_at: Option<String>,
    /// List occurrences strictly after this instant (RFC 3339); defaults to now.
    #[arg(long)]
    after: Option<String>,
    /// How many occurrences to print.
    #[arg(short = 'n', long = "count", default_value_t = 10)]
    count: usize,
}

/// A spec error worded with the flag's name (`latitude` is `--lat`).
fn flag_error(e: &crate::schedule::SpecError) -> String {
    let flag = match e.field.as_str() {
        "latitude" => "lat".to_string(),
        "longitude" => "lon".to_string(),
        field => field.replace('_', "-"),
    };
    format!("{flag}: {}", e.reason)
}

pub(super) fn run(args: PreviewArgs) -> ExitCode {
    let now = Utc::now();
    let after = match args
        .after
        .as_deref()
        .map(|t| parse_bounded_instant("--after", t))
        .transpose()
    {
        Ok(after) => after.unwrap_or(now),
        Err(e) => return fail(e),
    };
    if args.count > MAX_COUNT {
        return fail(format!("-n: at most {MAX_COUNT} occurrences per call"));
    }
    let input = SpecInput {
        every: args.every.map(Into::into),
        anchor: args.anchor.map(Into::into),
        cron: args.cron.map(Into::into),
        crontab: args.crontab.map(Into::into),
        once: args.once.map(Into::into),
        tz: args.tz.map(Into::into),
        start_at: args.start_at.map(Into::into),
        end_at: args.end_at.map(Into::into),
        solar: args.solar.map(Into::into),
        latitude: args.lat,
        longitude: args.lon,
    };
    let spec = match input
        .check_instants()
        .and_then(|()| Spec::parse(&input, now))
    {
        Ok(spec) => spec,
        Err(e) => return fail(format!("--{}", flag_error(&e))),
    };
    let mut out = std::io::stdout().lock();
    for instant in spec.upcoming(after, args.count) {
        if writeln!(out, "{}", instant.format("%Y-%m-%dT%H:%M:%SZ")).is_err() {
            // The reader went away (e.g. `| head`): stop quietly.
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}
