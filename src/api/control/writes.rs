//! Writes, executed on the leader: each becomes one command stamped with the leader's clock,
//! committed through group commit (a bulk apply in entries of at most `MAX_COMMANDS_PER_ENTRY`).
//!
//! Invariant: every command passes `admit` before it is proposed, and ids a retry must reuse (a
//! new schedule's incarnation, a manual run's task id) come with the request, so a request
//! retried after a leader change cannot create or dispatch twice. It must not speak gRPC.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Control;
use crate::api::error::ApiError;
use crate::raft::NodeId;
use crate::state::{Command, CommandResult, FireItem, Rejection, ScheduleDef};

/// How long a write of a newer log entry format waits to hear which format each member reads.
const FORMAT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Changes at most this many schedules in one `ApplySchedules` (committed in entries of at
/// most `MAX_COMMANDS_PER_ENTRY` changes).
pub const MAX_APPLY: usize = 10_000;

/// How long an update without an expected revision keeps rereading and retrying after losing
/// races; each lost race means another write to the schedule committed, so this only runs out
/// under a storm of writes to one schedule.
const UNPINNED_UPDATE_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WriteOp {
    Create {
        def: ScheduleDef,
        incarnation: Uuid,
    },
    Update {
        def: ScheduleDef,
        /// The request left `enabled` unset: keep the stored value.
        keep_enabled: bool,
        expected_revision: Option<u64>,
    },
    Delete {
        name: String,
        expected_revision: Option<u64>,
    },
    SetEnabled {
        name: String,
        enabled: bool,
    },
    Trigger {
        name: String,
        task_id: Uuid,
    },
    Apply {
        defs: Vec<ScheduleDef>,
        prune: bool,
        prune_selector: BTreeMap<String, String>,
        /// Incarnations for schedules the set creates, in order of `defs`.
        incarnations: Vec<Uuid>,
    },
    /// Forwarded in format 2 (`Forwarded::format_of`), as the two below: a leader of an
    /// earlier build refuses it by its label.
    Backfill(super::backfill::BackfillAsk),
    SkipOccurrences {
        name: String,
        next: u32,
        instants: Vec<DateTime<Utc>>,
    },
    PauseUntil {
        name: String,
        until: DateTime<Utc>,
        note: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WriteOutcome {
    Revision(u64),
    Backfill {
        total: u64,
        /// With a dry run: the first `backfill::LISTED` occurrences.
        listed: Vec<DateTime<Utc>>,
        started: bool,
    },
    Triggered {
        task_id: Uuid,
        scheduled_at: DateTime<Utc>,
    },
    Applied {
        created: u32,
        updated: u32,
        unchanged: u32,
        deleted: u32,
    },
}

/// A committed write: its outcome and the log index a reader must have applied to see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Written {
    pub log_index: u64,
    pub outcome: WriteOutcome,
}

impl Control {
    /// Refuses a command of a log entry format that some member (voter or learner) does not
    /// advertise reading: a node of an earlier build would refuse the entry, or read it without
    /// the fields it added. A member this leader has not heard from yet (just after an
    /// election) is waited for up to `FORMAT_WAIT`, then counts as format 1. This is the
    /// members' advertisement at the time of the write, not a cluster version committed through
    /// Raft (ARCHITECTURE.md, "Formats").
    async fn check_members_read(&self, format: u32) -> Result<(), ApiError> {
        if format <= 1 {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + FORMAT_WAIT;
        loop {
            let advertised = self.network.advertised_formats();
            let members: Vec<NodeId> = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                let ids = m.membership_config.membership().nodes().map(|(id, _)| *id);
                ids.filter(|id| *id != self.node_id).collect()
            };
            let unheard = members.iter().any(|id| !advertised.contains_key(id));
            if unheard && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            let behind: Vec<String> = members
                .iter()
                .filter(|id| advertised.get(id).copied().unwrap_or(1) < format)
                .map(|id| id.to_string())
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            let what = match format {
                2 => "a solar spec or last_run_at",
                _ => "run control",
            };
            return Err(ApiError::FailedPrecondition(format!(
                "this write needs log entry format {format} ({what}), \
                 which node(s) {} do not read yet: upgrade every node first",
                behind.join(", ")
            )));
        }
    }

    /// Commits `command` (grouped with concurrent writes into one entry).
    async fn commit(&self, command: Command) -> Result<(u64, CommandResult), ApiError> {
        self.check_members_read(command.format()).await?;
        if !self.outcomes_followed {
            check_needs_no_outcomes(&command)?;
        }
        let command = super::admit::admit_off_runtime(command).await?;
        let (reply, committed) = tokio::sync::oneshot::channel();
        self.writes
            .send(super::group_commit::PendingWrite { command, reply })
            .await
            .map_err(|_| ApiError::Unavailable("the node is shutting down".into()))?;
        committed
            .await
            .map_err(|_| ApiError::Unknown("the write was dropped during shutdown".into()))?
    }

    pub(super) async fn execute(&self, op: WriteOp) -> Result<Written, ApiError> {
        let now = Utc::now();
        match op {
            WriteOp::Create { def, incarnation } => {
                let name = def.name.clone();
                let command = Command::Put {
                    def,
                    expected_revision: Some(0),
                    incarnation,
                    at: now,
                };
                match self.commit(command).await? {
                    (log_index, CommandResult::Revision(revision)) => Ok(Written {
                        log_index,
                        outcome: WriteOutcome::Revision(revision),
                    }),
                    // A retried create whose first attempt went through.
                    (log_index, CommandResult::Rejected(Rejection::AlreadyExists(_)))
                        if self.incarnation_of(&name).await == Some(incarnation) =>
                    {
                        Ok(Written {
                            log_index,
                            outcome: WriteOutcome::Revision(1),
                        })
                    }
                    (_, other) => Err(rejected(other)),
                }
            }
            WriteOp::Update {
                def,
                keep_enabled,
                expected_revision,
            } => self.update(def, keep_enabled, expected_revision, now).await,
            WriteOp::Delete {
                name,
                expected_revision,
            } => {
                self.revision_write(Command::Delete {
                    name,
                    expected_revision,
                    at: now,
                })
                .await
            }
            WriteOp::SetEnabled { name, enabled } => {
                self.revision_write(Command::SetEnabled {
                    name,
                    enabled,
                    at: now,
                })
                .await
            }
            WriteOp::Trigger { name, task_id } => self.trigger(name, task_id, now).await,
            WriteOp::Apply {
                defs,
                prune,
                prune_selector,
                incarnations,
            } => {
                self.apply(defs, prune, &prune_selector, incarnations, now)
                    .await
            }
            WriteOp::Backfill(ask) => self.backfill(ask, now).await,
            op @ (WriteOp::SkipOccurrences { .. } | WriteOp::PauseUntil { .. }) => {
                self.occurrence_control(op, now).await
            }
        }
    }

    /// Skips occurrences, or pauses until an instant.
    async fn occurrence_control(
        &self,
        op: WriteOp,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        let command = match op {
            WriteOp::SkipOccurrences {
                name,
                next,
                instants,
            } => Command::SkipOccurrences {
                name,
                next,
                instants,
                at: now,
            },
            WriteOp::PauseUntil { name, until, note } => {
                if until <= now {
                    return Err(ApiError::invalid("until", "must be in the future"));
                }
                Command::PauseUntil {
                    name,
                    until,
                    note,
                    at: now,
                }
            }
            other => {
                return Err(ApiError::Internal(format!(
                    "not an occurrence control: {other:?}"
                )))
            }
        };
        self.revision_write(command).await
    }

    /// Replaces a schedule's definition. With an expected revision, a stale one is the caller's
    /// to resolve. Without one the caller asked for "whatever is stored now": the write pins
    /// the revision it read (so a concurrent pause is not undone by a stale `enabled`), and
    /// when another write lands in between it reads again and retries instead of reporting a
    /// conflict the caller never asked to hear about.
    async fn update(
        &self,
        def: ScheduleDef,
        keep_enabled: bool,
        expected_revision: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        let started = std::time::Instant::now();
        loop {
            let (revision, enabled) = {
                let applied = self.state.read().await;
                let record = applied.data.schedules().get(&*def.name).ok_or_else(|| {
                    ApiError::NotFound(format!("schedule {:?} not found", def.name))
                })?;
                (record.revision, record.def.enabled)
            };
            let mut def = def.clone();
            if keep_enabled {
                def.enabled = enabled;
            }
            let command = Command::Put {
                def,
                expected_revision: Some(expected_revision.unwrap_or(revision)),
                incarnation: Uuid::nil(),
                at: now,
            };
            match self.commit(command).await? {
                (log_index, CommandResult::Revision(revision)) => {
                    return Ok(Written {
                        log_index,
                        outcome: WriteOutcome::Revision(revision),
                    })
                }
                (_, CommandResult::Rejected(Rejection::StaleRevision { .. }))
                    if expected_revision.is_none()
                        && started.elapsed() < UNPINNED_UPDATE_BUDGET => {}
                (_, other) => return Err(rejected(other)),
            }
        }
    }

    async fn incarnation_of(&self, name: &str) -> Option<Uuid> {
        let applied = self.state.read().await;
        applied.data.schedules().get(name).map(|r| r.incarnation)
    }

    pub(super) async fn revision_write(&self, command: Command) -> Result<Written, ApiError> {
        match self.commit(command).await? {
            (log_index, CommandResult::Revision(revision)) => Ok(Written {
                log_index,
                outcome: WriteOutcome::Revision(revision),
            }),
            (_, other) => Err(rejected(other)),
        }
    }

    async fn trigger(
        &self,
        name: String,
        task_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        let fire = {
            let applied = self.state.read().await;
            let record = applied
                .data
                .schedules()
                .get(name.as_str())
                .ok_or_else(|| ApiError::NotFound(format!("schedule {name:?} not found")))?;
            // Rendered once here so a definition that cannot be sent is refused now; the
            // pusher renders it again from the committed definition.
            crate::dispatch::render::render(
                &self.encoder,
                &record.def,
                task_id,
                now,
                crate::celery::Trigger::Manual,
            )
            .map_err(|e| ApiError::Internal(e.to_string()))?;
            FireItem {
                schedule: name.clone(),
                incarnation: record.incarnation,
                scheduled_at: now,
                task_id,
                manual: true,
                backfill: false,
            }
        };
        let command = Command::Fire {
            fires: vec![fire],
            skips: Vec::new(),
            faults: Vec::new(),
            at: now,
        };
        match self.commit(command).await? {
            // Not accepted: already in the outbox (a retried request) or the schedule vanished.
            (log_index, CommandResult::Fired { .. }) => {
                if self.incarnation_of(&name).await.is_none() {
                    return Err(ApiError::NotFound(format!("schedule {name:?} not found")));
                }
                Ok(Written {
                    log_index,
                    outcome: WriteOutcome::Triggered {
                        task_id,
                        scheduled_at: now,
                    },
                })
            }
            (_, other) => Err(rejected(other)),
        }
    }

    /// A put for every new or changed schedule and, with `prune`, a delete for every selected
    /// schedule not in the set, committed as `Batch` entries of at most
    /// `MAX_COMMANDS_PER_ENTRY` commands.
    async fn apply(
        &self,
        defs: Vec<ScheduleDef>,
        prune: bool,
        selector: &BTreeMap<String, String>,
        incarnations: Vec<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Written, ApiError> {
        let changes = {
            let applied = self.state.read().await;
            crate::state::diff::diff(&applied.data, &defs, prune.then_some(selector), now, |i| {
                incarnations.get(i).copied().unwrap_or_else(Uuid::new_v4)
            })
        };
        let outcome = WriteOutcome::Applied {
            created: changes.created,
            updated: changes.updated,
            unchanged: changes.unchanged,
            deleted: changes.deleted,
        };
        let commands = changes.commands;
        if commands.is_empty() {
            let (read, _) = self
                .raft
                .get_read_log_id()
                .await
                .map_err(super::not_leader)?;
            return Ok(Written {
                log_index: read.map_or(0, |id| id.index),
                outcome,
            });
        }
        let (log_index, refused) = self.commit_in_batches(commands).await?;
        if let Some(first) = refused.first() {
            return Err(ApiError::FailedPrecondition(format!(
                "{} of the changes were refused (the schedules changed meanwhile; apply again): {first}",
                refused.len()
            )));
        }
        Ok(Written { log_index, outcome })
    }
}

impl Control {
    /// Commits `commands` in order, in entries of at most `MAX_COMMANDS_PER_ENTRY`: the last
    /// entry's log index, and the reason of each command that was refused. A failure part-way
    /// leaves the earlier entries applied; diffing and committing again completes the change
    /// (unchanged schedules are left alone).
    pub async fn commit_in_batches(
        &self,
        commands: Vec<Command>,
    ) -> Result<(u64, Vec<Rejection>), ApiError> {
        let mut log_index = 0;
        let mut refused = Vec::new();
        for batch in Command::batches(commands) {
            let (index, result) = self.commit(batch).await?;
            log_index = index;
            match result {
                CommandResult::Batch(results) => {
                    refused.extend(results.into_iter().filter_map(|r| match r {
                        CommandResult::Rejected(rejection) => Some(rejection),
                        _ => None,
                    }))
                }
                other => return Err(rejected(other)),
            }
        }
        Ok((log_index, refused))
    }
}

/// Refuses run control that only works with task outcomes, on a leader without a result
/// backend: an overlap limit would hold runs open until `max_runtime`, and auto-pause would
/// never count a failure.
fn check_needs_no_outcomes(command: &Command) -> Result<(), ApiError> {
    match command {
        Command::Batch(commands) => commands.iter().try_for_each(check_needs_no_outcomes),
        Command::Put { def, .. } => {
            let control = def.run_control();
            let field = if control.limits_overlap() {
                "control.overlap"
            } else if control.pause_after_failures.is_some() {
                "control.pause_after_failures"
            } else {
                return Ok(());
            };
            Err(ApiError::FailedPrecondition(format!(
                "{field} needs task outcomes, and the leader has no result backend: start \
                 every node with --result-backend (Celery's result_backend)"
            )))
        }
        _ => Ok(()),
    }
}

fn rejected(result: CommandResult) -> ApiError {
    match result {
        CommandResult::Rejected(rejection) => rejection.into(),
        other => ApiError::Internal(format!("unexpected result {other:?}")),
    }
}
