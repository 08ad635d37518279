//! Catch-up policies and the lookahead, planned against state built by applying commands.

use super::*;
use crate::celery::KombuLayout;
use crate::schedule::SpecInput;
use crate::state::{CatchupPolicy, Command, ScheduleDef};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

const T0: &str = "2025-01-01T00:00:00Z";

fn state_with(rule: CatchupRule, window_secs: u64) -> StateData {
    let mut state = StateData::default();
    let def = ScheduleDef {
        name: "s".into(),
        task: "tasks.tick".into(),
        spec: SpecInput {
            every: Some("1m".into()),
            ..Default::default()
        },
        args: vec![],
        kwargs: Default::default(),
        options: Default::default(),
        catchup: CatchupPolicy { rule, window_secs },
        enabled: true,
        labels: Default::default(),
        description: Default::default(),
        last_run_at: None,
        control: None,
    };
    state.apply(&Command::Put {
        def,
        expected_revision: None,
        incarnation: Uuid::from_u128(1),
        at: t(T0),
    });
    state
}

fn run(state: &StateData, now: DateTime<Utc>) -> Plan {
    let encoder = Encoder {
        origin: "test".into(),
        layout: KombuLayout::default(),
    };
    plan_after(
        state,
        now,
        &PlanConfig::default(),
        &encoder,
        Uuid::from_u128(99),
        false,
    )
}

fn fired(plan: &Plan) -> Vec<DateTime<Utc>> {
    plan.fires.iter().map(|f| f.scheduled_at).collect()
}

#[test]
fn on_time_occurrences_fire_within_the_lookahead_only() {
    let state = state_with(CatchupRule::All, 3600);
    let early = run(&state, t(T0) - Duration::seconds(2));
    assert!(early.is_empty());
    assert_eq!(early.wake_at, Some(t(T0) - Duration::seconds(1)));
    let just_before = run(&state, t(T0) - Duration::milliseconds(900));
    assert_eq!(fired(&just_before), [t(T0)]);
    let fire = &just_before.fires[0];
    assert_eq!(
        fire.task_id,
        occurrence_task_id(Uuid::from_u128(99), Uuid::from_u128(1), t(T0))
    );
    assert_eq!(just_before.rendered.len(), 1);
    assert_eq!(just_before.rendered[0].0, fire.task_id);
    assert!(just_before.rendered[0]
        .1
        .payload
        .contains("\"belfry_scheduled_at\":\"2025-01-01T00:00:00Z\""));
}

#[test]
fn catch_up_all_fires_every_missed_occurrence_oldest_first() {
    let state = state_with(CatchupRule::All, 3600);
    let plan = run(&state, t(T0) + Duration::seconds(601));
    assert_eq!(
        fired(&plan),
        (0..=10)
            .map(|m| t(T0) + Duration::minutes(m))
            .collect::<Vec<_>>()
    );
    assert!(plan.skips.is_empty());
}

#[test]
fn catch_up_latest_fires_the_newest_and_records_the_rest() {
    let state = state_with(CatchupRule::Latest, 3600);
    let plan = run(&state, t(T0) + Duration::seconds(630));
    assert_eq!(fired(&plan), [t(T0) + Duration::minutes(10)]);
    assert_eq!(plan.skips.len(), 1);
    let skip = &plan.skips[0];
    assert_eq!(
        (skip.reason, skip.count, skip.scheduled_at),
        (
            SkipReason::SupersededByLatest,
            10,
            t(T0) + Duration::minutes(9)
        )
    );
}

#[test]
fn catch_up_none_skips_the_missed_and_keeps_the_on_time() {
    let state = state_with(CatchupRule::None, 3600);
    // 00:10:00 is 1 s late: inside the grace, so on time.
    let plan = run(&state, t(T0) + Duration::seconds(601));
    assert_eq!(fired(&plan), [t(T0) + Duration::minutes(10)]);
    let skip = &plan.skips[0];
    assert_eq!((skip.reason, skip.count), (SkipReason::CatchupNone, 10));
}

