//! Jobs and the live status of applied objects: a Job's [`Phase`] from its
//! conditions and counts, the status of a request's objects, and waiting
//! until a request's Jobs have finished: on the namespace's shared watch
//! ([`jobwatch`], kube-runtime's watcher with its backoff), or, beyond the
//! bound on watched namespaces, on a list and watch of the wait's own.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::Scope;
use serde::Serialize;

use super::{jobwatch, Applier, ApplyError};
use crate::object::ObjectRef;

/// How a run's Jobs stand ([`Applier::jobs_end`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobsEnd {
    /// All finished: whether all succeeded.
    Finished(bool),
    /// One has not finished.
    Running,
    /// All finished, and one or more deleted since (a TTL, or by hand),
    /// which a run's view counts as succeeded: whether none of those still
    /// there failed. Only after a wait saw them finish or go
    /// ([`Applier::jobs_end_after_wait`]).
    Gone(bool),
    /// The shared watch cannot tell.
    Unknown,
}

impl Applier {
    /// How many Jobs matching `selector` in `namespaces` have not finished.
    pub async fn count_active_jobs(
        &self,
        namespaces: &std::collections::BTreeSet<String>,
        selector: &str,
    ) -> Result<usize, ApplyError> {
        let mut active = 0;
        let defaults = std::collections::BTreeSet::from([self.default_namespace.clone()]);
        let namespaces = if namespaces.is_empty() {
            &defaults
        } else {
            namespaces
        };
        for ns in namespaces {
            let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
            let list = self
                .bounded(api.list(&ListParams::default().labels(selector)))
                .await
                .map_err(|e| self.classify(e, &format!("listing Jobs in {ns}")))?;
            active += list.items.iter().filter(|j| !job_finished(j)).count();
        }
        Ok(active)
    }

