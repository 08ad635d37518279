//! Run control at apply: overlap decisions, outcomes, auto-pause, each as every node sees it.

use super::*;
use crate::schedule::SpecInput;
use crate::state::command::{
    CatchupPolicy, Command, CommandResult, FireItem, Rejection, SkipReason,
};
use crate::state::control::{OutcomeItem, Overlap, RunControl, TaskState};

fn t(minute: u32) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2025-01-01T00:{minute:02}:00Z"))
        .unwrap()
        .to_utc()
}

const INCARNATION: Uuid = Uuid::from_u128(7);

/// A definition of `name` with `spec` and `control`, all else default.
fn schedule_def(name: &str, spec: SpecInput, control: Option<RunControl>) -> ScheduleDef {
    ScheduleDef {
        name: name.into(),
        task: "tasks.job".into(),
        spec,
        args: vec![],
        kwargs: Default::default(),
        options: Default::default(),
        catchup: CatchupPolicy::default(),
        enabled: true,
        labels: Default::default(),
        description: Default::default(),
        last_run_at: None,
        control: control.map(Box::new),
    }
}

fn controlled(control: RunControl) -> StateData {
    let mut s = StateData::default();
    let spec = SpecInput {
        every: Some("1m".into()),
        ..Default::default()
    };
    s.apply(&Command::Put {
        def: schedule_def("job", spec, Some(control)),
        expected_revision: None,
        incarnation: INCARNATION,
        at: t(0),
    });
    s
}

/// Fires the occurrence of minute `m` (task id `m`).
fn fire(s: &mut StateData, m: u32) -> CommandResult {
    s.apply(&Command::Fire {
        fires: vec![FireItem {
            schedule: "job".into(),
            incarnation: INCARNATION,
            scheduled_at: t(m),
            task_id: Uuid::from_u128(m.into()),
            manual: false,
            backfill: false,
        }],
        skips: vec![],
        faults: vec![],
        at: t(m),
    })
}

fn outcome(s: &mut StateData, m: u32, state: TaskState, at: u32) -> CommandResult {
    s.apply(&Command::Outcomes {
        items: vec![OutcomeItem {
            schedule: "job".into(),
            incarnation: INCARNATION,
            task_id: Uuid::from_u128(m.into()),
            state,
            date_done: state.is_final().then(|| t(at)),
        }],
        at: t(at),
    })
}

fn in_outbox(s: &StateData) -> Vec<u128> {
    s.outbox_in_order().map(|e| e.task_id.as_u128()).collect()
}

fn outcomes_of(s: &StateData) -> Vec<(u32, RunOutcome)> {
    s.schedules["job"]
        .history
        .iter()
        .map(|r| {
            (
                r.scheduled_at.format("%M").to_string().parse().unwrap(),
                r.outcome,
            )
        })
        .collect()
}

