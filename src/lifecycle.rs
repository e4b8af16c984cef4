//! What happens to a request after its publish: the `/requests/{uid}` view
//! (stored objects + live status from the cluster + responses + callback
//! attempts), waiting for its Jobs to finish, and delivering `X-Callback-Url`
//! callbacks with retries.
//!
//! It joins `store`, `cluster` and `callback` (which decides where a callback
//! may go); it knows nothing of HTTP routing.
//!
//! A pending callback follows its Jobs on the namespace's shared Job watch
//! (`cluster::jobwatch`), not on a watch of its own: a watch holds an HTTP/1.1
//! connection to the API server for as long as it waits. Deliveries are
//! cancellable tasks of [`Tasks`]: shutdown drops them.
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

use serde::Serialize;
use serde_json::Value;

use crate::callback;
use crate::cluster::{Applier, ApplyError, ObjectStatus, Phase};
use crate::object::{ObjectRef, LABEL_REQUEST_UID};
use crate::store::{CallbackAttempt, Durability, RunState, Store, StoreError, StoredRequest};
use crate::tasks::{ShutdownReport, TaskName, Tasks};
use crate::telemetry::uid_prefix;

/// The name of callback deliveries among the background tasks.
pub const CALLBACK_TASK: &str = "callback";

/// Callbacks one sweep of the outbox looks at, at most.
const SWEEP: usize = 1000;

/// Callbacks delivered at once by one process, at most; more wait in the
/// outbox for a later sweep.
pub const MAX_DELIVERING: usize = 10_000;

/// Errors of reading or following a request.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The cluster failed.
    #[error(transparent)]
    Cluster(#[from] ApplyError),
}