#[test]
fn occurrences_older_than_the_window_are_skipped_whatever_the_rule() {
    let state = state_with(CatchupRule::All, 300);
    let plan = run(&state, t(T0) + Duration::seconds(601));
    // Window starts at 00:05:01: 00:00..00:05 are outside it.
    let skip = &plan.skips[0];
    assert_eq!(
        (skip.reason, skip.count, skip.scheduled_at),
        (
            SkipReason::OutsideCatchupWindow,
            6,
            t(T0) + Duration::minutes(5)
        )
    );
    assert_eq!(
        fired(&plan),
        (6..=10)
            .map(|m| t(T0) + Duration::minutes(m))
            .collect::<Vec<_>>()
    );
}

#[test]
fn applying_the_plan_moves_the_schedule_forward() {
    let mut state = state_with(CatchupRule::Latest, 3600);
    let now = t(T0) + Duration::seconds(630);
    let plan = run(&state, now);
    state.apply(&Command::Fire {
        fires: plan.fires,
        skips: plan.skips,
        faults: plan.faults,
        at: now,
    });
    let record = &state.schedules()["s"];
    assert_eq!((record.fired, record.skipped), (1, 10));
    assert!(run(&state, now).is_empty());
    assert_eq!(
        run(&state, now).wake_at,
        Some(t(T0) + Duration::minutes(11) - Duration::seconds(1))
    );
}

#[test]
fn a_pass_is_bounded() {
    let mut state = StateData::default();
    for i in 0..20 {
        let mut def = state_with(CatchupRule::All, 3600).schedules()["s"]
            .def
            .as_ref()
            .clone();
        def.name = format!("s{i}").into();
        state.apply(&Command::Put {
            def,
            expected_revision: None,
            incarnation: Uuid::from_u128(i),
            at: t(T0),
        });
    }
    let encoder = Encoder {
        origin: "test".into(),
        layout: KombuLayout::default(),
    };
    let config = PlanConfig {
        max_fires: 10,
        ..PlanConfig::default()
    };
    let plan = plan_after(&state, t(T0), &config, &encoder, Uuid::nil(), false);
    assert_eq!(plan.fires.len(), 10);
    assert_eq!(plan.wake_at, Some(t(T0)));
}

