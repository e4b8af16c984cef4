//! A publish's answer: one entry per manifest, and the outcome it hands
//! down to the run.

use serde::Serialize;
use serde_json::Value;

use crate::error::Code;
use crate::object::ObjectRef;
use crate::uid::{FunctionUid, RequestUid};

/// The answer of a publish its topic's filter skipped (200): nothing was
/// applied and no run recorded (`GET /requests` does not list it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Filtered {
    /// Always `true`: the topic's filter is false for this request.
    pub filtered: bool,
    /// The uid the publish was given, which its log lines carry; no run
    /// is recorded under it.
    #[schema(value_type = String)]
    pub request_uid: RequestUid,
    /// The topic.
    pub topic: String,
    /// The commit whose filter decided.
    pub commit: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// What happened, for people.
    pub message: String,
}

/// One manifest's outcome; `error`, `path` and `message` are the Python version's fields.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyEntry {
    /// Whether this manifest failed.
    pub error: bool,
    /// The manifest's path in the repository.
    pub path: String,
    /// What happened.
    pub message: String,
    /// The function uid given to this manifest.
    #[schema(value_type = String)]
    pub function_uid: FunctionUid,
    /// The objects it rendered to.
    pub objects: Vec<ObjectRef>,
    /// With `dryRun`: the rendered objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<Vec<Value>>,
}

/// A publish's answer, compatible with the Python version's
/// `{"requestUid", "applies", "error"}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The request uid.
    #[schema(value_type = String)]
    pub request_uid: RequestUid,
    /// One entry per manifest.
    pub applies: Vec<ApplyEntry>,
    /// Whether any manifest failed.
    pub error: bool,
    /// A summary when something failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The topic.
    pub topic: String,
    /// The commit the manifests came from.
    pub commit: String,
    /// Whether this was a dry run.
    pub dry_run: bool,
    // A phase (`Queued`, `Retrying`), not the HTTP status: that is
    // [`Report::http_status`]. (Its JSON name, `status`, is the API's.)
    /// `Queued` when the run waits in its topic's queue.
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'static str>,
    /// A queued run's place in the queue (1 is next), as it was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The kind of the first apply failure, for the HTTP status.
    #[serde(skip)]
    pub failure: Option<Code>,
}

impl Report {
    /// What this apply ended with, as the run keeps it.
    pub fn outcome(&self) -> crate::run::outcome::ApplyOutcome {
        let mut answer = serde_json::to_value(self).unwrap_or_default();
        // A failed publish answers its report with the failure's code
        // (http::error's PublishFailure, whose `error` and `message` are
        // the report's own): kept with it, an idempotent replay answers
        // that same body, code included.
        if let (true, Some(code), Value::Object(m)) = (self.error, self.failure, &mut answer) {
            m.insert("code".into(), Value::String(code.as_str().into()));
        }
        crate::run::outcome::ApplyOutcome {
            answer,
            http_status: self.http_status(),
            failed: self.error,
            failure: self.failure,
            message: self.message.clone(),
        }
    }

    /// The HTTP status this report answers with.
    pub fn http_status(&self) -> u16 {
        if self.error {
            self.failure.unwrap_or(Code::Internal).status()
        } else if self.dry_run {
            200
        } else {
            202
        }
    }
}
