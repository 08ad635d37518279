//! The schedules a run exercises, and the operations it performs on them while faults go on.
//!
//! A fixed set is created before the first fault: intervals from 1 s up, minute crontabs in
//! several zones, each catch-up policy. A seeded driver then creates, edits, pauses, resumes,
//! deletes and re-creates `dyn-*` schedules. Every operation is recorded with the window in
//! which it took effect (`history::Op`), which is all the checker knows about it. Owns the
//! definitions and the driver; must not read what was dispatched.

use std::collections::BTreeMap;
use std::time::Duration;

use belfry::api::pb;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::Code;

use crate::api::{Api, ApiError};
use crate::expect::SpecDef;
use crate::history::{incident, Op, OpKind, OverlapRule, Policy, SharedHistory};

pub mod controls;

/// The queue the harness's consumer reads.
pub const QUEUE: &str = "chaos";
/// The queue the Celery worker reads, when there is one.
pub const CELERY_QUEUE: &str = "chaos-celery";
/// The queue of the slow tasks the overlap policies govern, read by a second worker.
pub const SLOW_QUEUE: &str = "chaos-slow";
pub const TASK: &str = "chaos.record";
pub const SLOW_TASK: &str = "chaos.slow";

/// How long one operation may take, retries included, before the run calls it a hang.
pub(crate) const OP_DEADLINE: Duration = Duration::from_secs(120);

/// One schedule definition.
#[derive(Clone, Debug)]
pub struct Def {
    pub name: String,
    pub spec: SpecDef,
    pub policy: Policy,
    pub window_secs: u64,
    pub queue: &'static str,
    /// Run control's jitter (0: none): each run is sent up to this late, by an offset the
    /// checker derives from its task id.
    pub jitter_ms: u64,
    /// Created paused.
    pub paused: bool,
    /// Run control's `max_runs`.
    pub max_runs: Option<u64>,
    pub task: &'static str,
    /// Run control's overlap policy (needs the result backend and the slow worker).
    pub overlap: Option<OverlapRule>,
}

impl Def {
    fn to_pb(&self) -> pb::ScheduleSpec {
        let rule = match self.policy {
            Policy::All => pb::CatchupRule::All,
            Policy::Latest => pb::CatchupRule::Latest,
            Policy::None => pb::CatchupRule::None,
        };
        pb::ScheduleSpec {
            name: self.name.clone(),
            task: self.task.to_string(),
            spec: Some(self.spec.to_pb()),
            args_json: format!("[{:?}]", self.name),
            kwargs_json: "{}".into(),
            options: Some(pb::TaskOptions {
                queue: Some(self.queue.to_string()),
                ..Default::default()
            }),
            catchup: Some(pb::CatchupPolicy {
                rule: rule as i32,
                window_seconds: self.window_secs,
            }),
            enabled: Some(!self.paused),
            labels: Default::default(),
            description: "belfry-chaos workload".into(),
            // The workload creates intervals and cron expressions from scratch: no solar
            // events, no previous scheduler's last run (the checker's expectations know neither).
            last_run_at: String::new(),
            control: self.run_control(),
        }
    }
}

impl Def {
    fn run_control(&self) -> Option<pb::RunControl> {
        if self.jitter_ms == 0 && self.max_runs.is_none() && self.overlap.is_none() {
            return None;
        }
        Some(pb::RunControl {
            jitter_seconds: (self.jitter_ms > 0).then(|| self.jitter_ms as f64 / 1000.0),
            max_runs: self.max_runs,
            overlap: match self.overlap {
                Some(OverlapRule {
                    buffer_one: true, ..
                }) => "buffer_one".into(),
                Some(_) => "skip".into(),
                None => String::new(),
            },
            max_runtime_seconds: self.overlap.map(|o| o.max_runtime_secs),
            ..Default::default()
        })
    }
}

/// The first whole second at least `lead` from now.
pub fn aligned_after(lead: TimeDelta) -> DateTime<Utc> {
    let t = Utc::now() + lead;
    t.duration_trunc(TimeDelta::seconds(1)).unwrap_or(t) + TimeDelta::seconds(1)
}

