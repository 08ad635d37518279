//! The last hour of this node's dispatch rate and lateness, and its recent leader changes, in
//! memory for the console's charts: counters bumped where dispatches are recorded, folded into
//! one sample every 10 s.
//!
//! Invariant: bounded: at most `SAMPLES` samples (one hour) and `LEADER_CHANGES` changes,
//! oldest dropped first; recording is a few relaxed atomic adds. It must not change what it
//! observes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::raft::{NodeId, Raft};

/// The period of one sample.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Samples kept: one hour.
pub(crate) const SAMPLES: usize = 360;
/// Leader changes kept.
const LEADER_CHANGES: usize = 20;

static DISPATCHED: AtomicU64 = AtomicU64::new(0);
static LATENESS_SUM_US: AtomicU64 = AtomicU64::new(0);
static LATENESS_MAX_US: AtomicU64 = AtomicU64::new(0);

/// Records one message pushed to Redis by this node, `lateness` after its instant.
pub(crate) fn record_dispatch(lateness: chrono::Duration) {
    let us = lateness.num_microseconds().unwrap_or(i64::MAX).max(0) as u64;
    DISPATCHED.fetch_add(1, Ordering::Relaxed);
    LATENESS_SUM_US.fetch_add(us, Ordering::Relaxed);
    LATENESS_MAX_US.fetch_max(us, Ordering::Relaxed);
}

/// One period's dispatches.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sample {
    pub at: DateTime<Utc>,
    /// Messages per second over the period.
    pub rate: f64,
    /// Mean and largest lateness, in seconds (0 without dispatches).
    pub lateness_mean: f64,
    pub lateness_max: f64,
}

/// A leader this node saw take office.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LeaderChange {
    pub at: DateTime<Utc>,
    pub term: u64,
    pub leader: Option<NodeId>,
}

/// The samples and leader changes.
#[derive(Default)]
pub(crate) struct Window {
    samples: Mutex<VecDeque<Sample>>,
    leaders: Mutex<VecDeque<LeaderChange>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, bound: usize) {
    if queue.len() == bound {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Window {
    pub(crate) fn samples(&self) -> Vec<Sample> {
        lock(&self.samples).iter().copied().collect()
    }

    /// Newest first.
    pub(crate) fn leader_changes(&self) -> Vec<LeaderChange> {
        lock(&self.leaders).iter().rev().copied().collect()
    }

    fn take_sample(&self, at: DateTime<Utc>, period: Duration) {
        let count = DISPATCHED.swap(0, Ordering::Relaxed);
        let sum = LATENESS_SUM_US.swap(0, Ordering::Relaxed);
        let max = LATENESS_MAX_US.swap(0, Ordering::Relaxed);
        let sample = Sample {
            at,
            rate: count as f64 / period.as_secs_f64().max(0.001),
            lateness_mean: if count == 0 {
                0.0
            } else {
                sum as f64 / count as f64 / 1e6
            },
            lateness_max: max as f64 / 1e6,
        };
        push_bounded(&mut lock(&self.samples), sample, SAMPLES);
    }

    fn note_leader(&self, term: u64, leader: Option<NodeId>) {
        let mut leaders = lock(&self.leaders);
        let same = leaders
            .back()
            .is_some_and(|last| last.term == term && last.leader == leader);
        if !same {
            let change = LeaderChange {
                at: Utc::now(),
                term,
                leader,
            };
            push_bounded(&mut leaders, change, LEADER_CHANGES);
        }
    }
}

/// Samples every `SAMPLE_EVERY` and notes leader changes, until Raft's metrics close.
pub(crate) async fn keep_window(window: std::sync::Arc<Window>, raft: Raft) {
    let mut metrics = raft.metrics();
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let (term, leader) = {
                    let m = metrics.borrow_and_update();
                    (m.current_term, m.current_leader)
                };
                if leader.is_some() {
                    window.note_leader(term, leader);
                }
            }
            _ = ticker.tick() => {
                let now = tokio::time::Instant::now();
                window.take_sample(Utc::now(), now - last);
                last = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_bounded_and_samples_fold_the_counters() {
        let window = Window::default();
        record_dispatch(chrono::Duration::milliseconds(100));
        record_dispatch(chrono::Duration::milliseconds(300));
        window.take_sample(Utc::now(), Duration::from_secs(10));
        let first = window.samples()[0];
        // Other tests of this binary may record too; at least these two are in.
        assert!(first.rate >= 0.2);
        assert!(first.lateness_max >= 0.3);
        for _ in 0..SAMPLES + 3 {
            window.take_sample(Utc::now(), Duration::from_secs(10));
        }
        assert_eq!(window.samples().len(), SAMPLES);
        for term in 0..30 {
            window.note_leader(term, Some(1));
        }
        window.note_leader(29, Some(1));
        assert_eq!(window.leader_changes().len(), LEADER_CHANGES);
        assert_eq!(window.leader_changes()[0].term, 29);
    }
}
