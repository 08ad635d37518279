//! The gRPC API every node serves: schedule management (`belfry.v1.Schedules`), cluster
//! administration (`belfry.v1.Cluster`), the standard health service and server reflection.
//!
//! Invariant: every call of the two `belfry.v1` services passes the `auth` interceptor before
//! its handler runs, and the work itself is done through `control`. Owns request checking,
//! authentication and the mapping to gRPC statuses: it must not touch Raft or the state except
//! through `control`.

pub(crate) mod auth;
pub mod client;
mod cluster;
pub(crate) mod codec;
pub mod control;
mod convert;
pub(crate) mod error;
mod schedules;

use std::sync::Arc;

pub use cluster::ClusterApi;
pub use control::Control;
pub(crate) use convert::spec_input;
pub use convert::{pb_def as convert_def, schedule_def};
pub use error::ApiError;
pub use schedules::{SchedulesApi, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// The generated code of `proto/belfry/v1`. `PreviewScheduleRequest`'s target holds a whole
/// `Spec` beside a name; a request lives for one call, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub mod pb {
    tonic::include_proto!("belfry.v1");
}

/// Every `.proto` of belfry, compiled, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("belfry_descriptor");

/// The largest API message either side accepts (an `ApplySchedules` of 10,000 schedules).
pub const MAX_API_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// The API services with authentication in front, ready to add to a tonic router.
pub fn services(
    control: Arc<Control>,
    auth: auth::Authenticator,
) -> (
    tonic::service::interceptor::InterceptedService<
        pb::schedules_server::SchedulesServer<SchedulesApi>,
        auth::Authenticator,
    >,
    tonic::service::interceptor::InterceptedService<
        pb::cluster_server::ClusterServer<ClusterApi>,
        auth::Authenticator,
    >,
) {
    let schedules = pb::schedules_server::SchedulesServer::new(SchedulesApi::new(control.clone()))
        .max_decoding_message_size(MAX_API_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_API_MESSAGE_BYTES);
    let cluster = pb::cluster_server::ClusterServer::new(ClusterApi::new(control));
    (
        tonic::service::interceptor::InterceptedService::new(schedules, auth.clone()),
        tonic::service::interceptor::InterceptedService::new(cluster, auth),
    )
}
