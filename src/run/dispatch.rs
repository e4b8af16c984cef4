//! The runs of topics with `maxConcurrent`: a slot per unfinished run,
//! taken at publish ([`Dispatcher::admit`]) or, for a run that waited in
//! its topic's queue, when a slot frees ([`Dispatcher::pump`]); applied,
//! followed to its end, and the slot freed then (by [`crate::run::runs`]).
//!
//! Slots and the queue are in the store, each decision atomic there, so
//! every replica on one Redis keeps one limit and one order. A slot names
//! the process that applies or follows its run; a process says it is alive
//! with a heartbeat every lease/3 and each sweep takes over the slots of
//! processes whose heartbeat lapsed: a run it had not applied yet is
//! applied (unless its objects exist), one it had applied is followed.
//! A run meeting a transient failure of the cluster keeps its slot and is
//! tried again with backoff; a shutdown leaves it to the next process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::outcome::ApplyOutcome;
use super::rollbacks::Rollbacks;
use crate::catalog::{Overflow, Retry};
use crate::cluster::{Applier, ApplyError};
use crate::run::lifecycle::{Change, Lifecycle};
use crate::run::runs::Runs;
use crate::run::{self, Event};
use crate::source::Syncer;
use crate::store::{
    Decision, Durability, QueueEntry, RunInputs, RunRecord, RunState, SlotAsk, SlotDecision,
    StoreError,
};
use crate::tasks::{TaskName, Tasks};
use crate::uid::RequestUid;

/// A run the dispatcher applies: a queued run read back, or a publish
/// whose first apply failed, tried again. Publish implements it (render
/// and policy are its concern), so this module never imports publish.
pub trait QueuedApply: Send + Sync {
    /// Checks the run against the policy of now and applies it, once.
    fn apply(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApplyOutcome> + Send + '_>>;
    /// What was published, to publish it again.
    fn inputs(&self, callback: Option<String>) -> RunInputs;
}

/// Reads a queued run back from the copy its topic's queue keeps.
pub trait Launcher: Send + Sync {
    /// The run, or why it cannot be read.
    fn read(&self, run: serde_json::Value) -> Result<Box<dyn QueuedApply>, String>;
}

/// A topic's `maxConcurrent` as one publish meets it.
#[derive(Debug, Clone)]
pub struct Limit {
    /// `maxConcurrent`.
    pub max: u32,
    /// What a publish beyond it gets.
    pub overflow: Overflow,
    /// Where its active Jobs are counted.
    pub namespaces: std::collections::BTreeSet<String>,
}

/// A publish asking for a slot of its limited topic.
pub struct Ask<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The run.
    pub request_uid: &'a RequestUid,
    /// The topic's limit.
    pub limit: &'a Limit,
    /// What the topic's queue keeps of the run, to apply it later (only a
    /// queueing topic keeps one).
    pub run: serde_json::Value,
    /// The run's record, as the queue keeps a copy of it.
    pub record: &'a RunRecord,
}

/// Why a publish got no slot.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The topic's active Jobs cannot be counted.
    #[error("cannot count the topic's active Jobs")]
    Count(#[source] ApplyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every slot is taken and the queue (if any) is full.
    #[error("the topic is full")]
    Full(Full),
}

/// A full topic, as the refusal reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every slot is taken, and the topic does not queue.
    Busy {
        /// Runs holding a slot.
        active: u64,
    },
    /// Every slot is taken and the queue holds `maxQueued`.
    Queue {
        /// Runs holding a slot.
        active: u64,
        /// Runs waiting.
        queued: u64,
    },
    /// The queue would be over `maxQueuedBytes` with this run.
    QueueBytes {
        /// Runs holding a slot.
        active: u64,
        /// Runs waiting.
        queued: u64,
        /// What they keep.
        queued_bytes: u64,
        /// What this run would keep.
        run_bytes: u64,
        /// `maxQueuedBytes`.
        max_bytes: u64,
    },
}

/// What a queue entry keeps: the run and its record as it was queued (the
/// record is written after the entry; a process that died in between
/// leaves the copy).
#[derive(Serialize, Deserialize)]
struct Entry {
    /// Publish's own copy of the run, read back by the [`Launcher`].
    run: serde_json::Value,
    record: RunRecord,
}

/// The longest a dispatched run waits for its publish to have recorded it
/// Queued (the publish writes the record right after the queue decision).
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// The slots and queues of limited topics, for this process.
pub struct Dispatcher {
    lifecycle: Arc<Lifecycle>,
    runs: Arc<Runs>,
    syncer: Arc<Syncer>,
    applier: Arc<Applier>,
    launcher: Arc<dyn Launcher>,
    lease: Duration,
    tasks: Tasks,
    /// The runs whose failed apply is still being rolled back.
    rollbacks: Arc<Rollbacks>,
    /// Runs this process is dispatching now, so a sweep does not start one twice.
    dispatching: Mutex<HashMap<RequestUid, ()>>,
}

