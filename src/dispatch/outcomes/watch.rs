//! Which dispatched runs to ask the result backend about, and when: each run is read shortly
//! after its instant and then less and less often, until a final state is known, the run has
//! left its schedule's history, or it is older than the horizon.
//!
//! Invariant: pure (instants are given, nothing is read or sent), and every run is followed for
//! a bounded number of reads: the gap doubles up to `MAX_GAP`, and the horizon ends it. It must
//! not decide what an outcome changes (that is `state`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use crate::state::control::TaskState;

/// The first read, after the run's instant: most tasks of a periodic schedule are short.
const FIRST_GAP: Duration = Duration::seconds(1);
/// The longest gap between two reads of one run.
const MAX_GAP: Duration = Duration::seconds(30);
/// The longest gap for a run its schedule's overlap policy counts: the next occurrence waits
/// for its end, so it is seen within this.
const MAX_GAP_COUNTED: Duration = Duration::seconds(2);

/// A run being followed.
#[derive(Clone, Debug)]
struct Followed {
    schedule: Arc<str>,
    /// Its instant: the horizon counts from it.
    scheduled_at: DateTime<Utc>,
    gap: Duration,
    max_gap: Duration,
    next_read: DateTime<Utc>,
    /// The last state committed (or known from the state), so a state is reported once.
    known: Option<TaskState>,
}

/// A run to read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ToRead {
    pub task_id: Uuid,
    pub schedule: Arc<str>,
}

/// The runs awaiting an outcome, by when each is next read.
#[derive(Debug)]
pub(crate) struct Watchlist {
    runs: HashMap<Uuid, Followed>,
    queue: BTreeSet<(DateTime<Utc>, Uuid)>,
    horizon: Duration,
}

impl Watchlist {
    pub(crate) fn new(horizon: Duration) -> Watchlist {
        Watchlist {
            runs: HashMap::new(),
            queue: BTreeSet::new(),
            horizon,
        }
    }

    /// How many runs are followed.
    pub(crate) fn len(&self) -> usize {
        self.runs.len()
    }

    /// Follows a dispatched run (a run already followed keeps its place); `counted`: its
    /// schedule's overlap policy waits for it, so it is read at least every `MAX_GAP_COUNTED`.
    pub(crate) fn follow(
        &mut self,
        task_id: Uuid,
        schedule: Arc<str>,
        scheduled_at: DateTime<Utc>,
        known: Option<TaskState>,
        counted: bool,
        now: DateTime<Utc>,
    ) {
        if self.runs.contains_key(&task_id) || known.is_some_and(TaskState::is_final) {
            return;
        }
        let next_read = (scheduled_at + FIRST_GAP).max(now);
        self.queue.insert((next_read, task_id));
        self.runs.insert(
            task_id,
            Followed {
                schedule,
                scheduled_at,
                gap: FIRST_GAP,
                max_gap: if counted { MAX_GAP_COUNTED } else { MAX_GAP },
                next_read,
                known,
            },
        );
    }

    /// When the next read falls due.
    pub(crate) fn next_read(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Up to `limit` runs whose read is due at `now`, taken out of line (`read` puts each
    /// back). Runs past the horizon are dropped instead.
    pub(crate) fn due(&mut self, now: DateTime<Utc>, limit: usize) -> Vec<ToRead> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(&(at, task_id)) = self.queue.first() else {
                break;
            };
            if at > now {
                break;
            }
            self.queue.pop_first();
            let Some(run) = self.runs.get(&task_id) else {
                continue;
            };
            if now - run.scheduled_at > self.horizon {
                self.runs.remove(&task_id);
                continue;
            }
            due.push(ToRead {
                task_id,
                schedule: run.schedule.clone(),
            });
        }
        due
    }

    /// Takes what was read of a run: returns the state to commit when it is new. A final state
    /// ends the following; otherwise the next read is a doubled gap later.
    pub(crate) fn read(
        &mut self,
        task_id: Uuid,
        state: Option<TaskState>,
        now: DateTime<Utc>,
    ) -> Option<TaskState> {
        let run = self.runs.get_mut(&task_id)?;
        let news = state.filter(|s| run.known != Some(*s));
        if state.is_some_and(TaskState::is_final) {
            self.runs.remove(&task_id);
            return news;
        }
        if news.is_some() {
            run.known = news;
        }
        run.gap = (run.gap * 2).min(run.max_gap);
        run.next_read = now + run.gap;
        self.queue.insert((run.next_read, task_id));
        news
    }

