//! What each incarnation of a schedule owed: every instant up to the cutoff, classified as
//! required or optional (with the reason), from the run's own operations and the frontier.
//!
//! Invariant: an instant is optional only for a reason bounded from the outside (an
//! operation's edges, a pause, or no later delivery within the policy's threshold), never
//! from belfry's records. Must not look at which deliveries match which instant.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::{controls, Owed, Reason, Status, GRACE, LOOKAHEAD, SLACK};
use crate::consumer::Arrival;
use crate::expect::SpecDef;
use crate::history::{FaultWindow, History, Op, OpKind, Policy};

/// Latest scheduled instant of any delivery that had arrived by a given real time.
pub(super) struct Frontier {
    /// (arrival, running max of scheduled instants), by arrival.
    steps: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl Frontier {
    pub(super) fn new(arrivals: &[Arrival]) -> Frontier {
        let mut sorted: Vec<(DateTime<Utc>, DateTime<Utc>)> = arrivals
            .iter()
            .filter(|a| !a.manual)
            .map(|a| (a.arrived_at, a.scheduled_at))
            .collect();
        sorted.sort();
        let mut max = DateTime::<Utc>::MIN_UTC;
        let steps = sorted
            .into_iter()
            .map(|(arrived, scheduled)| {
                max = max.max(scheduled);
                (arrived, max)
            })
            .collect();
        Frontier { steps }
    }

    fn at(&self, x: DateTime<Utc>) -> DateTime<Utc> {
        let n = self.steps.partition_point(|(arrived, _)| *arrived <= x);
        if n == 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            self.steps[n - 1].1
        }
    }
}

/// The largest clock offset in force around `[from, to]`.
pub(super) fn offset_around(
    faults: &[FaultWindow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Duration {
    let margin = Duration::seconds(5);
    faults
        .iter()
        .filter(|f| f.offset_ms != 0)
        .filter(|f| f.start <= to + margin && f.end.is_none_or(|e| e >= from - margin))
        .map(|f| Duration::milliseconds(f.offset_ms.abs()))
        .max()
        .unwrap_or_default()
}

/// A schedule from one create to its delete (or the end).
pub(super) struct Incarnation<'a> {
    pub(super) name: String,
    pub(super) id: Option<Uuid>,
    pub(super) id_text: String,
    pub(super) ops: Vec<&'a Op>,
    /// The schedule's jitter: each run may be sent up to this late, never before its offset.
    pub(super) jitter_ms: u64,
}

pub(super) fn incarnations(history: &History) -> Vec<Incarnation<'_>> {
    let mut out: Vec<Incarnation> = Vec::new();
    let mut current: HashMap<&str, usize> = HashMap::new();
    for op in &history.ops {
        match &op.kind {
            OpKind::Create {
                incarnation,
                jitter_ms,
                ..
            } => {
                current.insert(&op.schedule, out.len());
                out.push(Incarnation {
                    name: op.schedule.clone(),
                    id: Uuid::parse_str(incarnation).ok(),
                    id_text: incarnation.clone(),
                    ops: vec![op],
                    jitter_ms: *jitter_ms,
                });
            }
            _ => {
                if let Some(i) = current.get(op.schedule.as_str()) {
                    out[*i].ops.push(op);
                }
                if matches!(op.kind, OpKind::Delete) {
                    current.remove(op.schedule.as_str());
                }
            }
        }
    }
    out
}

/// When a pause ended: a resume operation's window, or the instant a timed pause ran out.
#[derive(Clone, Copy)]
struct Resumed {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// A pause, and when it ended if it did.
type PauseWindow<'a> = (&'a Op, Option<Resumed>);

/// Every pause of an incarnation (a pause, a create that paused, a timed pause), each with
/// the resume that ended it (before any later pause or the delete), if one did. A timed pause
/// ends by itself at its instant (or at once, if the operation committed after it).
fn pause_windows<'a>(inc: &Incarnation<'a>) -> Vec<PauseWindow<'a>> {
    let mut pauses = Vec::new();
    for (i, op) in inc.ops.iter().enumerate() {
        let resume = match &op.kind {
            OpKind::Pause | OpKind::Create { paused: true, .. } => inc.ops[i + 1..]
                .iter()
                .take_while(|o| !is_pause(o) && !matches!(o.kind, OpKind::Delete))
                .find(|o| matches!(o.kind, OpKind::Resume))
                .map(|o| Resumed {
                    start: o.start,
                    end: o.end,
                }),
            OpKind::PauseUntil { until } => Some(Resumed {
                start: *until,
                end: (*until).max(op.end),
            }),
            _ => continue,
        };
        pauses.push((*op, resume));
    }
    pauses
}

fn is_pause(op: &Op) -> bool {
    matches!(op.kind, OpKind::Pause | OpKind::PauseUntil { .. })
}

/// One version of the spec: from its create or edit to the next edit, the delete or the end.
struct Version<'a> {
    spec: &'a SpecDef,
    created: bool,
    /// When the operation that began the version had certainly taken effect.
    edge: DateTime<Utc>,
    end: Option<&'a Op>,
    /// The frontier when the operation that ended the version began.
    settled_before_end: Option<DateTime<Utc>>,
    lo: DateTime<Utc>,
    hi: DateTime<Utc>,
}