/// What [`Dispatcher::admit`] decided for a publish.
pub enum Admitted {
    /// Apply it now: its slot is taken.
    Slot,
    /// It waits in its topic's queue, at this place.
    Queued(u64),
}

impl Dispatcher {
    /// A dispatcher over the same store, cluster and tasks as `lifecycle`,
    /// applying queued runs with `launcher`, waiting for the application's
    /// `rollbacks` before it applies a run again.
    pub fn new(
        lifecycle: Arc<Lifecycle>,
        runs: Arc<Runs>,
        syncer: Arc<Syncer>,
        launcher: Arc<dyn Launcher>,
        rollbacks: Arc<Rollbacks>,
        lease: Duration,
    ) -> Arc<Self> {
        Arc::new(Dispatcher {
            applier: Arc::clone(&lifecycle.applier),
            tasks: lifecycle.tasks.clone(),
            lifecycle,
            runs,
            syncer,
            launcher,
            lease,
            rollbacks,
            dispatching: Mutex::new(HashMap::new()),
        })
    }

    fn holder(&self) -> &str {
        self.lifecycle.holder()
    }

    /// Takes a slot of the topic for the run, or queues it (a topic that
    /// queues keeps `ask.run` and a copy of its record), or refuses it.
    pub async fn admit(&self, ask: Ask<'_>) -> Result<Admitted, AdmitError> {
        let limit = ask.limit;
        // Active Jobs count too: Jobs applied by a process whose store is
        // gone, or before slots were kept.
        let floor = self
            .applier
            .count_active_jobs(
                &limit.namespaces,
                &format!("{}={}", crate::object::LABEL_TOPIC, ask.topic),
            )
            .await
            .map_err(AdmitError::Count)?;
        let (max_queued, max_queued_bytes) = match limit.overflow {
            Overflow::Reject => (0, 0),
            Overflow::Queue {
                max_queued,
                max_queued_bytes,
            } => (max_queued, max_queued_bytes),
        };
        // Only a queueing topic keeps a copy of the run.
        let run = if max_queued > 0 {
            serde_json::to_value(Entry {
                run: ask.run,
                record: ask.record.clone(),
            })
            .unwrap_or_default()
        } else {
            serde_json::Value::Null
        };
        let admission = self
            .lifecycle
            .store
            .admit(&SlotAsk {
                topic: ask.topic,
                request_uid: ask.request_uid,
                max: limit.max,
                floor: u32::try_from(floor).unwrap_or(u32::MAX),
                max_queued,
                max_queued_bytes,
                holder: self.holder(),
                expires_at: ask.record.expires_at,
                run: &run,
            })
            .await?;
        match admission {
            SlotDecision::Slot => Ok(Admitted::Slot),
            SlotDecision::Queued { position } => Ok(Admitted::Queued(position)),
            SlotDecision::Full { held, queued } => Err(AdmitError::Full(match limit.overflow {
                Overflow::Reject => Full::Busy { active: held },
                Overflow::Queue { .. } => Full::Queue {
                    active: held,
                    queued,
                },
            })),
            SlotDecision::FullOfBytes {
                held,
                queued,
                queued_bytes,
                run_bytes,
            } => Err(AdmitError::Full(Full::QueueBytes {
                active: held,
                queued,
                queued_bytes,
                run_bytes,
                max_bytes: max_queued_bytes,
            })),
        }
    }

    /// Records what a limited run's apply did to its slot: held on while
    /// its Jobs run, freed when nothing is left to wait for.
    pub async fn applied(&self, record: &RunRecord) {
        if record.state != RunState::Running {
            self.runs
                .free_slot(&record.topic, &record.request_uid)
                .await;
            return;
        }
        if let Err(e) = self
            .lifecycle
            .store
            .slot_applied(&record.topic, &record.request_uid)
            .await
        {
            tracing::warn!(request_uid = record.request_uid.as_str(), error = %e, "recording the run's slot failed; the sweep settles it");
        }
    }

    /// A limited run whose objects exist: recorded Running (when it was
    /// not yet), its slot marked applied, and followed to its end.
    async fn follow_applied(&self, mut record: RunRecord) {
        if record.state != run::after(record.state, Event::FoundApplied) {
            let change: Change = Arc::new(|r: &mut RunRecord| {
                let state = run::after(r.state, Event::FoundApplied);
                if r.state == state {
                    return Decision::Keep;
                }
                r.state = state;
                Decision::Write
            });
            let _ = self
                .lifecycle
                .update(&mut record, Durability::Now, change)
                .await;
        }
        self.applied(&record).await;
        self.runs.track(record.request_uid);
    }

