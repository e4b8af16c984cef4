//! The records the store keeps of a run: the request with its functions,
//! objects, callback and attempts, its state, its kept logs and its
//! functions' responses.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::object::ObjectRef;
use crate::uid::{FunctionUid, RequestUid};

/// One function (manifest) of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredFunction {
    /// Its uid.
    pub function_uid: FunctionUid,
    /// The manifest's path.
    pub path: String,
    /// The objects it applied.
    pub objects: Vec<ObjectRef>,
}

/// One delivery attempt of a callback. Nothing the receiver sent (body,
/// headers) and no error text is kept: `/requests/{uid}` shows this, and an
/// echo would tell a caller what answered where (design §12).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAttempt {
    /// When (RFC 3339).
    pub at: String,
    /// Whether it was delivered (a 2xx). Absent in older records: false.
    #[serde(default)]
    pub delivered: bool,
    /// The receiver's HTTP status, when it answered.
    #[serde(rename = "status")]
    pub http_status: Option<u16>,
    /// Why it failed, as a fixed category; older free-text errors read as `failed`.
    pub error: Option<crate::callback::Failure>,
}

/// A callback requested with `X-Callback-Url`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackState {
    /// Where to POST.
    pub url: String,
    /// Whether a POST succeeded (2xx).
    pub delivered: bool,
    /// Whether delivery was given up.
    pub abandoned: bool,
    /// Every attempt so far.
    pub attempts: Vec<CallbackAttempt>,
    /// The `webhook-id` every POST of this callback carries (`msg_` and
    /// random characters, made at publish), so a retry or another gitfaas
    /// taking it over sends the same one. Absent in records written before
    /// callbacks were signed: made at their next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
}

/// A publish as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// Its uid.
    pub request_uid: RequestUid,
    /// The topic.
    pub topic: String,
    /// The commit of the manifests.
    pub commit: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The fraction of the second it was created in (nanoseconds): orders
    /// the runs of one second in the history. 0 in older records.
    #[serde(default)]
    pub created_ns: u32,
    /// Unix seconds after which it is gone.
    pub expires_at: u64,
    /// Its functions, in manifest order.
    pub functions: Vec<StoredFunction>,
    /// The publish report, once the apply ended.
    pub report: Option<Value>,
    /// The HTTP status the publish answered with.
    #[serde(rename = "status")]
    pub http_status: Option<u16>,
    /// The callback, if one was asked for.
    pub callback: Option<CallbackState>,
    /// Where the run stands, as last recorded (the history lists this; a
    /// request's own view reads its objects live). Pending in records
    /// written before it was kept.
    #[serde(default)]
    pub state: RunState,
    /// When it reached a final state (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// The run that published this one, when the publish named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RequestUid>,
    /// Its topic said `"result": "stdout"` when it was published: a
    /// function that posts nothing answers with its last line of stdout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_from_stdout: bool,
    /// Its topic had `maxConcurrent`: the run holds (or waits for) one of
    /// its slots until it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
    /// Each apply that met a transient failure, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<ApplyAttempt>,
    /// What was published, kept once its apply failed so that
    /// `POST /requests/{uid}/retry` can publish it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<RunInputs>,
    /// The failed run this one re-runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<RequestUid>,
    /// What started it. `http` in records written before it was kept.
    #[serde(default, skip_serializing_if = "Trigger::is_http")]
    pub trigger: Trigger,
    /// The tick a schedule fired it for (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
    /// The attributes of the CloudEvent that started it: shown in its
    /// view, and rendered again by a re-run of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloudevent: Option<crate::cloudevent::Attributes>,
}

impl RunRecord {
    /// Every object its functions applied, in manifest order.
    pub fn objects(&self) -> Vec<ObjectRef> {
        // Sized exactly: a run's tracker keeps this list for as long as the
        // run is in flight, and a flattened iterator would start it at four.
        let mut objects = Vec::with_capacity(self.functions.iter().map(|f| f.objects.len()).sum());
        objects.extend(
            self.functions
                .iter()
                .flat_map(|f| f.objects.iter().cloned()),
        );
        objects
    }
}