impl LifecycleError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::Code {
        match self {
            LifecycleError::Store(e) => e.kind(),
            LifecycleError::Cluster(e) => e.kind(),
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<crate::error::Code> {
        let _every_variant_is_listed = |e: &Self| match e {
            LifecycleError::Store(_) | LifecycleError::Cluster(_) => (),
        };
        [
            crate::store::StoreError::codes(),
            crate::cluster::ApplyError::codes(),
        ]
        .concat()
    }
}

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

/// The body of `GET /requests/{uid}` (and of a waited publish, and of callbacks).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestView {
    /// Always false: this is not an error.
    pub error: bool,
    /// The request uid.
    pub request_uid: String,
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
    pub status: RunState,
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
fn live_state(record: &StoredRequest, done: bool, succeeded: Option<bool>) -> RunState {
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

/// A deadline for a wait too long to add to an Instant: later than any
/// expiration time the settings allow (10 years).
const LAST_DEADLINE: Duration = Duration::from_secs(20 * 365 * 86400);

/// Follows requests: the store plus the cluster.
pub struct Lifecycle {
    /// Where requests are kept.
    pub store: Store,
    /// The cluster.
    pub applier: Arc<Applier>,
    /// The server's background work: callback deliveries are tasks of it,
    /// cancelled at shutdown.
    pub tasks: Tasks,
    callbacks: callback::Client,
    retry: RetryPolicy,
    /// Bytes of each container's log kept when a run finishes.
    log_archive_bytes: usize,
    /// This process, as the holder of outbox leases.
    holder: String,
    /// The callbacks this process is delivering (bounded by
    /// [`MAX_DELIVERING`]). std Mutex: no .await while held.
    delivering: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Records the store could not take (Redis down): kept here and written
    /// when it is back, so no acknowledged publish is lost. std Mutex: no
    /// .await while held.
    pending: std::sync::Mutex<std::collections::HashMap<String, StoredRequest>>,
}

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

pub fn selector(request_uid: &str) -> String {
    format!("{LABEL_REQUEST_UID}={request_uid}")
}

impl Lifecycle {
    /// A lifecycle over `store` and `applier`, calling back through
    /// `callbacks` in tasks of `tasks`.
    pub fn new(
        store: Store,
        applier: Arc<Applier>,
        callbacks: callback::Client,
        retry: RetryPolicy,
        tasks: Tasks,
        log_archive_bytes: usize,
    ) -> Self {
        Lifecycle {
            store,
            applier,
            tasks,
            callbacks,
            retry,
            log_archive_bytes,
            holder: format!("gitfaas-{}", uuid::Uuid::new_v4()),
            delivering: Default::default(),
            pending: Default::default(),
        }
    }

    /// Keeps what the finished run `record` leaves for when its pods are
    /// gone ([`crate::outputs`]): its log tails, and the responses taken
    /// from stdout when its topic asks for them and it `succeeded`. Best
    /// effort: a failure is logged, not returned.
    pub async fn keep_outputs(&self, record: &StoredRequest, succeeded: bool) {
        if let Err(e) = crate::outputs::keep(
            &self.applier,
            &self.store,
            record,
            self.log_archive_bytes,
            succeeded,
        )
        .await
        {
            tracing::info!(request_uid = record.request_uid, error = %e, "keeping the run's logs failed; its logs answer only while its pods exist");
        }
    }

    /// Where callbacks may go, for the check at publish time.
    pub fn callback_targets(&self) -> &callback::Targets {
        self.callbacks.targets()
    }

    /// Saves a request record. When the store is unavailable the record is
    /// kept in memory and [`Self::flush_pending`] writes it later; the error
    /// is still returned so the caller can decide whether to go on.
    pub async fn record(
        &self,
        record: &StoredRequest,
        durability: Durability,
    ) -> Result<(), StoreError> {
        match self.store.save_request(record, durability).await {
            Ok(()) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&record.request_uid);
                }
                Ok(())
            }
            Err(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(record.request_uid.clone(), record.clone());
                }
                tracing::warn!(request_uid = record.request_uid, error = %e, "the store is unavailable; the record is kept in memory until it is back");
                Err(e)
            }
        }
    }

    /// Writes the records kept in memory; returns how many are still pending.
    pub async fn flush_pending(&self) -> usize {
        let records: Vec<StoredRequest> = match self.pending.lock() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => return 0,
        };
        for r in records {
            if self.store.save_request(&r, Durability::Now).await.is_ok() {
                tracing::info!(
                    request_uid = r.request_uid,
                    "kept record written to the store"
                );
                if let Ok(mut p) = self.pending.lock() {
                    // A newer version may have replaced it meanwhile; keep that one.
                    if p.get(&r.request_uid) == Some(&r) {
                        p.remove(&r.request_uid);
                    }
                }
            } else {
                break;
            }
        }
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// This process, as a holder of leases and slots.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The request's view, or None when it is unknown or expired.
    pub async fn view(&self, request_uid: &str) -> Result<Option<RequestView>, LifecycleError> {
        let Some(record) = self.store.request(request_uid).await? else {
            return Ok(None);
        };
        self.view_of(&record).await.map(Some)
    }

    /// The view of a stored request.
    pub async fn view_of(&self, record: &StoredRequest) -> Result<RequestView, LifecycleError> {
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
                        function_uid: uid_prefix(&f.function_uid),
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
                function_uid: uid_prefix(&f.function_uid),
                path: f.path.clone(),
                response: r.map(|r| r.body),
            })
            .collect();
        // One more than is listed: whether the list was cut.
        let children = self
            .store
            .children(&record.request_uid, MAX_CHILDREN + 1)
            .await?;
        Ok(RequestView {
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
            status: live_state(record, done, succeeded),
            queue,
            attempts: record.attempts.clone(),
            retry_of: record.retry_of.clone(),
            parent: record.parent.clone(),
            children_truncated: children.len() > MAX_CHILDREN,
            children: children
                .into_iter()
                .take(MAX_CHILDREN)
                .map(|c| c.request_uid)
                .collect(),
            recorded: record.state,
        })
    }

    /// Waits until the request's Jobs have finished or `deadline` passes.
    pub async fn wait(
        &self,
        record: &StoredRequest,
        deadline: tokio::time::Instant,
    ) -> Result<bool, LifecycleError> {
        Ok(self
            .applier
            .wait_finished(&record.objects(), &selector(&record.request_uid), deadline)
            .await?)
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
    pub fn spawn_callback(self: &Arc<Self>, request_uid: String, held: bool) {
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
                tracing::warn!(request_uid, error = %e, "callback delivery stopped; the outbox keeps it");
            }
            if let Ok(mut delivering) = this.delivering.lock() {
                delivering.remove(&request_uid);
            }
        });
    }

    /// Puts the callback of `record` in the outbox, held by this process.
    pub async fn hold_callback(&self, record: &StoredRequest) -> Result<bool, StoreError> {
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
                if let Ok(Some(record)) = self.store.request(uid).await {
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
    async fn deliver_held(&self, request_uid: &str, held: bool) -> Result<(), LifecycleError> {
        let Some(record) = self.store.request(request_uid).await? else {
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
            tracing::debug!(request_uid, "another gitfaas holds this callback");
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
                tracing::info!(request_uid, "another gitfaas took this callback over; leaving it");
            }
        }
        Ok(())
    }

    /// Until the request's Jobs have finished or `deadline` passes, follows
    /// them on the namespace's shared Job watch. A failed look (the cluster
    /// briefly unreachable) is logged and tried again after a pause.
    pub async fn until_finished(&self, record: &StoredRequest, deadline: tokio::time::Instant) {
        let objects = record.objects();
        let selector = selector(&record.request_uid);
        let mut pause = Duration::from_secs(1);
        loop {
            match self
                .applier
                .wait_finished(&objects, &selector, deadline)
                .await
            {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::info!(error = %e, "looking at the Jobs failed; trying again"),
            }
            let next = tokio::time::Instant::now() + pause;
            if next >= deadline {
                tracing::info!("the Jobs did not finish in time; going on");
                tokio::time::sleep_until(deadline).await;
                return;
            }
            tokio::time::sleep_until(next).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    #[tracing::instrument(skip_all, fields(request_uid = %record.request_uid))]
    async fn deliver(&self, record: &StoredRequest) -> Result<(), LifecycleError> {
        let request_uid = record.request_uid.as_str();
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
        self.until_finished(record, deadline).await;
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
            let Some(mut record) = self.store.request(request_uid).await? else {
                return Ok(());
            };
            let webhook_id = match record.callback.as_ref().and_then(|c| c.webhook_id.clone()) {
                Some(id) => id,
                None => {
                    // A record from before callbacks were signed: its id is
                    // made now and kept before the POST, so every later
                    // attempt (and a takeover) sends the same one.
                    let id = callback::new_webhook_id();
                    if let Some(cb) = record.callback.as_mut() {
                        cb.webhook_id = Some(id.clone());
                    }
                    self.store.save_request(&record, Durability::Now).await?;
                    id
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
            // Read again after the POST (which may take its whole timeout):
            // the run's end or a cancel recorded meanwhile must not be
            // written over with the copy read before it.
            let Some(mut record) = self.store.request(request_uid).await? else {
                return Ok(());
            };
            if let Some(cb) = record.callback.as_mut() {
                cb.attempts.push(CallbackAttempt {
                    at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
                    delivered,
                    status: outcome.status,
                    error: outcome.failure,
                });
                cb.delivered = delivered;
                cb.abandoned = !delivered && last;
            }
            self.store.save_request(&record, Durability::Now).await?;
            if delivered {
                tracing::info!(attempt, "callback delivered");
                return Ok(());
            }
            if refused {
                // The rules will refuse it again: no retry.
                tracing::info!(attempt, failure = ?outcome.failure, "callback refused; abandoned");
                return Ok(());
            }
            tracing::info!(attempt, failure = ?outcome.failure, status = outcome.status, retry_in = ?delay, "callback failed");
            if !last {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::warn!("callback abandoned after {} attempts", self.retry.attempts);
        Ok(())
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
