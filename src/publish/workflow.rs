//! The whole of one publish, HTTP-agnostic: admission (the in-flight and
//! waiter bounds), the Idempotency-Key claim, prepare, the request record,
//! the apply, the record of its outcome, the callback, and the wait.
//!
//! The HTTP handler parses a request into an [`Order`] and writes the
//! [`Outcome`] (or the [`WorkflowError`]) back; everything in between is
//! here, in the order it must happen:
//! 1. [`Publisher::admit`]: an in-flight permit, before the body is read
//!    (429 beyond `--max-in-flight`).
//! 2. A waiter slot for `?wait=` (429 beyond `--max-waiters`), before
//!    anything is applied, so a 429 is always safe to retry.
//! 3. The topic's filter (`filter` in config.json): false answers 200
//!    `filtered` and stops here, nothing applied, claimed, queued nor
//!    recorded; an unknown topic goes on (its render answers 404).
//! 4. The Idempotency-Key claim: a replay answers the first publish's answer.
//! 5. [`super::prepare`]: render, check, resolve, dry run.
//! 6. The record, before the first apply (a function may answer as soon as
//!    its pod runs).
//! 7. [`super::execute`] in a drained task ([`crate::tasks`]), which a
//!    shutdown lets finish: it is never cut between an apply and its
//!    rollback.
//! 8. The record of the outcome; the claim completed; the callback scheduled.
//! 9. The in-flight permit given back, then the wait, which ends early when
//!    the caller goes away.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::claim::IdempotencyClaim;
use super::{Context, PublishError, Report, Request};
use crate::cloudevent::Attributes;
use crate::cluster::Applier;
use crate::error::Code;
use crate::policy::Policy;
use crate::run::dispatch::{AdmitError, Admitted, Ask, Dispatcher, Full};
use crate::run::lifecycle::{Change, Lifecycle, LifecycleError};
use crate::run::outcome::{follow_up, record_outcome};
use crate::run::view::RunDetail;
use crate::run::{self, Event};
use crate::settings::Limits;
use crate::source::Syncer;
use crate::store::{
    CallbackState, Claim, Decision, Durability, Fingerprint, RunRecord, RunState, StoreError,
    StoredFunction, Trigger,
};
use crate::tasks::{TaskName, Tasks};
use crate::uid::{FunctionUid, IdempotencyKey, RequestUid};

/// The longest wait honoured; longer ones are capped.
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// A publish, as parsed from its HTTP request (or any other front end).
pub struct Order {
    /// The uid given to the request (logged from the first line).
    pub request_uid: RequestUid,
    /// The topic as asked.
    pub topic: String,
    /// Who asks: scopes the Idempotency-Key.
    pub caller: String,
    /// The message.
    pub body: bytes::Bytes,
    /// Template variables.
    pub params: Vec<(String, String)>,
    /// A server-side dry run only.
    pub dry_run: bool,
    /// Answer when the Jobs have finished, or after this long.
    pub wait: Option<Duration>,
    /// The Idempotency-Key as sent.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Where to POST the request's view when its Jobs have finished.
    pub callback: Option<String>,
    /// The run that publishes this one, already vouched for (a retry keeps
    /// the parent its failed run had).
    pub parent: Option<RequestUid>,
    /// `Gitfaas-Parent` as sent: the function uid of the run that
    /// publishes this one, the capability only that run's functions hold.
    /// [`Publisher::publish`] resolves it to its run (the `parent`).
    pub parent_function: Option<FunctionUid>,
    /// The W3C trace id this run continues (`traceparent`).
    pub trace_id: Option<String>,
    /// The failed run this one publishes again (`POST /requests/{uid}/retry`).
    pub retry_of: Option<RequestUid>,
    /// What started it, recorded with the run.
    pub trigger: Trigger,
    /// The tick a schedule fires it for (RFC 3339, UTC).
    pub scheduled_time: Option<String>,
    /// The CloudEvent whose data `body` is: its attributes fill the
    /// `{{CE_…}}` variables, are kept with the run, and its `source` and
    /// `id` deduplicate it per topic (instead of an Idempotency-Key, which
    /// may not come with it).
    pub cloudevent: Option<Attributes>,
    /// What the topic's filter sees besides the body and the parameters
    /// (headers, CloudEvent attributes); `None`: the filter is not
    /// evaluated (a re-run of a run that passed it).
    pub filter: Option<crate::filter::Envelope>,
}

