//! Errors → HTTP statuses and JSON bodies, in one place. Every error body is
//! `{"error": true, "code": "<stable code>", "message": "<what and how to
//! fix>"}`; a publish that failed after rendering also carries its report
//! fields. Each module's error names its [`Code`], whose status
//! [`Code::status`] gives (the code table, `crate::error`); errors are
//! logged once, in [`ResponseError::error_response`] (inside the request's
//! span).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use serde_json::json;

use crate::catalog::Problem;
use crate::error::Code;
use crate::publish::workflow::WorkflowError;
use crate::publish::Report;
use crate::source::SyncError;

/// Everything an HTTP handler can answer with besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A publish failed.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// A sync failed.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Following a request failed.
    #[error(transparent)]
    Lifecycle(#[from] crate::run::lifecycle::LifecycleError),
    /// A CloudEvent that is not one gitfaas takes.
    #[error(transparent)]
    CloudEvent(#[from] crate::cloudevent::CloudEventError),
    /// A caller not authenticated or not authorized by Kubernetes, or the
    /// review failing.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The body is over the limit.
    #[error("the request body is larger than the limit of {0} bytes: send less, or raise --max-payload-bytes")]
    PayloadTooLarge(usize),
    /// The content type is not accepted.
    #[error("content type `{0}` is not accepted: send the message as application/json, text/*, application/octet-stream, application/x-www-form-urlencoded (taken as raw bytes) or without a content type")]
    UnsupportedMediaType(String),
    /// The body did not arrive in time.
    #[error("the request body did not arrive within {0:?}: send it whole, at once")]
    RequestTimeout(std::time::Duration),
    /// The path exists, the method does not.
    #[error("{method} is not allowed on {path}: use {allowed}")]
    MethodNotAllowed {
        /// The method asked.
        method: String,
        /// The path.
        path: String,
        /// The methods the path takes.
        allowed: String,
    },
    /// Refused by the HTTP layer itself, with its code and what to do.
    #[error("{message}")]
    Refused {
        /// The kind of refusal.
        code: Code,
        /// What was wrong and how to fix it.
        message: String,
    },
}

impl ApiError {
    /// A refusal of the HTTP layer with `code`.
    pub fn refused(code: Code, message: impl Into<String>) -> Self {
        ApiError::Refused {
            code,
            message: message.into(),
        }
    }

    /// A malformed request (400).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::refused(Code::BadRequest, message)
    }

    /// Missing or wrong credentials (401).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::refused(Code::Unauthorized, message)
    }

    /// Refused whoever asks (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::refused(Code::Forbidden, message)
    }

    /// Nothing here (404).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::refused(Code::NotFound, message)
    }

    /// 404 for a request uid no run has (unknown, or expired). The uid is
    /// named as the logs would write it: a function uid sent by mistake is
    /// a credential, cut to its prefix.
    pub fn unknown_run(uid: &str) -> Self {
        Self::not_found(format!(
            "unknown or expired request uid `{}`: use the requestUid a publish returned, within the expiration time",
            crate::telemetry::access_path(uid)
        ))
    }

    /// Not ready to serve (503).
    pub fn not_ready(message: impl Into<String>) -> Self {
        Self::refused(Code::NotReady, message)
    }

    /// What kind of error this is.
    pub fn code(&self) -> Code {
        match self {
            ApiError::Workflow(e) => e.kind(),
            ApiError::Sync(e) => e.kind(),
            ApiError::Store(e) => e.kind(),
            ApiError::Lifecycle(e) => e.kind(),
            ApiError::CloudEvent(e) => e.kind(),
            ApiError::Identity(e) => e.kind(),
            ApiError::PayloadTooLarge(_) => Code::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            ApiError::RequestTimeout(_) => Code::BodyTimeout,
            ApiError::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            ApiError::Refused { code, .. } => *code,
        }
    }

    /// Logs the error: server errors as errors, refusals as info.
    fn log(&self) {
        let status = self.status_code();
        let code = self.code().as_str();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code, error = %self, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), code, error = %self, "request refused");
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        // Every status of the code table is a valid one (the README's table
        // test reads them); 500 is only the type's fallback.
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        self.log();
        self.body()
    }
}

/// The body of every error: `code` for a client to branch on, `message`
/// for a person to read.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always true.
    pub error: bool,
    /// What kind of error (README, "Error codes"): stable, added to, never renamed.
    pub code: Code,
    /// What was wrong and how to fix it.
    pub message: String,
}

/// The body of a publish that failed after rendering: its report, whose
/// `error` and `message` the error's own replace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishFailure<'a> {
    /// The publish's report.
    #[serde(flatten)]
    pub report: &'a Report,
    /// The error.
    #[serde(flatten)]
    pub error: ErrorBody,
}

/// The body of a refresh whose new commit was rejected (the previous one
/// serves on).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RejectedCommit<'a> {
    /// The error.
    #[serde(flatten)]
    pub error: ErrorBody,
    /// The rejected commit.
    pub rejected_commit: &'a str,
    /// Every problem found in it.
    pub problems: &'a [Problem],
}

