//! Schedules declared in a TOML file (`[[schedule]]` entries): the file format, its parsing and
//! validation, and reconciling it into the replicated state (`reload`).
//!
//! Invariant: a file is accepted whole or refused whole, with the entry and field named, and
//! every schedule it yields carries the label `belfry.io/source` (`"file"` for the server's
//! file), by which only the file's own schedules are ever pruned. It must not diff against the
//! state (that is `state::diff`) nor commit except through `api::control`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::celery::TaskOptions;
use crate::schedule::{parse_bounded_instant, parse_every, SolarInput, SpecInput};
use crate::state::control::{Overlap, RunControl};
use crate::state::validate::validate_def;
use crate::state::{CatchupPolicy, CatchupRule, Labels, ScheduleDef};

/// The label marking schedules this file manages.
pub const SOURCE_LABEL: &str = "belfry.io/source";

mod reload;
pub use reload::{file_selector, ignore_hangups, keep_reconciled};
const SOURCE_FILE: &str = "file";

/// Why a schedules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: schedule {name:?}: {reason}")]
    Invalid {
        path: String,
        name: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedules {
    #[serde(default)]
    schedule: Vec<FileSchedule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSchedule {
    name: String,
    task: String,
    every: Option<String>,
    anchor: Option<String>,
    cron: Option<String>,
    crontab: Option<String>,
    once: Option<String>,
    tz: Option<String>,
    start_at: Option<String>,
    end_at: Option<String>,
    /// A Celery solar event, with `latitude` and `longitude` (degrees).
    solar: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    /// RFC 3339: when the previous scheduler last sent this schedule (read at creation only).
    last_run_at: Option<String>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    kwargs: Map<String, Value>,
    #[serde(default)]
    options: TaskOptions,
    #[serde(default)]
    catchup: FileCatchup,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    description: String,
    /// Overlap policy: `allow` (default), `skip` or `buffer_one`.
    overlap: Option<String>,
    max_concurrent: Option<u32>,
    /// A duration (`"30m"`): an unfinished run counts as lost after it.
    max_runtime: Option<String>,
    pause_after_failures: Option<u32>,
    /// A duration (`"30s"`): each scheduled occurrence is delayed by up to it.
    jitter: Option<String>,
    /// The schedule finishes after this many scheduled runs.
    max_runs: Option<u64>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileCatchup {
    #[serde(default)]
    policy: CatchupRule,
    /// A duration such as `1h` or `30m`.
    window: Option<String>,
}

/// Loads and validates every entry of `path`; any problem refuses the whole file.
pub fn load(path: &Path, now: DateTime<Utc>) -> Result<Vec<ScheduleDef>, FileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&shown, &text, now)
}

/// Parses and validates schedules from TOML text (`path` only names it in errors).
pub fn parse(path: &str, text: &str, now: DateTime<Utc>) -> Result<Vec<ScheduleDef>, FileError> {
    parse_with_source(path, text, now, SOURCE_FILE)
}

/// Parses like `parse`, labelling every schedule `belfry.io/source = source` (`belfry schedule
/// apply` uses its own value, so the server's file never prunes what a client applied).
pub fn parse_with_source(
    path: &str,
    text: &str,
    now: DateTime<Utc>,
    source: &str,
) -> Result<Vec<ScheduleDef>, FileError> {
    let file: FileSchedules = toml::from_str(text).map_err(|e| FileError::Parse {
        path: path.to_string(),
        message: e.to_string().lines().collect::<Vec<_>>().join(" "),
    })?;
    let mut seen = BTreeSet::new();
    let mut defs = Vec::with_capacity(file.schedule.len());
    for entry in file.schedule {
        let name = entry.name.clone();
        let invalid = |reason: String| FileError::Invalid {
            path: path.to_string(),
            name: name.clone(),
            reason,
        };
        if !seen.insert(name.clone()) {
            return Err(invalid("declared twice".into()));
        }
        let window_secs = match &entry.catchup.window {
            Some(window) => parse_every(window)
                .map_err(|e| invalid(format!("catchup.window: {}", e.reason)))?
                .num_seconds() as u64,
            None => CatchupPolicy::default().window_secs,
        };
        let last_run_at = entry
            .last_run_at
            .as_deref()
            .map(|text| parse_bounded_instant("last_run_at", text))
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        let control = file_control(&entry).map_err(invalid)?;
        let mut labels: Labels = entry.labels.into_iter().collect();
        labels.insert(SOURCE_LABEL.into(), source.into());
        let def = ScheduleDef {
            name: entry.name.into(),
            task: entry.task.into(),
            spec: SpecInput {
                every: entry.every.map(Into::into),
                anchor: entry.anchor.map(Into::into),
                cron: entry.cron.map(Into::into),
                crontab: entry.crontab.map(Into::into),
                once: entry.once.map(Into::into),
                tz: entry.tz.map(Into::into),
                start_at: entry.start_at.map(Into::into),
                end_at: entry.end_at.map(Into::into),
                solar: SolarInput {
                    event: entry.solar.map(Into::into),
                    latitude: entry.latitude,
                    longitude: entry.longitude,
                }
                .into(),
            },
            args: entry.args,
            kwargs: entry.kwargs,
            options: entry.options.into(),
            catchup: CatchupPolicy {
                rule: entry.catchup.policy,
                window_secs,
            },
            enabled: entry.enabled,
            labels,
            description: entry.description.into(),
            last_run_at,
            control,
        };
        validate_def(&def, now).map_err(|e| invalid(e.to_string()))?;
        defs.push(def);
    }
    Ok(defs)
}

/// Run control from an entry's fields: `None` when none is set.
fn file_control(entry: &FileSchedule) -> Result<Option<Box<RunControl>>, String> {
    let seconds = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(|text| {
                parse_every(text)
                    .map(|d| d.num_seconds().max(0) as u64)
                    .map_err(|e| format!("{field}: {}", e.reason))
            })
            .transpose()
    };
    let overlap = match entry.overlap.as_deref() {
        None => Overlap::Allow,
        Some(text) => Overlap::parse(text).ok_or_else(|| {
            format!("overlap: {text:?} is not an overlap policy (allow, skip, buffer_one)")
        })?,
    };
    let control = RunControl {
        overlap,
        max_concurrent: entry.max_concurrent,
        max_runtime_secs: seconds("max_runtime", &entry.max_runtime)?,
        pause_after_failures: entry.pause_after_failures,
        jitter_ms: seconds("jitter", &entry.jitter)?.map(|s| s.saturating_mul(1000)),
        max_runs: entry.max_runs,
    };
    Ok(control.is_set().then(|| Box::new(control)))
}

#[cfg(test)]
mod tests;
