//! What every apply of a run ends with, shared by the publish workflow
//! (a publish applied at once) and the dispatcher (a queued or retried
//! run): the outcome written into the run's record, the run followed to
//! its end with its callback, and which failures are worth trying again.

use std::sync::Arc;

use crate::error::Code;
use crate::run::lifecycle::Lifecycle;
use crate::store::RunRecord;

/// What one apply of a run ended with, as the publish that applied it
/// hands it down.
#[derive(Debug, Clone)]
pub struct ApplyOutcome {
    /// The answer's body (the publish's report, with its failure's code),
    /// kept so that an idempotent replay answers the same body.
    pub answer: serde_json::Value,
    /// The HTTP status the apply answers with.
    pub http_status: u16,
    /// Whether it failed (nothing of it stays applied).
    pub failed: bool,
    /// The kind of its first failure, when it failed of a known kind.
    pub failure: Option<Code>,
    /// What failed, in a sentence.
    pub message: Option<String>,
}

impl ApplyOutcome {
    /// The kind of failure worth trying again, when it failed of one.
    pub fn transient_failure(&self) -> Option<Code> {
        self.failure.filter(|code| self.failed && transient(*code))
    }
}

/// Writes what an apply ended with into its run's record: the answer, the
/// HTTP status, the state.
pub(crate) fn record_outcome(record: &mut RunRecord, outcome: &ApplyOutcome, now: u64) {
    record.report = Some(outcome.answer.clone());
    record.http_status = Some(outcome.http_status);
    record.state = crate::run::runs::after_apply(record, outcome.failed);
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
    record: &RunRecord,
) {
    runs.track_record(record);
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
