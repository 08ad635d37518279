//! `belfry schedule backfill NAME --from T1 --to T2`: starts a backfill through the API, then
//! follows its progress; on a terminal as a bar with counts, rate and ETA.
//!
//! Invariant: everything goes through the API (the leader checks and counts the range); the
//! progress is read from the schedule, so it shows the same after a failover. It must not
//! send anything itself.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;

use super::remote::{Failure, Output};
use super::render::{instant, print_json};
use super::schedule::Api;
use crate::api::pb;

#[derive(Args, Debug)]
pub(super) struct BackfillArgs {
    name: String,
    /// The first instant of the range (RFC 3339), included.
    #[arg(long)]
    from: String,
    /// The last instant of the range (RFC 3339), included; not in the future.
    #[arg(long)]
    to: String,
    /// Count and list the occurrences without sending anything.
    #[arg(long)]
    dry_run: bool,
    /// Occurrences sent per second (default 10).
    #[arg(long)]
    rate: Option<u32>,
    /// Apply the schedule's overlap policy to the backfilled runs.
    #[arg(long)]
    overlap: bool,
    /// Return once the backfill has started, without following it.
    #[arg(long)]
    no_wait: bool,
}

pub(super) async fn backfill(
    api: &mut Api,
    output: Output,
    a: BackfillArgs,
) -> Result<(), Failure> {
    let name = a.name.clone();
    let started = api
        .backfill_schedule(pb::BackfillRequest {
            name: a.name,
            from: a.from,
            to: a.to,
            dry_run: a.dry_run,
            rate_per_second: a.rate.unwrap_or(0),
            apply_overlap: a.overlap,
        })
        .await?
        .into_inner();
    if a.dry_run {
        let listed: Vec<Option<String>> = started
            .occurrences
            .iter()
            .map(|t| instant(&Some(*t)))
            .collect();
        match output {
            Output::Json => print_json(&json!({"total": started.total, "occurrences": listed})),
            Output::Table => {
                for at in listed.iter().flatten() {
                    println!("{at}");
                }
                println!("{} occurrences (dry run: nothing sent)", started.total);
            }
        }
        return Ok(());
    }
    if a.no_wait {
        return finish(output, &name, started.total, None);
    }
    let progress = follow(api, &name, output).await?;
    finish(output, &name, started.total, progress.as_ref())
}

/// Polls the schedule until its backfill finishes, drawing the bar on a terminal.
async fn follow(
    api: &mut Api,
    name: &str,
    output: Output,
) -> Result<Option<pb::BackfillProgress>, Failure> {
    let draw = matches!(output, Output::Table) && std::io::stderr().is_terminal();
    let since = Instant::now();
    loop {
        let schedule = api
            .get_schedule(pb::GetScheduleRequest {
                name: name.to_string(),
            })
            .await?
            .into_inner();
        let progress = schedule.backfill;
        if draw {
            if let Some(p) = &progress {
                eprint!("\r{}", bar(p, since.elapsed()));
                let _ = std::io::stderr().flush();
            }
        }
        if progress.as_ref().is_none_or(|p| p.finished_at.is_some()) {
            if draw {
                eprintln!();
            }
            return Ok(progress);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn bar(p: &pb::BackfillProgress, elapsed: Duration) -> String {
    progress_bar(p.done, p.total, elapsed)
}

/// `[#########-----------]  45/100  9.8/s  ETA 6s`
pub(super) fn progress_bar(done: u64, total: u64, elapsed: Duration) -> String {
    const WIDTH: u64 = 30;
    let shown = total.max(1);
    let filled = (done.min(shown) * WIDTH / shown) as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let left = total.saturating_sub(done);
    let eta = if rate > 0.0 {
        format!("{:.0}s", left as f64 / rate)
    } else {
        "-".into()
    };
    format!(
        "[{}{}] {}/{}  {:.1}/s  ETA {eta}   ",
        "#".repeat(filled),
        "-".repeat(WIDTH as usize - filled),
        done,
        total,
        rate
    )
}

fn finish(
    output: Output,
    name: &str,
    total: u64,
    progress: Option<&pb::BackfillProgress>,
) -> Result<(), Failure> {
    let (done, sent, finished) =
        progress.map_or((0, 0, false), |p| (p.done, p.sent, p.finished_at.is_some()));
    match output {
        Output::Json => print_json(&json!({
            "schedule": name, "total": total, "done": done, "sent": sent, "finished": finished,
        })),
        Output::Table if finished => println!(
            "backfill of {name}: {done} of {total} occurrences taken, {sent} sent (the others were sent already or decided by the overlap policy)"
        ),
        Output::Table => println!("backfill of {name} started: {total} occurrences"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_shows_counts_rate_and_eta() {
        let p = pb::BackfillProgress {
            total: 100,
            done: 50,
            ..Default::default()
        };
        let text = bar(&p, Duration::from_secs(5));
        assert!(
            text.starts_with(&format!("[{}{}]", "#".repeat(15), "-".repeat(15))),
            "{text}"
        );
        assert!(
            text.contains("50/100") && text.contains("10.0/s") && text.contains("ETA 5s"),
            "{text}"
        );
    }
}