/// One apply of a run that failed and was (or would have been) tried again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyAttempt {
    /// When (RFC 3339).
    pub at: String,
    /// The failure's code (`cluster_unreachable`, `cluster_throttled`, …).
    pub code: String,
    /// What failed.
    pub message: String,
}

/// What a publish sent: enough to publish it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunInputs {
    /// The body, base64-encoded.
    pub body: String,
    /// The query parameters that were template variables.
    pub params: Vec<(String, String)>,
    /// `X-Callback-Url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Recorded, not applied yet.
    #[default]
    Pending,
    /// Waiting in its topic's queue for a slot (`"overflow": "queue"`).
    Queued,
    /// Applied; its Jobs have not finished.
    Running,
    /// Applied, and its Jobs (if any) succeeded.
    Succeeded,
    /// Its apply failed, or one of its Jobs did.
    Failed,
    /// Cancelled (`DELETE /requests/{uid}`).
    Cancelled,
}

impl RunState {
    /// Every state, in the order the API documents them.
    pub const ALL: [RunState; 6] = [
        RunState::Pending,
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "Pending",
            RunState::Queued => "Queued",
            RunState::Running => "Running",
            RunState::Succeeded => "Succeeded",
            RunState::Failed => "Failed",
            RunState::Cancelled => "Cancelled",
        }
    }

    /// The state named `name`, in any case.
    pub fn parse(name: &str) -> Option<RunState> {
        RunState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether nothing more happens to the run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

/// What started a run: `GET /requests?trigger=` filters on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `POST /publish/<topic>` (or a retry, the CLI, a webhook).
    #[default]
    Http,
    /// A tick of the topic's `schedule`.
    Schedule,
    /// A CloudEvent posted to `/publish/<topic>`.
    #[serde(rename = "cloudevent")]
    CloudEvent,
}

impl Trigger {
    /// Every trigger, in the order the API documents them.
    pub const ALL: [Trigger; 3] = [Trigger::Http, Trigger::Schedule, Trigger::CloudEvent];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Schedule => "schedule",
            Trigger::CloudEvent => "cloudevent",
        }
    }

    /// The trigger named `name`, in any case.
    pub fn parse(name: &str) -> Option<Trigger> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether it is the default, left out of a stored record.
    pub fn is_http(&self) -> bool {
        *self == Trigger::Http
    }
}

/// The end of one container's log, kept when its run finished so that
/// `GET /requests/{uid}/logs` answers after its pod is gone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogTail {
    /// The namespace of its pod.
    pub namespace: String,
    /// The Job the pod ran for.
    pub job: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// An init container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Its pod ended Succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub succeeded: bool,
    /// The last bytes of the log (invalid UTF-8 replaced), whole lines.
    pub text: String,
    /// Whether earlier output was left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A finished run's log tails, oldest pod first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredLogs {
    /// When they were read (Unix seconds).
    pub at: u64,
    /// Each container's tail.
    pub tails: Vec<LogTail>,
    pub(super) expires_at: u64,
}

/// A function's response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    /// When it arrived (Unix seconds).
    pub at: u64,
    /// The body: JSON as sent, text as a string.
    pub body: Value,
    /// The bytes as posted, base64-encoded: what `GET /response/{requestUid}`
    /// answers by default, as the Python gitfaas did. None in records written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    pub(super) expires_at: u64,
}

impl StoredResponse {
    /// The response as the Python gitfaas returned it: the posted bytes,
    /// base64-encoded (re-serialized from the body for older records).
    pub fn base64(&self) -> String {
        use base64::Engine;
        match &self.raw_base64 {
            Some(b) => b.clone(),
            None => base64::engine::general_purpose::STANDARD.encode(match &self.body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        }
    }
}