/// What a publish ended with.
#[derive(Debug)]
pub enum Outcome {
    /// The topic's filter is false for it: nothing applied nor recorded (200).
    Filtered(super::Filtered),
    /// A dry run: what would have been applied.
    DryRun(Report),
    /// Applied (202).
    Applied(Report),
    /// Waiting in its topic's queue (202, status Queued).
    Queued(Report),
    /// Applied and waited for: `finished` when every Job has finished.
    Waited {
        /// The request's view at the end of the wait.
        view: Box<RunDetail>,
        /// Whether every Job finished before the deadline.
        finished: bool,
    },
    /// Applied; the caller went away while it waited.
    Abandoned {
        /// The request.
        request_uid: RequestUid,
    },
    /// The Idempotency-Key's first publish, answered again.
    Replayed {
        /// The first publish's request uid.
        request_uid: RequestUid,
        /// Its HTTP status.
        http_status: u16,
        /// Its answer.
        report: Value,
    },
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// Refused or failed before anything was applied.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The apply failed; what it had created was rolled back.
    #[error("{}", .0.message.clone().unwrap_or_default())]
    Failed(Box<Report>),
    /// The store failed where the publish needs it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the request's status failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// `--max-in-flight` publishes are in flight.
    #[error("{0} publishes are already in flight (--max-in-flight): retry shortly")]
    InFlight(usize),
    /// `--max-waiters` publishes are waiting.
    #[error("{0} publishes are already waiting (--max-waiters); nothing was applied: retry, or publish without ?wait= and follow /requests/{{requestUid}}")]
    Waiters(usize),
    /// The callback URL is refused.
    #[error(transparent)]
    Callback(#[from] crate::callback::TargetError),
    /// `Gitfaas-Parent` names no live function (`{0}`: its prefix), or a
    /// kept parent run expired.
    #[error("Gitfaas-Parent `{0}` is not a live function uid (unknown, or expired): a step of a pipeline sends its own function uid ({{{{FUNCTION_UID}}}}), within the expiration time")]
    UnknownParent(String),
    /// The key was used for another request.
    #[error("Idempotency-Key `{key}` was used for another request ({what} differ): a retry must repeat the same request; use a new key for a different publish")]
    IdempotencyMismatch {
        /// The key as sent.
        key: String,
        /// What differs.
        what: String,
    },
    /// A CloudEvent's `source` and `id` delivered before to the topic, with
    /// other content.
    #[error("CloudEvent id `{id}` from source `{event_source}` was already delivered to topic `{topic}` with other content ({what} differ): a redelivery must repeat the same event (and query parameters); a new event needs an id of its own")]
    EventMismatch {
        /// The event's id (shortened).
        id: String,
        /// Its source (shortened).
        event_source: String,
        /// The topic.
        topic: String,
        /// What differs.
        what: String,
    },
    /// The first delivery of a CloudEvent's `source` and `id` to the topic
    /// is still being published.
    #[error("CloudEvent id `{id}` from source `{event_source}` is still being published to topic `{topic}` ({request_uid}): redeliver it in a moment (if that publish died, the event is free again after --idempotency-lease, {lease_secs}s)")]
    EventInProgress {
        /// The event's id (shortened).
        id: String,
        /// Its source (shortened).
        event_source: String,
        /// The topic.
        topic: String,
        /// The first publish.
        request_uid: String,
        /// The lease, in seconds.
        lease_secs: u64,
    },
    /// A CloudEvent sent with an Idempotency-Key.
    #[error("Idempotency-Key is not taken with a CloudEvent: its source and id deduplicate it on the topic; send the event without the header")]
    KeyWithEvent,
    /// The key's first publish is still running.
    #[error("a publish with Idempotency-Key `{key}` ({request_uid}) is still in progress: retry in a moment (if that publish died, the key is free again after --idempotency-lease, {lease_secs}s)")]
    IdempotencyInProgress {
        /// The key as sent.
        key: String,
        /// The first publish.
        request_uid: String,
        /// The lease, in seconds.
        lease_secs: u64,
    },
    /// `POST /requests/{uid}/retry` of an unknown run.
    #[error("unknown or expired request uid `{0}`: use the requestUid a publish returned, within the expiration time")]
    UnknownRun(String),
    /// `POST /requests/{uid}/retry` of a run that is not a dead letter.
    #[error("run `{uid}` {why}: only a run whose apply failed can be re-run (GET /requests?status=failed lists them)")]
    NotRetryable {
        /// The run.
        uid: String,
        /// Why not.
        why: String,
    },
    /// The apply task stopped without an answer (a panic).
    #[error("the publish stopped unexpectedly; see the log")]
    Stopped,
}

impl WorkflowError {
    /// What kind of failure this is.
    pub fn kind(&self) -> Code {
        match self {
            WorkflowError::Publish(e) => e.kind(),
            WorkflowError::Failed(report) => report.failure.unwrap_or(Code::Internal),
            WorkflowError::Store(e) => e.kind(),
            WorkflowError::Lifecycle(e) => e.kind(),
            WorkflowError::InFlight(_) | WorkflowError::Waiters(_) => Code::TooManyRequests,
            WorkflowError::Callback(_)
            | WorkflowError::UnknownParent(_)
            | WorkflowError::KeyWithEvent => Code::BadRequest,
            WorkflowError::IdempotencyMismatch { .. } | WorkflowError::EventMismatch { .. } => {
                Code::IdempotencyMismatch
            }
            WorkflowError::IdempotencyInProgress { .. } | WorkflowError::EventInProgress { .. } => {
                Code::IdempotencyInProgress
            }
            WorkflowError::Stopped => Code::Internal,
            WorkflowError::UnknownRun(_) => Code::NotFound,
            WorkflowError::NotRetryable { .. } => Code::RunNotRetryable,
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<Code> {
        let _every_variant_is_listed = |e: &Self| match e {
            WorkflowError::Publish(_)
            | WorkflowError::Failed(_)
            | WorkflowError::Store(_)
            | WorkflowError::Lifecycle(_)
            | WorkflowError::InFlight(_)
            | WorkflowError::Waiters(_)
            | WorkflowError::Callback(_)
            | WorkflowError::UnknownParent(_)
            | WorkflowError::IdempotencyMismatch { .. }
            | WorkflowError::IdempotencyInProgress { .. }
            | WorkflowError::EventMismatch { .. }
            | WorkflowError::EventInProgress { .. }
            | WorkflowError::KeyWithEvent
            | WorkflowError::Stopped
            | WorkflowError::UnknownRun(_)
            | WorkflowError::NotRetryable { .. } => (),
        };
        [
            // A failed report's `failure` is a publish's kind (an apply's,
            // or a queued run's whole publish), or internal without one.
            PublishError::codes(),
            StoreError::codes(),
            LifecycleError::codes(),
            vec![
                Code::Internal,
                Code::TooManyRequests,
                Code::BadRequest,
                Code::IdempotencyMismatch,
                Code::IdempotencyInProgress,
                Code::NotFound,
                Code::RunNotRetryable,
            ],
        ]
        .concat()
    }

    /// The report of a publish that failed after rendering, if any.
    pub fn report(&self) -> Option<&Report> {
        match self {
            WorkflowError::Failed(report)
            | WorkflowError::Publish(PublishError::DryRun { report, .. }) => Some(report),
            _ => None,
        }
    }
}

/// Proof that a publish was admitted: an in-flight permit, held until its
/// objects are applied.
pub struct Admission {
    _permit: OwnedSemaphorePermit,
}

/// Everything a publish needs, built once at start.
pub struct Publisher {
    syncer: Arc<Syncer>,
    applier: Arc<Applier>,
    lifecycle: Arc<Lifecycle>,
    runs: Arc<crate::run::runs::Runs>,
    policy: Policy,
    public_url: String,
    dispatcher: Arc<Dispatcher>,
    /// Applies a run again after a transient failure.
    relauncher: super::Relauncher,
    /// The runs whose failed apply is still being rolled back.
    rollbacks: Arc<crate::run::rollbacks::Rollbacks>,
    limits: Limits,
    max_payload_bytes: usize,
    in_flight: Arc<Semaphore>,
    waiters: Arc<Semaphore>,
    /// Background work: an apply is a drained task (shutdown lets it
    /// finish), on the main runtime, not on an HTTP worker's, which stops
    /// with its worker.
    tasks: Tasks,
}

/// What [`Publisher::new`] takes.
pub struct Parts {
    /// The syncer and its live snapshot.
    pub syncer: Arc<Syncer>,
    /// The cluster.
    pub applier: Arc<Applier>,
    /// Requests after their publish.
    pub lifecycle: Arc<Lifecycle>,
    /// The history: runs are followed to their end.
    pub runs: Arc<crate::run::runs::Runs>,
    /// What may be applied.
    pub policy: Policy,
    /// {{GITFAAS_URL}}.
    pub public_url: String,
    /// The bounds.
    pub limits: Limits,
    /// Largest accepted body.
    pub max_payload_bytes: usize,
    /// In-flight permits (shared with the idle-memory trimmer).
    pub in_flight: Arc<Semaphore>,
    /// Background work.
    pub tasks: Tasks,
    /// The slots and queues of limited topics.
    pub dispatcher: Arc<Dispatcher>,
    /// Applies a run again after a transient failure.
    pub relauncher: super::Relauncher,
    /// The runs whose failed apply is still being rolled back.
    pub rollbacks: Arc<crate::run::rollbacks::Rollbacks>,
}

impl Publisher {
    /// A publisher.
    pub fn new(parts: Parts) -> Self {
        Publisher {
            waiters: Arc::new(Semaphore::new(parts.limits.max_waiters)),
            syncer: parts.syncer,
            applier: parts.applier,
            lifecycle: parts.lifecycle,
            runs: parts.runs,
            policy: parts.policy,
            public_url: parts.public_url,
            dispatcher: parts.dispatcher,
            relauncher: parts.relauncher,
            rollbacks: parts.rollbacks,
            limits: parts.limits,
            max_payload_bytes: parts.max_payload_bytes,
            in_flight: parts.in_flight,
            tasks: parts.tasks,
        }
    }

    /// The bounds publishes are held to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The largest body a publish takes.
    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// Whether the live snapshot has `topic` (for metrics labels).
    pub fn knows(&self, topic: &str) -> bool {
        self.syncer
            .snapshot()
            .is_some_and(|s| s.topic(topic).is_some())
    }

    /// Admits a publish, or refuses it at once (backpressure, not a queue).
    pub fn admit(&self) -> Result<Admission, WorkflowError> {
        Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map(|permit| Admission { _permit: permit })
            .map_err(|_| WorkflowError::InFlight(self.limits.max_in_flight))
    }

    /// Runs the admitted publish `order`. `gone` resolves when its caller
    /// has gone away: a wait ends there (nothing is cancelled before).
    pub async fn publish(
        &self,
        admission: Admission,
        order: Order,
        gone: impl Future<Output = ()>,
    ) -> Result<Outcome, WorkflowError> {
        let _waiter = match order.wait {
            Some(_) => Some(
                Arc::clone(&self.waiters)
                    .try_acquire_owned()
                    .map_err(|_| WorkflowError::Waiters(self.limits.max_waiters))?,
            ),
            None => None,
        };
        if let Some(url) = &order.callback {
            self.lifecycle.callback_targets().check(url)?;
        }
        let snapshot = self.syncer.snapshot().ok_or_else(|| {
            let why = self
                .syncer
                .status()
                .last_error
                .map(|e| e.message)
                .unwrap_or_else(|| "it is still running".into());
            PublishError::NoSnapshot(why)
        })?;
        if let Some(envelope) = &order.filter {
            if let Some(filtered) = self.filter(&snapshot, &order, envelope).await? {
                return Ok(Outcome::Filtered(filtered));
            }
        }
        let mut order = order;
        if let Some(function) = order.parent_function.take() {
            // A request uid is listed to every reader; a function uid only
            // to the run's own functions: a link one of them vouches for.
            let run = self
                .lifecycle
                .store
                .run_of_function(&function)
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::UnknownFunction(prefix) => {
                        WorkflowError::UnknownParent(prefix)
                    }
                    other => other.into(),
                })?;
            order.parent = Some(run);
        } else if let Some(parent) = &order.parent {
            if self.lifecycle.store.run(parent).await?.is_none() {
                return Err(WorkflowError::UnknownParent(parent.to_string()));
            }
        }
        let key = match (&order.idempotency_key, &order.cloudevent) {
            (Some(_), Some(_)) => return Err(WorkflowError::KeyWithEvent),
            // A key is the caller's own (IETF idempotency draft): two
            // callers' equal keys are two keys.
            (Some(k), None) => Some(format!("{}/{k}", order.caller)),
            // An event's source and id name the event whoever delivers it
            // (the CloudEvents specification): one key per topic, for every
            // caller. Its digest bounds the key and keeps the attributes'
            // text out of it; no caller's scope (`open`, `t-…`) can hold it.
            // A re-run of a dead letter is no delivery of its event: the
            // failed run holds the event's key, and would answer for it.
            (None, Some(_)) if order.retry_of.is_some() => None,
            (None, Some(event)) => Some(format!("cloudevent/{}", event.dedup_digest(&order.topic))),
            (None, None) => None,
        };
        let claim = match (key, order.dry_run) {
            // The fingerprint (a SHA-256 of the body) only where a key binds it.
            (Some(key), false) => match self.claim(&key, &order, &fingerprint(&order)).await? {
                None => Some(IdempotencyClaim::new(
                    self.lifecycle.store.clone(),
                    self.tasks.clone(),
                    key,
                    order.request_uid.clone(),
                )),
                Some(replayed) => return replayed,
            },
            _ => None,
        };
        self.claimed(admission, order, snapshot, gone, claim).await
    }

