//! What a run looks like and how it is waited for: the `/requests/{uid}`
//! view (stored objects + live status from the cluster + responses +
//! callback attempts), and waiting for its Jobs to finish.
//!
//! A waiter follows its Jobs on the namespace's shared Job watch
//! (`cluster::jobwatch`), not on a watch of its own: a watch holds an
//! HTTP/1.1 connection to the API server for as long as it waits.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use super::callbacks::POLL_MAX;
use super::lifecycle::{Lifecycle, LifecycleError};
use crate::cluster::{ObjectStatus, Phase};
use crate::object::{ObjectRef, LABEL_REQUEST_UID};
use crate::store::{RunRecord, RunState};
use crate::telemetry::uid_prefix;
use crate::uid::RequestUid;

/// One applied object with its live status.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    /// The object.
    #[serde(flatten)]
    pub object: ObjectRef,
    /// The function (manifest) that applied it: the first 10 characters
    /// of its uid (the whole uid is the credential of `POST /response`,
    /// shown to no reader).
    pub function_uid: String,
    /// The manifest's path.
    pub path: String,
    /// Its live status.
    pub status: ObjectStatus,
}

/// One function and its response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionView {
    /// The first 10 characters of its uid (the whole uid is the credential
    /// of `POST /response`, shown to no reader).
    pub function_uid: String,
    /// The manifest's path.
    pub path: String,
    /// What it posted to /response, or null while pending.
    pub response: Option<Value>,
}

/// A queued run's place (`"overflow": "queue"`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// 1 is the next run applied when a slot of the topic frees.
    pub position: u64,
}

/// A run in detail: the body of `GET /requests/{uid}` (and of a waited
/// publish, and of callbacks).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
// `RequestView` in the OpenAPI document, as it always was.
#[schema(as = RequestView)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    /// Always false: this is not an error.
    pub error: bool,
    /// The request uid.
    #[schema(value_type = String)]
    pub request_uid: RequestUid,
    /// The topic.
    pub topic: String,
    /// The commit the manifests came from.
    pub commit: String,
    /// When it was published (RFC 3339).
    pub created_at: String,
    /// When the record expires (RFC 3339).
    pub expires_at: String,
    /// Whether every Job has finished.
    pub done: bool,
    /// Whether every Job succeeded (null until done).
    pub succeeded: Option<bool>,
    /// Every applied object with its live status.
    pub objects: Vec<ObjectView>,
    /// Every function with its response.
    pub functions: Vec<FunctionView>,
    /// The publish report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Value>,
    /// The callback, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<crate::store::CallbackState>,
    /// Where the run stands, from its objects' live status: Pending,
    /// Queued, Running, Succeeded, Failed or Cancelled.
    #[schema(value_type = String)]
    #[serde(rename = "status")]
    pub state: RunState,
    /// While it is Queued: its place in its topic's queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueView>,
    /// Each apply that met a transient failure (its topic's `retry`, or a
    /// queued run's), oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<crate::store::ApplyAttempt>,
    /// The failed run this one re-runs (`POST /requests/{uid}/retry`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// The run that published this one, when the publish named it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// What started it: `http`, `schedule` or `cloudevent`.
    #[schema(value_type = String)]
    pub trigger: crate::store::Trigger,
    /// The tick a schedule fired it for (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
    /// The attributes of the CloudEvent that started it (`trigger:
    /// cloudevent`), each as its canonical string: `specversion`, `id`,
    /// `source`, `type`, the optional ones it had, and its extensions.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, String>>)]
    pub cloud_event: Option<crate::cloudevent::Attributes>,
    /// The runs that named this one as their parent, oldest first (at
    /// most [`MAX_CHILDREN`]).
    pub children: Vec<String>,
    /// Whether it has more children than `children` lists.
    pub children_truncated: bool,
    /// The state its record holds (the history shows that one).
    #[serde(skip)]
    pub recorded: crate::store::RunState,
}

