//! The pusher's place in the outbox during one term: which committed occurrences wait to be
//! pushed, in what order, and which are in flight (pushed, their `Ack` not yet committed).
//!
//! Invariant: an occurrence is handed out only once its instant (delayed by its schedule's
//! jitter, `OutboxEntry::due_at`) has come, in (instant, commit) order, never while it is in flight, and again after a failed push or a failed `Ack`. Pure:
//! no clock (the caller passes `now`), no Redis, no Raft, no waiting.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::state::OutboxEntry;

/// Where an occurrence stands in line: its instant (with jitter), then its commit sequence
/// number.
pub(crate) type Place = (DateTime<Utc>, u64);

/// One occurrence handed out to be pushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Taken {
    pub place: Place,
    pub task_id: Uuid,
}

#[derive(Debug, Default)]
pub(crate) struct OutboxCursor {
    /// Outbox entries not pushed yet in this term.
    waiting: BTreeMap<Place, Uuid>,
    /// The commit sequence number of the last entry taken in: each pass reads only what was
    /// committed since, however long the outbox.
    taken_in: u64,
    in_flight: HashSet<Uuid>,
}

impl OutboxCursor {
    /// The commit sequence number up to which entries were taken in.
    pub(crate) fn taken_in(&self) -> u64 {
        self.taken_in
    }

    /// Takes in entries committed after `taken_in()`, given in commit order.
    pub(crate) fn take_in<'a>(&mut self, committed: impl IntoIterator<Item = &'a OutboxEntry>) {
        for entry in committed {
            self.waiting
                .insert((entry.due_at(), entry.seq), entry.task_id);
            self.taken_in = self.taken_in.max(entry.seq);
        }
    }

    /// Up to `max` occurrences due by `now`, in order, that are still in the outbox
    /// (`pending`) and not in flight. Those no longer pending (acknowledged meanwhile) or in
    /// flight leave the line; an in-flight one comes back if its `Ack` fails.
    pub(crate) fn take_due(
        &mut self,
        now: DateTime<Utc>,
        max: usize,
        pending: impl Fn(&Uuid) -> bool,
    ) -> Vec<Taken> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(first) = self.waiting.first_entry() else {
                break;
            };
            if first.key().0 > now {
                break;
            }
            let (place, task_id) = first.remove_entry();
            if pending(&task_id) && !self.in_flight.contains(&task_id) {
                taken.push(Taken { place, task_id });
            }
        }
        taken
    }

    /// The instant of the next occurrence waiting, if any.
    pub(crate) fn next_due(&self) -> Option<DateTime<Utc>> {
        self.waiting.first_key_value().map(|((at, _), _)| *at)
    }

    /// These were pushed: in flight until their `Ack` commits or fails.
    pub(crate) fn pushed(&mut self, ids: impl IntoIterator<Item = Uuid>) {
        self.in_flight.extend(ids);
    }

    /// A push of these failed: back in line, in their places.
    pub(crate) fn push_failed(&mut self, taken: impl IntoIterator<Item = Taken>) {
        for Taken { place, task_id } in taken {
            self.waiting.insert(place, task_id);
        }
    }

    /// The `Ack` of `ids` committed (`acknowledged`) or failed. After a failure they are still
    /// in the outbox: the whole outbox is taken in again, so they are pushed again (the markers
    /// stop duplicates) and acknowledged then.
    pub(crate) fn ack_done(&mut self, ids: &[Uuid], acknowledged: bool) {
        for id in ids {
            self.in_flight.remove(id);
        }
        if !acknowledged {
            self.waiting.clear();
            self.taken_in = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::ScheduleDef;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000 + secs, 0).unwrap()
    }

    fn entry(seq: u64, at: i64) -> OutboxEntry {
        let def: ScheduleDef = serde_json::from_value(serde_json::json!({
            "name": "s", "task": "t", "spec": {"every": "1s"},
        }))
        .unwrap();
        OutboxEntry {
            seq,
            schedule: "s".into(),
            scheduled_at: t(at),
            task_id: Uuid::from_u128(seq.into()),
            def: Arc::new(def),
            manual: false,
            backfill: false,
            committed_at: t(0),
        }
    }

    fn ids(taken: &[Taken]) -> Vec<u128> {
        taken.iter().map(|t| t.task_id.as_u128()).collect()
    }

    #[test]
    fn never_before_the_instant_and_in_instant_then_commit_order() {
        let mut cursor = OutboxCursor::default();
        // Committed in order 1..=4; instants out of that order.
        let entries = [entry(1, 5), entry(2, 1), entry(3, 1), entry(4, 9)];
        cursor.take_in(&entries);
        assert_eq!(cursor.taken_in(), 4);
        assert!(cursor.take_due(t(0), 10, |_| true).is_empty());
        assert_eq!(cursor.next_due(), Some(t(1)));
        assert_eq!(ids(&cursor.take_due(t(5), 10, |_| true)), [2, 3, 1]);
        assert_eq!(cursor.next_due(), Some(t(9)));
        assert_eq!(ids(&cursor.take_due(t(60), 10, |_| true)), [4]);
    }

    #[test]
    fn takes_in_only_what_was_committed_since_and_at_most_max() {
        let mut cursor = OutboxCursor::default();
        cursor.take_in(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        assert_eq!(ids(&cursor.take_due(t(1), 2, |_| true)), [1, 2]);
        cursor.take_in(&[entry(4, 0)]);
        assert_eq!(ids(&cursor.take_due(t(1), 2, |_| true)), [4, 3]);
    }

    #[test]
    fn skips_what_is_acknowledged_or_in_flight() {
        let mut cursor = OutboxCursor::default();
        cursor.take_in(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        cursor.pushed([Uuid::from_u128(3)]);
        let acknowledged = Uuid::from_u128(1);
        assert_eq!(
            ids(&cursor.take_due(t(1), 10, |id| *id != acknowledged)),
            [2]
        );
        assert_eq!(cursor.next_due(), None);
    }

    #[test]
    fn a_failed_push_goes_back_in_its_place() {
        let mut cursor = OutboxCursor::default();
        cursor.take_in(&[entry(1, 1), entry(2, 2), entry(3, 3)]);
        let taken = cursor.take_due(t(2), 10, |_| true);
        assert_eq!(ids(&taken), [1, 2]);
        cursor.push_failed(taken);
        assert_eq!(ids(&cursor.take_due(t(3), 10, |_| true)), [1, 2, 3]);
    }

    #[test]
    fn a_failed_ack_retakes_the_whole_outbox_and_a_committed_one_does_not() {
        let entries = [entry(1, 1), entry(2, 1)];
        let mut cursor = OutboxCursor::default();
        cursor.take_in(&entries);
        let taken = cursor.take_due(t(1), 10, |_| true);
        cursor.pushed(taken.iter().map(|t| t.task_id));
        cursor.ack_done(&[Uuid::from_u128(1)], true);
        assert_eq!(cursor.taken_in(), 2);
        cursor.ack_done(&[Uuid::from_u128(2)], false);
        assert_eq!(cursor.taken_in(), 0, "taken in again from the start");
        cursor.take_in(&entries[1..]);
        assert_eq!(ids(&cursor.take_due(t(1), 10, |_| true)), [2]);
    }
}