    /// Publishes the failed run `failed` again, as a new run (`request_uid`)
    /// linked to it: the same topic, body, query parameters, parent and
    /// callback, rendered from the live commit.
    pub async fn retry_run(
        &self,
        admission: Admission,
        caller: String,
        failed: &RequestUid,
        request_uid: RequestUid,
    ) -> Result<Outcome, WorkflowError> {
        use base64::Engine;
        let record = self.lifecycle.store.run(failed).await?.ok_or_else(|| {
            WorkflowError::UnknownRun(crate::telemetry::access_path(failed.as_str()))
        })?;
        let not = |why: String| WorkflowError::NotRetryable {
            uid: failed.to_string(),
            why,
        };
        if record.state != RunState::Failed {
            return Err(not(format!("is {}", record.state.as_str())));
        }
        let Some(inputs) = record.inputs else {
            return Err(not(
                "failed in its Jobs, not in its apply (what it published was not kept)".into(),
            ));
        };
        let body = base64::engine::general_purpose::STANDARD
            .decode(inputs.body.as_bytes())
            .map_err(|_| not("has a kept body that cannot be read".into()))?;
        tracing::info!(retry_of = failed.as_str(), "re-running a failed run");
        let order = Order {
            request_uid,
            topic: record.topic,
            caller,
            body: body.into(),
            params: inputs.params,
            dry_run: false,
            wait: None,
            idempotency_key: None,
            callback: inputs.callback,
            parent: record.parent,
            parent_function: None,
            trace_id: None,
            retry_of: Some(failed.clone()),
            // A re-run is asked for over HTTP; `retryOf` names what the
            // failed run was started by. A tick's re-run renders the
            // same {{SCHEDULED_TIME}}: it is the tick's work done again.
            trigger: Trigger::Http,
            scheduled_time: record.scheduled_time,
            // Its event's attributes again, for its `{{CE_…}}`; not its
            // dedup key (`retry_of` says so): the failed run holds that one.
            cloudevent: record.cloudevent,
            // It passed its topic's filter when it was first published;
            // its headers were not kept.
            filter: None,
        };
        self.publish(admission, order, std::future::pending()).await
    }

