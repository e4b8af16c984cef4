//! Delivering `X-Callback-Url` callbacks with retries; [`crate::callback`]
//! decides where a callback may go. Deliveries are cancellable tasks of
//! [`Tasks`](crate::tasks::Tasks): shutdown drops them.
//!
//! # The outbox
//! A callback is in the store's outbox from its publish until it is
//! delivered or given up, held by the process delivering it under a lease
//! (`--callback-lease`) that process renews while it works. A sweep, at
//! start and then every lease, takes over the callbacks whose lease ran
//! out — their process was killed, or stopped — so a callback outlives a
//! restart and the replica that accepted its publish: at least once, each
//! POST carrying the same `webhook-id` (and `X-Gitfaas-Delivery-Id`, equal
//! to it), kept in the request's record, so a receiver can drop a repeat.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::lifecycle::{Lifecycle, LifecycleError, LAST_DEADLINE};
use crate::callback;
use crate::store::{CallbackAttempt, Decision, Durability, RunRecord, StoreError};
use crate::tasks::{ShutdownReport, TaskName};
use crate::uid::RequestUid;

/// The name of callback deliveries among the background tasks.
pub const CALLBACK_TASK: &str = "callback";

/// Callbacks one sweep of the outbox looks at, at most.
const SWEEP: usize = 1000;

/// Callbacks delivered at once by one process, at most; more wait in the
/// outbox for a later sweep.
pub const MAX_DELIVERING: usize = 10_000;

/// How callbacks are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all.
    pub attempts: u32,
    /// Wait before the second attempt; doubles after each failure.
    pub first_delay: Duration,
    /// How long to wait for the Jobs before calling back anyway.
    pub max_wait: Duration,
    /// How long a process holds a callback of the outbox without renewing
    /// it; another takes it over after that.
    pub lease: Duration,
}

/// The default of `--callback-lease`.
pub const DEFAULT_CALLBACK_LEASE: Duration = Duration::from_secs(30);

/// The default of `--callback-max-wait`.
pub const DEFAULT_CALLBACK_MAX_WAIT: Duration = Duration::from_secs(3600);

/// The longest pause between two looks at a pending callback's Jobs: it
/// bounds how late a callback is, and costs one list per pending callback
/// this often.
pub const POLL_MAX: Duration = Duration::from_secs(30);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_secs(1),
            max_wait: DEFAULT_CALLBACK_MAX_WAIT,
            lease: DEFAULT_CALLBACK_LEASE,
        }
    }
}

impl Lifecycle {
    /// Where callbacks may go, for the check at publish time.
    pub fn callback_targets(&self) -> &callback::Targets {
        self.callbacks.targets()
    }

    /// Delivers the request's callback in the background: once its Jobs have
    /// finished, POSTs its view, retrying with exponential backoff; every
    /// attempt is recorded in the store. The callback is taken in the
    /// outbox first, and its lease renewed while this works; another
    /// process's lease that still runs leaves it to that one. A cancellable
    /// task: a delivery may wait for its Jobs for up to
    /// `--callback-max-wait`, far longer than a shutdown may take, so
    /// shutdown drops it and the outbox keeps it for the next sweep.
    /// `held`: this process holds it already ([`Self::hold_callback`]).
    pub fn spawn_callback(self: &Arc<Self>, request_uid: RequestUid, held: bool) {
        {
            let Ok(mut delivering) = self.delivering.lock() else {
                return;
            };
            if delivering.len() >= MAX_DELIVERING || !delivering.insert(request_uid.clone()) {
                return;
            }
        }
        let this = Arc::clone(self);
        let name = TaskName::new(CALLBACK_TASK).about(request_uid.clone());
        self.tasks.spawn_cancellable(name, async move {
            if let Err(e) = this.deliver_held(&request_uid, held).await {
                tracing::warn!(request_uid = request_uid.as_str(), error = %e, "callback delivery stopped; the outbox keeps it");
            }
            if let Ok(mut delivering) = this.delivering.lock() {
                delivering.remove(&request_uid);
            }
        });
    }