    /// The `maxConcurrent` of `topic` in the live snapshot.
    fn max_of(&self, topic: &str) -> Option<u32> {
        self.syncer
            .snapshot()
            .and_then(|s| s.topic(topic).and_then(|t| t.max_concurrent))
    }

    /// How `topic`'s queued runs are tried again: its `retry`, or
    /// [`Retry::QUEUED`].
    fn retry_of(&self, topic: &str) -> Retry {
        self.syncer
            .snapshot()
            .and_then(|s| s.topic(topic).and_then(|t| t.retry))
            .unwrap_or(Retry::QUEUED)
    }

    /// Dispatches the runs waiting for `topic` while it has free slots.
    pub async fn pump(self: &Arc<Self>, topic: &str) {
        let Some(max) = self.max_of(topic) else {
            return;
        };
        loop {
            if self.tasks.is_stopping() {
                return;
            }
            match self
                .lifecycle
                .store
                .dispatch_next(topic, max, self.holder())
                .await
            {
                Ok(Some(entry)) => self.spawn_dispatch(entry, false),
                Ok(None) => return,
                Err(e) => {
                    tracing::info!(topic, error = %e, "cannot dispatch the topic's queue; the sweep tries again");
                    return;
                }
            }
        }
    }

    /// Applies a dispatched run in a drained task.
    fn spawn_dispatch(self: &Arc<Self>, entry: QueueEntry, adopted: bool) {
        {
            let mut dispatching = self.dispatching.lock().unwrap_or_else(|e| e.into_inner());
            if dispatching.insert(entry.request_uid.clone(), ()).is_some() {
                return;
            }
        }
        let this = Arc::clone(self);
        let name = TaskName::new("dispatch").about(entry.request_uid.clone());
        self.tasks.spawn_drained(name, async move {
            let uid = entry.request_uid.clone();
            this.dispatch(entry, adopted).await;
            this.dispatching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&uid);
        });
    }

    /// The run's record once its publish wrote it Queued (or the copy the
    /// queue kept, when that publish died first).
    async fn queued_record(&self, copy: RunRecord) -> Option<RunRecord> {
        let deadline = tokio::time::Instant::now() + RECORD_WAIT;
        loop {
            match self.lifecycle.store.run(&copy.request_uid).await {
                Ok(Some(r)) if r.state != RunState::Pending => return Some(r),
                Ok(_) if tokio::time::Instant::now() >= deadline => return Some(copy),
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(request_uid = copy.request_uid.as_str(), error = %e, "reading a dispatched run's record failed; retrying")
                }
            }
            if tokio::time::Instant::now() >= deadline + RECORD_WAIT {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn dispatch(self: &Arc<Self>, entry: QueueEntry, adopted: bool) {
        let read = serde_json::from_value::<Entry>(entry.run)
            .map_err(|e| e.to_string())
            .and_then(|Entry { run, record }| Ok((self.launcher.read(run)?, record)));
        let (run, record) = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::error!(
                    request_uid = entry.request_uid.as_str(),
                    error,
                    "a queued run cannot be read; its slot is freed"
                );
                self.runs.free_slot(&entry.topic, &entry.request_uid).await;
                return;
            }
        };
        let Some(record) = self.queued_record(record).await else {
            // The store is gone for longer than the wait: the slot stays, and
            // the next sweep (here or elsewhere) dispatches the run again.
            return;
        };
        if record.state.is_final() {
            // Cancelled.
            self.applied(&record).await;
            return;
        }
        if record.state == RunState::Running || (adopted && self.objects_exist(&record).await) {
            // Applied by a process that died before it said so.
            self.follow_applied(record).await;
            return;
        }
        let retry = self.retry_of(&record.topic);
        self.apply_and_finish(run, record, retry, 0).await;
    }

    /// Applies `run` (after `done` attempts already made), tried again on
    /// transient failures as `retry` says, and records how it ended: its
    /// report, its slot, its tracker and callback. Returns early, leaving
    /// the run to the next process, when this one stops.
    pub(crate) async fn apply_and_finish(
        self: &Arc<Self>,
        run: Box<dyn QueuedApply>,
        mut record: RunRecord,
        retry: Retry,
        done: u32,
    ) {
        let store = &self.lifecycle.store;
        let mut attempt: u32 = done;
        let mut pushed_last = None;
        let outcome = loop {
            attempt += 1;
            let outcome = run.apply().await;
            let Some(code) = outcome.transient_failure() else {
                break outcome;
            };
            let why = outcome.message.clone().unwrap_or_default();
            let made = crate::store::ApplyAttempt {
                at: crate::run::view::rfc3339(store.clock().now()),
                code: code.as_str().to_string(),
                message: why.clone(),
            };
            if attempt >= retry.attempts {
                // Written with the outcome below.
                pushed_last = Some(made);
                tracing::warn!(request_uid = record.request_uid.as_str(), attempts = attempt, "a run failed every attempt: it is a dead letter (GET /requests?status=failed, POST /requests/{{uid}}/retry)");
                break outcome;
            }
            // Visible in /requests/{uid} while it waits.
            let change: Change = Arc::new(move |r: &mut RunRecord| {
                r.attempts.push(made.clone());
                Decision::Write
            });
            let _ = self
                .lifecycle
                .update(&mut record, Durability::Soon, change)
                .await;
            if self.tasks.is_stopping() {
                // Left to the next process: the slot is this one's until
                // its heartbeat lapses (or it resigns).
                tracing::info!(
                    request_uid = record.request_uid.as_str(),
                    "stopping: a run being tried again is left for the next gitfaas"
                );
                return;
            }
            let delay = retry.delay(attempt);
            let jitter = Duration::from_millis(
                rand::rng().random_range(0..=u64::try_from(delay.as_millis() / 2).unwrap_or(0)),
            );
            tracing::warn!(
                request_uid = record.request_uid.as_str(),
                error = why,
                attempt,
                retry_in_ms = u64::try_from((delay + jitter).as_millis()).unwrap_or(u64::MAX),
                "applying a run failed; retrying"
            );
            let token = self.tasks.token();
            tokio::select! {
                () = tokio::time::sleep(delay + jitter) => {}
                () = token.cancelled() => {}
            }
            // The last attempt's objects must be gone first: its rollback
            // would take the next attempt's for its own (same names, same
            // request label).
            self.rollbacks.ended(&record.request_uid, &token).await;
        };
        let inputs = outcome
            .failed
            .then(|| run.inputs(record.callback.as_ref().map(|c| c.url.clone())));
        let now = store.clock().now();
        let ended = outcome.clone();
        let change: Change = Arc::new(move |r: &mut RunRecord| {
            if let Some(made) = &pushed_last {
                r.attempts.push(made.clone());
            }
            if let Some(inputs) = &inputs {
                r.inputs = Some(inputs.clone());
            }
            super::outcome::record_outcome(r, &ended, now);
            Decision::Write
        });
        // Durable: the slot's next step depends on it.
        if let Err(e) = self
            .lifecycle
            .update(&mut record, Durability::Now, change)
            .await
        {
            tracing::warn!(request_uid = record.request_uid.as_str(), error = %e, "recording a run failed; it is written when the store is back");
        }
        if record.limited {
            self.applied(&record).await;
        }
        if outcome.failed {
            tracing::warn!(
                request_uid = record.request_uid.as_str(),
                "a run failed to apply"
            );
            return;
        }
        tracing::info!(
            request_uid = record.request_uid.as_str(),
            topic = record.topic,
            "run applied"
        );
        super::outcome::follow_up(&self.lifecycle, &self.runs, &record).await;
    }

    /// Tries a publish's failed apply again in a drained task (its topic
    /// has `retry`; the first attempt was made).
    pub fn retry_in_background(
        self: &Arc<Self>,
        run: Box<dyn QueuedApply>,
        record: RunRecord,
        retry: Retry,
    ) {
        let this = Arc::clone(self);
        let name = TaskName::new("retry apply").about(record.request_uid.clone());
        self.tasks.spawn_drained(name, async move {
            let delay = retry.delay(1);
            let token = this.tasks.token();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = token.cancelled() => {
                    tracing::info!(request_uid = record.request_uid.as_str(), "stopping: a run waiting to be tried again is left Pending");
                    return;
                }
            }
            this.rollbacks.ended(&record.request_uid, &token).await;
            this.apply_and_finish(run, record, retry, 1).await;
        });
    }

    /// Whether any object of `record` exists in the cluster.
    async fn objects_exist(&self, record: &RunRecord) -> bool {
        let objects = record.objects();
        match self
            .applier
            .status_of(&objects, &crate::run::view::selector(&record.request_uid))
            .await
        {
            Ok(statuses) => statuses
                .iter()
                .any(|s| s.phase != crate::cluster::Phase::Gone),
            // Unknown: assume they may; applying again would 409 on the
            // same names, not create twice.
            Err(_) => false,
        }
    }

    /// One sweep: the heartbeat, then for every limited topic the slots of
    /// dead holders taken over, the slots of ended runs freed, and the
    /// queue pumped.
    pub async fn sweep(self: &Arc<Self>) -> Result<usize, StoreError> {
        let store = &self.lifecycle.store;
        store.heartbeat(self.holder(), self.lease).await?;
        let mut alive: HashMap<String, bool> = HashMap::new();
        let mut taken = 0;
        for topic in store.limited_topics().await? {
            for slot in store.slots(&topic).await? {
                if slot.holder != self.holder() {
                    let live = match alive.get(&slot.holder) {
                        Some(live) => *live,
                        None => {
                            let live = store.alive(&slot.holder).await?;
                            alive.insert(slot.holder.clone(), live);
                            live
                        }
                    };
                    if !live
                        && store
                            .slot_adopt(&topic, &slot.request_uid, &slot.holder, self.holder())
                            .await?
                    {
                        taken += 1;
                        self.take_over(&slot).await?;
                        continue;
                    }
                }
                if slot.applied {
                    // Ended, but its end freed nothing (a process died
                    // between the two, the store was down when its tracker
                    // recorded it, or the event was missed).
                    let record = store.run(&slot.request_uid).await?;
                    match record {
                        Some(r) if r.state == RunState::Running => {
                            // Read live: a run found finished is settled on
                            // the way, which frees its slot.
                            if let Err(e) = self.runs.view(&slot.request_uid).await {
                                tracing::debug!(request_uid = slot.request_uid.as_str(), error = %e, "cannot read a limited run's Jobs; tried again next sweep");
                            }
                        }
                        Some(r) if !r.state.is_final() => {}
                        _ => {
                            if store.slot_release(&topic, &slot.request_uid).await? {
                                tracing::info!(
                                    request_uid = slot.request_uid.as_str(),
                                    "freed the slot of an ended run"
                                );
                                self.runs.wake(&topic);
                            }
                        }
                    }
                }
            }
            self.pump(&topic).await;
        }
        Ok(taken)
    }

    /// Carries on with a slot taken over from a dead holder.
    async fn take_over(self: &Arc<Self>, slot: &crate::store::Slot) -> Result<(), StoreError> {
        let store = &self.lifecycle.store;
        if slot.applied {
            self.runs.track(slot.request_uid.clone());
            return Ok(());
        }
        match store.queued(&slot.request_uid).await? {
            Some(entry) => self.spawn_dispatch(entry, true),
            None => {
                // Published directly (not queued) by a process that died in
                // its apply: followed if it applied something, else freed.
                match store.run(&slot.request_uid).await? {
                    Some(r)
                        if r.state == RunState::Running
                            || (r.state == RunState::Pending && self.objects_exist(&r).await) =>
                    {
                        self.follow_applied(r).await;
                    }
                    Some(mut r) if r.state == RunState::Pending => {
                        // Its apply (or a retry of it) died with its process:
                        // a dead letter, re-run with POST /requests/{uid}/retry.
                        let now = store.clock().now();
                        let change: Change = Arc::new(move |r: &mut RunRecord| {
                            let run::Transition::To(state) = run::next(r.state, Event::ApplierLost)
                            else {
                                // It moved on meanwhile: not lost after all.
                                return Decision::Keep;
                            };
                            r.state = state;
                            r.finished_at = Some(now);
                            r.http_status = Some(503);
                            Decision::Write
                        });
                        let _ = self.lifecycle.update(&mut r, Durability::Now, change).await;
                        store.slot_release(&slot.topic, &slot.request_uid).await?;
                        tracing::warn!(request_uid = r.request_uid.as_str(), "the gitfaas applying a run stopped before it applied anything: recorded Failed");
                    }
                    _ => {
                        store.slot_release(&slot.topic, &slot.request_uid).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Wakes on every run end the trackers report and pumps its topic;
    /// ends at shutdown.
    pub async fn run(self: Arc<Self>, mut wakeups: tokio::sync::mpsc::Receiver<String>) {
        let token = self.tasks.token();
        loop {
            let topic = tokio::select! {
                t = wakeups.recv() => match t { Some(t) => t, None => return },
                () = token.cancelled() => return,
            };
            self.pump(&topic).await;
        }
    }

    /// At shutdown: says this process is gone, so other replicas take over
    /// its slots at their next sweep instead of after the lease.
    pub async fn resign(&self) {
        if let Err(e) = self.lifecycle.store.resign(self.holder()).await {
            tracing::info!(error = %e, "cannot hand back the dispatch slots; they are taken over after --dispatch-lease");
        }
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
