//! Apply, command by command: revisions, the monotonic `last_fire` rule, the outbox and history.

use super::*;
use crate::schedule::SpecInput;
use crate::state::command::{
    CatchupPolicy, Command, CommandResult, FireItem, Rejection, ScheduleDef, SkipItem, SkipReason,
};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn def(name: &str, every: &str) -> ScheduleDef {
    ScheduleDef {
        name: name.into(),
        task: "tasks.tick".into(),
        spec: SpecInput {
            every: Some(every.into()),
            ..Default::default()
        },
        args: vec![],
        kwargs: Default::default(),
        options: Default::default(),
        catchup: CatchupPolicy::default(),
        enabled: true,
        labels: Default::default(),
        description: Default::default(),
        last_run_at: None,
        control: None,
    }
}

fn put(state: &mut StateData, def: ScheduleDef, expected: Option<u64>, at: &str) -> CommandResult {
    state.apply(&Command::Put {
        def,
        expected_revision: expected,
        incarnation: Uuid::from_u128(7),
        at: t(at),
    })
}

fn fire_item(name: &str, at: &str, id: u128) -> FireItem {
    FireItem {
        schedule: name.into(),
        incarnation: Uuid::from_u128(7),
        scheduled_at: t(at),
        task_id: Uuid::from_u128(id),
        manual: false,
        backfill: false,
    }
}

fn fire(state: &mut StateData, fires: Vec<FireItem>, skips: Vec<SkipItem>) -> CommandResult {
    state.apply(&Command::Fire {
        fires,
        skips,
        faults: vec![],
        at: t("2025-01-01T00:10:00Z"),
    })
}

#[test]
fn create_update_and_delete_follow_revisions() {
    let mut s = StateData::default();
    assert_eq!(
        put(&mut s, def("a", "1m"), Some(0), "2025-01-01T00:00:00Z"),
        CommandResult::Revision(1)
    );
    assert_eq!(
        put(&mut s, def("a", "1m"), Some(0), "2025-01-01T00:00:00Z"),
        CommandResult::Rejected(Rejection::AlreadyExists("a".into()))
    );
    assert_eq!(
        put(&mut s, def("a", "2m"), Some(5), "2025-01-01T00:00:00Z"),
        CommandResult::Rejected(Rejection::StaleRevision {
            name: "a".into(),
            expected: 5,
            actual: 1
        })
    );
    assert_eq!(
        put(&mut s, def("a", "2m"), Some(1), "2025-01-01T00:01:00Z"),
        CommandResult::Revision(2)
    );
    assert_eq!(
        put(&mut s, def("a", "3m"), None, "2025-01-01T00:02:00Z"),
        CommandResult::Revision(3)
    );
    assert_eq!(
        put(&mut s, def("b", "1m"), Some(3), "2025-01-01T00:00:00Z"),
        CommandResult::Rejected(Rejection::NotFound("b".into()))
    );
    let delete = |s: &mut StateData, expected| {
        s.apply(&Command::Delete {
            name: "a".into(),
            expected_revision: expected,
            at: t("2025-01-01T00:03:00Z"),
        })
    };
    assert!(matches!(
        delete(&mut s, Some(1)),
        CommandResult::Rejected(Rejection::StaleRevision { .. })
    ));
    assert_eq!(delete(&mut s, Some(3)), CommandResult::Revision(3));
    assert!(s.schedules.is_empty() && s.due.is_empty());
    assert_eq!(
        delete(&mut s, None),
        CommandResult::Rejected(Rejection::NotFound("a".into()))
    );
}

#[test]
fn an_invalid_spec_is_rejected_at_apply_too() {
    let mut s = StateData::default();
    let mut bad = def("a", "1m");
    bad.spec = SpecInput {
        cron: Some("0 0 30 2 *".into()),
        ..Default::default()
    };
    assert!(matches!(
        put(&mut s, bad, None, "2025-01-01T00:00:00Z"),
        CommandResult::Rejected(Rejection::Invalid(_))
    ));
    assert!(s.schedules.is_empty());
}