    /// The topic's filter on `order`: `Some` when it is false (the publish
    /// stops: nothing is claimed, queued, applied nor recorded), `None` to
    /// go on, also for a topic without a filter or an unknown one (whose
    /// render answers 404). A filter that cannot decide is a 400 quoting
    /// it. A large body is evaluated on the blocking pool, as it is
    /// rendered.
    async fn filter(
        &self,
        snapshot: &Arc<crate::catalog::Snapshot>,
        order: &Order,
        envelope: &crate::filter::Envelope,
    ) -> Result<Option<super::Filtered>, WorkflowError> {
        let Some(topic) = snapshot.topic(&order.topic) else {
            return Ok(None);
        };
        let Some(filter) = &topic.filter else {
            return Ok(None);
        };
        let params = super::check_params(&order.params)?;
        let decided = if filter.uses_body()
            && order.body.len() >= super::render::RENDER_ON_BLOCKING_POOL_BYTES
        {
            let snapshot = Arc::clone(snapshot);
            let name = order.topic.clone();
            let body = order.body.clone();
            let envelope = envelope.clone();
            tokio::task::spawn_blocking(move || {
                let filter = snapshot.topic(&name).and_then(|t| t.filter.as_ref());
                filter.map(|f| {
                    f.evaluate(&crate::filter::Input {
                        body: &body,
                        params: &params,
                        envelope: &envelope,
                    })
                })
            })
            .await
            .map_err(|e| PublishError::Internal(format!("the filter stopped: {e}")))?
            .unwrap_or(Ok(true))
        } else {
            filter.evaluate(&crate::filter::Input {
                body: &order.body,
                params: &params,
                envelope,
            })
        };
        match decided {
            Ok(true) => Ok(None),
            Ok(false) => {
                crate::metrics::get().filtered(topic.name.as_ref());
                tracing::info!("filtered out: the topic's filter is false; nothing applied");
                Ok(Some(super::Filtered {
                    filtered: true,
                    request_uid: order.request_uid.clone(),
                    topic: topic.name.to_string(),
                    commit: snapshot.commit.clone(),
                    dry_run: order.dry_run,
                    message: format!(
                        "the filter of topic `{}` is false for this request: nothing was applied and no run recorded",
                        topic.name
                    ),
                }))
            }
            Err(e) => Err(PublishError::Filter {
                topic: topic.name.to_string(),
                expression: filter.source().to_string(),
                reason: e.reason,
            }
            .into()),
        }
    }

