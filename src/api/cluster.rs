//! The `belfry.v1.Cluster` gRPC service: status, membership changes and leadership handover.
//!
//! Invariant: every call demands its role first, and is answered by the leader through
//! `Control::on_leader`. It must not touch Raft itself: membership and handover are
//! `control::membership`'s.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth::{require, Role};
use super::control::{Control, LeaderReply, LeaderRequest, StatusView};
use super::error::ApiError;
use super::pb;
use super::pb::cluster_server::Cluster;

pub struct ClusterApi {
    control: Arc<Control>,
}

impl ClusterApi {
    pub fn new(control: Arc<Control>) -> Self {
        ClusterApi { control }
    }

    fn status_reply(&self, view: StatusView) -> pb::ClusterStatus {
        use super::control::Role as R;
        pb::ClusterStatus {
            cluster_name: view.cluster_name,
            leader_id: view.leader_id,
            term: view.term,
            commit_index: view.commit_index,
            applied_index: view.applied_index,
            last_log_index: view.last_log_index,
            members: view
                .members
                .into_iter()
                .map(|m| pb::Member {
                    id: m.id,
                    address: m.address,
                    role: match m.role {
                        R::Leader => pb::Role::Leader,
                        R::Follower => pb::Role::Follower,
                        R::Learner => pb::Role::Learner,
                    } as i32,
                    matched_index: m.matched_index,
                    lag: m.lag,
                })
                .collect(),
            outbox_depth: view.outbox_depth,
            schedules: view.schedules,
            node_id: self.control.node_id(),
        }
    }

    async fn status_of(&self, request: LeaderRequest) -> Result<pb::ClusterStatus, ApiError> {
        match self.control.on_leader(request).await? {
            LeaderReply::Status(view) => Ok(self.status_reply(view)),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}"))),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

#[tonic::async_trait]
impl Cluster for ClusterApi {
    async fn get_status(&self, request: Request<pb::GetStatusRequest>) -> Reply<pb::ClusterStatus> {
        require(&request, Role::ReadOnly)?;
        Ok(Response::new(self.status_of(LeaderRequest::Status).await?))
    }

    async fn add_node(&self, request: Request<pb::AddNodeRequest>) -> Reply<pb::ClusterStatus> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        if body.node_id == 0 {
            return Err(ApiError::invalid("node_id", "must be positive").into());
        }
        if !crate::raft::network::is_host_port(&body.address) {
            return Err(ApiError::invalid(
                "address",
                format!("{:?} is not host:port", body.address),
            )
            .into());
        }
        Ok(Response::new(
            self.status_of(LeaderRequest::AddNode {
                node_id: body.node_id,
                address: body.address,
                learner_only: body.learner_only,
            })
            .await?,
        ))
    }

    async fn remove_node(
        &self,
        request: Request<pb::RemoveNodeRequest>,
    ) -> Reply<pb::ClusterStatus> {
        require(&request, Role::Admin)?;
        let node_id = request.into_inner().node_id;
        if node_id == 0 {
            return Err(ApiError::invalid("node_id", "must be positive").into());
        }
        Ok(Response::new(
            self.status_of(LeaderRequest::RemoveNode { node_id })
                .await?,
        ))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Reply<pb::TransferLeaderResponse> {
        require(&request, Role::Admin)?;
        let body = request.into_inner();
        let reply = self
            .control
            .on_leader(LeaderRequest::TransferLeader {
                to: nonzero(body.to),
                only_if_leader: nonzero(body.only_if_leader),
            })
            .await?;
        match reply {
            LeaderReply::Transferred(view) => Ok(Response::new(pb::TransferLeaderResponse {
                previous_leader: view.previous_leader,
                new_leader: view.new_leader,
                transferred: view.transferred,
            })),
            other => Err(ApiError::Internal(format!("unexpected reply {other:?}")).into()),
        }
    }
}
