//! The flags that say when a schedule fires, shared by `belfry preview` and `belfry schedule
//! create`: one spec kind and its bounds.
//!
//! Invariant: they map one to one onto `SpecInput` (and so onto the API's `Spec`); exactly one
//! kind is required (clap's `kind` group). It must not judge the values: the time engine and
//! the server do, naming the field.

use clap::Args;

use crate::api::pb;
use crate::schedule::{SolarInput, SpecInput};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("kind").required(true).args(["cron", "crontab", "every", "once", "solar"])))]
pub(super) struct SpecFlags {
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
}

impl SpecFlags {
    pub(super) fn into_input(self) -> SpecInput {
        SpecInput {
            every: self.every.map(Into::into),
            anchor: self.anchor.map(Into::into),
            cron: self.cron.map(Into::into),
            crontab: self.crontab.map(Into::into),
            once: self.once.map(Into::into),
            tz: self.tz.map(Into::into),
            start_at: self.start_at.map(Into::into),
            end_at: self.end_at.map(Into::into),
            solar: SolarInput {
                event: self.solar.map(Into::into),
                latitude: self.lat,
                longitude: self.lon,
            }
            .into(),
        }
    }

    pub(super) fn into_pb(self) -> pb::Spec {
        let text = |v: Option<String>| v.unwrap_or_default();
        pb::Spec {
            every: text(self.every),
            anchor: text(self.anchor),
            crontab: text(self.crontab),
            cron: text(self.cron),
            once: text(self.once),
            timezone: text(self.tz),
            start_at: text(self.start_at),
            end_at: text(self.end_at),
            solar: text(self.solar),
            latitude: self.lat,
            longitude: self.lon,
        }
    }
}