    /// Puts the callback of `record` in the outbox, held by this process.
    pub async fn hold_callback(&self, record: &RunRecord) -> Result<bool, StoreError> {
        self.store
            .outbox_claim(record, &self.holder, self.retry.lease)
            .await
    }

    /// Takes the callbacks of the outbox whose lease ran out, at most
    /// [`SWEEP`]; how many.
    pub async fn sweep_outbox(self: &Arc<Self>) -> Result<usize, StoreError> {
        let now = self.store.clock().now();
        let mut taken = 0;
        for entry in self.store.outbox(SWEEP).await? {
            if entry.lease_until <= now || entry.holder == self.holder {
                self.spawn_callback(entry.request_uid, false);
                taken += 1;
            }
        }
        Ok(taken)
    }

    /// Hands the callbacks shutdown stopped back to the outbox: their
    /// leases end within a second, so another gitfaas on the store takes
    /// them over at its next sweep instead of after `--callback-lease`.
    /// Bounded by `within`; what it did not reach lapses with its lease.
    pub async fn hand_back_callbacks(&self, report: &ShutdownReport, within: Duration) {
        let uids: Vec<String> = report
            .cancelled_named(CALLBACK_TASK)
            .filter_map(|t| t.subject())
            .map(String::from)
            .collect();
        let hand_back = async {
            for uid in &uids {
                let Ok(uid) = RequestUid::parse(uid) else {
                    continue;
                };
                if let Ok(Some(record)) = self.store.run(&uid).await {
                    let _ = self
                        .store
                        .outbox_claim(&record, &self.holder, Duration::ZERO)
                        .await;
                }
            }
        };
        if tokio::time::timeout(within, hand_back).await.is_err() {
            tracing::info!("not every callback lease was handed back in time; the rest lapse with --callback-lease");
        }
    }

    /// Says how many callbacks shutdown left to the outbox.
    pub fn report_shutdown(&self, report: &ShutdownReport) {
        let undelivered: Vec<&str> = report
            .cancelled_named(CALLBACK_TASK)
            .filter_map(|t| t.subject())
            .collect();
        if undelivered.is_empty() {
            return;
        }
        tracing::info!(
            callbacks = undelivered.len(),
            request_uids = ?&undelivered[..undelivered.len().min(20)],
            "callbacks left in the outbox at shutdown (their Jobs had not finished); a gitfaas on this store takes them over once their lease runs out"
        );
    }