/// The fixed schedules, all starting at `t0`.
pub fn fixed(t0: DateTime<Utc>, celery: bool) -> Vec<Def> {
    let every = |name: &str, secs: i64, policy: Policy, window: u64| Def {
        name: name.to_string(),
        spec: SpecDef::Every {
            every_secs: secs,
            anchor: t0,
        },
        policy,
        window_secs: window,
        queue: QUEUE,
        jitter_ms: 0,
        paused: false,
        max_runs: None,
        task: TASK,
        overlap: None,
    };
    let cron = |name: &str, expr: &str, tz: &str, celery: bool, policy: Policy| Def {
        name: name.to_string(),
        spec: SpecDef::Cron {
            expr: expr.to_string(),
            tz: tz.to_string(),
            celery,
            start_at: t0,
        },
        policy,
        window_secs: 3600,
        queue: QUEUE,
        jitter_ms: 0,
        paused: false,
        max_runs: None,
        task: TASK,
        overlap: None,
    };
    let mut defs = vec![
        every("every1-all-a", 1, Policy::All, 3600),
        every("every1-all-b", 1, Policy::All, 3600),
        every("every2-all", 2, Policy::All, 3600),
        every("every7-all", 7, Policy::All, 3600),
        every("every1-all-window5", 1, Policy::All, 5),
        every("every1-latest", 1, Policy::Latest, 3600),
        every("every3-latest", 3, Policy::Latest, 3600),
        every("every1-none", 1, Policy::None, 3600),
        every("every5-none", 5, Policy::None, 3600),
        cron("crontab-minute-utc", "* * * * *", "UTC", true, Policy::All),
        cron(
            "crontab-2min-kolkata",
            "*/2 * * * *",
            "Asia/Kolkata",
            true,
            Policy::All,
        ),
        cron(
            "cron-minute-newyork-latest",
            "* * * * *",
            "America/New_York",
            false,
            Policy::Latest,
        ),
        cron(
            "crontab-3min-kathmandu-none",
            "*/3 * * * *",
            "Asia/Kathmandu",
            true,
            Policy::None,
        ),
    ];
    // Jitter: sent late by an offset from the task id, the same whichever node leads.
    let mut jittered = every("every1-all-jitter800", 1, Policy::All, 3600);
    jittered.jitter_ms = 800;
    let mut jittered_latest = every("every2-latest-jitter1500", 2, Policy::Latest, 3600);
    jittered_latest.jitter_ms = 1_500;
    defs.push(jittered);
    defs.push(jittered_latest);
    defs.extend(controls::fixed(every));
    if celery {
        let mut worker = every("celery-every1", 1, Policy::All, 3600);
        worker.queue = CELERY_QUEUE;
        let mut worker3 = every("celery-every3-latest", 3, Policy::Latest, 3600);
        worker3.queue = CELERY_QUEUE;
        defs.push(worker);
        defs.push(worker3);
        // Runs of 2.5 s every second, one at a time: skipped, or the newest held.
        for (name, buffer_one) in [("slow-every1-skip", false), ("slow-every1-buffer", true)] {
            let mut slow = every(name, 1, Policy::All, 3600);
            slow.queue = SLOW_QUEUE;
            slow.task = SLOW_TASK;
            slow.overlap = Some(OverlapRule {
                buffer_one,
                max_runtime_secs: 20,
            });
            defs.push(slow);
        }
    }
    defs
}

/// Creates a schedule and records the operation; returns false if it did not take.
pub async fn create(api: &Api, history: &SharedHistory, def: &Def) -> bool {
    let start = Utc::now();
    {
        let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
        h.policies
            .insert(def.name.clone(), (def.policy, def.window_secs));
        if def.queue == CELERY_QUEUE || def.queue == SLOW_QUEUE {
            h.worker_schedules.insert(def.name.clone());
        }
        if let Some(rule) = def.overlap {
            h.overlap.insert(def.name.clone(), rule);
        }
    }
    let spec = def.to_pb();
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let spec = spec.clone();
            async move {
                c.schedules
                    .create_schedule(pb::CreateScheduleRequest {
                        schedule: Some(spec),
                    })
                    .await
            }
        })
        .await;
    let (incarnation, attempts) = match result {
        Ok((schedule, attempts)) => (schedule.incarnation, attempts),
        // A retry of a create that had taken effect.
        Err(ApiError::Refused {
            code: Code::AlreadyExists,
            ..
        }) => match api.get(&def.name, OP_DEADLINE).await {
            Ok(schedule) => (schedule.incarnation, 2),
            Err(err) => {
                incident(
                    history,
                    format!("create {}: cannot read it back: {err}", def.name),
                );
                return false;
            }
        },
        Err(err) => {
            incident(history, format!("create {}: {err}", def.name));
            return false;
        }
    };
    record(
        history,
        Op {
            schedule: def.name.clone(),
            kind: OpKind::Create {
                spec: def.spec.clone(),
                incarnation,
                jitter_ms: def.jitter_ms,
                paused: def.paused,
                max_runs: def.max_runs,
            },
            start,
            end: Utc::now(),
            attempts,
        },
    );
    true
}

