//! What every apply of a run ends with, shared by the publish workflow
//! (a publish applied at once) and the dispatcher (a queued or retried
//! run): the outcome written into the run's record, the run followed to
//! its end with its callback, and which failures are worth trying again.

use std::sync::Arc;

use crate::error::Code;
use crate::publish::Report;
use crate::run::lifecycle::Lifecycle;
use crate::store::{RunState, StoredRequest};

/// Writes what an apply ended with into its run's record: the report (with
/// its failure's code, as the answer had it), the status, the state.
pub(crate) fn record_outcome(record: &mut StoredRequest, report: &Report, now: u64) {
    record.report = serde_json::to_value(report).ok().map(|mut v| {
        // A failed publish answers its report with the failure's code
        // (http::error's PublishFailure, whose `error` and `message` are
        // the report's own): kept with it, an idempotent replay answers
        // that same body, code included.
        if let (true, Some(code), serde_json::Value::Object(m)) =
            (report.error, report.failure, &mut v)
        {
            m.insert(
                "code".into(),
                serde_json::Value::String(code.as_str().into()),
            );
        }
        v
    });
    record.status = Some(report.status());
    record.state = crate::run::runs::after_apply(record, report.error);
    if record.state.is_final() {
        record.finished_at = Some(now);
    }
}

/// After a run applied: followed to its end, and its callback in the
/// outbox (before the publish answers: a crash after it leaves the
/// callback to the next gitfaas, not lost) and scheduled.
pub(crate) async fn follow_up(
    lifecycle: &Arc<Lifecycle>,
    runs: &Arc<crate::run::runs::Runs>,
    record: &StoredRequest,
) {
    if record.state == RunState::Running {
        runs.track(record.request_uid.clone());
    }
    if record.callback.is_some() {
        let held = match lifecycle.hold_callback(record).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(error = %e, "putting the callback in the outbox failed; this process delivers it, but a crash loses it");
                false
            }
        };
        lifecycle.spawn_callback(record.request_uid.clone(), held);
    }
}

/// Whether a failure is worth trying again: the cluster unreachable,
/// throttling or failing, a timeout.
pub(crate) fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::ClusterUnreachable | Code::ClusterThrottled | Code::ClusterError
    )
}
