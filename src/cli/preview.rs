//! `belfry preview`: the next occurrences of a spec, computed offline with the time engine.
//!
//! Invariant: the occurrences are the ones a node would compute for the same spec (the same
//! `Spec::parse`, bounds check and `upcoming`), and an invalid spec is refused naming its flag.
//! It must not reach a server.

use std::io::Write;
use std::process::ExitCode;

use chrono::Utc;
use clap::Args;

use super::fail;
use super::spec_flags::SpecFlags;
use crate::schedule::{parse_bounded_instant, Spec};

/// The most occurrences one call prints.
const MAX_COUNT: usize = 100_000;

#[derive(Args, Debug)]
pub(super) struct PreviewArgs {
    #[command(flatten)]
    spec: SpecFlags,
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
    let input = args.spec.into_input();
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