thread_local! {
    /// The schedule whose planning panics, in this test thread only.
    static PANIC_FOR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Called by `plan_schedule` in tests: panics for the schedule a test chose, standing for any
/// defect the engine may have for some definition.
pub(super) fn fail_point(record: &ScheduleRecord) {
    PANIC_FOR.with(|name| {
        if name.borrow().as_deref() == Some(&*record.def.name) {
            panic!("injected failure for {}", record.def.name);
        }
    });
}

fn two_schedules() -> StateData {
    let mut state = state_with(CatchupRule::All, 3600);
    let mut other = state.schedules()["s"].def.as_ref().clone();
    other.name = "other".into();
    state.apply(&Command::Put {
        def: other,
        expected_revision: None,
        incarnation: Uuid::from_u128(2),
        at: t(T0),
    });
    state
}

#[test]
fn a_schedule_whose_planning_panics_is_faulted_and_the_others_still_fire() {
    let mut state = two_schedules();
    let now = t(T0) + Duration::seconds(60);
    PANIC_FOR.with(|name| *name.borrow_mut() = Some("s".into()));
    let plan = run(&state, now);
    PANIC_FOR.with(|name| *name.borrow_mut() = None);
    // Two occurrences each (the anchor and a minute later); only the healthy one's.
    assert_eq!(
        plan.fires
            .iter()
            .map(|f| f.schedule.as_str())
            .collect::<Vec<_>>(),
        ["other", "other"]
    );
    assert_eq!(plan.rendered.len(), 2);
    assert_eq!(plan.faults.len(), 1);
    assert_eq!(plan.faults[0].schedule, "s");
    assert_eq!(plan.faults[0].revision, 1);
    assert!(plan.faults[0].reason.contains("injected failure for s"));

    state.apply(&Command::Fire {
        fires: plan.fires,
        skips: plan.skips,
        faults: plan.faults,
        at: now,
    });
    let record = &state.schedules()["s"];
    assert!(record.fault().unwrap().contains("injected failure"));
    assert_eq!(record.next, None, "a faulted schedule is planned no more");
    assert_eq!(state.faulted().len(), 1);
    // Later passes no longer meet it (and so cannot fail on it again).
    assert!(run(&state, now + Duration::seconds(60))
        .fires
        .iter()
        .all(|f| f.schedule == "other"));

    // A new definition is planned afresh.
    let mut def = state.schedules()["s"].def.as_ref().clone();
    def.description = "fixed".into();
    state.apply(&Command::Put {
        def,
        expected_revision: Some(1),
        incarnation: Uuid::nil(),
        at: now,
    });
    assert_eq!(state.schedules()["s"].fault(), None);
    assert!(state.faulted().is_empty());
    assert!(state.schedules()["s"].next.is_some());
}

#[test]
fn a_fault_reported_for_an_older_revision_marks_nothing() {
    let mut state = two_schedules();
    let mut def = state.schedules()["s"].def.as_ref().clone();
    def.description = "changed".into();
    state.apply(&Command::Put {
        def,
        expected_revision: Some(1),
        incarnation: Uuid::nil(),
        at: t(T0),
    });
    state.apply(&Command::Fire {
        fires: vec![],
        skips: vec![],
        faults: vec![FaultItem {
            schedule: "s".into(),
            incarnation: Uuid::from_u128(1),
            revision: 1,
            reason: "stale".into(),
        }],
        at: t(T0),
    });
    assert_eq!(state.schedules()["s"].fault(), None);
    assert!(state.faulted().is_empty());
}

#[test]
fn a_stored_catch_up_window_beyond_any_instant_plans_without_overflow() {
    // Written before windows were bounded: the planner must not overflow on it.
    for window in [10_000_000_000_000, u64::MAX] {
        let state = state_with(CatchupRule::All, window);
        let plan = run(&state, t(T0) + Duration::seconds(150));
        // The anchor and the two minutes after it, none skipped.
        assert_eq!(fired(&plan).len(), 3, "window {window}");
        assert!(plan.skips.is_empty());
        assert!(plan.faults.is_empty());
    }
}

fn encoder() -> Encoder {
    Encoder {
        origin: "test".into(),
        layout: KombuLayout::default(),
    }
}

#[test]
fn a_full_outbox_pauses_planning() {
    let mut state = state_with(CatchupRule::All, 3600);
    let config = PlanConfig {
        max_outbox: 3,
        ..PlanConfig::default()
    };
    // Three missed occurrences are committed (into the outbox), none acknowledged.
    let first = plan_after(
        &state,
        t(T0) + Duration::seconds(150),
        &config,
        &encoder(),
        Uuid::from_u128(99),
        false,
    );
    assert_eq!(first.fires.len(), 3);
    state.apply(&Command::Fire {
        fires: first.fires,
        skips: first.skips,
        faults: vec![],
        at: t(T0) + Duration::seconds(150),
    });
    assert_eq!(state.outbox().len(), 3);
    let paused = plan_after(
        &state,
        t(T0) + Duration::seconds(600),
        &config,
        &encoder(),
        Uuid::from_u128(99),
        false,
    );
    assert!(paused.outbox_full);
    assert!(
        paused.is_empty(),
        "nothing is planned while the outbox is full"
    );
}

#[test]
fn skips_after_a_pause_carry_the_broker_as_their_cause() {
    let state = state_with(CatchupRule::Latest, 3600);
    let now = t(T0) + Duration::seconds(630);
    let config = PlanConfig::default();
    let after = plan_after(&state, now, &config, &encoder(), Uuid::from_u128(99), true);
    assert_eq!(fired(&after), [t(T0) + Duration::minutes(10)]);
    assert_eq!(after.skips.len(), 1);
    assert_eq!(after.skips[0].reason, SkipReason::SupersededByLatest);
    assert_eq!(after.skips[0].cause, Some(SkipCause::BrokerUnavailable));
    // The same pass without a pause: the same decision, no cause.
    let plain = plan_after(&state, now, &config, &encoder(), Uuid::from_u128(99), false);
    assert_eq!(fired(&plain), fired(&after));
    assert_eq!(plain.skips[0].cause, None);
}
