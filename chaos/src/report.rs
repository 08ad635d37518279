//! The run's outputs: a human-readable summary on stdout and in `summary.txt`, and
//! `report.json` with everything (faults, operations, per-schedule rows, failures).
//!
//! Owns formatting only; must not decide anything.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::checker::{Verdict, FAULT_SETTLE};
use crate::history::History;

#[derive(Serialize)]
struct Json<'a> {
    ok: bool,
    seed: u64,
    nodes: u64,
    command: String,
    history: &'a History,
    verdict: &'a Verdict,
}

fn ms(v: Option<i64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The summary text.
pub fn summary(history: &History, verdict: &Verdict, command: &str) -> String {
    let mut out = String::new();
    header(&mut out, history, command);
    table(&mut out, verdict);
    lateness(&mut out, verdict);
    clock_faults(&mut out, verdict);
    worker_losses(&mut out, verdict);
    let _ = writeln!(out);
    outcome(&mut out, verdict);
    out
}

/// The run's shape, how to replay it, and the faults injected by kind.
fn header(out: &mut String, history: &History, command: &str) {
    let _ = writeln!(
        out,
        "belfry-chaos: {} nodes, seed {}, {} faults injected, {} schedule operations",
        history.nodes,
        history.seed,
        history.faults.len(),
        history.ops.len()
    );
    let _ = writeln!(out, "replay: {command}");
    let mut by_kind: std::collections::BTreeMap<&str, usize> = Default::default();
    for f in &history.faults {
        *by_kind.entry(f.nemesis.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    let _ = writeln!(out, "faults: {}", kinds.join(", "));
}

/// One row per incarnation, then the totals.
fn table(out: &mut String, verdict: &Verdict) {
    let t = &verdict.totals;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<30} {:>9} {:>8} {:>9} {:>4} {:>4} {:>4} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "schedule",
        "required",
        "optional",
        "delivered",
        "dup",
        "miss",
        "unex",
        "skipped",
        "belfry",
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    for row in &verdict.rows {
        let skipped: usize = row.skipped_explained.values().sum();
        let belfry = match (row.belfry_skipped, row.skip_accounting_ok) {
            (Some(n), Some(true)) => format!("{n}"),
            (Some(n), _) => format!("{n}!"),
            _ => "-".into(),
        };
        let short = &row.incarnation[..row.incarnation.len().min(4)];
        let _ = writeln!(
            out,
            "{:<30} {:>9} {:>8} {:>9} {:>4} {:>4} {:>4} {:>8} {:>7} {:>7} {:>7} {:>7}",
            format!("{}#{short}", row.schedule),
            row.required,
            row.optional,
            row.delivered,
            row.duplicated,
            row.missing,
            row.unexpected,
            skipped,
            belfry,
            ms(row.lateness_ms_p50),
            ms(row.lateness_ms_p99),
            ms(row.lateness_ms_max)
        );
    }
    let _ = writeln!(
        out,
        "{:<30} {:>9} {:>8} {:>9} {:>4} {:>4} {:>4} {:>8} {:>7} {:>7} {:>7} {:>7}",
        "TOTAL",
        t.required,
        t.optional,
        t.delivered,
        t.duplicated,
        t.missing,
        t.unexpected,
        t.skipped_explained,
        "",
        ms(t.lateness_ms_p50),
        ms(t.lateness_ms_p99),
        ms(t.lateness_ms_max)
    );
}

fn lateness(out: &mut String, verdict: &Verdict) {
    let t = &verdict.totals;
    let under_faults = format!("under faults (and {} s after)", FAULT_SETTLE.num_seconds());
    for (label, l) in [
        ("steady state", &t.steady),
        (under_faults.as_str(), &t.under_faults),
    ] {
        let _ = writeln!(
            out,
            "lateness {label}: {} deliveries, p50 {} ms, p99 {} ms, max {} ms",
            l.deliveries,
            ms(l.p50_ms),
            ms(l.p99_ms),
            ms(l.max_ms)
        );
    }
}

/// What fell due during each clock fault, if there were any.
fn clock_faults(out: &mut String, verdict: &Verdict) {
    let t = &verdict.totals;
    if !verdict.clock_effects.is_empty() {
        let _ = writeln!(
            out,
            "clock faults: {} early deliveries in the run; what fell due during each (and 3 s after):",
            t.early
        );
        for c in &verdict.clock_effects {
            let _ = writeln!(
                out,
                "  {:>8} at {}: {} deliveries, max lateness {} ms, earliest {} ms",
                format!("{:+} ms", c.offset_ms),
                c.start.format("%H:%M:%S"),
                c.deliveries,
                ms(c.max_lateness_ms),
                ms(c.earliest_ms)
            );
        }
    }
}

fn worker_losses(out: &mut String, verdict: &Verdict) {
    if !verdict.worker_losses.is_empty() {
        let _ = writeln!(
            out,
            "\nreached Redis, then lost by the Celery worker ({}): kombu takes a message with BRPOP and\nrecords it as unacknowledged in a second command; Redis was killed between the two.",
            verdict.worker_losses.len()
        );
        for loss in &verdict.worker_losses {
            let _ = writeln!(out, "  {loss}");
        }
    }
}

/// PASS with what was proved, or FAIL with the first fifty problems.
fn outcome(out: &mut String, verdict: &Verdict) {
    let t = &verdict.totals;
    if verdict.ok {
        let _ = writeln!(
            out,
            "PASS: {} required occurrences delivered exactly once{}, {} optional ones explained, 0 duplicates, 0 unexplained missing",
            t.required - t.worker_lost,
            if t.worker_lost > 0 {
                format!(" (and {} that reached Redis lost by the Celery worker)", t.worker_lost)
            } else {
                String::new()
            },
            t.optional
        );
    } else {
        let _ = writeln!(out, "FAIL: {} problems", verdict.failures.len());
        for f in verdict.failures.iter().take(50) {
            let _ = writeln!(out, "  {f}");
        }
        if verdict.failures.len() > 50 {
            let _ = writeln!(
                out,
                "  … {} more in report.json",
                verdict.failures.len() - 50
            );
        }
    }
}

/// Writes `summary.txt` and `report.json` into `dir`.
pub fn write(
    dir: &Path,
    history: &History,
    verdict: &Verdict,
    command: &str,
) -> std::io::Result<String> {
    let text = summary(history, verdict, command);
    std::fs::write(dir.join("summary.txt"), &text)?;
    let json = Json {
        ok: verdict.ok,
        seed: history.seed,
        nodes: history.nodes,
        command: command.to_string(),
        history,
        verdict,
    };
    let json = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("report.json"), json)?;
    Ok(text)
}
