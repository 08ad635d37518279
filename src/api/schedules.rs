//! The `belfry.v1.Schedules` gRPC service: checks the caller's role and the request's shape,
//! then hands writes to the leader through `Control`.
//!
//! Invariant: every call demands its role first; a read is served from the local state after a
//! linearizable barrier (or at once, when the caller asks for a local read with the
//! `belfry-read: local` header), and a write's answer is read once its index is applied here.
//! It must not touch Raft or the state except through `Control`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::auth::{require, Role};
use super::control::{
    BackfillAsk, Control, LeaderReply, LeaderRequest, PageQuery, WriteOp, WriteOutcome, Written,
    DEFAULT_BACKFILL_RATE,
};
use super::convert::{pb_run, pb_schedule, schedule_def, spec_input, timestamp};
use super::error::ApiError;
use super::pb;
use super::pb::schedules_server::Schedules;
use crate::schedule::{parse_bounded_instant, Spec};
use crate::state::validate::{validate_def, validate_existing_name, MAX_LABELS};
use crate::state::ScheduleDef;

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1_000;
pub(super) const MAX_PREVIEW: u32 = 1_000;
pub(super) use super::control::MAX_APPLY;

pub struct SchedulesApi {
    control: Arc<Control>,
}

impl SchedulesApi {
    pub fn new(control: Arc<Control>) -> Self {
        SchedulesApi { control }
    }

    async fn write(&self, op: WriteOp) -> Result<Written, ApiError> {
        match self
            .control
            .on_leader(LeaderRequest::Write(Box::new(op)))
            .await?
        {
            LeaderReply::Written(written) => {
                self.control.wait_applied(written.log_index).await?;
                Ok(written)
            }
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }

    async fn barrier<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        let local = request
            .metadata()
            .get("belfry-read")
            .is_some_and(|v| v.as_bytes() == b"local");
        if local {
            Ok(())
        } else {
            self.control.read_barrier().await
        }
    }

    async fn stored(&self, name: &str) -> Result<pb::Schedule, ApiError> {
        self.control.schedule(name, pb_schedule).await
    }

    async fn set_enabled(
        &self,
        request: Request<pb::ScheduleName>,
        enabled: bool,
    ) -> Result<pb::Schedule, ApiError> {
        require(&request, Role::Admin)?;
        let name = request.into_inner().name;
        validate_existing_name(&name).map_err(ApiError::from)?;
        self.write(WriteOp::SetEnabled {
            name: name.clone(),
            enabled,
        })
        .await?;
        self.stored(&name).await
    }
}

/// The longest note a timed pause keeps.
const MAX_PAUSE_NOTE: usize = 1_024;

fn revision(written: &Written) -> u64 {
    match written.outcome {
        WriteOutcome::Revision(revision) => revision,
        _ => 0,
    }
}

/// A definition from a request, checked in full.
fn checked_def(spec: Option<&pb::ScheduleSpec>, field: &str) -> Result<ScheduleDef, ApiError> {
    let spec = spec.ok_or_else(|| ApiError::invalid(field, "required"))?;
    let def = schedule_def(spec)?;
    validate_def(&def, Utc::now())?;
    Ok(def)
}