    /// Claims `key`; None when fresh, else the answer to give instead.
    async fn claim(
        &self,
        key: &str,
        order: &Order,
        fingerprint: &Fingerprint,
    ) -> Result<Option<Result<Outcome, WorkflowError>>, WorkflowError> {
        let claim = self
            .lifecycle
            .store
            .claim_idempotency(
                key,
                &order.topic,
                fingerprint,
                &order.request_uid,
                self.limits.idempotency_lease,
            )
            .await?;
        let Claim::Existing {
            request_uid: first,
            topic: first_topic,
            fingerprint: first_fingerprint,
        } = claim
        else {
            return Ok(None);
        };
        let shown = order
            .idempotency_key
            .as_ref()
            .map(IdempotencyKey::to_string)
            .unwrap_or_default();
        let differs = if first_fingerprint.event != fingerprint.event {
            Some("the event's attributes".to_string())
        } else if first_topic != order.topic {
            Some(format!(
                "the topic (`{first_topic}`, now `{}`)",
                order.topic
            ))
        } else if first_fingerprint == Fingerprint::default() {
            // A claim stored before fingerprints were kept: the topic is all it says.
            None
        } else if first_fingerprint.params != fingerprint.params {
            Some("the query parameters".to_string())
        } else if first_fingerprint.body != fingerprint.body {
            Some(match order.cloudevent {
                Some(_) => "the data".to_string(),
                None => "the body".to_string(),
            })
        } else {
            None
        };
        if let Some(what) = differs {
            return Ok(Some(Err(match &order.cloudevent {
                Some(event) => WorkflowError::EventMismatch {
                    id: shown_attribute(event, "id"),
                    event_source: shown_attribute(event, "source"),
                    topic: order.topic.clone(),
                    what,
                },
                None => WorkflowError::IdempotencyMismatch { key: shown, what },
            })));
        }
        let record = self.lifecycle.store.run(&first).await?;
        Ok(Some(
            match record.and_then(|r| Some((r.report?, r.http_status?))) {
                Some((report, http_status)) => {
                    tracing::info!(request_uid = first.as_str(), "idempotent replay");
                    Ok(Outcome::Replayed {
                        request_uid: first,
                        http_status,
                        report,
                    })
                }
                None => Err(match &order.cloudevent {
                    Some(event) => WorkflowError::EventInProgress {
                        id: shown_attribute(event, "id"),
                        event_source: shown_attribute(event, "source"),
                        topic: order.topic.clone(),
                        request_uid: first.into_string(),
                        lease_secs: self.limits.idempotency_lease.as_secs(),
                    },
                    None => WorkflowError::IdempotencyInProgress {
                        key: shown,
                        request_uid: first.into_string(),
                        lease_secs: self.limits.idempotency_lease.as_secs(),
                    },
                }),
            },
        ))
    }