#[test]
fn the_due_index_tracks_the_next_occurrence() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    // An interval anchored at creation fires at creation first.
    assert_eq!(
        s.due.first(),
        Some(&(t("2025-01-01T00:00:00Z"), Arc::from("a")))
    );
    fire(
        &mut s,
        vec![fire_item("a", "2025-01-01T00:00:00Z", 1)],
        vec![],
    );
    assert_eq!(
        s.due.iter().collect::<Vec<_>>(),
        [&(t("2025-01-01T00:01:00Z"), Arc::from("a"))]
    );
}

#[test]
fn a_fire_is_accepted_once_and_only_forward() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    let first = fire_item("a", "2025-01-01T00:01:00Z", 1);
    assert_eq!(
        fire(&mut s, vec![first.clone()], vec![]),
        CommandResult::Fired {
            accepted: 1,
            skipped: 0,
            overlap_skipped: 0,
            held: 0
        }
    );
    // The same proposal again (a retried or stale leader): nothing changes.
    assert_eq!(
        fire(&mut s, vec![first], vec![]),
        CommandResult::Fired {
            accepted: 0,
            skipped: 0,
            overlap_skipped: 0,
            held: 0
        }
    );
    // Older than last_fire: refused.
    assert_eq!(
        fire(
            &mut s,
            vec![fire_item("a", "2025-01-01T00:00:00Z", 2)],
            vec![]
        ),
        CommandResult::Fired {
            accepted: 0,
            skipped: 0,
            overlap_skipped: 0,
            held: 0
        }
    );
    // Another incarnation (the schedule was deleted and re-created): refused.
    let mut other = fire_item("a", "2025-01-01T00:02:00Z", 3);
    other.incarnation = Uuid::from_u128(8);
    assert_eq!(
        fire(&mut s, vec![other], vec![]),
        CommandResult::Fired {
            accepted: 0,
            skipped: 0,
            overlap_skipped: 0,
            held: 0
        }
    );
    assert_eq!(s.outbox.len(), 1);
    let record = &s.schedules["a"];
    assert_eq!(
        (record.fired, record.last_fire),
        (1, Some(t("2025-01-01T00:01:00Z")))
    );
}

#[test]
fn skips_advance_and_are_recorded_with_their_reason() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    let skip = SkipItem {
        schedule: "a".into(),
        incarnation: Uuid::from_u128(7),
        scheduled_at: t("2025-01-01T00:00:00Z"),
        reason: SkipReason::SupersededByLatest,
        count: 1,
        cause: None,
    };
    let result = fire(
        &mut s,
        vec![fire_item("a", "2025-01-01T00:01:00Z", 1)],
        vec![skip],
    );
    assert_eq!(
        result,
        CommandResult::Fired {
            accepted: 1,
            skipped: 1,
            overlap_skipped: 0,
            held: 0
        }
    );
    let record = &s.schedules["a"];
    assert_eq!(record.skipped, 1);
    assert_eq!(
        record.history[0].outcome,
        RunOutcome::Skipped(SkipReason::SupersededByLatest)
    );
    assert_eq!(record.history[1].outcome, RunOutcome::Pending);
}