pub(crate) fn record(history: &SharedHistory, op: Op) {
    eprintln!(
        "{}  op     {} {} ({} attempt{})",
        op.end.format("%H:%M:%S%.3f"),
        match &op.kind {
            OpKind::Create { spec, .. } => format!("create [{}]", spec.describe()),
            OpKind::Edit { spec } => format!("edit [{}]", spec.describe()),
            OpKind::Pause => "pause".into(),
            OpKind::Resume => "resume".into(),
            OpKind::Delete => "delete".into(),
            OpKind::Skip { at } => format!("skip {} named", at.len()),
            OpKind::PauseUntil { until } => format!("pause until {}", until.format("%H:%M:%S")),
            OpKind::Backfill { from, to } => format!(
                "backfill {}..{}",
                from.format("%H:%M:%S"),
                to.format("%H:%M:%S")
            ),
        },
        op.schedule,
        op.attempts,
        if op.attempts == 1 { "" } else { "s" }
    );
    history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .ops
        .push(op);
}

/// What the driver knows of a dynamic schedule.
struct Live {
    def: Def,
    paused: bool,
}

/// Runs seeded operations on `dyn-*` schedules until `until`.
pub async fn drive(api: Api, history: SharedHistory, seed: u64, until: tokio::time::Instant) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5745_4f52_4b4c_4f41);
    let mut live: BTreeMap<String, Live> = BTreeMap::new();
    let mut deleted: Vec<String> = Vec::new();
    let mut created = 0u32;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..6_000))).await;
        if tokio::time::Instant::now() >= until {
            break;
        }
        let create_now = live.len() < 3 || (live.len() < 6 && rng.random_bool(0.2));
        if create_now {
            let name = if !deleted.is_empty() && rng.random_bool(0.3) {
                deleted.remove(rng.random_range(0..deleted.len()))
            } else {
                created += 1;
                format!("dyn-{created}")
            };
            let policy = match (
                history
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .policies
                    .get(&name)
                    .map(|p| p.0),
                rng.random_range(0..3),
            ) {
                // A name keeps its policy for life, so the checker can read it by name.
                (Some(p), _) => p,
                (None, 0) => Policy::All,
                (None, 1) => Policy::Latest,
                (None, _) => Policy::None,
            };
            let def = Def {
                name: name.clone(),
                spec: random_spec(&mut rng),
                policy,
                window_secs: 3600,
                queue: QUEUE,
                jitter_ms: 0,
                paused: false,
                max_runs: None,
                task: TASK,
                overlap: None,
            };
            if create(&api, &history, &def).await {
                live.insert(name, Live { def, paused: false });
            }
            continue;
        }
        let names: Vec<String> = live.keys().cloned().collect();
        let name = names[rng.random_range(0..names.len())].clone();
        let paused = live[&name].paused;
        let roll = rng.random_range(0..100);
        let outcome = if paused {
            if roll < 70 {
                set_enabled(&api, &history, &name, true).await
            } else {
                delete(&api, &history, &name).await
            }
        } else if roll < 35 {
            let mut def = live[&name].def.clone();
            def.spec = random_spec(&mut rng);
            edit(&api, &history, &def)
                .await
                .then(|| {
                    if let Some(l) = live.get_mut(&name) {
                        l.def = def;
                    }
                })
                .is_some()
        } else if roll < 70 {
            set_enabled(&api, &history, &name, false).await
        } else {
            delete(&api, &history, &name).await
        };
        if !outcome {
            // Its state is unknown from now on: leave it alone.
            live.remove(&name);
            continue;
        }
        match history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ops
            .last()
            .map(|o| o.kind.clone())
        {
            Some(OpKind::Pause) => live.entry(name).and_modify(|l| l.paused = true),
            Some(OpKind::Resume) => live.entry(name).and_modify(|l| l.paused = false),
            Some(OpKind::Delete) => {
                live.remove(&name);
                deleted.push(name);
                continue;
            }
            _ => continue,
        };
    }
}

fn random_spec(rng: &mut ChaCha8Rng) -> SpecDef {
    // Starts a little ahead so a new spec's first instants are not lost to the write's own
    // commit latency.
    let start = aligned_after(TimeDelta::seconds(3));
    if rng.random_bool(0.2) {
        SpecDef::Cron {
            expr: "* * * * *".into(),
            tz: "Europe/Berlin".into(),
            celery: rng.random_bool(0.5),
            start_at: start,
        }
    } else {
        SpecDef::Every {
            every_secs: rng.random_range(1..=4),
            anchor: start,
        }
    }
}