fn control_of(s: &StateData) -> ControlState {
    s.schedules["job"]
        .control
        .as_deref()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn skip_drops_what_falls_due_while_the_previous_run_is_open() {
    let mut s = controlled(RunControl {
        overlap: Overlap::Skip,
        ..Default::default()
    });
    fire(&mut s, 0);
    let second = fire(&mut s, 1);
    assert!(matches!(
        second,
        CommandResult::Fired {
            accepted: 0,
            overlap_skipped: 1,
            ..
        }
    ));
    assert_eq!(in_outbox(&s), vec![0]);
    assert!(s.with_open_runs().contains("job"));
    // The run ends: the next occurrence is dispatched.
    assert_eq!(
        outcome(&mut s, 0, TaskState::Success, 1),
        CommandResult::Outcomes(1)
    );
    assert!(s.with_open_runs().is_empty());
    fire(&mut s, 2);
    assert_eq!(in_outbox(&s), vec![0, 2]);
    assert_eq!(
        outcomes_of(&s),
        vec![
            (0, RunOutcome::Pending),
            (1, RunOutcome::Skipped(SkipReason::PreviousRunning)),
            (2, RunOutcome::Pending)
        ]
    );
    let record = &s.schedules["job"];
    assert_eq!((record.fired, record.skipped), (2, 1));
    assert_eq!(record.history[0].task_state, Some(TaskState::Success));
    assert_eq!(record.history[0].finished_at, Some(t(1)));
}

#[test]
fn max_concurrent_lets_that_many_runs_overlap() {
    let mut s = controlled(RunControl {
        overlap: Overlap::Skip,
        max_concurrent: Some(2),
        ..Default::default()
    });
    for m in 0..4 {
        fire(&mut s, m);
    }
    assert_eq!(in_outbox(&s), vec![0, 1]);
    assert_eq!(control_of(&s).open.len(), 2);
    // STARTED is not final: the run stays open.
    outcome(&mut s, 1, TaskState::Started, 4);
    fire(&mut s, 4);
    assert_eq!(in_outbox(&s), vec![0, 1]);
    outcome(&mut s, 1, TaskState::Failure, 5);
    fire(&mut s, 5);
    assert_eq!(in_outbox(&s), vec![0, 1, 5]);
}

#[test]
fn buffer_one_holds_the_newest_and_sends_it_when_a_run_ends() {
    let mut s = controlled(RunControl {
        overlap: Overlap::BufferOne,
        ..Default::default()
    });
    fire(&mut s, 0);
    assert!(matches!(
        fire(&mut s, 1),
        CommandResult::Fired { held: 1, .. }
    ));
    // A newer one replaces the held one, which is skipped.
    assert!(matches!(
        fire(&mut s, 2),
        CommandResult::Fired {
            held: 1,
            overlap_skipped: 1,
            ..
        }
    ));
    assert_eq!(in_outbox(&s), vec![0]);
    assert_eq!(control_of(&s).held.map(|h| h.scheduled_at), Some(t(2)));
    outcome(&mut s, 0, TaskState::Success, 3);
    // The held occurrence goes out, with its own task id and instant, and is now the open run.
    assert_eq!(in_outbox(&s), vec![0, 2]);
    let control = control_of(&s);
    assert_eq!((control.held, control.open.len()), (None, 1));
    assert_eq!(control.open[0].since, t(3));
    assert_eq!(
        outcomes_of(&s),
        vec![
            (0, RunOutcome::Pending),
            (1, RunOutcome::Skipped(SkipReason::PreviousRunning)),
            (2, RunOutcome::Pending)
        ]
    );
}

#[test]
fn a_lost_run_closes_like_a_final_state_and_a_repeat_changes_nothing() {
    let mut s = controlled(RunControl {
        overlap: Overlap::BufferOne,
        max_runtime_secs: Some(120),
        ..Default::default()
    });
    fire(&mut s, 0);
    fire(&mut s, 1);
    assert_eq!(
        outcome(&mut s, 0, TaskState::Lost, 2),
        CommandResult::Outcomes(1)
    );
    assert_eq!(in_outbox(&s), vec![0, 1]);
    // The same report again, or a late SUCCESS: the run is closed already.
    assert_eq!(
        outcome(&mut s, 0, TaskState::Lost, 2),
        CommandResult::Outcomes(0)
    );
    assert_eq!(
        outcome(&mut s, 0, TaskState::Success, 3),
        CommandResult::Outcomes(0)
    );
    assert_eq!(control_of(&s).open.len(), 1);
    let policy = s.schedules["job"].def.run_control();
    assert_eq!(policy.lost_after(t(2)), t(4));
}

#[test]
fn consecutive_failures_pause_the_schedule_and_resume_clears_them() {
    let mut s = controlled(RunControl {
        pause_after_failures: Some(2),
        ..Default::default()
    });
    fire(&mut s, 0);
    fire(&mut s, 1);
    fire(&mut s, 2);
    outcome(&mut s, 0, TaskState::Failure, 3);
    // A success in between starts the count again.
    outcome(&mut s, 1, TaskState::Success, 3);
    assert_eq!(control_of(&s).consecutive_failures, 0);
    outcome(&mut s, 2, TaskState::Failure, 4);
    // The same failure reported twice counts once.
    outcome(&mut s, 2, TaskState::Failure, 4);
    assert!(s.schedules["job"].def.enabled);
    fire(&mut s, 4);
    outcome(&mut s, 4, TaskState::Failure, 5);
    let record = &s.schedules["job"];
    assert!(!record.def.enabled);
    assert_eq!(s.paused_count(), 1);
    assert!(record.next.is_none(), "a paused schedule is not planned");
    let reason = control_of(&s).paused_reason.unwrap();
    assert!(reason.contains("2 consecutive failures"), "{reason}");
    for id in [2u128, 4] {
        assert!(
            reason.contains(&Uuid::from_u128(id).to_string()),
            "{reason}"
        );
    }
    s.apply(&Command::SetEnabled {
        name: "job".into(),
        enabled: true,
        at: t(6),
    });
    assert_eq!(
        s.schedules["job"].control, None,
        "resume clears the pause and the failures"
    );
    assert_eq!(s.paused_count(), 0);
}

#[test]
fn manual_runs_and_the_allow_policy_are_not_limited() {
    let mut s = controlled(RunControl {
        pause_after_failures: Some(5),
        ..Default::default()
    });
    fire(&mut s, 0);
    fire(&mut s, 1);
    assert_eq!(in_outbox(&s), vec![0, 1]);
    assert!(s.with_open_runs().is_empty());
}

#[test]
fn a_policy_that_stops_limiting_releases_what_it_held() {
    let mut s = controlled(RunControl {
        overlap: Overlap::BufferOne,
        ..Default::default()
    });
    fire(&mut s, 0);
    fire(&mut s, 1);
    let mut def = (*s.schedules["job"].def).clone();
    def.control = None;
    s.apply(&Command::Put {
        def,
        expected_revision: None,
        incarnation: INCARNATION,
        at: t(2),
    });
    assert_eq!(in_outbox(&s), vec![0, 1]);
    assert!(s.with_open_runs().is_empty());
}

#[test]
fn run_control_state_survives_a_snapshot() {
    let mut s = controlled(RunControl {
        overlap: Overlap::BufferOne,
        pause_after_failures: Some(3),
        ..Default::default()
    });
    fire(&mut s, 0);
    fire(&mut s, 1);
    outcome(&mut s, 0, TaskState::Started, 1);
    let json = serde_json::to_vec(&s.snapshot_copy()).unwrap();
    let mut loaded: StateData = serde_json::from_slice(&json).unwrap();
    loaded.rebuild_indexes();
    assert_eq!(control_of(&loaded), control_of(&s));
    assert!(loaded.with_open_runs().contains("job"));
    assert_eq!(loaded.schedules["job"].history, s.schedules["job"].history);
    // And both go on alike.
    outcome(&mut s, 0, TaskState::Success, 2);
    outcome(&mut loaded, 0, TaskState::Success, 2);
    assert_eq!(in_outbox(&loaded), in_outbox(&s));
}

fn start_backfill(s: &mut StateData, from: u32, to: u32, overlap: bool) -> CommandResult {
    s.apply(&Command::StartBackfill {
        name: "job".into(),
        incarnation: INCARNATION,
        job: crate::state::control::BackfillSpec {
            from: t(from),
            to: t(to),
            rate: 2,
            overlap,
            total: u64::from(to - from + 1),
        },
        at: t(30),
    })
}

fn step(s: &mut StateData, after: Option<u32>, minutes: &[u32], finished: bool) -> CommandResult {
    s.apply(&Command::BackfillStep {
        name: "job".into(),
        incarnation: INCARNATION,
        after: after.map(t),
        fires: minutes
            .iter()
            .map(|m| FireItem {
                schedule: "job".into(),
                incarnation: INCARNATION,
                scheduled_at: t(*m),
                task_id: Uuid::from_u128((*m).into()),
                manual: false,
                backfill: true,
            })
            .collect(),
        cursor: minutes.last().map(|m| t(*m)),
        finished,
        at: t(31),
    })
}

#[test]
fn a_backfill_steps_from_its_cursor_once_and_sends_each_run_once() {
    let mut s = controlled(RunControl {
        pause_after_failures: Some(3),
        ..Default::default()
    });
    // Minute 1 ran on schedule already.
    fire(&mut s, 1);
    assert!(matches!(
        start_backfill(&mut s, 0, 3, false),
        CommandResult::Revision(_)
    ));
    assert!(s.with_backfills().contains("job"));
    // Only one at a time.
    assert!(matches!(
        start_backfill(&mut s, 0, 3, false),
        CommandResult::Rejected(Rejection::Invalid(_))
    ));
    assert_eq!(
        step(&mut s, None, &[0, 1], false),
        CommandResult::Backfilled(1)
    );
    // The same step again (a retried commit, a stale leader): the cursor has moved.
    assert_eq!(
        step(&mut s, None, &[0, 1], false),
        CommandResult::Backfilled(0)
    );
    assert_eq!(
        step(&mut s, Some(1), &[2, 3], true),
        CommandResult::Backfilled(2)
    );
    assert_eq!(in_outbox(&s), vec![1, 0, 2, 3]);
    let job = control_of(&s).backfill.unwrap();
    assert_eq!((job.done, job.sent, job.finished_at), (4, 3, Some(t(31))));
    assert!(s.with_backfills().is_empty());
    let backfilled: Vec<bool> = s.schedules["job"]
        .history
        .iter()
        .map(|r| r.backfill)
        .collect();
    assert_eq!(backfilled, vec![false, true, true, true]);
    let entry = &s.outbox()[&Uuid::from_u128(0)];
    assert_eq!(entry.trigger(), crate::celery::Trigger::Backfill);
    // A step for a finished job changes nothing.
    assert_eq!(
        step(&mut s, Some(3), &[4], true),
        CommandResult::Backfilled(0)
    );
}

#[test]
fn a_backfill_may_follow_the_overlap_policy() {
    let mut s = controlled(RunControl {
        overlap: Overlap::Skip,
        ..Default::default()
    });
    start_backfill(&mut s, 0, 2, true);
    step(&mut s, None, &[0, 1, 2], true);
    assert_eq!(in_outbox(&s), vec![0]);
    assert_eq!(s.schedules["job"].skipped, 2);
}

#[test]
fn jitter_delays_scheduled_runs_within_its_bound_by_the_task_id_alone() {
    let control = RunControl {
        jitter_ms: Some(30_000),
        ..Default::default()
    };
    let mut offsets = std::collections::BTreeSet::new();
    for n in 0..1_000u128 {
        let id = Uuid::from_u128(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
        let offset = control.jitter_offset(id);
        assert!(offset >= chrono::Duration::zero() && offset <= chrono::Duration::seconds(30));
        assert_eq!(
            offset,
            control.jitter_offset(id),
            "the same for the same run"
        );
        offsets.insert(offset.num_milliseconds());
    }
    assert!(
        offsets.len() > 900,
        "spread over the bound: {}",
        offsets.len()
    );
    // The offset is the task id's last eight bytes, big-endian, modulo the bound + 1 (ms).
    let id = Uuid::from_u128(0x0000_0000_0000_0000_0000_0000_0000_7531);
    assert_eq!(
        control.jitter_offset(id),
        chrono::Duration::milliseconds(0x7531 % 30_001)
    );
    let mut s = controlled(control);
    fire(&mut s, 0);
    let entry = &s.outbox()[&Uuid::from_u128(0)];
    assert_eq!(entry.due_at(), t(0), "task id 0: offset 0");
    fire(&mut s, 1);
    let entry = &s.outbox()[&Uuid::from_u128(1)];
    assert_eq!(entry.due_at(), t(1) + chrono::Duration::milliseconds(1));
    // A manual run goes at once.
    s.apply(&Command::Fire {
        fires: vec![FireItem {
            schedule: "job".into(),
            incarnation: INCARNATION,
            scheduled_at: t(2),
            task_id: Uuid::from_u128(12_345),
            manual: true,
            backfill: false,
        }],
        skips: vec![],
        faults: vec![],
        at: t(2),
    });
    assert_eq!(s.outbox()[&Uuid::from_u128(12_345)].due_at(), t(2));
}

#[test]
fn requested_skips_take_the_next_occurrences_and_named_ones() {
    let mut s = controlled(RunControl::default());
    s.apply(&Command::SkipOccurrences {
        name: "job".into(),
        next: 1,
        instants: vec![t(3), t(0)],
        at: t(0),
    });
    // t(0) is not after the command's instant: not kept.
    assert_eq!(control_of(&s).skip_at, vec![t(3)]);
    for m in 0..5 {
        fire(&mut s, m);
    }
    // Minute 0 is the next one; 3 is named.
    assert_eq!(in_outbox(&s), vec![1, 2, 4]);
    assert_eq!(
        outcomes_of(&s)[0],
        (0, RunOutcome::Skipped(SkipReason::Requested))
    );
    assert_eq!(control_of(&s).skip_next, 0);
    assert!(control_of(&s).skip_at.is_empty());
}

#[test]
fn a_timed_pause_resumes_only_if_still_due() {
    let mut s = controlled(RunControl::default());
    s.apply(&Command::PauseUntil {
        name: "job".into(),
        until: t(10),
        note: "maintenance".into(),
        at: t(1),
    });
    assert!(!s.schedules["job"].def.enabled);
    assert_eq!(s.schedules["job"].paused_until(), Some(t(10)));
    assert!(s.with_timed_pauses().contains("job"));
    // A stale resume (another instant) changes nothing.
    s.apply(&Command::ResumeIfDue {
        name: "job".into(),
        until: t(9),
        at: t(10),
    });
    assert!(!s.schedules["job"].def.enabled);
    s.apply(&Command::ResumeIfDue {
        name: "job".into(),
        until: t(10),
        at: t(10),
    });
    let record = &s.schedules["job"];
    assert!(record.def.enabled);
    assert_eq!(
        (record.paused_until(), record.resumed_at),
        (None, Some(t(10)))
    );
    assert!(s.with_timed_pauses().is_empty());
    // A pause with no end replaces a timed one: the timed resume no longer applies.
    s.apply(&Command::PauseUntil {
        name: "job".into(),
        until: t(20),
        note: String::new(),
        at: t(11),
    });
    s.apply(&Command::SetEnabled {
        name: "job".into(),
        enabled: false,
        at: t(12),
    });
    s.apply(&Command::ResumeIfDue {
        name: "job".into(),
        until: t(20),
        at: t(20),
    });
    assert!(!s.schedules["job"].def.enabled);
}

#[test]
fn max_runs_finishes_the_schedule() {
    let mut s = controlled(RunControl {
        max_runs: Some(2),
        ..Default::default()
    });
    assert_eq!(s.schedules["job"].remaining_runs(), Some(2));
    fire(&mut s, 0);
    fire(&mut s, 1);
    let record = &s.schedules["job"];
    assert_eq!(record.remaining_runs(), Some(0));
    assert_eq!(record.next, None, "finished: nothing more is planned");
    assert!(s.due().is_empty());
}

#[test]
fn a_hash_spread_cron_takes_its_minute_from_the_name() {
    let mut s = StateData::default();
    for name in ["reports.a", "reports.b"] {
        let spec = SpecInput {
            cron: Some("H * * * *".into()),
            ..Default::default()
        };
        let def = schedule_def(name, spec, None);
        s.apply(&Command::Put {
            def,
            expected_revision: None,
            incarnation: INCARNATION,
            at: t(0),
        });
    }
    // Minutes 19 and 5 (the values `hash_spread` documents for these names).
    let next = |name: &str| {
        s.schedules[name]
            .next
            .map(|n| n.format("%H:%M").to_string())
    };
    assert_eq!(next("reports.a").as_deref(), Some("00:19"));
    assert_eq!(next("reports.b").as_deref(), Some("00:05"));
}