    /// The publish after its claim (if any).
    async fn claimed(
        &self,
        admission: Admission,
        order: Order,
        snapshot: Arc<crate::catalog::Snapshot>,
        gone: impl Future<Output = ()>,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Outcome, WorkflowError> {
        let ctx = Context {
            snapshot,
            policy: &self.policy,
            applier: &self.applier,
            public_url: &self.public_url,
        };
        let mut prepared = match super::prepare(
            &ctx,
            Request {
                topic: &order.topic,
                body: &order.body,
                params: order.params,
                dry_run: order.dry_run,
                trace_id: order.trace_id.as_deref(),
                cloudevent: order.cloudevent.as_ref(),
                scheduled_time: order.scheduled_time.as_deref(),
            },
            order.request_uid.clone(),
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                release(claim).await;
                return Err(e.into());
            }
        };
        if prepared.dry_run() {
            return Ok(Outcome::DryRun(
                super::execute(&self.applier, &self.tasks, &self.rollbacks, prepared).await,
            ));
        }

        let mut record = self.lifecycle.store.new_run(
            prepared.request_uid(),
            prepared.topic(),
            prepared.commit(),
        );
        record.functions = prepared
            .functions()
            .into_iter()
            .map(|(function_uid, path, objects)| StoredFunction {
                function_uid,
                path,
                objects,
            })
            .collect();
        record.parent = order.parent;
        record.retry_of = order.retry_of;
        record.trigger = order.trigger;
        record.scheduled_time = order.scheduled_time;
        record.cloudevent = order.cloudevent;
        record.result_from_stdout = prepared.result() == crate::catalog::ResultSource::Stdout;
        record.callback = order.callback.map(|url| CallbackState {
            url,
            delivered: false,
            abandoned: false,
            attempts: Vec::new(),
            webhook_id: Some(crate::callback::new_webhook_id()),
        });
        let queues = prepared
            .limit()
            .is_some_and(|l| l.overflow != crate::catalog::Overflow::Reject);
        if let Some(limit) = prepared.limit() {
            record.limited = true;
            if queues {
                // What the queue keeps of the record says Queued; the record
                // itself is written right after the decision, and a
                // dispatcher (here or on another replica) waits for it
                // before it applies the run (dispatch's RECORD_WAIT).
                record.state = run::after(record.state, Event::Queued);
                record.report = serde_json::to_value(prepared.queued_report(None)).ok();
                record.http_status = Some(202);
            }
            let ask = Ask {
                topic: prepared.topic(),
                request_uid: prepared.request_uid(),
                limit,
                run: if queues {
                    serde_json::to_value(prepared.queued()).unwrap_or_default()
                } else {
                    Value::Null
                },
                record: &record,
            };
            match self
                .dispatcher
                .admit(ask)
                .await
                .map_err(|e| refusal(e, &prepared))
            {
                Ok(Admitted::Slot) => {
                    record.state = run::after(record.state, Event::Dispatched);
                    record.report = None;
                    record.http_status = None;
                }
                Ok(Admitted::Queued(position)) => {
                    return self.queued(record, &prepared, position, claim).await;
                }
                Err(e) => {
                    release(claim).await;
                    return Err(e);
                }
            }
        }
        // Not yet durable: the group commit covers it within milliseconds,
        // and a publish does not wait for a disk flush (see `store`).
        if let Err(e) = self.lifecycle.record(&record, Durability::Soon).await {
            if claim.is_some() || record.limited {
                // Idempotency cannot be promised without the store, nor a
                // slot held for a run it does not know: apply nothing.
                if record.limited {
                    self.runs
                        .free_slot(&record.topic, &record.request_uid)
                        .await;
                }
                release(claim).await;
                return Err(e.into());
            }
            // Without a key the publish goes on; the record waits in memory.
        }

        let retry = prepared.retry().filter(|r| r.attempts > 1);
        // Only a topic with `retry` pays for the copy a retry applies.
        let again = retry.map(|_| prepared.queued());
        // Kept if the apply fails, to publish it again (the apply needs
        // them no more).
        let params = prepared.take_params();
        let report = self.apply(prepared).await?;
        if let (Some(retry), Some(run)) = (retry, again) {
            if report.error && report.failure.is_some_and(crate::run::outcome::transient) {
                let answer = self.retrying(&mut record, &report, &run, retry).await;
                complete(claim).await;
                self.dispatcher
                    .retry_in_background(self.relauncher.again(run), record, retry);
                return Ok(Outcome::Applied(answer));
            }
        }
        let inputs = report.error.then(|| {
            use base64::Engine;
            // A dead letter: what it published, for POST /requests/{uid}/retry.
            crate::store::RunInputs {
                body: base64::engine::general_purpose::STANDARD.encode(&order.body),
                params,
                callback: record.callback.as_ref().map(|c| c.url.clone()),
            }
        });
        // On failure the record is kept in memory and written when the store
        // is back. An Idempotency-Key or a callback is a promise made to a caller
        // that may come back after a crash: on disk first.
        let durability = if claim.is_some() || record.callback.is_some() || record.limited {
            Durability::Now
        } else {
            Durability::Soon
        };
        let now = self.lifecycle.store.clock().now();
        let outcome = report.outcome();
        let change: Change = Arc::new(move |r: &mut RunRecord| {
            record_outcome(r, &outcome, now);
            if let Some(inputs) = &inputs {
                r.inputs = Some(inputs.clone());
            }
            Decision::Write
        });
        let _ = self.lifecycle.update(&mut record, durability, change).await;
        if record.limited {
            self.dispatcher.applied(&record).await;
        }
        complete(claim).await;
        if report.error {
            return Err(WorkflowError::Failed(Box::new(report)));
        }
        follow_up(&self.lifecycle, &self.runs, &record).await;
        // Applied: the in-flight permit bounds work, not waiting.
        drop(admission);
        match order.wait {
            Some(wait) => self.wait(record, wait, gone).await,
            None => Ok(Outcome::Applied(report)),
        }
    }

