//! What `belfry dev` prints once the cluster starts, from several threads, in an order a
//! reader can follow.
//!
//! Invariant: lines never interleave, and a worker line about a task appears after that task's
//! dispatch line (or on its own once it has waited a second for one that never comes). It must
//! not decide what is worth printing: the monitor, the worker and the node logs do.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many recent dispatches are remembered: far more than a worker can lag behind.
const REMEMBERED: usize = 4_096;
/// How long a worker line waits for its task's dispatch line before it is printed anyway (a
/// task some other producer sent never gets one).
const HOLD: Duration = Duration::from_secs(1);

/// The shared printer.
#[derive(Default)]
pub(super) struct Output {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Task ids whose dispatch line is printed, oldest first.
    shown: VecDeque<String>,
    /// Worker lines waiting for their task's dispatch line: (since, task id, line).
    held: Vec<(Instant, String, String)>,
}

impl Output {
    /// A line about the cluster itself.
    pub(super) fn note(&self, line: &str) {
        let _guard = self.lock();
        println!("{line}");
    }

    /// A dispatch line, followed by any worker line about the same task that came first.
    pub(super) fn dispatch(&self, task_id: &str, line: &str) {
        let mut state = self.lock();
        println!("{line}");
        if state.shown.len() == REMEMBERED {
            state.shown.pop_front();
        }
        state.shown.push_back(task_id.to_string());
        state.held.retain(|(_, id, held)| {
            if id == task_id {
                println!("{held}");
            }
            id != task_id
        });
    }

    /// A worker line, about task `task_id` if it names one.
    pub(super) fn worker(&self, task_id: Option<&str>, line: &str) {
        let mut state = self.lock();
        match task_id {
            Some(id) if !state.shown.iter().any(|shown| shown == id) => {
                state
                    .held
                    .push((Instant::now(), id.to_string(), line.to_string()));
            }
            _ => println!("{line}"),
        }
    }

    /// Prints the worker lines that waited longer than `HOLD`.
    pub(super) fn flush_stale(&self) {
        let mut state = self.lock();
        state.held.retain(|(since, _, held)| {
            let stale = since.elapsed() >= HOLD;
            if stale {
                println!("{held}");
            }
            !stale
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while printing leaves the state usable: it is only ids and lines.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