impl ApiError {
    fn body(&self) -> HttpResponse {
        let status = self.status_code();
        let code = self.code();
        let error = ErrorBody {
            error: true,
            code,
            message: self.to_string(),
        };
        let report = match self {
            ApiError::Workflow(e) => e.report(),
            _ => None,
        };
        // Through a Value: the report's `error` and `message` and the
        // error's are the same keys, and a Value's map keeps the last one
        // written, in the first one's place (written straight out, both
        // would be in the JSON).
        let body = match (self, report) {
            (_, Some(report)) => serde_json::to_value(PublishFailure { report, error }),
            (
                ApiError::Sync(SyncError::Rejected {
                    commit, problems, ..
                }),
                None,
            ) => serde_json::to_value(RejectedCommit {
                error,
                rejected_commit: commit,
                problems,
            }),
            _ => serde_json::to_value(error),
        }
        // Nothing in these bodies can fail to serialize (no map has
        // non-string keys); if it did, the code and status still tell.
        .unwrap_or_else(|_| json!({"error": true, "code": code, "message": "the error's body could not be written"}));
        let mut response = HttpResponse::build(status);
        match (self, code) {
            (_, Code::Unauthorized) => {
                response.insert_header(("WWW-Authenticate", "Bearer realm=\"gitfaas\""));
            }
            (_, Code::TooManyRequests | Code::ClusterThrottled) => {
                response.insert_header(("Retry-After", "1"));
            }
            (ApiError::MethodNotAllowed { allowed, .. }, _) => {
                response.insert_header(("Allow", allowed.as_str()));
            }
            (_, Code::TopicBusy) => {
                response.insert_header(("Retry-After", "5"));
            }
            _ => {}
        }
        response.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ApplyError;
    use crate::publish::PublishError;
    use serde_json::Value;

    fn rejected(code: u16) -> ApplyError {
        ApplyError::Rejected {
            object: "batch/v1 Job x".into(),
            code,
            reason: "r".into(),
            message: "m".into(),
        }
    }

    #[test]
    fn a_rejection_is_classified_the_same_whether_before_or_during_the_apply() {
        // The same refusal met resolving a kind (PublishError::Cluster) and
        // applying (a report's failure) answers the same status.
        for (code, expected) in [(403, 403), (429, 429), (422, 422), (404, 422), (500, 502)] {
            let before = ApiError::Workflow(WorkflowError::Publish(PublishError::Cluster {
                path: "j.yaml".into(),
                source: rejected(code),
            }));
            let report = Report {
                request_uid: "r-1".into(),
                applies: Vec::new(),
                error: true,
                message: Some("m".into()),
                topic: "t".into(),
                commit: "c".into(),
                dry_run: false,
                failure: Some(rejected(code).kind()),
                phase: None,
                position: None,
            };
            let during = ApiError::Workflow(WorkflowError::Failed(Box::new(report)));
            assert_eq!(before.status_code().as_u16(), expected, "{code}");
            assert_eq!(during.status_code().as_u16(), expected, "{code}");
        }
    }

    #[tokio::test]
    async fn every_error_body_carries_its_code_and_message() {
        let errors = [
            ApiError::bad_request("bad"),
            ApiError::unauthorized("who"),
            ApiError::PayloadTooLarge(10),
            ApiError::Workflow(WorkflowError::InFlight(3)),
            ApiError::Store(crate::store::StoreError::AlreadyAnswered("f-1".into())),
        ];
        for e in errors {
            let code = e.code();
            let response = e.error_response();
            assert_eq!(response.status().as_u16(), code.status());
            let bytes = actix_web::body::to_bytes(response.into_body())
                .await
                .expect("body");
            let body: Value = serde_json::from_slice(&bytes).expect("JSON");
            assert_eq!(body["error"], true);
            assert_eq!(body["code"], code.as_str(), "{body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    /// A failed publish answers its report with the error's fields: each
    /// key once, `error` true, the error's code and message.
    #[tokio::test]
    async fn a_failed_publish_answers_its_report_with_the_errors_code_and_message() {
        let report = Report {
            request_uid: "r-1".into(),
            applies: Vec::new(),
            error: true,
            message: Some("the report's summary".into()),
            topic: "t".into(),
            commit: "c".into(),
            dry_run: false,
            failure: Some(Code::NotOwned),
            phase: None,
            position: None,
        };
        let e = ApiError::Workflow(WorkflowError::Failed(Box::new(report)));
        let message = e.to_string();
        let response = e.error_response();
        assert_eq!(response.status().as_u16(), 409);
        let bytes = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("body");
        let text = std::str::from_utf8(&bytes).expect("UTF-8");
        for key in ["\"error\"", "\"message\"", "\"code\""] {
            assert_eq!(text.matches(key).count(), 1, "{key} once in {text}");
        }
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["error"], true, "{body}");
        assert_eq!(body["code"], "not_owned", "{body}");
        assert_eq!(body["message"], message.as_str(), "{body}");
        assert_eq!(body["requestUid"], "r-1", "{body}");
        assert_eq!(body["applies"], serde_json::json!([]), "{body}");
        assert_eq!(body["dryRun"], false, "{body}");
    }

    #[tokio::test]
    async fn a_rejected_commit_answers_its_problems() {
        let e = ApiError::Sync(SyncError::Rejected {
            commit: "abc".into(),
            message: "1 problem".into(),
            problems: vec![Problem {
                file: "config.json".into(),
                line: Some(3),
                message: "m".into(),
            }],
        });
        let response = e.error_response();
        assert_eq!(response.status().as_u16(), 422);
        let bytes = actix_web::body::to_bytes(response.into_body())
            .await
            .expect("body");
        let body: Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(
            body,
            serde_json::json!({
                "error": true,
                "code": "repository_rejected",
                "message": body["message"],
                "rejectedCommit": "abc",
                "problems": [{"file": "config.json", "line": 3, "message": "m"}],
            })
        );
    }
}
