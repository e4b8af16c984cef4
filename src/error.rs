//! What kind of failure an error is, classified once.
//!
//! Every module's error says which [`Code`] it is (`kind()`); the HTTP layer
//! maps a code to a status in one function (`http::error::status`) and puts
//! the code in every error body next to the message, so a client can branch
//! on `code` without parsing English. The codes are part of the API
//! (README, "Error codes"): add new ones, never rename one.

/// A stable, machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The request is malformed (a header, the query string, the body).
    BadRequest,
    /// A query parameter cannot be a template variable.
    BadParameter,
    /// A template variable of the topic has no value.
    MissingVariable,
    /// A value would break its manifest.
    InvalidValue,
    /// A rendered object name breaks Kubernetes' rule for it.
    InvalidName,
    /// Missing or wrong credentials.
    Unauthorized,
    /// Refused whoever asks (a browser from another site, a foreign Host).
    Forbidden,
    /// The policy refuses an object of the topic.
    PolicyViolation,
    /// The API server refused gitfaas' own credentials (RBAC).
    ClusterForbidden,
    /// No such topic.
    UnknownTopic,
    /// No such (or an expired) function uid.
    UnknownFunction,
    /// No such request, or route.
    NotFound,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// The body did not arrive in time.
    BodyTimeout,
    /// An object exists that is not the topic's own.
    NotOwned,
    /// A Job of that name exists.
    JobExists,
    /// The function has already answered.
    AlreadyAnswered,
    /// A publish with this Idempotency-Key is still in progress.
    IdempotencyInProgress,
    /// This webhook delivery was received before.
    DeliveryReplayed,
    /// The run cannot be cancelled: it has finished, or is being applied.
    RunNotCancellable,
    /// The run cannot be re-run: only a run whose apply failed can.
    RunNotRetryable,
    /// The body is over the limit.
    PayloadTooLarge,
    /// The content type is not accepted.
    UnsupportedMediaType,
    /// An Idempotency-Key reused for another request.
    IdempotencyMismatch,
    /// The API server rejected an object as invalid.
    ObjectRejected,
    /// The cluster does not serve the object's kind.
    UnknownKind,
    /// The object cannot be applied as written.
    InvalidObject,
    /// The repository's commit was refused; the previous one serves on.
    RepositoryRejected,
    /// The topic is at its maxConcurrent (and its queue at maxQueued or
    /// maxQueuedBytes).
    TopicBusy,
    /// Too many publishes in flight, or waiting.
    TooManyRequests,
    /// The API server asks gitfaas to slow down.
    ClusterThrottled,
    /// The API server failed (5xx).
    ClusterError,
    /// Fetching the repository failed.
    GitFetchFailed,
    /// The API server cannot be reached.
    ClusterUnreachable,
    /// The store cannot be reached.
    StoreUnavailable,
    /// No functions loaded yet, or not ready.
    NotReady,
    /// A fault of gitfaas itself or of its configuration.
    Internal,
}

impl Code {
    /// Every code, for the table test and the README.
    pub const ALL: &'static [Code] = &[
        Code::BadRequest,
        Code::BadParameter,
        Code::MissingVariable,
        Code::InvalidValue,
        Code::InvalidName,
        Code::Unauthorized,
        Code::Forbidden,
        Code::PolicyViolation,
        Code::ClusterForbidden,
        Code::UnknownTopic,
        Code::UnknownFunction,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::BodyTimeout,
        Code::NotOwned,
        Code::JobExists,
        Code::AlreadyAnswered,
        Code::IdempotencyInProgress,
        Code::DeliveryReplayed,
        Code::RunNotCancellable,
        Code::RunNotRetryable,
        Code::PayloadTooLarge,
        Code::UnsupportedMediaType,
        Code::IdempotencyMismatch,
        Code::ObjectRejected,
        Code::UnknownKind,
        Code::InvalidObject,
        Code::RepositoryRejected,
        Code::TopicBusy,
        Code::TooManyRequests,
        Code::ClusterThrottled,
        Code::ClusterError,
        Code::GitFetchFailed,
        Code::ClusterUnreachable,
        Code::StoreUnavailable,
        Code::NotReady,
        Code::Internal,
    ];

    /// The code as it appears in error bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad_request",
            Code::BadParameter => "bad_parameter",
            Code::MissingVariable => "missing_variable",
            Code::InvalidValue => "invalid_value",
            Code::InvalidName => "invalid_name",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::PolicyViolation => "policy_violation",
            Code::ClusterForbidden => "cluster_forbidden",
            Code::UnknownTopic => "unknown_topic",
            Code::UnknownFunction => "unknown_function",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::BodyTimeout => "body_timeout",
            Code::NotOwned => "not_owned",
            Code::JobExists => "job_exists",
            Code::AlreadyAnswered => "already_answered",
            Code::IdempotencyInProgress => "idempotency_in_progress",
            Code::DeliveryReplayed => "delivery_replayed",
            Code::RunNotCancellable => "run_not_cancellable",
            Code::RunNotRetryable => "run_not_retryable",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::IdempotencyMismatch => "idempotency_mismatch",
            Code::ObjectRejected => "object_rejected",
            Code::UnknownKind => "unknown_kind",
            Code::InvalidObject => "invalid_object",
            Code::RepositoryRejected => "repository_rejected",
            Code::TopicBusy => "topic_busy",
            Code::TooManyRequests => "too_many_requests",
            Code::ClusterThrottled => "cluster_throttled",
            Code::ClusterError => "cluster_error",
            Code::GitFetchFailed => "git_fetch_failed",
            Code::ClusterUnreachable => "cluster_unreachable",
            Code::StoreUnavailable => "store_unavailable",
            Code::NotReady => "not_ready",
            Code::Internal => "internal",
        }
    }
}

impl Code {
    /// The HTTP status this kind of error answers with: the one map (the
    /// HTTP layer and a stored answer, replayed later, both use it).
    pub fn status(self) -> u16 {
        match self {
            Code::BadRequest
            | Code::BadParameter
            | Code::MissingVariable
            | Code::InvalidValue
            | Code::InvalidName => 400,
            Code::Unauthorized => 401,
            Code::Forbidden | Code::PolicyViolation | Code::ClusterForbidden => 403,
            Code::UnknownTopic | Code::UnknownFunction | Code::NotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::BodyTimeout => 408,
            Code::NotOwned
            | Code::JobExists
            | Code::AlreadyAnswered
            | Code::IdempotencyInProgress
            | Code::DeliveryReplayed
            | Code::RunNotCancellable
            | Code::RunNotRetryable => 409,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::IdempotencyMismatch
            | Code::ObjectRejected
            | Code::UnknownKind
            | Code::InvalidObject
            | Code::RepositoryRejected => 422,
            Code::TopicBusy | Code::TooManyRequests | Code::ClusterThrottled => 429,
            Code::ClusterError | Code::GitFetchFailed => 502,
            Code::ClusterUnreachable | Code::StoreUnavailable | Code::NotReady => 503,
            Code::Internal => 500,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// In the OpenAPI spec (`GET /openapi.json`): a string, one of every
/// code's spelling, taken from [`Code::ALL`] so that a new code is in the
/// spec the moment it exists.
impl utoipa::PartialSchema for Code {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "What kind of error: stable, added to and never renamed (README, \"Error codes\")",
            ))
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl utoipa::ToSchema for Code {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_spelled_in_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} listed twice");
            assert!(
                c.as_str()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '_'),
                "{c}"
            );
        }
    }
}
