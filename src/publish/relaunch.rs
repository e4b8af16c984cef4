//! A run applied after its publish answered: read back from its topic's
//! queue, or tried again after a transient failure. The dispatcher
//! ([`crate::run::dispatch`]) decides when; this applies it as a publish
//! does, against the policy of now, and hands the outcome down.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::{PublishError, QueuedRun, Report};
use crate::cluster::Applier;
use crate::policy::Policy;
use crate::run::dispatch::{Launcher, QueuedApply};
use crate::run::outcome::ApplyOutcome;
use crate::run::rollbacks::Rollbacks;
use crate::store::RunInputs;
use crate::tasks::Tasks;

/// Applies runs again; cheap to clone.
#[derive(Clone)]
pub struct Relauncher(Arc<Parts>);

/// What applying a run again needs: the application's cluster, policy,
/// background work and rollbacks.
struct Parts {
    applier: Arc<Applier>,
    policy: Policy,
    tasks: Tasks,
    rollbacks: Arc<Rollbacks>,
}

impl Relauncher {
    /// A relauncher over the application's parts.
    pub fn new(
        applier: Arc<Applier>,
        policy: Policy,
        tasks: Tasks,
        rollbacks: Arc<Rollbacks>,
    ) -> Self {
        Relauncher(Arc::new(Parts {
            applier,
            policy,
            tasks,
            rollbacks,
        }))
    }

    /// `run`, ready for the dispatcher to apply.
    pub fn again(&self, run: QueuedRun) -> Box<dyn QueuedApply> {
        Box::new(Again {
            run,
            parts: Arc::clone(&self.0),
        })
    }
}

impl Launcher for Relauncher {
    fn read(&self, run: serde_json::Value) -> Result<Box<dyn QueuedApply>, String> {
        let run: QueuedRun = serde_json::from_value(run).map_err(|e| e.to_string())?;
        Ok(self.again(run))
    }
}

/// One run to apply again.
struct Again {
    run: QueuedRun,
    parts: Arc<Parts>,
}

impl QueuedApply for Again {
    fn apply(&self) -> Pin<Box<dyn Future<Output = ApplyOutcome> + Send + '_>> {
        Box::pin(async move {
            let parts = &self.parts;
            let report = match self
                .run
                .clone()
                .prepare(&parts.applier, &parts.policy)
                .await
            {
                Ok(prepared) => {
                    super::execute(&parts.applier, &parts.tasks, &parts.rollbacks, prepared).await
                }
                Err(e) => failed_report(&self.run, &e),
            };
            report.outcome()
        })
    }

    fn inputs(&self, callback: Option<String>) -> RunInputs {
        self.run.inputs(callback)
    }
}

/// The report of a queued run refused at dispatch (a policy or a kind that
/// changed while it waited).
fn failed_report(run: &QueuedRun, e: &PublishError) -> Report {
    Report {
        request_uid: run.request_uid().clone(),
        applies: Vec::new(),
        error: true,
        message: Some(format!("the queued run was not applied: {e}")),
        topic: run.topic().to_string(),
        commit: run.commit().to_string(),
        dry_run: false,
        failure: Some(e.kind()),
        phase: None,
        position: None,
    }
}