    /// Stops following a run (its state was committed as final, or it left the history).
    pub(crate) fn forget(&mut self, task_id: Uuid) {
        if let Some(run) = self.runs.remove(&task_id) {
            self.queue.remove(&(run.next_read, task_id));
        }
    }

    /// A committed non-final state failed to commit: report it again at the next read.
    pub(crate) fn commit_failed(&mut self, task_id: Uuid) {
        if let Some(run) = self.runs.get_mut(&task_id) {
            run.known = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn a_run_is_read_a_second_after_its_instant_then_less_often() {
        let mut list = Watchlist::new(Duration::hours(1));
        list.follow(id(1), "a".into(), t(0), None, false, t(0));
        assert!(list.due(t(0), 10).is_empty());
        let due = list.due(t(1), 10);
        assert_eq!(
            due,
            vec![ToRead {
                task_id: id(1),
                schedule: "a".into()
            }]
        );
        // Nothing stored yet: read again after 2 s, then 4, 8, 16, 30, 30.
        let mut at = t(1);
        let mut gaps = Vec::new();
        for _ in 0..6 {
            assert_eq!(list.read(id(1), None, at), None);
            let next = list.next_read().unwrap();
            gaps.push((next - at).num_seconds());
            at = next;
            assert_eq!(list.due(at, 10).len(), 1);
        }
        assert_eq!(gaps, vec![2, 4, 8, 16, 30, 30]);
        // A run an overlap policy waits for is read at least every 2 s.
        list.follow(id(2), "b".into(), t(0), None, true, t(0));
        list.forget(id(1));
        let mut at = t(1);
        let mut gaps = Vec::new();
        for _ in 0..4 {
            assert_eq!(list.due(at, 10).len(), 1);
            list.read(id(2), None, at);
            let next = list.next_read().unwrap();
            gaps.push((next - at).num_seconds());
            at = next;
        }
        assert_eq!(gaps, vec![2, 2, 2, 2]);
    }

    #[test]
    fn each_state_is_reported_once_and_a_final_one_ends_the_following() {
        let mut list = Watchlist::new(Duration::hours(1));
        list.follow(id(1), "a".into(), t(0), None, false, t(0));
        list.due(t(1), 10);
        assert_eq!(
            list.read(id(1), Some(TaskState::Started), t(1)),
            Some(TaskState::Started)
        );
        list.due(t(3), 10);
        assert_eq!(list.read(id(1), Some(TaskState::Started), t(3)), None);
        list.due(t(7), 10);
        assert_eq!(
            list.read(id(1), Some(TaskState::Success), t(7)),
            Some(TaskState::Success)
        );
        assert_eq!(list.len(), 0);
        assert_eq!(list.next_read(), None);
        // A run known to be final is not followed at all.
        list.follow(
            id(2),
            "a".into(),
            t(0),
            Some(TaskState::Failure),
            false,
            t(9),
        );
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn runs_past_the_horizon_or_forgotten_are_dropped() {
        let mut list = Watchlist::new(Duration::seconds(60));
        list.follow(id(1), "a".into(), t(0), None, false, t(0));
        list.follow(id(2), "b".into(), t(0), None, false, t(0));
        list.forget(id(2));
        assert_eq!(list.len(), 1);
        list.due(t(1), 10);
        list.read(id(1), None, t(1));
        assert!(list.due(t(61), 10).is_empty(), "past the horizon");
        assert_eq!(list.len(), 0);
    }

    #[test]
    fn due_takes_at_most_the_limit_in_order() {
        let mut list = Watchlist::new(Duration::hours(1));
        for n in 0..5 {
            list.follow(id(n), "a".into(), t(n as i64), None, false, t(0));
        }
        let due: Vec<Uuid> = list.due(t(10), 3).into_iter().map(|r| r.task_id).collect();
        assert_eq!(due, vec![id(0), id(1), id(2)]);
        assert_eq!(list.due(t(10), 3).len(), 2);
    }
}