#[test]
fn acks_empty_the_outbox_and_complete_the_history() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    fire(
        &mut s,
        vec![
            fire_item("a", "2025-01-01T00:00:00Z", 1),
            fire_item("a", "2025-01-01T00:01:00Z", 2),
        ],
        vec![],
    );
    assert_eq!(
        s.outbox_in_order().map(|e| e.task_id).collect::<Vec<_>>(),
        [Uuid::from_u128(1), Uuid::from_u128(2)]
    );
    // The pusher reads only what was committed after the last entry it took in.
    let first_seq = s.outbox[&Uuid::from_u128(1)].seq;
    assert_eq!(
        s.outbox_after(first_seq)
            .map(|e| e.task_id)
            .collect::<Vec<_>>(),
        [Uuid::from_u128(2)]
    );
    assert_eq!(s.outbox_after(0).count(), 2);
    // Each entry keeps the definition it was committed under, for the pusher to render.
    assert_eq!(&*s.outbox[&Uuid::from_u128(1)].def.name, "a");
    let ack = Command::Ack {
        task_ids: vec![Uuid::from_u128(1)],
        already_sent: vec![Uuid::from_u128(2)],
        at: t("2025-01-01T00:01:00.005Z"),
    };
    assert_eq!(s.apply(&ack), CommandResult::Acked(2));
    assert_eq!(s.apply(&ack), CommandResult::Acked(0));
    assert!(s.outbox.is_empty());
    let history = &s.schedules["a"].history;
    assert_eq!(history[0].outcome, RunOutcome::Sent);
    assert_eq!(history[1].outcome, RunOutcome::AlreadySent);
    assert_eq!(
        history[0].dispatched_at,
        Some(t("2025-01-01T00:01:00.005Z"))
    );
}

#[test]
fn history_is_bounded() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1s"), None, "2025-01-01T00:00:00Z");
    let fires = (0..25)
        .map(|i| fire_item("a", &format!("2025-01-01T00:00:{i:02}Z"), i as u128 + 1))
        .collect();
    fire(&mut s, fires, vec![]);
    assert_eq!(s.schedules["a"].history.len(), HISTORY_LEN);
    assert_eq!(
        s.schedules["a"].history.back().unwrap().scheduled_at,
        t("2025-01-01T00:00:24Z")
    );
}

#[test]
fn pause_leaves_the_plan_and_resume_returns_to_it() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    fire(
        &mut s,
        vec![fire_item("a", "2025-01-01T00:00:00Z", 1)],
        vec![],
    );
    let set = |s: &mut StateData, enabled| {
        s.apply(&Command::SetEnabled {
            name: "a".into(),
            enabled,
            at: t("2025-01-01T00:05:00Z"),
        })
    };
    assert_eq!(set(&mut s, false), CommandResult::Revision(2));
    assert!(s.due.is_empty());
    assert_eq!(set(&mut s, true), CommandResult::Revision(3));
    // The occurrences missed while paused are still there for the catch-up policy to judge.
    assert_eq!(
        s.due.first(),
        Some(&(t("2025-01-01T00:01:00Z"), Arc::from("a")))
    );
}

#[test]
fn a_changed_spec_counts_from_the_change() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    let mut cron = def("a", "1m");
    cron.spec = SpecInput {
        cron: Some("*/10 * * * *".into()),
        ..Default::default()
    };
    put(&mut s, cron, None, "2025-01-01T05:03:00Z");
    assert_eq!(
        s.due.first(),
        Some(&(t("2025-01-01T05:10:00Z"), Arc::from("a")))
    );
}

#[test]
fn snapshots_round_trip_and_apply_is_deterministic() {
    let commands = [
        Command::Put {
            def: def("a", "1m"),
            expected_revision: None,
            incarnation: Uuid::from_u128(7),
            at: t("2025-01-01T00:00:00Z"),
        },
        Command::Put {
            def: def("b", "30s"),
            expected_revision: None,
            incarnation: Uuid::from_u128(9),
            at: t("2025-01-01T00:00:10Z"),
        },
        Command::Fire {
            fires: (0..50)
                .map(|i| fire_item("a", &format!("2025-01-01T00:{i:02}:00Z"), 1000 - i as u128))
                .collect(),
            skips: vec![],
            faults: vec![],
            at: t("2025-01-01T00:00:00Z"),
        },
    ];
    let run = || {
        let mut s = StateData::default();
        let results: Vec<CommandResult> = commands.iter().map(|c| s.apply(c)).collect();
        (s, results)
    };
    let (first, results_a) = run();
    let (second, results_b) = run();
    assert_eq!(results_a, results_b);
    let bytes = serde_json::to_vec(&first).unwrap();
    assert_eq!(bytes, serde_json::to_vec(&second).unwrap());
    let mut restored: StateData = serde_json::from_slice(&bytes).unwrap();
    restored.rebuild_indexes();
    assert_eq!(restored.due, first.due);
    assert_eq!(restored.schedules, first.schedules);
}

