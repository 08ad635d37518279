//! `belfry-fuzz <target|all|list> [--inputs N] [--seed S] [--index I] [--time-limit SECS]
//! [--max-total SECS] [--crash-dir DIR] [--replay FILE]`: see README.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use belfry_fuzz::runner::{run_one, run_target, Finding, Options};
use belfry_fuzz::targets::{self, Target};

const USAGE: &str = "usage: belfry-fuzz <target|all|list> [--inputs N] [--seed S] [--index I] \
[--time-limit SECS] [--max-total SECS] [--crash-dir DIR] [--replay FILE]";

struct Cli {
    which: String,
    options: Options,
    replay: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Cli, String> {
    let which = args.first().ok_or(USAGE)?.clone();
    let mut options = Options {
        crash_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crashes")),
        progress: true,
        ..Options::default()
    };
    let mut replay = None;
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let number = |text: &String| {
            text.replace('_', "")
                .parse::<u64>()
                .map_err(|_| format!("{flag}: {text:?} is not a whole number"))
        };
        match flag.as_str() {
            "--inputs" => options.inputs = number(value()?)?,
            "--seed" => options.seed = number(value()?)?,
            "--index" => {
                options.first_index = number(value()?)?;
                options.inputs = 1;
            }
            "--time-limit" => options.time_limit = Duration::from_secs(number(value()?)?),
            "--max-total" => options.max_total = Some(Duration::from_secs(number(value()?)?)),
            "--crash-dir" => options.crash_dir = Some(PathBuf::from(value()?)),
            "--replay" => replay = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}\n{USAGE}")),
        }
    }
    Ok(Cli {
        which,
        options,
        replay,
    })
}

fn replay(target: &dyn Target, path: &PathBuf, options: &Options) -> ExitCode {
    let input = match std::fs::read(path) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match run_one(target, &input) {
        None => {
            println!("{}: no finding", target.name());
            ExitCode::SUCCESS
        }
        Some((kind, message)) => {
            let finding = Finding {
                target: target.name(),
                seed: options.seed,
                index: None,
                kind,
                message,
                input,
            };
            println!("{}", finding.describe());
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let chosen: Vec<Box<dyn Target>> = match cli.which.as_str() {
        "list" => {
            for target in targets::all() {
                println!("{:<15} {}", target.name(), target.about());
            }
            return ExitCode::SUCCESS;
        }
        "all" => targets::all(),
        name => match targets::by_name(name) {
            Some(target) => vec![target],
            None => {
                eprintln!("no target {name:?} (belfry-fuzz list)");
                return ExitCode::from(2);
            }
        },
    };
    if let Some(path) = &cli.replay {
        let [target] = chosen.as_slice() else {
            eprintln!("--replay needs one target");
            return ExitCode::from(2);
        };
        return replay(target.as_ref(), path, &cli.options);
    }
    println!(
        "belfry-fuzz: seed {}, inputs {}..{} per target",
        cli.options.seed,
        cli.options.first_index,
        cli.options.first_index.saturating_add(cli.options.inputs)
    );
    let mut crashes = 0;
    let mut reports = Vec::new();
    for target in &chosen {
        let report = run_target(target.as_ref(), &cli.options);
        println!("{}", report.summary());
        crashes += report.crash_count();
        reports.push(report);
    }
    for report in &reports {
        for known in &report.known {
            println!(
                "known in {} ({}×): {}\n  first: {}",
                report.target,
                known.count,
                known.label,
                known.first.describe()
            );
        }
    }
    let total: u64 = reports.iter().map(|r| r.inputs).sum();
    let elapsed: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    println!("total: {total} inputs in {elapsed:.1} s, {crashes} crashes");
    if crashes > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