    /// A publish whose first apply met a transient failure, on a topic
    /// with `retry`: recorded Pending with its attempt and what it
    /// published (durable), and answered 202 `Retrying`.
    async fn retrying(
        &self,
        record: &mut RunRecord,
        report: &Report,
        run: &super::QueuedRun,
        retry: crate::catalog::Retry,
    ) -> Report {
        let why = report.message.clone().unwrap_or_default();
        let attempt = crate::store::ApplyAttempt {
            at: crate::run::view::rfc3339(self.lifecycle.store.clock().now()),
            code: report
                .failure
                .unwrap_or(Code::Internal)
                .as_str()
                .to_string(),
            message: why.clone(),
        };
        let inputs = run.inputs(record.callback.as_ref().map(|c| c.url.clone()));
        let mut answer = report.clone();
        answer.error = false;
        answer.failure = None;
        answer.phase = Some("Retrying");
        answer.message = Some(format!(
            "the apply failed and nothing of it stays applied ({why}); it is tried again in the background, up to {} more time(s): follow /requests/{}",
            retry.attempts - 1,
            record.request_uid
        ));
        let shown = serde_json::to_value(&answer).ok();
        let change: Change = Arc::new(move |r: &mut RunRecord| {
            r.attempts.push(attempt.clone());
            r.inputs = Some(inputs.clone());
            r.report = shown.clone();
            r.http_status = Some(202);
            Decision::Write
        });
        if let Err(e) = self.lifecycle.update(record, Durability::Now, change).await {
            tracing::warn!(error = %e, "recording a run to try again failed; it is written when the store is back");
        }
        tracing::warn!(
            error = why,
            "the apply failed; tried again in the background (the topic's retry)"
        );
        answer
    }

