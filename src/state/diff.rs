//! The one diff between a declared set of definitions and the state: the commands that make
//! the state hold exactly that set (bulk `ApplySchedules` and the schedules file both use it).
//!
//! Invariant: a new name is created only if it is still free when the command applies
//! (`expected_revision: Some(0)`), and a change or deletion applies only to the revision that
//! was read, so a schedule someone else created or changed meanwhile is never overwritten: the
//! command is refused and reported. Pure.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Command, ScheduleDef, StateData};

/// What a declared set changes.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    pub commands: Vec<Command>,
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
    pub deleted: u32,
}

/// The commands that bring `state` in line with `declared`: a put for every new or changed
/// definition and, with `prune`, a delete for every schedule carrying all of `prune`'s labels
/// that `declared` does not name. `incarnation(i)` is the id the `i`-th definition gets if it
/// is created. `last_run_at` counts only for a creation: a schedule differing only in it is
/// unchanged.
pub fn diff(
    state: &StateData,
    declared: &[ScheduleDef],
    prune: Option<&BTreeMap<String, String>>,
    now: DateTime<Utc>,
    mut incarnation: impl FnMut(usize) -> Uuid,
) -> Changes {
    let mut changes = Changes::default();
    for (i, def) in declared.iter().enumerate() {
        let expected_revision = match state.schedules().get(&*def.name) {
            Some(record) if record.def.same_definition(def) => {
                changes.unchanged += 1;
                continue;
            }
            Some(record) => {
                changes.updated += 1;
                record.revision
            }
            None => {
                changes.created += 1;
                0
            }
        };
        changes.commands.push(Command::Put {
            def: def.clone(),
            expected_revision: Some(expected_revision),
            incarnation: incarnation(i),
            at: now,
        });
    }
    if let Some(selector) = prune {
        let keep: BTreeSet<&str> = declared.iter().map(|d| &*d.name).collect();
        for (name, record) in state.schedules() {
            let selected = selector
                .iter()
                .all(|(k, v)| record.def.labels.get(k) == Some(v));
            if selected && !keep.contains(&name[..]) {
                changes.deleted += 1;
                changes.commands.push(Command::Delete {
                    name: name.to_string(),
                    expected_revision: Some(record.revision),
                    at: now,
                });
            }
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{CommandResult, Rejection};

    fn t() -> DateTime<Utc> {
        DateTime::from_timestamp(1_750_000_000, 0).unwrap()
    }

    fn def(name: &str, every: &str, team: &str) -> ScheduleDef {
        serde_json::from_value(serde_json::json!({
            "name": name, "task": "t", "spec": {"every": every}, "labels": {"team": team},
        }))
        .unwrap()
    }

    fn selector(team: &str) -> BTreeMap<String, String> {
        [("team".to_string(), team.to_string())].into()
    }

    #[test]
    fn creates_changes_and_prunes_only_the_selected() {
        let mut state = StateData::default();
        let declared = [def("a", "1m", "x"), def("b", "1m", "x")];
        let first = diff(&state, &declared, Some(&selector("x")), t(), |i| {
            Uuid::from_u128(i as u128 + 1)
        });
        assert_eq!((first.created, first.updated, first.deleted), (2, 0, 0));
        for command in &first.commands {
            state.apply(command);
        }
        assert_eq!(state.schedules()["b"].incarnation, Uuid::from_u128(2));
        state.apply(&Command::Put {
            def: def("other-team", "1m", "y"),
            expected_revision: Some(0),
            incarnation: Uuid::nil(),
            at: t(),
        });
        let again = diff(&state, &declared, Some(&selector("x")), t(), |_| {
            Uuid::nil()
        });
        assert_eq!(again.commands, vec![]);
        assert_eq!(again.unchanged, 2);

        let next = diff(
            &state,
            &[def("a", "2m", "x")],
            Some(&selector("x")),
            t(),
            |_| Uuid::nil(),
        );
        assert_eq!((next.updated, next.deleted), (1, 1));
        assert!(matches!(
            &next.commands[..],
            [Command::Put { expected_revision: Some(1), .. }, Command::Delete { name, .. }] if name == "b"
        ));
        assert!(diff(&state, &[], None, t(), |_| Uuid::nil())
            .commands
            .is_empty());
    }

    #[test]
    fn a_name_taken_between_the_diff_and_its_commit_is_not_overwritten() {
        // The diff sees the name free; someone else creates it before the put applies.
        let mut state = StateData::default();
        let changes = diff(&state, &[def("race", "1m", "file")], None, t(), |_| {
            Uuid::from_u128(7)
        });
        state.apply(&Command::Put {
            def: def("race", "1h", "api"),
            expected_revision: Some(0),
            incarnation: Uuid::from_u128(1),
            at: t(),
        });
        let result = state.apply(&changes.commands[0]);
        assert_eq!(
            result,
            CommandResult::Rejected(Rejection::AlreadyExists("race".into()))
        );
        let kept = &state.schedules()["race"];
        assert_eq!(kept.incarnation, Uuid::from_u128(1));
        assert_eq!(kept.def.spec.every.as_deref(), Some("1h"));
    }
}