#[test]
fn a_snapshot_copy_keeps_the_state_it_was_taken_at_while_applies_go_on() {
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), Some(0), "2025-01-01T00:00:00Z");
    put(&mut s, def("b", "1m"), Some(0), "2025-01-01T00:00:00Z");
    let before = serde_json::to_vec(&s).unwrap();
    let copy = s.snapshot_copy();
    // Writes after the copy: a fire (run state and outbox), an edit, a delete, a create.
    fire(
        &mut s,
        vec![fire_item("a", "2025-01-01T00:01:00Z", 1)],
        vec![],
    );
    put(&mut s, def("b", "2m"), Some(1), "2025-01-01T00:02:00Z");
    s.apply(&Command::Delete {
        name: "a".into(),
        expected_revision: None,
        at: t("2025-01-01T00:03:00Z"),
    });
    put(&mut s, def("c", "1m"), Some(0), "2025-01-01T00:03:00Z");
    assert_eq!(serde_json::to_vec(&copy).unwrap(), before);
    assert_eq!(copy.schedules["a"].fired, 0);
    assert_eq!(copy.schedules["b"].revision, 1);
    assert!(copy.outbox.is_empty());
    // The live state did change, and a copy loaded back plans like the state it came from.
    assert_eq!(s.schedules["b"].revision, 2);
    assert!(!s.schedules.contains_key("a"));
    let mut restored: StateData = serde_json::from_slice(&before).unwrap();
    restored.rebuild_indexes();
    assert_eq!(restored.due.len(), 2);
}

#[test]
fn the_paused_count_follows_every_change_that_pauses_or_resumes() {
    fn set_enabled(s: &mut StateData, name: &str, enabled: bool) {
        s.apply(&Command::SetEnabled {
            name: name.into(),
            enabled,
            at: t("2025-01-01T00:05:00Z"),
        });
    }
    fn check(s: &StateData, expected: usize, step: &str) {
        let recounted = s.schedules.values().filter(|r| !r.def.enabled).count();
        assert_eq!(recounted, expected, "{step}: the state itself");
        assert_eq!(s.paused_count(), expected, "{step}: the count");
    }
    let paused = |name: &str| ScheduleDef {
        enabled: false,
        ..def(name, "1m")
    };
    let mut s = StateData::default();
    put(&mut s, paused("a"), Some(0), "2025-01-01T00:00:00Z");
    put(&mut s, def("b", "1m"), Some(0), "2025-01-01T00:00:00Z");
    check(&s, 1, "created one paused, one running");
    set_enabled(&mut s, "b", false);
    set_enabled(&mut s, "b", false);
    check(&s, 2, "paused twice");
    put(&mut s, def("a", "2m"), None, "2025-01-01T00:06:00Z");
    check(&s, 1, "resumed by an edit");
    put(&mut s, paused("a"), None, "2025-01-01T00:07:00Z");
    check(&s, 2, "paused by an edit");
    s.apply(&Command::Delete {
        name: "b".into(),
        expected_revision: None,
        at: t("2025-01-01T00:08:00Z"),
    });
    check(&s, 1, "a paused one deleted");
    set_enabled(&mut s, "a", true);
    check(&s, 0, "resumed");
    set_enabled(&mut s, "a", false);
    let mut restored: StateData = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    restored.rebuild_indexes();
    check(&restored, 1, "loaded from a snapshot");
}