    /// A publish its topic's queue took: recorded Queued (durable), the
    /// claim completed, the queue pumped (a slot may have freed since).
    async fn queued(
        &self,
        record: RunRecord,
        prepared: &super::Prepared,
        position: u64,
        claim: Option<IdempotencyClaim>,
    ) -> Result<Outcome, WorkflowError> {
        // Written only if absent: a dispatcher that waited for this record
        // in vain (dispatch's RECORD_WAIT, a loaded machine) applied the
        // run from the queue's copy and recorded it further; this copy says
        // Queued and must not take that back.
        if let Err(e) = self
            .lifecycle
            .record_if_absent(&record, Durability::Now)
            .await
        {
            tracing::warn!(error = %e, "recording a queued run failed; the queue keeps a copy of its record");
        }
        complete(claim).await;
        self.runs.wake(&record.topic);
        tracing::info!(position, "queued");
        Ok(Outcome::Queued(prepared.queued_report(Some(position))))
    }

    /// Applies in a drained task and waits for it: neither the caller going
    /// away nor a shutdown stops it between an apply and its rollback.
    async fn apply(&self, prepared: super::Prepared) -> Result<Report, WorkflowError> {
        let applier = Arc::clone(&self.applier);
        let tasks = self.tasks.clone();
        let rollbacks = Arc::clone(&self.rollbacks);
        let name = TaskName::new("publish").about(prepared.request_uid().to_string());
        self.tasks
            .spawn_drained(name, async move {
                super::execute(&applier, &tasks, &rollbacks, prepared).await
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "the apply task stopped");
                WorkflowError::Stopped
            })
    }

    async fn wait(
        &self,
        record: RunRecord,
        wait: Duration,
        gone: impl Future<Output = ()>,
    ) -> Result<Outcome, WorkflowError> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let finished = tokio::select! {
            finished = self.lifecycle.wait(&record, deadline) => finished?,
            // Nobody to answer: the waiter slot and the watch are let go.
            () = gone => {
                tracing::debug!("the caller of a waiting publish went away");
                return Ok(Outcome::Abandoned { request_uid: record.request_uid });
            }
        };
        let view = self.lifecycle.view_of(&record).await?;
        let finished = finished && view.done;
        Ok(Outcome::Waited {
            view: Box::new(view),
            finished,
        })
    }
}

/// What binds a key to its publish: the parameters and body, and a
/// CloudEvent's attributes.
fn fingerprint(order: &Order) -> Fingerprint {
    match &order.cloudevent {
        Some(event) => Fingerprint::of_event(&order.params, &order.body, event.content_digest()),
        None => Fingerprint::of(&order.params, &order.body),
    }
}

/// An attribute of `event` for a message: at most 100 characters, escaped.
fn shown_attribute(event: &Attributes, name: &str) -> String {
    let value = event.get(name).unwrap_or("");
    let head: String = value.chars().take(100).collect();
    let cut = if head.len() < value.len() { "…" } else { "" };
    format!("{}{cut}", head.escape_debug())
}

/// A limited topic's refusal of a publish, as the publish reports it.
fn refusal(e: AdmitError, prepared: &super::Prepared) -> WorkflowError {
    let topic = prepared.topic().to_string();
    let max = prepared.limit().map_or(0, |l| l.max);
    match e {
        AdmitError::Count(source) => PublishError::Cluster {
            path: "(maxConcurrent)".into(),
            source,
        }
        .into(),
        AdmitError::Store(e) => e.into(),
        AdmitError::Full(Full::Busy { active }) => PublishError::Busy { topic, active, max }.into(),
        AdmitError::Full(Full::Queue { active, queued }) => PublishError::QueueFull {
            topic,
            active,
            max,
            queued,
        }
        .into(),
        AdmitError::Full(Full::QueueBytes {
            active,
            queued,
            queued_bytes,
            run_bytes,
            max_bytes,
        }) => PublishError::QueueFullOfBytes {
            topic,
            active,
            max,
            queued,
            queued_bytes,
            run_bytes,
            max_bytes,
        }
        .into(),
    }
}

/// Releases the claim, if any: the publish applied nothing.
async fn release(claim: Option<IdempotencyClaim>) {
    if let Some(claim) = claim {
        claim.release().await;
    }
}

/// Completes the claim, if any: the run is recorded.
async fn complete(claim: Option<IdempotencyClaim>) {
    if let Some(claim) = claim {
        claim.complete().await;
    }
}

#[cfg(test)]
#[path = "workflow_tests.rs"]
mod tests;