async fn edit(api: &Api, history: &SharedHistory, def: &Def) -> bool {
    let start = Utc::now();
    let spec = def.to_pb();
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let spec = spec.clone();
            async move {
                c.schedules
                    .update_schedule(pb::UpdateScheduleRequest {
                        schedule: Some(spec),
                        expected_revision: None,
                    })
                    .await
            }
        })
        .await;
    let attempts = match result {
        Ok((_, attempts)) => Some(attempts),
        // belfry turns an update without a revision into one expecting the revision it reads,
        // so a retry racing its own first attempt is refused as stale: if the stored spec is
        // ours, the first attempt took effect.
        Err(ApiError::Refused {
            code: Code::FailedPrecondition,
            ..
        }) => api
            .get(&def.name, OP_DEADLINE)
            .await
            .ok()
            .and_then(|s| s.definition)
            .and_then(|d| d.spec)
            .filter(|stored| same_spec(stored, &def.spec.to_pb()))
            .map(|_| 2),
        Err(_) => None,
    };
    match attempts {
        Some(attempts) => {
            record(
                history,
                Op {
                    schedule: def.name.clone(),
                    kind: OpKind::Edit {
                        spec: def.spec.clone(),
                    },
                    start,
                    end: Utc::now(),
                    attempts,
                },
            );
            true
        }
        None => {
            let err = match result {
                Err(err) => err.to_string(),
                Ok(_) => String::new(),
            };
            incident(history, format!("edit {}: {err}", def.name));
            unsettled(history, &def.name, start);
            false
        }
    }
}

async fn set_enabled(api: &Api, history: &SharedHistory, name: &str, enabled: bool) -> bool {
    let start = Utc::now();
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let name = name.to_string();
            async move {
                let request = pb::ScheduleName { name };
                if enabled {
                    c.schedules.resume_schedule(request).await
                } else {
                    c.schedules.pause_schedule(request).await
                }
            }
        })
        .await;
    match result {
        Ok((_, attempts)) => {
            record(
                history,
                Op {
                    schedule: name.to_string(),
                    kind: if enabled {
                        OpKind::Resume
                    } else {
                        OpKind::Pause
                    },
                    start,
                    end: Utc::now(),
                    attempts,
                },
            );
            true
        }
        Err(err) => {
            incident(
                history,
                format!("{} {name}: {err}", if enabled { "resume" } else { "pause" }),
            );
            unsettled(history, name, start);
            false
        }
    }
}

async fn delete(api: &Api, history: &SharedHistory, name: &str) -> bool {
    let start = Utc::now();
    let result = api
        .call(OP_DEADLINE, |mut c| {
            let name = name.to_string();
            async move {
                c.schedules
                    .delete_schedule(pb::DeleteScheduleRequest {
                        name,
                        expected_revision: None,
                    })
                    .await
            }
        })
        .await;
    let attempts = match result {
        Ok((_, attempts)) => attempts,
        // A retry of a delete that had taken effect.
        Err(ApiError::Refused {
            code: Code::NotFound,
            ..
        }) => 2,
        Err(err) => {
            incident(history, format!("delete {name}: {err}"));
            unsettled(history, name, start);
            return false;
        }
    };
    record(
        history,
        Op {
            schedule: name.to_string(),
            kind: OpKind::Delete,
            start,
            end: Utc::now(),
            attempts,
        },
    );
    true
}

/// An operation whose outcome is unknown: recorded as a delete that may or may not have
/// happened at any time from `start` (the checker then expects nothing of it after `start`).
fn unsettled(history: &SharedHistory, name: &str, start: DateTime<Utc>) {
    record(
        history,
        Op {
            schedule: name.to_string(),
            kind: OpKind::Delete,
            start,
            end: Utc::now() + TimeDelta::days(1),
            attempts: 0,
        },
    );
}

/// Whether a stored spec is the one sent (instants compared as instants: the API may write
/// them differently).
fn same_spec(a: &pb::Spec, b: &pb::Spec) -> bool {
    let instant = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.to_utc());
    a.every == b.every
        && a.crontab == b.crontab
        && a.cron == b.cron
        && a.timezone.trim_start_matches("UTC") == b.timezone.trim_start_matches("UTC")
        && instant(&a.anchor) == instant(&b.anchor)
        && instant(&a.start_at) == instant(&b.start_at)
}