fn check_labels(
    labels: &std::collections::HashMap<String, String>,
    field: &str,
) -> Result<(), ApiError> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::invalid(
            field,
            format!("at most {MAX_LABELS} labels"),
        ));
    }
    Ok(())
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl Schedules for SchedulesApi {
    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Reply<pb::Schedule> {
        require(&request, Role::Admin)?;
        let def = checked_def(request.get_ref().schedule.as_ref(), "schedule")?;
        let name = def.name.clone();
        self.write(WriteOp::Create {
            def,
            incarnation: Uuid::new_v4(),
        })
        .await?;
        Ok(Response::new(self.stored(&name).await?))
    }

    async fn update_schedule(
        &self,
        request: Request<pb::UpdateScheduleRequest>,
    ) -> Reply<pb::Schedule> {
        require(&request, Role::Admin)?;
        let body = request.get_ref();
        let def = checked_def(body.schedule.as_ref(), "schedule")?;
        let keep_enabled = body.schedule.as_ref().is_some_and(|s| s.enabled.is_none());
        let name = def.name.clone();
        self.write(WriteOp::Update {
            def,
            keep_enabled,
            expected_revision: body.expected_revision,
        })
        .await?;
        Ok(Response::new(self.stored(&name).await?))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::DeleteScheduleRequest>,
    ) -> Reply<pb::DeleteScheduleResponse> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        validate_existing_name(&body.name).map_err(ApiError::from)?;
        let written = self
            .write(WriteOp::Delete {
                name: body.name,
                expected_revision: body.expected_revision,
            })
            .await?;
        Ok(Response::new(pb::DeleteScheduleResponse {
            revision: revision(&written),
        }))
    }

    async fn get_schedule(&self, request: Request<pb::GetScheduleRequest>) -> Reply<pb::Schedule> {
        require(&request, Role::ReadOnly)?;
        validate_existing_name(&request.get_ref().name).map_err(ApiError::from)?;
        self.barrier(&request).await?;
        Ok(Response::new(self.stored(&request.get_ref().name).await?))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Reply<pb::ListSchedulesResponse> {
        require(&request, Role::ReadOnly)?;
        let body = request.get_ref();
        let page_size = match body.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(
                    ApiError::invalid("page_size", format!("at most {MAX_PAGE_SIZE}")).into(),
                )
            }
            n => n,
        } as usize;
        check_labels(&body.labels, "labels")?;
        if !body.page_token.is_empty() {
            validate_existing_name(&body.page_token)
                .map_err(|_| ApiError::invalid("page_token", "not a token this API issued"))?;
        }
        self.barrier(&request).await?;
        let query = PageQuery {
            name_prefix: &body.name_prefix,
            labels: &body.labels,
            after: &body.page_token,
            size: page_size,
        };
        let (schedules, next_page_token) = self.control.schedules_page(&query, pb_schedule).await;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules,
            next_page_token,
        }))
    }

    async fn pause_schedule(&self, request: Request<pb::ScheduleName>) -> Reply<pb::Schedule> {
        Ok(Response::new(self.set_enabled(request, false).await?))
    }

    async fn resume_schedule(&self, request: Request<pb::ScheduleName>) -> Reply<pb::Schedule> {
        Ok(Response::new(self.set_enabled(request, true).await?))
    }

    async fn trigger_schedule(
        &self,
        request: Request<pb::ScheduleName>,
    ) -> Reply<pb::TriggerScheduleResponse> {
        require(&request, Role::Admin)?;
        let name = request.into_inner().name;
        validate_existing_name(&name).map_err(ApiError::from)?;
        let written = self
            .write(WriteOp::Trigger {
                name,
                task_id: Uuid::new_v4(),
            })
            .await?;
        match written.outcome {
            WriteOutcome::Triggered {
                task_id,
                scheduled_at,
            } => Ok(Response::new(pb::TriggerScheduleResponse {
                task_id: task_id.to_string(),
                scheduled_at: Some(timestamp(scheduled_at)),
            })),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn skip_occurrences(
        &self,
        request: Request<pb::SkipOccurrencesRequest>,
    ) -> Reply<pb::Schedule> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        validate_existing_name(&body.name).map_err(ApiError::from)?;
        if body.next == 0 && body.occurrences.is_empty() {
            return Err(ApiError::invalid("next", "give a count or occurrences to skip").into());
        }
        let instants = body
            .occurrences
            .iter()
            .map(|text| {
                parse_bounded_instant("occurrences", text)
                    .map_err(|e| ApiError::invalid(e.field, e.reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.write(WriteOp::SkipOccurrences {
            name: body.name.clone(),
            next: body.next,
            instants,
        })
        .await?;
        Ok(Response::new(self.stored(&body.name).await?))
    }

    async fn pause_schedule_until(
        &self,
        request: Request<pb::PauseUntilRequest>,
    ) -> Reply<pb::Schedule> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        validate_existing_name(&body.name).map_err(ApiError::from)?;
        if body.note.len() > MAX_PAUSE_NOTE {
            return Err(ApiError::invalid(
                "note",
                format!("is longer than {MAX_PAUSE_NOTE} bytes"),
            )
            .into());
        }
        let until = parse_bounded_instant("until", &body.until)
            .map_err(|e| ApiError::invalid(e.field, e.reason))?;
        self.write(WriteOp::PauseUntil {
            name: body.name.clone(),
            until,
            note: body.note,
        })
        .await?;
        Ok(Response::new(self.stored(&body.name).await?))
    }

    async fn backfill_schedule(
        &self,
        request: Request<pb::BackfillRequest>,
    ) -> Reply<pb::BackfillResponse> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        validate_existing_name(&body.name).map_err(ApiError::from)?;
        let instant = |field: &'static str, text: &str| {
            parse_bounded_instant(field, text).map_err(|e| ApiError::invalid(e.field, e.reason))
        };
        let ask = BackfillAsk {
            from: instant("from", &body.from)?,
            to: instant("to", &body.to)?,
            name: body.name,
            rate: match body.rate_per_second {
                0 => DEFAULT_BACKFILL_RATE,
                rate => rate,
            },
            overlap: body.apply_overlap,
            dry_run: body.dry_run,
        };
        let written = self.write(WriteOp::Backfill(ask)).await?;
        match written.outcome {
            WriteOutcome::Backfill {
                total,
                listed,
                started,
            } => Ok(Response::new(pb::BackfillResponse {
                total,
                occurrences: listed.into_iter().map(timestamp).collect(),
                started,
            })),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }

    async fn preview_schedule(
        &self,
        request: Request<pb::PreviewScheduleRequest>,
    ) -> Reply<pb::PreviewScheduleResponse> {
        require(&request, Role::ReadOnly)?;
        let body = request.get_ref();
        let count = match body.count {
            0 => 5,
            n if n > MAX_PREVIEW => {
                return Err(ApiError::invalid("count", format!("at most {MAX_PREVIEW}")).into())
            }
            n => n,
        } as usize;
        let now = Utc::now();
        let after = if body.after.is_empty() {
            now
        } else {
            parse_bounded_instant("after", &body.after)
                .map_err(|e| ApiError::invalid(e.field, e.reason))?
        };
        let occurrences = match &body.target {
            Some(pb::preview_schedule_request::Target::Name(name)) => {
                validate_existing_name(name).map_err(ApiError::from)?;
                self.barrier(&request).await?;
                self.control.upcoming(name, after, count).await?
            }
            Some(pb::preview_schedule_request::Target::Spec(spec)) => {
                let input = spec_input(spec);
                let spec = input
                    .check_instants()
                    .and_then(|()| Spec::parse(&input, now))
                    .map_err(|e| ApiError::invalid(format!("spec.{}", e.field), e.reason))?;
                spec.upcoming(after, count)
            }
            None => return Err(ApiError::invalid("target", "give a name or a spec").into()),
        };
        Ok(Response::new(pb::PreviewScheduleResponse {
            occurrences: occurrences.into_iter().map(timestamp).collect(),
        }))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Reply<pb::ListRunsResponse> {
        require(&request, Role::ReadOnly)?;
        validate_existing_name(&request.get_ref().name).map_err(ApiError::from)?;
        self.barrier(&request).await?;
        let runs = self.control.runs(&request.get_ref().name).await?;
        Ok(Response::new(pb::ListRunsResponse {
            runs: runs.iter().map(pb_run).collect(),
        }))
    }

    async fn apply_schedules(
        &self,
        request: Request<pb::ApplySchedulesRequest>,
    ) -> Reply<pb::ApplySchedulesResponse> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        if body.schedules.len() > MAX_APPLY {
            return Err(
                ApiError::invalid("schedules", format!("at most {MAX_APPLY} per request")).into(),
            );
        }
        check_labels(&body.prune_selector, "prune_selector")?;
        let now = Utc::now();
        let mut names = BTreeSet::new();
        let mut defs = Vec::with_capacity(body.schedules.len());
        for (i, spec) in body.schedules.iter().enumerate() {
            let prefix = |e: ApiError| match e {
                ApiError::InvalidArgument { field, reason } => {
                    ApiError::invalid(format!("schedules[{i}].{field}"), reason)
                }
                other => other,
            };
            let def = schedule_def(spec).map_err(prefix)?;
            validate_def(&def, now).map_err(|e| prefix(e.into()))?;
            if !names.insert(def.name.clone()) {
                return Err(ApiError::invalid(
                    format!("schedules[{i}].name"),
                    format!("{:?} appears twice", def.name),
                )
                .into());
            }
            defs.push(def);
        }
        let incarnations = defs.iter().map(|_| Uuid::new_v4()).collect();
        let written = self
            .write(WriteOp::Apply {
                defs,
                prune: body.prune,
                prune_selector: body.prune_selector.into_iter().collect::<BTreeMap<_, _>>(),
                incarnations,
            })
            .await?;
        match written.outcome {
            WriteOutcome::Applied {
                created,
                updated,
                unchanged,
                deleted,
            } => Ok(Response::new(pb::ApplySchedulesResponse {
                created,
                updated,
                unchanged,
                deleted,
            })),
            other => Err(ApiError::Internal(format!("unexpected outcome {other:?}")).into()),
        }
    }
}