/// The last second RFC 3339 can write, 9999-12-31T23:59:59Z: humantime's
/// Display fails past it (and `to_string` panics on that), and
/// `UNIX_EPOCH + Duration` panics far past it. A stored expiry is data: one
/// beyond it (another replica's settings, a hand-edited record) is shown as
/// this last second.
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// `unix` seconds as RFC 3339, clamped to the last second it can write.
pub fn rfc3339(unix: u64) -> String {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(unix.min(LAST_RFC3339_SECOND));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The children a run's view lists, at most.
pub const MAX_CHILDREN: usize = 100;

/// A callback URL as readers see it: without credentials, query or
/// fragment, where a receiver may keep a secret of its own (`?token=…`);
/// `?…` says a query was there.
fn shown_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return "(not a URL)".to_string();
    };
    let had_query = parsed.query().is_some();
    parsed.set_query(None);
    parsed.set_fragment(None);
    // Only URLs that cannot have them refuse these: nothing to clear then.
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let mut shown = parsed.to_string();
    if had_query {
        shown.push_str("?…");
    }
    shown
}

/// A stored publish report as readers see it: each `applies[].functionUid`
/// cut to its prefix.
fn without_function_uids(mut report: Value) -> Value {
    if let Some(Value::Array(applies)) = report.get_mut("applies") {
        for entry in applies {
            if let Some(Value::String(uid)) = entry.get_mut("functionUid") {
                *uid = uid_prefix(uid);
            }
        }
    }
    report
}

/// Where a run stands by its record and its objects' live status.
fn live_state(record: &RunRecord, done: bool, succeeded: Option<bool>) -> RunState {
    match record.state {
        // A cancel or a failed apply stays what it was.
        RunState::Cancelled | RunState::Failed => record.state,
        // Not applied yet.
        RunState::Pending => RunState::Pending,
        RunState::Queued => RunState::Queued,
        RunState::Running | RunState::Succeeded => match (done, succeeded) {
            (true, Some(true)) => RunState::Succeeded,
            (true, _) => RunState::Failed,
            (false, _) => RunState::Running,
        },
    }
}

pub fn selector(request_uid: &RequestUid) -> String {
    format!("{LABEL_REQUEST_UID}={request_uid}")
}

impl Lifecycle {
    /// The request's view, or None when it is unknown or expired.
    pub async fn view(
        &self,
        request_uid: &RequestUid,
    ) -> Result<Option<RunDetail>, LifecycleError> {
        let Some(record) = self.store.run(request_uid).await? else {
            return Ok(None);
        };
        self.view_of(&record).await.map(Some)
    }

    /// The view of a stored request.
    pub async fn view_of(&self, record: &RunRecord) -> Result<RunDetail, LifecycleError> {
        let queued = record.state == RunState::Queued;
        // Nothing of a queued run, or of one waiting to be tried again,
        // exists yet: no object to ask the cluster about.
        let waiting = queued || (record.state == RunState::Pending && !record.attempts.is_empty());
        let objects = if waiting {
            Vec::new()
        } else {
            record.objects()
        };
        let statuses = if waiting {
            Vec::new()
        } else {
            self.applier
                .status_of(&objects, &selector(&record.request_uid))
                .await?
        };
        let queue = if queued {
            self.store
                .queue_position(&record.topic, &record.request_uid)
                .await?
                .map(|position| QueueView { position })
        } else {
            None
        };
        let responses = self.store.responses(record).await?;
        let mut statuses = statuses.into_iter();
        let mut object_views = Vec::with_capacity(objects.len());
        for f in &record.functions {
            for o in &f.objects {
                if let Some(status) = statuses.next() {
                    object_views.push(ObjectView {
                        object: o.clone(),
                        function_uid: uid_prefix(f.function_uid.as_str()),
                        path: f.path.clone(),
                        status,
                    });
                }
            }
        }
        let done = !waiting && object_views.iter().all(|o| o.status.phase.is_final());
        // A cancelled run's Jobs are gone: not a success.
        let cancelled = record.state == RunState::Cancelled;
        let succeeded = done.then(|| {
            !cancelled
                && object_views.iter().all(|o| {
                    matches!(
                        o.status.phase,
                        Phase::Succeeded | Phase::Applied | Phase::Gone
                    )
                })
        });
        let functions = record
            .functions
            .iter()
            .zip(responses)
            .map(|(f, r)| FunctionView {
                function_uid: uid_prefix(f.function_uid.as_str()),
                path: f.path.clone(),
                response: r.map(|r| r.body),
            })
            .collect();
        // One more than is listed: whether the list was cut.
        let children = self
            .store
            .children(&record.request_uid, MAX_CHILDREN + 1)
            .await?;
        Ok(RunDetail {
            error: false,
            request_uid: record.request_uid.clone(),
            topic: record.topic.clone(),
            commit: record.commit.clone(),
            created_at: rfc3339(record.created_at),
            expires_at: rfc3339(record.expires_at),
            done,
            succeeded,
            objects: object_views,
            functions,
            report: record.report.clone().map(without_function_uids),
            callback: record.callback.clone().map(|mut c| {
                c.url = shown_url(&c.url);
                c
            }),
            state: live_state(record, done, succeeded),
            queue,
            attempts: record.attempts.clone(),
            retry_of: record.retry_of.as_ref().map(RequestUid::to_string),
            parent: record.parent.as_ref().map(RequestUid::to_string),
            trigger: record.trigger,
            scheduled_time: record.scheduled_time.clone(),
            cloud_event: record.cloudevent.clone(),
            children_truncated: children.len() > MAX_CHILDREN,
            children: children
                .into_iter()
                .take(MAX_CHILDREN)
                .map(|c| c.request_uid.into_string())
                .collect(),
            recorded: record.state,
        })
    }