#[test]
fn commands_are_split_into_bounded_batches_in_order() {
    use crate::state::MAX_COMMANDS_PER_ENTRY;
    let deletes: Vec<Command> = (0..MAX_COMMANDS_PER_ENTRY * 2 + 1)
        .map(|i| Command::Delete {
            name: format!("s{i}"),
            expected_revision: None,
            at: t("2025-01-01T00:00:00Z"),
        })
        .collect();
    let batches: Vec<Command> = Command::batches(deletes.clone()).collect();
    let sizes: Vec<usize> = batches.iter().map(Command::weight).collect();
    assert_eq!(sizes, [MAX_COMMANDS_PER_ENTRY, MAX_COMMANDS_PER_ENTRY, 1]);
    let flattened: Vec<Command> = batches
        .into_iter()
        .flat_map(|b| match b {
            Command::Batch(commands) => commands,
            other => vec![other],
        })
        .collect();
    assert_eq!(flattened, deletes);
    assert_eq!(Command::batches(Vec::new()).count(), 0);
}

#[test]
fn a_batch_applies_each_command_in_order() {
    let mut s = StateData::default();
    let batch = Command::Batch(vec![
        Command::Put {
            def: def("a", "1m"),
            expected_revision: Some(0),
            incarnation: Uuid::from_u128(1),
            at: t("2025-01-01T00:00:00Z"),
        },
        Command::Put {
            def: def("a", "1m"),
            expected_revision: Some(0),
            incarnation: Uuid::from_u128(2),
            at: t("2025-01-01T00:00:00Z"),
        },
        Command::Put {
            def: def("b", "1m"),
            expected_revision: None,
            incarnation: Uuid::from_u128(3),
            at: t("2025-01-01T00:00:00Z"),
        },
    ]);
    assert_eq!(
        s.apply(&batch),
        CommandResult::Batch(vec![
            CommandResult::Revision(1),
            CommandResult::Rejected(Rejection::AlreadyExists("a".into())),
            CommandResult::Revision(1),
        ])
    );
    assert_eq!(s.schedules.len(), 2);
}

#[test]
fn each_name_is_kept_once_by_the_map_the_definition_and_the_due_index() {
    fn shared_once(s: &StateData, name: &str) {
        let (key, record) = s.schedules.get_key_value(name).unwrap();
        assert!(
            Arc::ptr_eq(key, &record.def.name),
            "{name}: key and definition"
        );
        let (_, due_name) = s.due.iter().find(|(_, n)| &**n == name).unwrap();
        assert!(Arc::ptr_eq(key, due_name), "{name}: key and due index");
    }
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    put(&mut s, def("b", "1m"), None, "2025-01-01T00:00:00Z");
    shared_once(&s, "a");
    // A replacement arrives with its own copy of the name.
    put(&mut s, def("a", "2m"), Some(1), "2025-01-01T00:00:30Z");
    shared_once(&s, "a");
    let mut restored: StateData = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
    restored.rebuild_indexes();
    shared_once(&restored, "a");
    shared_once(&restored, "b");
}

#[test]
fn a_command_at_the_limits_of_time_applies_without_panicking() {
    // Found by fuzzing a log entry: a put stamped with chrono's earliest instant panicked while
    // planning the schedule (`plan_from - 1 ms` overflowed).
    for at in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        let mut s = StateData::default();
        let result = s.apply(&Command::Put {
            def: def("edge", "1s"),
            expected_revision: None,
            incarnation: Uuid::from_u128(7),
            at,
        });
        assert_eq!(result, CommandResult::Revision(1), "{at}");
        let record = &s.schedules["edge"];
        assert_eq!(record.plan_from, at);
        if at == DateTime::<Utc>::MIN_UTC {
            assert!(
                record.next.is_some_and(|next| next > at),
                "{:?}",
                record.next
            );
        }
        let mut restored: StateData =
            serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        restored.rebuild_indexes();
        assert_eq!(restored.schedules["edge"].next, record.next);
    }
}

