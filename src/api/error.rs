//! Errors of the API, as a client sees them.
//!
//! Invariant: each error maps to one gRPC status code, and the ones a client can act on carry
//! the standard details (the offending field, a retry delay); errors are serializable, so one
//! crosses from the leader to a forwarding node unchanged. It must not decide policy, only
//! describe outcomes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::state::Rejection;

/// How long a client should wait before retrying while the cluster has no leader.
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A stale revision, or an operation that does not fit the cluster's current shape.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No leader, or leadership changed under the request: safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// The request may or may not have taken effect (the leader stopped answering).
    #[error("{0}")]
    Unknown(String),
    /// The request reached the leader after its deadline and was not started.
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let message = rejection.to_string();
        match rejection {
            Rejection::NotFound(_) => ApiError::NotFound(message),
            Rejection::AlreadyExists(_) => ApiError::AlreadyExists(message),
            Rejection::StaleRevision { .. } => ApiError::FailedPrecondition(message),
            Rejection::Invalid(reason) => ApiError::invalid("spec", reason),
        }
    }
}

impl From<crate::state::validate::DefError> for ApiError {
    fn from(err: crate::state::validate::DefError) -> Self {
        ApiError::InvalidArgument {
            field: err.field,
            reason: err.reason,
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        let message = err.to_string();
        match err {
            ApiError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            ApiError::Unavailable(_) => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(RETRY_AFTER)),
            ),
            ApiError::NotFound(_) => Status::not_found(message),
            ApiError::AlreadyExists(_) => Status::already_exists(message),
            ApiError::FailedPrecondition(_) => Status::failed_precondition(message),
            ApiError::Unknown(_) => Status::unknown(message),
            ApiError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            ApiError::Unauthenticated(_) => Status::unauthenticated(message),
            ApiError::PermissionDenied(_) => Status::permission_denied(message),
            ApiError::Internal(_) => Status::internal(message),
        }
    }
}