    /// Waits until the request's Jobs have finished or `deadline` passes.
    pub async fn wait(
        &self,
        record: &RunRecord,
        deadline: tokio::time::Instant,
    ) -> Result<bool, LifecycleError> {
        Ok(self
            .applier
            .wait_finished(&record.objects(), &selector(&record.request_uid), deadline)
            .await?)
    }

    /// Until the request's Jobs have finished or `deadline` passes, follows
    /// them on the namespace's shared Job watch. A failed look (the cluster
    /// briefly unreachable) is logged and tried again after a pause.
    pub async fn until_finished(
        &self,
        request_uid: &RequestUid,
        objects: &[ObjectRef],
        deadline: tokio::time::Instant,
    ) -> bool {
        let selector = selector(request_uid);
        let mut pause = Duration::from_secs(1);
        loop {
            match self
                .applier
                .wait_finished(objects, &selector, deadline)
                .await
            {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::info!(error = %e, "looking at the Jobs failed; trying again"),
            }
            let next = tokio::time::Instant::now() + pause;
            if next >= deadline {
                tracing::info!("the Jobs did not finish in time; going on");
                tokio::time::sleep_until(deadline).await;
                return false;
            }
            tokio::time::sleep_until(next).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_past_what_rfc3339_can_write_is_shown_as_its_last_second() {
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        // UNIX_EPOCH + u64::MAX seconds panicked; year 10000 made humantime's Display fail.
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(253_402_300_800), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn readers_see_no_function_uid_and_no_callback_secret() {
        let uid = format!(
            "f-{}-r-{}",
            "0b3e9d2c-8f61-4e0a-9a55-1c2b3d4e5f60", "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
        );
        let report = serde_json::json!({"requestUid": "r-1", "applies": [
            {"functionUid": uid, "path": "a.yaml"}, {"functionUid": uid, "path": "b.yaml"}]});
        let shown = without_function_uids(report).to_string();
        assert!(!shown.contains(&uid), "{shown}");
        assert_eq!(shown.matches("\"f-0b3e9d2c…\"").count(), 2, "{shown}");
        for (url, want) in [
            (
                "https://hooks.example.com/in?token=s3cret",
                "https://hooks.example.com/in?…",
            ),
            (
                "https://user:pw@hooks.example.com:8443/a/b#frag",
                "https://hooks.example.com:8443/a/b",
            ),
            ("https://hooks.example.com/", "https://hooks.example.com/"),
            ("not a url", "(not a URL)"),
        ] {
            assert_eq!(shown_url(url), want, "{url}");
        }
    }
}
