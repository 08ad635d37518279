//! Searching the schedules for a console page: text (name or task), `key=value` labels, state
//! and kind filters, three orders, offset pages; one pass over the state at most.
//!
//! Invariant: name order walks the name-ordered map and stops once the page is full; next-run
//! order walks the `due` index (then the schedules without a next run, by name) and stops
//! likewise; task order keeps a bounded heap of `offset + size + 1` entries. Nothing sorts or
//! copies the whole set. It must not change the state or read a clock.

use std::collections::BinaryHeap;

use crate::state::{ScheduleRecord, StateData};

/// The order of a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortBy {
    #[default]
    Name,
    /// Next run first; schedules without one after, by name.
    Next,
    /// Task, then name.
    Task,
}

/// What a schedule is doing, as pages show and filter it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleState {
    /// Enabled, with a next run.
    Active,
    Paused,
    /// Enabled, with no run ahead (a past `once`, an ended range, `max_runs` reached).
    Finished,
    /// Enabled but set aside: its spec cannot be planned.
    Faulted,
}

impl ScheduleState {
    pub fn of(record: &ScheduleRecord) -> ScheduleState {
        if !record.def.enabled {
            ScheduleState::Paused
        } else if record.next.is_some() {
            ScheduleState::Active
        } else if record.fault.is_some() || record.spec().is_none() {
            ScheduleState::Faulted
        } else {
            ScheduleState::Finished
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ScheduleState::Active => "active",
            ScheduleState::Paused => "paused",
            ScheduleState::Finished => "finished",
            ScheduleState::Faulted => "faulted",
        }
    }
}

/// A spec's kind, as pages filter it (`crontab` counts as `cron`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecKind {
    Cron,
    Every,
    Once,
    Solar,
}

impl SpecKind {
    pub fn of(record: &ScheduleRecord) -> SpecKind {
        let spec = &record.def.spec;
        if spec.every.is_some() {
            SpecKind::Every
        } else if spec.once.is_some() {
            SpecKind::Once
        } else if spec.solar.event.is_some() {
            SpecKind::Solar
        } else {
            SpecKind::Cron
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SpecKind::Cron => "cron",
            SpecKind::Every => "every",
            SpecKind::Once => "once",
            SpecKind::Solar => "solar",
        }
    }
}

/// Which schedules a search page holds.
#[derive(Clone, Debug, Default)]
pub struct SearchQuery {
    /// Words each found (ASCII case-insensitively) in the name or the task.
    pub words: Vec<String>,
    /// Labels each schedule must carry.
    pub labels: Vec<(String, String)>,
    pub state: Option<ScheduleState>,
    pub kind: Option<SpecKind>,
    pub sort: SortBy,
    /// Matching schedules to pass over before the page.
    pub offset: usize,
    pub size: usize,
}

/// One page of a search.
#[derive(Debug)]
pub struct SearchPage<T> {
    pub rows: Vec<T>,
    /// Whether more matching schedules follow the page.
    pub more: bool,
    /// Schedules in the state, matching or not.
    pub total: usize,
}

/// Whether `hay` contains `needle` ignoring ASCII case (`needle` already lower-case).
fn contains_ci(hay: &str, needle: &str) -> bool {
    let (hay, needle) = (hay.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || hay.windows(needle.len()).any(|w| {
            w.iter()
                .zip(needle)
                .all(|(a, b)| a.to_ascii_lowercase() == *b)
        })
}

impl SearchQuery {
    fn matches(&self, record: &ScheduleRecord) -> bool {
        let def = &record.def;
        self.state.is_none_or(|s| ScheduleState::of(record) == s)
            && self.kind.is_none_or(|k| SpecKind::of(record) == k)
            && self
                .labels
                .iter()
                .all(|(k, v)| def.labels.get(k) == Some(v.as_str()))
            && self
                .words
                .iter()
                .all(|w| contains_ci(&def.name, w) || contains_ci(&def.task, w))
    }

    /// Rows of matching records in the query's order, past the offset.
    pub(super) fn page<T>(
        &self,
        data: &StateData,
        f: impl Fn(&ScheduleRecord) -> T,
    ) -> SearchPage<T> {
        let want = self.offset.saturating_add(self.size);
        let (rows, more) = match self.sort {
            SortBy::Name => self.take(data.schedules().values().map(|r| &**r), &f),
            SortBy::Next => {
                // Only active schedules have a next run: a filter for another state skips them.
                let skip_due = self.state.is_some_and(|s| s != ScheduleState::Active);
                let with_next = data
                    .due()
                    .iter()
                    .take(if skip_due { 0 } else { usize::MAX })
                    .filter_map(|(_, name)| data.schedules().get(name).map(|r| &**r));
                let without = data
                    .schedules()
                    .values()
                    .filter(|r| r.next.is_none())
                    .map(|r| &**r);
                self.take(with_next.chain(without), &f)
            }
            SortBy::Task => {
                let mut heap: BinaryHeap<(&str, &str)> = BinaryHeap::with_capacity(want + 1);
                for record in data.schedules().values().filter(|r| self.matches(r)) {
                    let key = (&*record.def.task, &*record.def.name);
                    if heap.len() <= want {
                        heap.push(key);
                    } else if heap.peek().is_some_and(|top| key < *top) {
                        heap.pop();
                        heap.push(key);
                    }
                }
                let more = heap.len() > want;
                let sorted = heap.into_sorted_vec();
                let rows = sorted
                    .iter()
                    .skip(self.offset)
                    .take(self.size)
                    .filter_map(|(_, name)| data.schedules().get(*name).map(|r| f(r)))
                    .collect();
                (rows, more)
            }
        };
        SearchPage {
            rows,
            more,
            total: data.schedules().len(),
        }
    }

    /// The page from records already in order: matching ones past the offset, and whether one
    /// more follows.
    fn take<'a, T>(
        &self,
        records: impl Iterator<Item = &'a ScheduleRecord>,
        f: &impl Fn(&ScheduleRecord) -> T,
    ) -> (Vec<T>, bool) {
        let mut matching = records.filter(|r| self.matches(r)).skip(self.offset);
        let rows: Vec<T> = matching.by_ref().take(self.size).map(f).collect();
        let more = matching.next().is_some();
        (rows, more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_containment() {
        assert!(contains_ci("Reports.Daily", "daily"));
        assert!(contains_ci("abc", ""));
        assert!(!contains_ci("ab", "abc"));
        assert!(contains_ci("x-ÉTÉ-y", "-y"));
    }
}