impl<'a> Version<'a> {
    fn new(
        begin: &'a Op,
        end: Option<&'a Op>,
        frontier: &Frontier,
        faults: &[FaultWindow],
        cutoff: DateTime<Utc>,
    ) -> Option<Version<'a>> {
        let (spec, created) = match &begin.kind {
            OpKind::Create { spec, .. } => (spec, true),
            OpKind::Edit { spec } => (spec, false),
            _ => return None,
        };
        let begin_offset = offset_around(faults, begin.start, begin.end);
        let lo = if created {
            DateTime::<Utc>::MIN_UTC
        } else {
            // An edit's spec counts from its commit: instants before the request are not its.
            begin.start - begin_offset - SLACK
        };
        let hi = end
            .map(|e| e.end + LOOKAHEAD + offset_around(faults, e.start, e.end) + SLACK)
            .unwrap_or(cutoff)
            .min(cutoff);
        Some(Version {
            spec,
            created,
            edge: begin.end + begin_offset + SLACK,
            end,
            settled_before_end: end.map(|e| frontier.at(e.start)),
            lo,
            hi,
        })
    }

    /// Whether `t` lies at the racy edge of the operation that began or ended this version.
    fn edge_status(&self, t: DateTime<Utc>) -> Status {
        let mut status = Status::Required;
        if !self.created && t <= self.edge + LOOKAHEAD {
            status = Status::Optional(Reason::Edit);
        } else if self.created && t <= self.edge {
            status = Status::Optional(Reason::Create);
        }
        if let (Some(e), Some(settled)) = (self.end, self.settled_before_end) {
            if t >= settled {
                status = Status::Optional(if matches!(e.kind, OpKind::Delete) {
                    Reason::Delete
                } else {
                    Reason::Edit
                });
            }
        }
        status
    }
}

/// What classifying an incarnation's instants needs besides the instant itself.
struct Classifier<'a> {
    policy: Policy,
    /// The policy's catch-up window.
    window: Duration,
    /// How late an instant may first be planned before the policy may skip it.
    late_after: Duration,
    frontier: &'a Frontier,
    faults: &'a [FaultWindow],
    pauses: Vec<PauseWindow<'a>>,
}

impl Classifier<'_> {
    /// The status of instant `t` of `version`; `None` when the instant must not be delivered
    /// at all (it fell in a pause that never ended).
    fn classify(&self, version: &Version, t: DateTime<Utc>) -> Option<Status> {
        let mut status = version.edge_status(t);
        for (pause, resume) in &self.pauses {
            status = self.through_pause(t, status, pause, *resume)?;
        }
        if status == Status::Required {
            let offset = offset_around(self.faults, t - LOOKAHEAD, t + self.late_after);
            if self.frontier.at(t + self.late_after - offset - SLACK) < t {
                status = Status::Optional(Reason::Late);
            }
        }
        Some(status)
    }

    /// `status` as one pause leaves it; `None` when the pause forbids the instant.
    fn through_pause(
        &self,
        t: DateTime<Utc>,
        status: Status,
        pause: &Op,
        resume: Option<Resumed>,
    ) -> Option<Status> {
        if t < self.frontier.at(pause.start) {
            return Some(status);
        }
        match resume {
            Some(resume) => {
                let resumed =
                    resume.end + offset_around(self.faults, resume.start, resume.end) + SLACK;
                if t > resumed {
                    return Some(status);
                }
                // `all` fires what fell in the pause when it resumes, if the window still
                // covers it.
                let covered =
                    self.policy == Policy::All && resumed - t + Duration::seconds(60) < self.window;
                if !covered && status == Status::Required {
                    return Some(Status::Optional(Reason::Pause));
                }
                Some(status)
            }
            None => {
                let paused = pause.end
                    + LOOKAHEAD
                    + offset_around(self.faults, pause.start, pause.end)
                    + SLACK;
                if t > paused {
                    return None;
                }
                if status == Status::Required {
                    return Some(Status::Optional(Reason::PauseTail));
                }
                Some(status)
            }
        }
    }
}

/// Classifies every instant of one incarnation up to `cutoff`.
pub(super) fn expectations(
    inc: &Incarnation,
    policy: (Policy, u64),
    frontier: &Frontier,
    faults: &[FaultWindow],
    cutoff: DateTime<Utc>,
) -> BTreeMap<DateTime<Utc>, Owed> {
    let window = Duration::seconds(policy.1.min(100 * 365 * 86_400) as i64);
    let classifier = Classifier {
        policy: policy.0,
        window,
        late_after: match policy.0 {
            Policy::All => window,
            _ => GRACE.min(window),
        },
        frontier,
        faults,
        pauses: pause_windows(inc),
    };
    let delete = inc.ops.iter().find(|o| matches!(o.kind, OpKind::Delete));
    let versions: Vec<usize> = inc
        .ops
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.kind, OpKind::Create { .. } | OpKind::Edit { .. }))
        .map(|(i, _)| i)
        .collect();
    let mut map: BTreeMap<DateTime<Utc>, Owed> = BTreeMap::new();
    for (k, &begin_index) in versions.iter().enumerate() {
        let end: Option<&Op> = versions.get(k + 1).map(|i| inc.ops[*i]).or(delete.copied());
        let Some(version) = Version::new(inc.ops[begin_index], end, frontier, faults, cutoff)
        else {
            continue;
        };
        for t in version.spec.occurrences(version.lo, version.hi) {
            if let Some(status) = classifier.classify(&version, t) {
                // Where two versions share an instant, required wins.
                map.entry(t)
                    .and_modify(|owed| {
                        if status == Status::Required {
                            owed.status = status;
                        }
                    })
                    .or_insert(Owed::new(status));
            }
        }
    }
    controls::apply(inc, &mut map, faults, cutoff);
    map
}

/// The spec in force when `op` began: the last create or edit before it.
pub(super) fn spec_at<'a>(inc: &Incarnation<'a>, op: &Op) -> Option<&'a SpecDef> {
    inc.ops
        .iter()
        .take_while(|o| o.start <= op.start)
        .filter_map(|o| match &o.kind {
            OpKind::Create { spec, .. } | OpKind::Edit { spec } => Some(spec),
            _ => None,
        })
        .last()
}