    /// The live status of a request's objects, in order. Jobs are found by
    /// `selector` (the request's label) in their namespaces; other objects by
    /// name. An object that no longer exists is [`Phase::Gone`].
    pub async fn status_of(
        &self,
        objects: &[ObjectRef],
        selector: &str,
    ) -> Result<Vec<ObjectStatus>, ApplyError> {
        let mut jobs: HashMap<(String, String), Job> = HashMap::new();
        let mut listed: Vec<&str> = Vec::new();
        for o in objects.iter().filter(|o| o.is_job()) {
            let ns = o.namespace.as_deref().unwrap_or(&self.default_namespace);
            if listed.contains(&ns) {
                continue;
            }
            listed.push(ns);
            let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
            let list = self
                .bounded(api.list(&ListParams::default().labels(selector)))
                .await
                .map_err(|e| self.classify(e, &format!("listing Jobs in {ns}")))?;
            for job in list.items {
                let name = job.metadata.name.clone().unwrap_or_default();
                jobs.insert((ns.to_string(), name), job);
            }
        }
        let mut out = Vec::with_capacity(objects.len());
        for o in objects {
            let ns = o
                .namespace
                .clone()
                .unwrap_or_else(|| self.default_namespace.clone());
            if o.is_job() {
                out.push(match jobs.get(&(ns, o.name.clone())) {
                    Some(job) => job_status(job),
                    None => ObjectStatus::phase(Phase::Gone),
                });
                continue;
            }
            let (resource, caps) = self.resolve(&o.api_version, &o.kind).await?;
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => Api::namespaced_with(self.calls_client(), &ns, &resource),
                Scope::Cluster => Api::all_with(self.calls_client(), &resource),
            };
            let found = self
                .bounded(api.get_opt(&o.name))
                .await
                .map_err(|e| self.classify(e, &format!("reading {} {}", o.kind, o.name)))?;
            out.push(ObjectStatus::phase(if found.is_some() {
                Phase::Applied
            } else {
                Phase::Gone
            }));
        }
        Ok(out)
    }

    /// Deletes the Jobs among `objects` that the request labelled
    /// `label` created: each one found under its name and carrying that
    /// label, deleted by its uid (a precondition: never an object that took
    /// the name since) with its pods in the background. Anything else —
    /// another kind, a Job a later publish took over, one gone already —
    /// is left alone. How many were deleted.
    pub async fn delete_jobs_of(
        &self,
        objects: &[ObjectRef],
        label: (&str, &str),
    ) -> Result<usize, ApplyError> {
        let mut deleted = 0;
        for o in objects.iter().filter(|o| o.is_job()) {
            let target = self
                .target(&serde_json::json!({
                    "apiVersion": o.api_version,
                    "kind": o.kind,
                    "metadata": {"name": o.name, "namespace": o.namespace},
                }))
                .await?;
            if self.delete_if_created(&target, label).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// How the Jobs among `objects` stand, as the shared watch of their
    /// namespace last saw them, without a call to the API server (it waits
    /// for each watch's first list). [`JobsEnd::Unknown`] when the watch
    /// lacks one (deleted by its TTL or by hand, or its namespace beyond
    /// the bound): ask the API server then.
    pub async fn jobs_end(&self, objects: &[ObjectRef]) -> JobsEnd {
        self.jobs_end_as(objects, false).await
    }

    /// [`Self::jobs_end`] once [`Self::wait_finished`] said every Job
    /// finished: a Job the shared watch no longer has was then deleted
    /// after the wait saw it (or before, which its look-up found), and
    /// counts as gone, as the run's view counts it, without asking the API
    /// server. Unknown only beyond the watched namespaces.
    pub async fn jobs_end_after_wait(&self, objects: &[ObjectRef]) -> JobsEnd {
        self.jobs_end_as(objects, true).await
    }

    async fn jobs_end_as(&self, objects: &[ObjectRef], absent_is_gone: bool) -> JobsEnd {
        let mut succeeded = true;
        let mut running = false;
        let mut gone = false;
        for (ns, names) in self.jobs_by_namespace(objects) {
            let Some(watch) = self.job_watches.namespace(&ns) else {
                return JobsEnd::Unknown;
            };
            if !watch.ready().await {
                return JobsEnd::Unknown;
            }
            for name in names {
                match watch.job(&name) {
                    Some(job) if job.failed => succeeded = false,
                    Some(job) if !job.complete => running = true,
                    Some(_) => {}
                    None if absent_is_gone => gone = true,
                    None => return JobsEnd::Unknown,
                }
            }
        }
        match (running, gone) {
            (true, _) => JobsEnd::Running,
            (false, true) => JobsEnd::Gone(succeeded),
            (false, false) => JobsEnd::Finished(succeeded),
        }
    }

    /// The Job names among `objects`, by namespace, in the order first
    /// met. A run has a few objects, so a list beats a map here: each
    /// run in flight holds its grouping for as long as it is followed
    /// (a map and its lists were 300 bytes of each tracked run, issue 28).
    fn jobs_by_namespace(&self, objects: &[ObjectRef]) -> Vec<(String, Vec<String>)> {
        let mut by_namespace: Vec<(String, Vec<String>)> = Vec::new();
        for o in objects.iter().filter(|o| o.is_job()) {
            let ns = o.namespace.as_deref().unwrap_or(&self.default_namespace);
            match by_namespace.iter_mut().find(|(n, _)| n == ns) {
                Some((_, names)) => names.push(o.name.clone()),
                None => by_namespace.push((ns.to_string(), vec![o.name.clone()])),
            }
        }
        for (_, names) in &mut by_namespace {
            names.shrink_to_fit();
        }
        by_namespace.shrink_to_fit();
        by_namespace
    }

    /// Waits until every Job among `objects` has finished (Complete or Failed,
    /// or deleted). Returns whether they all finished before `deadline`.
    /// Every waiter of a namespace shares one watch ([`jobwatch`]):
    /// a thousand waits are one API-server connection per namespace, not a
    /// thousand. Beyond the watched-namespace bound a wait watches alone.
    pub async fn wait_finished(
        &self,
        objects: &[ObjectRef],
        selector: &str,
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        for (ns, names) in self.jobs_by_namespace(objects) {
            let finished = match self.job_watches.namespace(&ns) {
                Some(watch) => self.wait_shared(&watch, &ns, &names, deadline).await?,
                // Beyond the bound: a watch of this wait's own Jobs, for
                // as long as it waits (the same watcher, backoff included).
                None => {
                    let watch = self.job_watches.alone(&ns, selector);
                    self.wait_shared(&watch, &ns, &names, deadline).await?
                }
            };
            if !finished {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// [`Self::wait_finished`] for one namespace, on its shared watch.
    async fn wait_shared(
        &self,
        watch: &jobwatch::NamespaceWatch,
        ns: &str,
        names: &[String],
        deadline: tokio::time::Instant,
    ) -> Result<bool, ApplyError> {
        let look_up = |unseen: Vec<String>| async move {
            let api: Api<Job> = Api::namespaced(self.calls_client(), ns);
            let mut gone = Vec::new();
            for name in unseen {
                let found = self
                    .bounded(api.get_opt(&name))
                    .await
                    .map_err(|e| self.classify(e, &format!("reading Job {ns}/{name}")))?;
                if found.is_none() {
                    gone.push(name);
                }
            }
            Ok(gone)
        };
        wait_on(watch, names, deadline, look_up, || {}).await
    }
}

/// How long a wait trusts the watch about a Job it has never shown before
/// it asks the API server once.
const LOOK_UP_AFTER: Duration = Duration::from_secs(5);

/// Waits on `watch` (one namespace's) until every Job of `names` has finished. A Job
/// the watch has shown and no longer has was deleted
/// (ttlSecondsAfterFinished): finished. One it has never shown after
/// [`LOOK_UP_AFTER`] is looked up once (`look_up` answers which of them are
/// gone): gone, it finished (and was deleted) before the watch saw it.
/// Between changes of its Jobs (an event on one of them, or a relist: it
/// subscribes to them alone, so other Jobs' events do not wake it) it
/// sleeps until the deadline, or until the look-up is due while one is
/// still to be made. `round` is called once per pass over the Jobs (a test
/// counts them: a wait must neither spin nor wake for others' Jobs).
async fn wait_on<L, F>(
    watch: &jobwatch::NamespaceWatch,
    names: &[String],
    deadline: tokio::time::Instant,
    look_up: L,
    mut round: impl FnMut(),
) -> Result<bool, ApplyError>
where
    L: Fn(Vec<String>) -> F,
    F: std::future::Future<Output = Result<Vec<String>, ApplyError>>,
{
    // Before the first look at the store: a change after it wakes the wait.
    let mut changes = watch.subscribe(names.iter().map(String::as_str));
    match tokio::time::timeout_at(deadline, watch.ready()).await {
        Ok(true) => {}
        Ok(false) | Err(_) => return Ok(false),
    }
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut gone: std::collections::HashSet<String> = std::collections::HashSet::new();
    let look_up_at = tokio::time::Instant::now() + LOOK_UP_AFTER;
    let mut looked_up = false;
    loop {
        round();
        let mut unseen = Vec::new();
        let mut pending = 0;
        for name in names {
            match watch.job(name) {
                Some(job) => {
                    seen.insert(name);
                    if !job.finished() {
                        pending += 1;
                    }
                }
                None if seen.contains(name.as_str()) || gone.contains(name.as_str()) => {}
                None => {
                    unseen.push(name.as_str());
                    pending += 1;
                }
            }
        }
        if pending == 0 {
            return Ok(true);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        if !looked_up && now >= look_up_at && !unseen.is_empty() {
            looked_up = true;
            let unseen = unseen.into_iter().map(str::to_string).collect();
            // Boxed: made once per wait, while the wait's own state lives
            // as long as the Jobs run (one per run in flight).
            gone.extend(Box::pin(look_up(unseen)).await?);
            continue;
        }
        // The look-up time matters only while a look-up is still to
        // be made: once it has passed with every Job seen, waking for
        // it again would wake at once, forever (a core spun for as
        // long as a Job ran).
        let wake = if looked_up || unseen.is_empty() {
            deadline
        } else {
            deadline.min(look_up_at)
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    // The watch task stopped (shutdown).
                    return Ok(false);
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Where an applied object is in its life.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub enum Phase {
    /// A Job whose pods have not started.
    Pending,
    /// A Job with active pods.
    Running,
    /// A Job that completed.
    Succeeded,
    /// A Job that failed (backoffLimit reached, deadline exceeded…).
    Failed,
    /// Any other kind: it exists.
    Applied,
    /// It no longer exists (deleted, or removed by ttlSecondsAfterFinished).
    Gone,
}

impl Phase {
    /// Whether nothing more will happen to it.
    pub fn is_final(self) -> bool {
        !matches!(self, Phase::Pending | Phase::Running)
    }
}

/// A condition of a Job.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobCondition {
    /// Complete, Failed, SuccessCriteriaMet…
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False, Unknown.
    pub status: String,
    /// Machine-readable reason, e.g. BackoffLimitExceeded.
    pub reason: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
}

/// The live status of one applied object.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// Summary.
    pub phase: Phase,
    /// Active pods (Jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<i32>,
    /// Succeeded pods (Jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<i32>,
    /// Failed pods (Jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<i32>,
    /// Conditions (Jobs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<JobCondition>,
    /// When the Job started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// When it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<String>,
}

impl ObjectStatus {
    fn phase(phase: Phase) -> Self {
        ObjectStatus {
            phase,
            active: None,
            succeeded: None,
            failed: None,
            conditions: Vec::new(),
            start_time: None,
            completion_time: None,
        }
    }
}

pub(super) fn condition_true(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

pub(super) fn job_finished(job: &Job) -> bool {
    condition_true(job, "Complete") || condition_true(job, "Failed")
}

fn job_status(job: &Job) -> ObjectStatus {
    let status = job.status.clone().unwrap_or_default();
    let phase = if condition_true(job, "Complete") {
        Phase::Succeeded
    } else if condition_true(job, "Failed") {
        Phase::Failed
    } else if status.active.unwrap_or(0) > 0 {
        Phase::Running
    } else {
        Phase::Pending
    };
    ObjectStatus {
        phase,
        active: Some(status.active.unwrap_or(0)),
        succeeded: Some(status.succeeded.unwrap_or(0)),
        failed: Some(status.failed.unwrap_or(0)),
        conditions: status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .map(|c| JobCondition {
                type_: c.type_,
                status: c.status,
                reason: c.reason,
                message: c.message,
            })
            .collect(),
        start_time: status.start_time.map(|t| t.0.to_string()),
        completion_time: status.completion_time.map(|t| t.0.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::testing::{configmap, CMS, JOBS};
    use crate::fixtures::{mock_api, resources, stored, Exchange};
    use kube::runtime::watcher::Event;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn job_with(status: Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": status})).expect("a Job")
    }

    #[test]
    fn a_jobs_conditions_and_counts_map_to_its_phase() {
        let cases = [
            (json!({}), Phase::Pending, "no pod yet"),
            (json!({"active": 1}), Phase::Running, "a pod runs"),
            (
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}),
                Phase::Succeeded,
                "complete",
            ),
            (
                json!({"failed": 2, "conditions": [{"type": "Failed", "status": "True",
                        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]}),
                Phase::Failed,
                "failed",
            ),
            (
                json!({"active": 1, "conditions": [{"type": "Complete", "status": "False"}]}),
                Phase::Running,
                "a condition that is not True does not count",
            ),
        ];
        for (status, phase, case) in cases {
            let s = job_status(&job_with(status));
            assert_eq!(s.phase, phase, "{case}");
            assert_eq!(
                s.phase.is_final(),
                !matches!(phase, Phase::Pending | Phase::Running),
                "{case}"
            );
        }
        let failed = job_status(&job_with(json!({
            "failed": 2, "startTime": "2025-01-02T03:04:05Z",
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]
        })));
        assert_eq!(
            serde_json::to_value(&failed).expect("JSON"),
            json!({"phase": "Failed", "active": 0, "succeeded": 0, "failed": 2,
                   "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": null}],
                   "startTime": "2025-01-02T03:04:05Z"})
        );
    }

    fn job_named(name: &str, status: Value) -> jobwatch::WatchedJob {
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "ns"}, "status": status}),
        )
        .expect("a Job")
    }

    /// A wait on a Job that runs for minutes sleeps between the Job's
    /// changes, past the look-up time too (it used to wake at once, forever,
    /// from its fifth second: a core spun until the Job ended).
    #[tokio::test(start_paused = true)]
    async fn a_wait_on_a_long_job_sleeps_until_the_watch_changes() {
        let (watch, mut hand) = jobwatch::by_hand();
        hand.event(Event::Apply(job_named("long", json!({"active": 1}))));
        let watch = Arc::new(watch);
        let (wait, rounds) = waiting(&watch, &["long"]);
        for _ in 0..30 {
            tokio::time::advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
        assert_eq!(
            rounds.load(Ordering::Relaxed),
            1,
            "30 s on a running Job and no change: one pass, then asleep"
        );
        // A change wakes it once; the Job's end ends it.
        hand.event(Event::Apply(job_named("long", json!({"active": 1}))));
        settle().await;
        assert_eq!(rounds.load(Ordering::Relaxed), 2);
        hand.event(Event::Apply(job_named("long", complete())));
        let finished = wait.await.expect("the wait").expect("no error");
        assert!(finished);
        assert_eq!(rounds.load(Ordering::Relaxed), 3);
    }

    /// A wait is woken by its own Jobs' events and by a relist, never by
    /// the events of the namespace's other Jobs (each waking every waiter
    /// made an event cost the runs in flight: issue 28).
    #[tokio::test(start_paused = true)]
    async fn a_wait_on_a_job_is_woken_by_its_events_and_relists_only() {
        let (watch, mut hand) = jobwatch::by_hand();
        hand.event(Event::Apply(job_named("a", json!({"active": 1}))));
        let watch = Arc::new(watch);
        let (wait, rounds) = waiting(&watch, &["a"]);
        settle().await;
        assert_eq!(rounds.load(Ordering::Relaxed), 1, "the first pass");
        assert_eq!(watch.waited_on(), 1, "one Job waited on");

        for i in 0..1000 {
            let other = job_named(&format!("other-{i}"), json!({"active": 1}));
            hand.event(Event::Apply(other.clone()));
            hand.event(Event::Apply(job_named(&format!("other-{i}"), complete())));
            hand.event(Event::Delete(other));
        }
        settle().await;
        assert_eq!(
            rounds.load(Ordering::Relaxed),
            1,
            "3,000 events on 1,000 other Jobs: not one wake"
        );
        assert_eq!(watch.waited_on(), 1, "others' events add no entry");

        hand.event(Event::Apply(job_named("a", json!({"active": 1}))));
        settle().await;
        assert_eq!(rounds.load(Ordering::Relaxed), 2, "an event on a wakes it");

        hand.relist(vec![job_named("a", json!({"active": 1}))]);
        settle().await;
        assert_eq!(rounds.load(Ordering::Relaxed), 3, "a relist wakes it");

        // A relist that finds it finished ends the wait, and its entry goes.
        hand.relist(vec![job_named("a", complete())]);
        assert!(wait.await.expect("the wait").expect("no error"));
        assert_eq!(rounds.load(Ordering::Relaxed), 4);
        assert_eq!(
            watch.waited_on(),
            0,
            "the last subscriber gone, its entry too"
        );
    }

    /// Two waits on one Job share its entry; an event on it wakes both.
    #[tokio::test(start_paused = true)]
    async fn two_waits_on_one_job_are_both_woken() {
        let (watch, mut hand) = jobwatch::by_hand();
        hand.event(Event::Apply(job_named("a", json!({"active": 1}))));
        hand.event(Event::Apply(job_named("b", json!({"active": 1}))));
        let watch = Arc::new(watch);
        let (first, first_rounds) = waiting(&watch, &["a"]);
        let (second, second_rounds) = waiting(&watch, &["a", "b"]);
        settle().await;
        assert_eq!(watch.waited_on(), 2, "a and b, a once for both waits");

        hand.event(Event::Apply(job_named("a", json!({"active": 1}))));
        settle().await;
        assert_eq!(first_rounds.load(Ordering::Relaxed), 2);
        assert_eq!(second_rounds.load(Ordering::Relaxed), 2);

        hand.event(Event::Apply(job_named("b", complete())));
        settle().await;
        assert_eq!(first_rounds.load(Ordering::Relaxed), 2, "b is not its Job");
        assert_eq!(second_rounds.load(Ordering::Relaxed), 3);

        hand.event(Event::Apply(job_named("a", complete())));
        assert!(first.await.expect("the wait").expect("no error"));
        assert!(second.await.expect("the wait").expect("no error"));
        assert_eq!(watch.waited_on(), 0);
    }

    /// The watch stopping (shutdown) ends a wait: not finished.
    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_unfinished_when_the_watch_stops() {
        let (watch, mut hand) = jobwatch::by_hand();
        hand.event(Event::Apply(job_named("a", json!({"active": 1}))));
        let watch = Arc::new(watch);
        let (wait, rounds) = waiting(&watch, &["a"]);
        settle().await;
        drop(hand);
        assert!(!wait.await.expect("the wait").expect("no error"));
        assert_eq!(rounds.load(Ordering::Relaxed), 1);
        assert_eq!(watch.waited_on(), 0);
    }

    /// A Job the watch never shows is looked up once, after
    /// [`LOOK_UP_AFTER`]; gone, it finished before the watch saw it.
    #[tokio::test(start_paused = true)]
    async fn a_job_the_watch_never_shows_is_looked_up_once() {
        let (watch, _hand) = jobwatch::by_hand();
        let looked_up = AtomicUsize::new(0);
        let rounds = AtomicUsize::new(0);
        let names = vec!["quick".to_string()];
        let started = tokio::time::Instant::now();
        let finished = wait_on(
            &watch,
            &names,
            started + Duration::from_secs(600),
            |unseen| {
                looked_up.fetch_add(1, Ordering::Relaxed);
                async move { Ok(unseen) }
            },
            || {
                rounds.fetch_add(1, Ordering::Relaxed);
            },
        )
        .await
        .expect("no error");
        assert!(finished);
        assert_eq!(looked_up.load(Ordering::Relaxed), 1);
        assert_eq!(
            rounds.load(Ordering::Relaxed),
            3,
            "before, at and after the look-up"
        );
        assert_eq!(started.elapsed(), LOOK_UP_AFTER);
    }

    fn complete() -> Value {
        json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
    }

    /// A wait on `names` in a task of its own, 600 s long, and its count of
    /// passes over its Jobs. A seen Job is never looked up: a look-up would
    /// say it is gone, and the wait would end.
    fn waiting(
        watch: &Arc<jobwatch::NamespaceWatch>,
        names: &[&str],
    ) -> (
        tokio::task::JoinHandle<Result<bool, ApplyError>>,
        Arc<AtomicUsize>,
    ) {
        let rounds = Arc::new(AtomicUsize::new(0));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let wait = tokio::spawn({
            let (watch, rounds) = (Arc::clone(watch), Arc::clone(&rounds));
            async move {
                let look_up = |unseen: Vec<String>| async move { Ok(unseen) };
                wait_on(&watch, &names, deadline, look_up, || {
                    rounds.fetch_add(1, Ordering::Relaxed);
                })
                .await
            }
        });
        (wait, rounds)
    }

    /// Lets every woken task run (the clock paused: no time passes).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn status_lists_jobs_by_the_request_label_and_reads_other_objects_by_name() {
        let (object, _) = configmap("cm");
        let objects = [
            ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: None,
                name: "j1".into(),
            },
            ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: Some("ns".into()),
                name: "j2".into(),
            },
            ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: "cm".into(),
            },
            ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: "gone".into(),
            },
        ];
        let (client, api) = mock_api(vec![
            // One list for both Jobs of the namespace; j2 is not in it (ttl).
            Exchange::get(&format!(
                "{JOBS}?&labelSelector=gitfaas.io%2Frequest-uid%3Dr-1"
            ))
            .answers(
                200,
                json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {},
                       "items": [{"metadata": {"name": "j1"}, "status": {"active": 1}}]}),
            ),
            Exchange::get("/api/v1").answers(200, resources("v1", &[("configmaps", "ConfigMap")])),
            Exchange::get(&format!("{CMS}/cm")).answers(200, stored(&object, "uid-cm", &[])),
            Exchange::get(&format!("{CMS}/gone")).refuses(404, "NotFound"),
        ]);
        let applier = Applier::from_client(client, "ns");
        let status = applier
            .status_of(&objects, "gitfaas.io/request-uid=r-1")
            .await;
        drop(applier);
        api.done().await;
        let phases: Vec<Phase> = status.expect("status").iter().map(|s| s.phase).collect();
        assert_eq!(
            phases,
            [Phase::Running, Phase::Gone, Phase::Applied, Phase::Gone]
        );
    }
}
