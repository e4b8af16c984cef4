//! Errors → HTTP statuses and JSON bodies, in one place. Every error body is
//! `{"error": true, "message": "<what and how to fix>"}`; a publish that
//! failed after rendering also carries its report fields.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::apply::ApplyError;
use crate::publish::{FailureKind, PublishError, Report};
use crate::source::SyncError;

/// Everything an HTTP handler can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A publish applied some manifests and failed others.
    #[error("{}", .0.message.clone().unwrap_or_default())]
    PartialApply(Box<Report>),
    /// A sync failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// The body is over the limit.
    #[error("the request body is larger than the limit of {0} bytes: send less, or raise --max-payload-bytes")]
    PayloadTooLarge(usize),
    /// The content type is not accepted.
    #[error("content type `{0}` is not accepted: send the message as application/json, text/*, application/octet-stream, application/x-www-form-urlencoded (taken as raw bytes) or without a content type")]
    UnsupportedMediaType(String),
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0:?}: send it whole, at once")]
    RequestTimeout(std::time::Duration),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Following a request failed.
    #[error(transparent)]
    Lifecycle(#[from] crate::lifecycle::LifecycleError),
    /// The request conflicts with one in progress.
    #[error("{0}")]
    Conflict(String),
    /// The request is well-formed but cannot be honoured.
    #[error("{0}")]
    Unprocessable(String),
    /// An error already logged where it was handled (inside its request's span).
    #[error(transparent)]
    Logged(Box<ApiError>),
    /// Refused whoever asks (a browser from another site, a foreign Host).
    #[error("{0}")]
    Forbidden(String),
    /// Missing or wrong credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Too many requests right now.
    #[error("{message}")]
    TooMany {
        /// What limit was hit and what to do.
        message: String,
        /// Seconds after which to retry.
        retry_after: u64,
    },
    /// Nothing here.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, the method does not.
    #[error("{method} is not allowed on {path}: use {allowed}")]
    MethodNotAllowed {
        /// The method asked.
        method: String,
        /// The path.
        path: String,
        /// The methods the path takes.
        allowed: &'static str,
    },
    /// Not ready to serve.
    #[error("{0}")]
    NotReady(String),
}

/// The status a publish report answers with.
pub fn report_status(report: &Report) -> StatusCode {
    if report.error {
        failure_status(report.failure)
    } else if report.dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

fn store_status(e: &crate::store::StoreError) -> StatusCode {
    match e {
        crate::store::StoreError::UnknownFunction(_) => StatusCode::NOT_FOUND,
        crate::store::StoreError::AlreadyAnswered(_) => StatusCode::CONFLICT,
        crate::store::StoreError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn apply_status(e: &ApplyError) -> StatusCode {
    match e {
        ApplyError::Unreachable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        ApplyError::UnknownKind { .. } | ApplyError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        ApplyError::NotOwned { .. } | ApplyError::JobExists { .. } => StatusCode::CONFLICT,
        ApplyError::Rejected { code: 403, .. } => StatusCode::FORBIDDEN,
        ApplyError::Rejected { .. } => StatusCode::BAD_GATEWAY,
        ApplyError::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn failure_status(kind: Option<FailureKind>) -> StatusCode {
    match kind {
        Some(FailureKind::Unreachable) => StatusCode::SERVICE_UNAVAILABLE,
        Some(FailureKind::NotOwned) => StatusCode::CONFLICT,
        Some(FailureKind::Rejected(403)) => StatusCode::FORBIDDEN,
        Some(FailureKind::Rejected(429)) => StatusCode::TOO_MANY_REQUESTS,
        Some(FailureKind::Rejected(c)) if (400..500).contains(&c) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Some(FailureKind::Rejected(_)) => StatusCode::BAD_GATEWAY,
        Some(FailureKind::Other) | None => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// Logs the error once: server errors as errors, refusals as info.
    pub fn log(&self) {
        let status = self.status_code();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), error = %self, "request refused");
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Logged(inner) => inner.status_code(),
            ApiError::Publish(e) => match e {
                PublishError::NoSnapshot(_) => StatusCode::SERVICE_UNAVAILABLE,
                PublishError::UnknownTopic { .. } => StatusCode::NOT_FOUND,
                PublishError::BadParameter(_)
                | PublishError::Name { .. }
                | PublishError::Missing { .. }
                | PublishError::Template { .. } => StatusCode::BAD_REQUEST,
                PublishError::Policy { .. } => StatusCode::FORBIDDEN,
                PublishError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
                PublishError::Cluster { source, .. } => apply_status(source),
                PublishError::DryRun { report, .. } => failure_status(report.failure),
            },
            ApiError::PartialApply(report) => failure_status(report.failure),
            ApiError::Sync(e) => match e {
                SyncError::Fetch { .. } => StatusCode::BAD_GATEWAY,
                SyncError::Rejected { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                SyncError::Dir(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Store(e) => store_status(e),
            ApiError::Lifecycle(crate::lifecycle::LifecycleError::Store(e)) => store_status(e),
            ApiError::Lifecycle(crate::lifecycle::LifecycleError::Cluster(e)) => apply_status(e),
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Logged(inner) = self {
            return inner.body();
        }
        self.log();
        self.body()
    }
}

impl ApiError {
    fn body(&self) -> HttpResponse {
        let status = self.status_code();
        let message = self.to_string();
        let body = match self {
            ApiError::Publish(PublishError::DryRun { report, .. })
            | ApiError::PartialApply(report) => {
                let mut v = serde_json::to_value(report.as_ref()).unwrap_or_else(|_| json!({}));
                if let Value::Object(m) = &mut v {
                    m.insert("error".into(), Value::Bool(true));
                    m.insert("message".into(), Value::String(message));
                }
                v
            }
            ApiError::Sync(SyncError::Rejected {
                commit, problems, ..
            }) => json!({
                "error": true,
                "message": message,
                "rejectedCommit": commit,
                "problems": problems,
            }),
            _ => json!({"error": true, "message": message}),
        };
        let mut response = HttpResponse::build(status);
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer realm=\"gitfaas\""));
            }
            ApiError::TooMany { retry_after, .. } => {
                response.insert_header(("Retry-After", retry_after.to_string()));
            }
            ApiError::MethodNotAllowed { allowed, .. } => {
                response.insert_header(("Allow", *allowed));
            }
            ApiError::Publish(PublishError::Busy { .. }) => {
                response.insert_header(("Retry-After", "5"));
            }
            _ => {}
        }
        response.json(body)
    }
}
