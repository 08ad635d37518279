//! What this node's dispatcher is doing, for readiness: whether a leader is actually
//! dispatching, and if not, why.
//!
//! Invariant: a leader reports ready only while its term is confirmed, its planner and pusher
//! run, neither has failed recently, and the quorum's time is known and its clock within the
//! bound; any node whose clock is beyond the bound is not ready. Written by the dispatcher, read by `/readyz` and
//! gRPC health; it must not steer dispatch itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long after a dispatcher task failed the node still reports it: a task that keeps
/// failing and being restarted never looks healthy between two failures.
pub(crate) const FAILURE_SHOWN_FOR: Duration = Duration::from_secs(30);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// Not leading (or leadership ended).
    Idle,
    /// Claimed leadership of `term`, not yet confirmed by a quorum.
    Confirming { term: u64 },
    /// Dispatching in `term`.
    Dispatching { term: u64 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// The last task failure: when, which task, why.
    failure: Option<(Instant, &'static str, String)>,
    /// Why dispatch waits for time: the quorum's time is unknown or this clock is beyond it.
    clock: Option<String>,
    /// This node's clock is beyond the bound (leader or not), and by how much.
    clock_beyond: Option<String>,
}

/// Shared between the dispatcher and the readiness checks (cheap to clone).
#[derive(Clone, Debug)]
pub struct DispatchHealth(Arc<Mutex<Inner>>);

impl Default for DispatchHealth {
    fn default() -> Self {
        DispatchHealth(Arc::new(Mutex::new(Inner {
            phase: Phase::Idle,
            failure: None,
            clock: None,
            clock_beyond: None,
        })))
    }
}

impl DispatchHealth {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn confirming(&self, term: u64) {
        self.with(|inner| {
            inner.phase = Phase::Confirming { term };
            // A pause of an earlier term is no reason in this one.
            inner.clock = None;
        });
    }

    pub fn dispatching(&self, term: u64) {
        self.with(|inner| inner.phase = Phase::Dispatching { term });
    }

    /// Leadership of `term` ended (a later term's state is left alone).
    pub fn ended(&self, term: u64) {
        self.with(|inner| {
            if matches!(inner.phase, Phase::Confirming { term: t } | Phase::Dispatching { term: t } if t == term)
            {
                inner.phase = Phase::Idle;
            }
        });
    }

    /// A dispatcher task stopped while it should have run; it is being restarted.
    pub fn failed(&self, task: &'static str, reason: String) {
        self.with(|inner| inner.failure = Some((Instant::now(), task, reason)));
    }

    /// Dispatch waits for time (`Some(why)`), or goes on (`None`).
    pub fn clock_wait(&self, reason: Option<String>) {
        self.with(|inner| inner.clock = reason);
    }

    /// This node's clock is beyond the bound (`Some(why)`), or within it (`None`).
    pub fn clock_beyond(&self, reason: Option<String>) {
        self.with(|inner| inner.clock_beyond = reason);
    }

    /// Why this node is not ready whatever its role: its clock is beyond the bound.
    pub fn clock_problem(&self) -> Option<String> {
        self.with(|inner| inner.clock_beyond.clone())
    }

    /// Why this node, which leads `term`, is not dispatching as it should; `None` when it is.
    pub fn not_dispatching_because(&self, term: u64) -> Option<String> {
        self.with(|inner| {
            let phase = match inner.phase {
                Phase::Dispatching { term: t } if t == term => None,
                Phase::Confirming { term: t } if t == term => Some(format!(
                    "leader of term {term} has not confirmed its leadership with a quorum yet"
                )),
                _ => Some(format!("leader of term {term} is not dispatching")),
            };
            let clock = inner
                .clock
                .as_ref()
                .map(|why| format!("leader of term {term} paused dispatch: {why}"));
            phase.or(clock).or_else(|| match &inner.failure {
                Some((at, task, reason)) if at.elapsed() < FAILURE_SHOWN_FOR => Some(format!(
                    "dispatcher {task} failed {} s ago and was restarted: {reason}",
                    at.elapsed().as_secs()
                )),
                _ => None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_only_while_dispatching_its_own_term_without_recent_failures() {
        let health = DispatchHealth::default();
        assert!(health.not_dispatching_because(3).is_some());
        health.confirming(3);
        assert!(health
            .not_dispatching_because(3)
            .unwrap()
            .contains("not confirmed"));
        health.dispatching(3);
        assert_eq!(health.not_dispatching_because(3), None);
        assert!(health.not_dispatching_because(4).is_some(), "another term");
        health.failed("planner", "boom".into());
        let reason = health.not_dispatching_because(3).unwrap();
        assert!(
            reason.contains("planner") && reason.contains("boom"),
            "{reason}"
        );
        health.ended(2);
        assert!(health.not_dispatching_because(3).is_some(), "still failed");
        health.with(|inner| {
            inner.failure = inner.failure.take().map(|(at, task, reason)| {
                (at.checked_sub(FAILURE_SHOWN_FOR).unwrap(), task, reason)
            })
        });
        assert_eq!(health.not_dispatching_because(3), None);
        health.ended(3);
        assert!(health.not_dispatching_because(3).is_some());
    }

    #[test]
    fn a_clock_pause_is_a_reason_until_it_ends() {
        let health = DispatchHealth::default();
        health.dispatching(2);
        health.clock_wait(Some("no majority of voters agrees on the time".into()));
        let reason = health.not_dispatching_because(2).expect("paused");
        assert!(reason.contains("paused dispatch: no majority"), "{reason}");
        health.clock_wait(None);
        assert_eq!(health.not_dispatching_because(2), None);
        assert_eq!(health.clock_problem(), None);
        health.clock_beyond(Some("clock +2300 ms off".into()));
        assert!(health.clock_problem().is_some());
    }
}
