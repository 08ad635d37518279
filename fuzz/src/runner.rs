//! Runs a target over generated inputs: each under `catch_unwind`, watched for running far too
//! long, with panics, violations and timeouts recorded as findings (the known ones apart), the
//! input saved and the figures reported.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::known::classify;
use crate::mutate::random_input;
use crate::rng::Rng;
use crate::targets::Target;

/// The stack a target runs on: the 2 MiB of tokio's workers and of every thread the node
/// spawns, so a recursion that would overflow in the node overflows here.
const STACK_BYTES: usize = 2 * 1024 * 1024;

/// Distinct findings kept per target before it stops (the same bug tends to recur).
const MAX_DISTINCT: usize = 20;

/// How a run goes.
#[derive(Clone, Debug)]
pub struct Options {
    pub inputs: u64,
    pub seed: u64,
    /// The index of the first input (to rerun one input: `first_index = i`, `inputs = 1`).
    pub first_index: u64,
    /// An input running longer than this is a finding; the process exits at once, since the
    /// input cannot be stopped.
    pub time_limit: Duration,
    /// Stops a target after this long, whatever `inputs` says.
    pub max_total: Option<Duration>,
    /// Where findings are saved (`<dir>/<target>/…`); `None` saves nothing.
    pub crash_dir: Option<PathBuf>,
    /// Progress lines on stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            inputs: 10_000,
            seed: 1,
            first_index: 0,
            time_limit: Duration::from_secs(10),
            max_total: None,
            crash_dir: None,
            progress: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Panic,
    Violation,
    Timeout,
}

/// One input that broke a promise.
#[derive(Clone, Debug)]
pub struct Finding {
    pub target: &'static str,
    pub seed: u64,
    /// `None` for an input given from a file.
    pub index: Option<u64>,
    pub kind: Kind,
    pub message: String,
    pub input: Vec<u8>,
}

impl Finding {
    /// The finding, its reproduction and its input (escaped, cut at 4,000 bytes).
    pub fn describe(&self) -> String {
        let shown: String = self.input.escape_ascii().to_string();
        let cut = shown.chars().take(4000).collect::<String>();
        let more = if cut.len() < shown.len() { " …" } else { "" };
        let how = match self.index {
            Some(index) => format!(
                "belfry-fuzz {} --seed {} --index {index}",
                self.target, self.seed
            ),
            None => format!("belfry-fuzz {} --replay <file>", self.target),
        };
        format!(
            "{:?} in target {} (seed {}, input {}): {}\n  reproduce: {how}\n  input ({} bytes): b\"{cut}\"{more}",
            self.kind,
            self.target,
            self.seed,
            self.index.map_or("from file".into(), |i| i.to_string()),
            self.message,
            self.input.len(),
        )
    }

    /// The first line of the message: findings with the same one are the same bug.
    fn signature(&self) -> &str {
        self.message.lines().next().unwrap_or_default()
    }

    /// Saves the input (`.bin`) and its description (`.txt`) under `dir/<target>/`.
    pub fn save(&self, dir: &Path, prefix: &str) -> std::io::Result<PathBuf> {
        let dir = dir.join(self.target);
        std::fs::create_dir_all(&dir)?;
        let stem = format!(
            "{prefix}{}-seed{}-input{}",
            format!("{:?}", self.kind).to_lowercase(),
            self.seed,
            self.index.map_or("file".into(), |i| i.to_string())
        );
        let path = dir.join(format!("{stem}.bin"));
        std::fs::write(&path, &self.input)?;
        std::fs::write(dir.join(format!("{stem}.txt")), self.describe())?;
        Ok(path)
    }
}

/// A known finding and how often it was met.
#[derive(Clone, Debug)]
pub struct KnownCount {
    pub label: &'static str,
    pub count: u64,
    pub first: Finding,
}

/// What a target's run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub target: &'static str,
    pub inputs: u64,
    pub elapsed: Duration,
    /// Distinct findings (by the first line of their message) and how often each was met.
    pub crashes: Vec<(Finding, u64)>,
    pub known: Vec<KnownCount>,
}

impl Report {
    pub fn crash_count(&self) -> u64 {
        self.crashes.iter().map(|(_, n)| n).sum()
    }

    pub fn summary(&self) -> String {
        let known: u64 = self.known.iter().map(|k| k.count).sum();
        let secs = self.elapsed.as_secs_f64();
        format!(
            "{:<15} {:>9} inputs {:>9.1} s {:>9.0}/s   crashes {:>3} ({} distinct)   known {}",
            self.target,
            self.inputs,
            secs,
            self.inputs as f64 / secs.max(1e-9),
            self.crash_count(),
            self.crashes.len(),
            known,
        )
    }
}