#[test]
fn counters_saturate_instead_of_overflowing() {
    // An entry with two skips of u64::MAX occurrences overflowed the skipped counters (a panic
    // in a debug build, a wrap in a release one).
    let mut s = StateData::default();
    put(&mut s, def("a", "1m"), None, "2025-01-01T00:00:00Z");
    let skip = |at: &str| SkipItem {
        schedule: "a".into(),
        incarnation: Uuid::from_u128(7),
        scheduled_at: t(at),
        reason: SkipReason::CatchupNone,
        count: u64::MAX,
        cause: None,
    };
    let result = fire(
        &mut s,
        vec![],
        vec![skip("2025-01-01T00:01:00Z"), skip("2025-01-01T00:02:00Z")],
    );
    assert_eq!(
        result,
        CommandResult::Fired {
            accepted: 0,
            skipped: u32::MAX,
            overlap_skipped: 0,
            held: 0
        }
    );
    assert_eq!(s.schedules["a"].skipped, u64::MAX);
    // A record whose revision is already at the limit (from a snapshot) still takes changes.
    Arc::make_mut(s.schedules.get_mut("a").unwrap()).revision = u64::MAX;
    let paused = s.apply(&Command::SetEnabled {
        name: "a".into(),
        enabled: false,
        at: t("2025-01-01T00:03:00Z"),
    });
    assert_eq!(paused, CommandResult::Revision(u64::MAX));
}

#[test]
fn last_run_at_starts_a_new_schedule_after_the_previous_schedulers_last_run() {
    let mut s = StateData::default();
    let mut migrated = def("m", "2m");
    migrated.last_run_at = Some(t("2025-01-01T00:00:30Z"));
    put(&mut s, migrated.clone(), Some(0), "2025-01-01T00:05:00Z");
    let record = &s.schedules()["m"];
    // An interval counts from the last run; that run itself is never sent again.
    assert_eq!(record.last_fire, Some(t("2025-01-01T00:00:30Z")));
    assert_eq!(record.next, Some(t("2025-01-01T00:02:30Z")));
    let mut copy = s.snapshot_copy();
    copy.rebuild_indexes();
    assert_eq!(copy.schedules()["m"].next, record.next);

    // A change keeps the stored value and the anchor, whatever it says.
    let mut changed = migrated.clone();
    changed.description = "changed".into();
    changed.last_run_at = Some(t("2025-01-01T00:04:00Z"));
    put(&mut s, changed, Some(1), "2025-01-01T00:06:00Z");
    let record = &s.schedules()["m"];
    assert_eq!(record.def.last_run_at, Some(t("2025-01-01T00:00:30Z")));
    assert_eq!(record.next, Some(t("2025-01-01T00:02:30Z")));

    // A declared set differing only in last_run_at is unchanged.
    let mut declared = (*record.def).clone();
    declared.last_run_at = None;
    let changes =
        crate::state::diff::diff(&s, &[declared], None, t("2025-01-01T00:07:00Z"), |_| {
            Uuid::nil()
        });
    assert_eq!(changes.unchanged, 1);

    // An anchored cron-like spec: the first occurrence after the last run.
    let mut cron = def("c", "1m");
    cron.spec = SpecInput {
        cron: Some("*/10 * * * *".into()),
        ..Default::default()
    };
    cron.last_run_at = Some(t("2025-01-01T00:20:00Z"));
    put(&mut s, cron, Some(0), "2025-01-01T00:45:00Z");
    assert_eq!(s.schedules()["c"].next, Some(t("2025-01-01T00:30:00Z")));
}

/// A definition behind its `Arc` (two 8-byte counts) and glibc's 8-byte chunk header fits a
/// 320-byte chunk (`ScheduleDef`'s size note): a field that took it past would cost every
/// schedule 16 bytes.
#[test]
#[cfg(target_pointer_width = "64")]
fn a_stored_definition_fits_a_320_byte_chunk() {
    let chunk = 16 + std::mem::size_of::<ScheduleDef>() + 8;
    assert!(chunk <= 320, "{chunk} bytes");
}