    /// [`Self::deliver`] under the callback's outbox lease, renewed every
    /// third of it; out of the outbox once delivered or given up.
    async fn deliver_held(
        &self,
        request_uid: &RequestUid,
        held: bool,
    ) -> Result<(), LifecycleError> {
        let Some(record) = self.store.run(request_uid).await? else {
            return self
                .store
                .outbox_done(request_uid)
                .await
                .map_err(Into::into);
        };
        let lease = self.retry.lease;
        if !held
            && !self
                .store
                .outbox_claim(&record, &self.holder, lease)
                .await?
        {
            tracing::debug!(
                request_uid = request_uid.as_str(),
                "another gitfaas holds this callback"
            );
            return Ok(());
        }
        let renew = async {
            let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(300)));
            tick.tick().await;
            loop {
                tick.tick().await;
                match self.store.outbox_claim(&record, &self.holder, lease).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    // The store is down: retried; past the lease another
                    // gitfaas may deliver too (at least once).
                    Err(e) => tracing::info!(error = %e, "renewing the callback's lease failed"),
                }
            }
        };
        tokio::select! {
            done = self.deliver(&record) => {
                done?;
                self.store.outbox_done(request_uid).await?;
            }
            () = renew => {
                tracing::info!(request_uid = request_uid.as_str(), "another gitfaas took this callback over; leaving it");
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(request_uid = %record.request_uid))]
    async fn deliver(&self, record: &RunRecord) -> Result<(), LifecycleError> {
        let request_uid = &record.request_uid;
        let Some(callback) = record.callback.as_ref() else {
            return Ok(());
        };
        if callback.delivered || callback.abandoned {
            return Ok(());
        }
        let url = callback.url.clone();
        // A delivery taken over goes on where the last one stopped.
        let made = u32::try_from(callback.attempts.len()).unwrap_or(u32::MAX);
        // Checked: max_wait is a setting (at most the expiration time).
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(self.retry.max_wait)
            .unwrap_or_else(|| now + LAST_DEADLINE);
        self.until_finished(request_uid, &record.objects(), deadline)
            .await;
        if record.result_from_stdout {
            // The body carries the responses: those taken from stdout must
            // be in it (the run's tracker may not have taken them yet).
            let objects = record.objects();
            if let crate::cluster::JobsEnd::Finished(succeeded) =
                self.applier.jobs_end(&objects).await
            {
                self.keep_outputs(record, succeeded).await;
            }
        }
        let mut delay = self.retry.first_delay;
        for attempt in made.saturating_add(1)..=self.retry.attempts.max(made.saturating_add(1)) {
            let Some(mut record) = self.store.run(request_uid).await? else {
                return Ok(());
            };
            let webhook_id = match record.callback.as_ref().and_then(|c| c.webhook_id.clone()) {
                Some(id) => id,
                None => {
                    // A record from before callbacks were signed: its id is
                    // made now and kept before the POST, so every later
                    // attempt (and a takeover) sends the same one.
                    let id = callback::new_webhook_id();
                    let updated = self
                        .store
                        .update_run(request_uid, Durability::Now, |r| {
                            match r.callback.as_mut() {
                                Some(cb) if cb.webhook_id.is_none() => {
                                    cb.webhook_id = Some(id.clone());
                                    Decision::Write
                                }
                                _ => Decision::Keep,
                            }
                        })
                        .await?;
                    let Some(updated) = updated else {
                        return Ok(());
                    };
                    record = updated.record;
                    // Another attempt (a takeover) may have made it first.
                    record
                        .callback
                        .as_ref()
                        .and_then(|c| c.webhook_id.clone())
                        .unwrap_or(id)
                }
            };
            // Serialized once: the bytes signed are the bytes sent.
            let body = match self.view_of(&record).await {
                Ok(view) => serde_json::to_vec(&view).unwrap_or_default(),
                Err(e) => {
                    tracing::info!(error = %e, "cannot build the callback body yet");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    continue;
                }
            };
            let outcome = self
                .callbacks
                .post(&url, request_uid, &webhook_id, body)
                .await;
            let delivered = outcome.failure.is_none();
            let refused = outcome.failure.is_some_and(callback::Failure::is_refusal);
            let last = attempt >= self.retry.attempts || refused;
            // On the newest record, after the POST (which may take its
            // whole timeout): the run's end or a cancel recorded meanwhile
            // must not be written over.
            let attempt_made = CallbackAttempt {
                at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                delivered,
                http_status: outcome.http_status,
                error: outcome.failure,
            };
            let updated = self
                .store
                .update_run(request_uid, Durability::Now, |r| {
                    let Some(cb) = r.callback.as_mut() else {
                        return Decision::Keep;
                    };
                    cb.attempts.push(attempt_made.clone());
                    cb.delivered = delivered;
                    cb.abandoned = !delivered && last;
                    Decision::Write
                })
                .await?;
            if updated.is_none() {
                return Ok(());
            }
            if delivered {
                tracing::info!(attempt, "callback delivered");
                return Ok(());
            }
            if refused {
                // The rules will refuse it again: no retry.
                tracing::info!(attempt, failure = ?outcome.failure, "callback refused; abandoned");
                return Ok(());
            }
            tracing::info!(attempt, failure = ?outcome.failure, status = outcome.http_status, retry_in = ?delay, "callback failed");
            if !last {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::warn!("callback abandoned after {} attempts", self.retry.attempts);
        Ok(())
    }
}