thread_local! {
    /// Set on the thread running inputs: its panics are recorded, not printed.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) the hook that records the panics of input-running threads.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Input `index` of `target` under `seed`: one in ten random, a few seeds as they are, the
/// rest from the target's generator.
pub fn generate(target: &dyn Target, corpus: &[Vec<u8>], seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::for_input(seed, target.name(), index);
    match rng.below(20) {
        0 | 1 => random_input(&mut rng, target.dictionary()),
        2 if !corpus.is_empty() => rng.pick(corpus).clone(),
        _ => target.generate(&mut rng, corpus),
    }
}

/// Runs one input; `None` when it kept every promise.
pub fn run_one(target: &dyn Target, input: &[u8]) -> Option<(Kind, String)> {
    install_panic_hook();
    CAPTURING.with(|c| c.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    CAPTURING.with(|c| c.set(false));
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(violation)) => Some((Kind::Violation, violation.0)),
        Err(_) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| "panic".into());
            Some((Kind::Panic, message))
        }
    }
}

/// What the watchdog sees: the input running and since when.
struct Running {
    index: u64,
    since: Instant,
    input: Vec<u8>,
}

/// Runs `target` over `options.inputs` generated inputs.
pub fn run_target(target: &dyn Target, options: &Options) -> Report {
    let running: Mutex<Option<Running>> = Mutex::new(None);
    let finished = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| watchdog(target.name(), options, &running, &finished));
        let worker = std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name()))
            .stack_size(STACK_BYTES)
            .spawn_scoped(scope, || run_inputs(target, options, &running));
        let report = match worker.map(|w| w.join()) {
            Ok(Ok(report)) => report,
            Ok(Err(_)) | Err(_) => {
                finished.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("the fuzz worker of {} died outside an input", target.name());
            }
        };
        finished.store(true, std::sync::atomic::Ordering::Relaxed);
        report
    })
}

fn run_inputs(target: &dyn Target, options: &Options, running: &Mutex<Option<Running>>) -> Report {
    let corpus = target.corpus();
    let started = Instant::now();
    let mut last_progress = started;
    let mut report = Report {
        target: target.name(),
        inputs: 0,
        elapsed: Duration::ZERO,
        crashes: Vec::new(),
        known: Vec::new(),
    };
    for index in options.first_index..options.first_index.saturating_add(options.inputs) {
        if options
            .max_total
            .is_some_and(|max| started.elapsed() >= max)
            || report.crashes.len() >= MAX_DISTINCT
        {
            break;
        }
        let input = generate(target, &corpus, options.seed, index);
        if let Ok(mut slot) = running.lock() {
            *slot = Some(Running {
                index,
                since: Instant::now(),
                input: input.clone(),
            });
        }
        let outcome = run_one(target, &input);
        report.inputs += 1;
        if let Some((kind, message)) = outcome {
            let finding = Finding {
                target: target.name(),
                seed: options.seed,
                index: Some(index),
                kind,
                message,
                input,
            };
            record(&mut report, finding, options);
        }
        if options.progress && last_progress.elapsed() >= Duration::from_secs(30) {
            last_progress = Instant::now();
            eprintln!("  {} … {}", report.target, report.summary().trim_start());
        }
        report.elapsed = started.elapsed();
    }
    if let Ok(mut slot) = running.lock() {
        *slot = None;
    }
    report.elapsed = started.elapsed();
    report
}

fn record(report: &mut Report, finding: Finding, options: &Options) {
    if let Some(known) = classify(&finding.message) {
        match report.known.iter_mut().find(|k| k.label == known.label) {
            Some(seen) => seen.count += 1,
            None => {
                if let Some(dir) = &options.crash_dir {
                    let _ = finding.save(&dir.join("known"), "");
                }
                report.known.push(KnownCount {
                    label: known.label,
                    count: 1,
                    first: finding,
                });
            }
        }
        return;
    }
    if let Some((_, count)) = report
        .crashes
        .iter_mut()
        .find(|(seen, _)| seen.signature() == finding.signature())
    {
        *count += 1;
        return;
    }
    eprintln!("CRASH {}", finding.describe());
    if let Some(dir) = &options.crash_dir {
        match finding.save(dir, "") {
            Ok(path) => eprintln!("  saved: {}", path.display()),
            Err(e) => eprintln!("  could not save it: {e}"),
        }
    }
    report.crashes.push((finding, 1));
}

/// Exits the process when an input has run longer than the limit: it cannot be stopped, and
/// the run's figures would be meaningless after it.
fn watchdog(
    target: &'static str,
    options: &Options,
    running: &Mutex<Option<Running>>,
    finished: &std::sync::atomic::AtomicBool,
) {
    while !finished.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let Ok(slot) = running.lock() else {
            return;
        };
        let Some(run) = slot.as_ref() else {
            continue;
        };
        if run.since.elapsed() > options.time_limit {
            let finding = Finding {
                target,
                seed: options.seed,
                index: Some(run.index),
                kind: Kind::Timeout,
                message: format!("still running after {:?}", options.time_limit),
                input: run.input.clone(),
            };
            eprintln!("CRASH {}", finding.describe());
            if let Some(dir) = &options.crash_dir {
                let _ = finding.save(dir, "");
            }
            std::process::exit(3);
        }
    }
}
