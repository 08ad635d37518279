//! `belfry schedule …`: manage schedules through the API of any node.
//!
//! Invariant: `apply` reads a file with the server's own parser and labels what it applies with
//! its own source, so the server's schedules file never prunes it, and `--prune` without a
//! selector deletes only schedules applied this way. It must not change anything but through
//! the API.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::Utc;
use clap::{Args, Subcommand};
use serde_json::json;

use super::remote::{key_value, Connection, Failure, Output};
use super::render::{self, print_json, table};
use crate::api::pb;
use crate::schedules_file::{parse_with_source, SOURCE_LABEL};

/// The `belfry.io/source` label of schedules `schedule apply` manages.
pub(super) const SOURCE_APPLY: &str = "apply";

#[derive(Args, Debug)]
pub(super) struct ScheduleArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Subcommand, Debug)]
pub(super) enum ScheduleCommand {
    /// Create or update the schedules of a TOML file (`[[schedule]]` entries).
    Apply {
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Also delete applied schedules missing from the file (those labelled
        /// belfry.io/source=apply, or matching --selector).
        #[arg(long)]
        prune: bool,
        /// Prune only schedules carrying these labels (key=value, repeatable).
        #[arg(long, value_parser = key_value)]
        selector: Vec<(String, String)>,
    },
    /// Create one schedule from flags (a spec kind, the task, its arguments and policy).
    Create(Box<super::schedule_create::CreateArgs>),
    /// List schedules.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only schedules with this label (key=value, repeatable).
        #[arg(long, value_parser = key_value)]
        label: Vec<(String, String)>,
        /// Stop after this many (default: all, fetched a page at a time).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one schedule.
    Get { name: String },
    /// Delete a schedule.
    Delete {
        name: String,
        /// Refuse unless the schedule is at this revision.
        #[arg(long)]
        revision: Option<u64>,
    },
    /// Stop dispatching a schedule (with --until, until an instant: it resumes by itself).
    Pause {
        name: String,
        /// Resume by itself at this instant (RFC 3339); missed runs follow the catch-up policy.
        #[arg(long)]
        until: Option<String>,
        /// Why, for people (shown by `schedule get`).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Skip the next scheduled occurrences, or named ones.
    Skip {
        name: String,
        /// How many of the next occurrences to skip.
        #[arg(long, default_value_t = 0)]
        next: u32,
        /// An occurrence to skip (RFC 3339, repeatable).
        #[arg(long = "at")]
        at: Vec<String>,
    },
    /// Dispatch a paused schedule again (missed runs follow its catch-up policy).
    Resume { name: String },
    /// Dispatch one run now, outside the schedule.
    Trigger { name: String },
    /// The next occurrences of a stored schedule.
    Next {
        name: String,
        #[arg(short = 'n', long, default_value_t = 5)]
        count: u32,
    },
    /// A schedule's recent runs, newest first.
    Runs { name: String },
    /// Send a schedule's past occurrences in a range (once each), with progress.
    Backfill(Box<super::backfill::BackfillArgs>),
}

pub(super) type Api = pb::schedules_client::SchedulesClient<crate::api::client::Intercepted>;

pub(super) async fn run(args: ScheduleArgs) -> Result<(), Failure> {
    let mut client = args.connection.client()?;
    let output = args.connection.output;
    let api = &mut client.schedules;
    match args.command {
        ScheduleCommand::Apply {
            file,
            prune,
            selector,
        } => apply(api, output, &file, prune, selector).await,
        ScheduleCommand::Create(create) => {
            super::schedule_create::create(api, output, *create).await
        }
        ScheduleCommand::List {
            prefix,
            label,
            limit,
        } => list(api, output, prefix, label, limit).await,
        ScheduleCommand::Get { name } => {
            let s = api.get_schedule(pb::GetScheduleRequest { name }).await?;
            show_schedule(&s.into_inner(), output);
            Ok(())
        }
        ScheduleCommand::Delete { name, revision } => delete(api, output, name, revision).await,
        ScheduleCommand::Pause { name, until, note } => {
            let s = match until {
                Some(until) => {
                    api.pause_schedule_until(pb::PauseUntilRequest { name, until, note })
                        .await?
                }
                None => api.pause_schedule(pb::ScheduleName { name }).await?,
            };
            show_schedule(&s.into_inner(), output);
            Ok(())
        }
        ScheduleCommand::Skip { name, next, at } => {
            let s = api
                .skip_occurrences(pb::SkipOccurrencesRequest {
                    name,
                    next,
                    occurrences: at,
                })
                .await?;
            show_schedule(&s.into_inner(), output);
            Ok(())
        }
        ScheduleCommand::Resume { name } => {
            let s = api.resume_schedule(pb::ScheduleName { name }).await?;
            show_schedule(&s.into_inner(), output);
            Ok(())
        }
        ScheduleCommand::Trigger { name } => trigger(api, output, name).await,
        ScheduleCommand::Next { name, count } => next(api, output, name, count).await,
        ScheduleCommand::Runs { name } => runs(api, output, name).await,
        ScheduleCommand::Backfill(args) => super::backfill::backfill(api, output, *args).await,
    }
}

async fn apply(
    api: &mut Api,
    output: Output,
    file: &std::path::Path,
    prune: bool,
    selector: Vec<(String, String)>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let shown = file.display().to_string();
    let defs =
        parse_with_source(&shown, &text, Utc::now(), SOURCE_APPLY).map_err(Failure::usage)?;
    let selector: HashMap<String, String> = if selector.is_empty() {
        [(SOURCE_LABEL.to_string(), SOURCE_APPLY.to_string())].into()
    } else {
        selector.into_iter().collect()
    };
    let specs: Vec<pb::ScheduleSpec> = defs.iter().map(crate::api::convert_def).collect();
    let r = if prune || specs.len() <= APPLY_CHUNK {
        // One call: pruning needs the whole set at once.
        let request = pb::ApplySchedulesRequest {
            schedules: specs,
            prune,
            prune_selector: selector,
        };
        api.apply_schedules(request).await?.into_inner()
    } else {
        apply_in_chunks(api, output, specs).await?
    };
    match output {
        Output::Json => print_json(&json!({
            "created": r.created, "updated": r.updated,
            "unchanged": r.unchanged, "deleted": r.deleted,
        })),
        Output::Table => println!(
            "{} created, {} updated, {} unchanged, {} deleted",
            r.created, r.updated, r.unchanged, r.deleted
        ),
    }
    Ok(())
}

/// Definitions per call when a large file is applied without pruning, so that progress shows.
const APPLY_CHUNK: usize = 1_000;

/// Applies `specs` a chunk at a time, drawing a bar on a terminal; the counts add up.
async fn apply_in_chunks(
    api: &mut Api,
    output: Output,
    specs: Vec<pb::ScheduleSpec>,
) -> Result<pb::ApplySchedulesResponse, Failure> {
    let draw = matches!(output, Output::Table) && std::io::stderr().is_terminal();
    let total = specs.len();
    let started = std::time::Instant::now();
    let mut sum = pb::ApplySchedulesResponse::default();
    let mut done = 0;
    for chunk in specs.chunks(APPLY_CHUNK) {
        let r = api
            .apply_schedules(pb::ApplySchedulesRequest {
                schedules: chunk.to_vec(),
                prune: false,
                prune_selector: HashMap::new(),
            })
            .await?
            .into_inner();
        sum.created += r.created;
        sum.updated += r.updated;
        sum.unchanged += r.unchanged;
        done += chunk.len();
        if draw {
            eprint!(
                "\r{}",
                super::backfill::progress_bar(done as u64, total as u64, started.elapsed())
            );
        }
    }
    if draw {
        eprintln!();
    }
    Ok(sum)
}

/// Every schedule matching, fetched a page at a time, up to `limit`.
async fn list(
    api: &mut Api,
    output: Output,
    prefix: String,
    label: Vec<(String, String)>,
    limit: Option<usize>,
) -> Result<(), Failure> {
    let mut schedules = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = api
            .list_schedules(pb::ListSchedulesRequest {
                page_size: crate::api::MAX_PAGE_SIZE,
                page_token: page_token.clone(),
                name_prefix: prefix.clone(),
                labels: label.iter().cloned().collect(),
            })
            .await?
            .into_inner();
        schedules.extend(page.schedules);
        if let Some(limit) = limit {
            if schedules.len() >= limit {
                schedules.truncate(limit);
                break;
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    match output {
        Output::Json => print_json(&json!(schedules
            .iter()
            .map(render::schedule_json)
            .collect::<Vec<_>>())),
        Output::Table => table(&render::SCHEDULE_HEADER, &render::schedule_rows(&schedules)),
    }
    Ok(())
}

async fn delete(
    api: &mut Api,
    output: Output,
    name: String,
    revision: Option<u64>,
) -> Result<(), Failure> {
    let r = api
        .delete_schedule(pb::DeleteScheduleRequest {
            name: name.clone(),
            expected_revision: revision,
        })
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&json!({"deleted": name, "revision": r.revision})),
        Output::Table => println!("deleted {name} (revision {})", r.revision),
    }
    Ok(())
}

async fn trigger(api: &mut Api, output: Output, name: String) -> Result<(), Failure> {
    let r = api
        .trigger_schedule(pb::ScheduleName { name: name.clone() })
        .await?
        .into_inner();
    let at = render::instant(&r.scheduled_at).unwrap_or_default();
    match output {
        Output::Json => print_json(&json!({"task_id": r.task_id, "scheduled_at": at})),
        Output::Table => println!("triggered {name}: task id {} at {at}", r.task_id),
    }
    Ok(())
}

async fn next(api: &mut Api, output: Output, name: String, count: u32) -> Result<(), Failure> {
    let r = api
        .preview_schedule(pb::PreviewScheduleRequest {
            target: Some(pb::preview_schedule_request::Target::Name(name)),
            count,
            after: String::new(),
        })
        .await?
        .into_inner();
    let instants: Vec<String> = r
        .occurrences
        .iter()
        .filter_map(|t| render::instant(&Some(*t)))
        .collect();
    match output {
        Output::Json => print_json(&json!(instants)),
        Output::Table => instants.iter().for_each(|i| println!("{i}")),
    }
    Ok(())
}

async fn runs(api: &mut Api, output: Output, name: String) -> Result<(), Failure> {
    let r = api
        .list_runs(pb::ListRunsRequest { name })
        .await?
        .into_inner();
    match output {
        Output::Json => print_json(&json!(r
            .runs
            .iter()
            .map(render::run_json)
            .collect::<Vec<_>>())),
        Output::Table => table(
            &[
                "SCHEDULED",
                "DISPATCHED",
                "OUTCOME",
                "TASK STATE",
                "SKIP REASON",
                "TASK ID",
                "",
            ],
            &render::run_rows(&r.runs),
        ),
    }
    Ok(())
}

pub(super) fn show_schedule(s: &pb::Schedule, output: Output) {
    match output {
        Output::Json => print_json(&render::schedule_json(s)),
        Output::Table => render::schedule_details(s),
    }
}
