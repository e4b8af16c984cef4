//! What outlives a publish: request → function uids and objects, each
//! function's response, callback attempts and idempotency keys, all expiring
//! after `EXPIRATION_TIME` (default 2 days).
//!
//! Two backends behind one type, passing one test suite (`tests/store.rs`
//! on the embedded backend, `tests/store_redis.rs` on Redis):
//! - **embedded** (default): one redb file in `--data-dir`. redb is pure Rust,
//!   ACID and crash-safe (copy-on-write B-trees, durable commits). Writes are
//!   [`Durability::Now`] (on disk before returning: idempotency claims,
//!   responses, callback attempts, a keyed publish's record) or
//!   [`Durability::Soon`] (a publish's record: readable at once from memory,
//!   written with the others of a burst by one group commit at most
//!   [`FLUSH_AFTER`] later, so no publish waits for a transaction or an
//!   fsync). Its calls are blocking and run on `spawn_blocking`.
//! - **Redis** (`--redis-url`), for several replicas serving one API. Keys
//!   also carry a Redis expiry, for cleanup.
//!
//! Expiry is decided by [`Clock`], never by the backend's own clock, so both
//! behave the same and tests can move time without waiting.
//! Records are JSON; this module knows nothing of HTTP or Kubernetes.
//!
//! The facade is here: it builds the records and decides expiry, and hands
//! each read and write to its backend, `embedded` (redb) or `redis`, which
//! owns how it is stored. Beside it, a file per concern: `records` (what is
//! kept of a run), `clock`, `history` (summaries, keys, cursors and the
//! queries of the history), `idempotency` (claims and fingerprints),
//! `outbox` (callbacks until delivered), `slots` (slots and queues of
//! limited topics), `schedules` (how far each schedule has fired).

mod clock;
mod embedded;
mod history;
mod idempotency;
mod outbox;
mod records;
mod redis;
mod schedules;
mod slots;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::redis::Redis;
pub use clock::Clock;
use embedded::Embedded;
use history::{history_key, topic_key, RunEntry, TOPIC_SEPARATOR};
pub use history::{BadCursor, Cursor, RunPage, RunQuery, RunSummary};
use idempotency::IdempotencyRecord;
pub use idempotency::{Claim, Fingerprint};
pub use outbox::OutboxEntry;
pub use records::{
    ApplyAttempt, CallbackAttempt, CallbackState, LogTail, RunInputs, RunRecord, RunState,
    StoredFunction, StoredLogs, StoredResponse, Trigger,
};
pub use schedules::{ScheduleMark, MARK_TTL_SECS};
pub use slots::{QueueEntry, Slot, SlotAsk, SlotDecision};

use crate::uid::{FunctionUid, RequestUid};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The function uid was never issued, or has expired.
    /// (It holds the uid's prefix only: errors reach logs, also as Debug.)
    #[error("unknown or expired function uid `{0}`: only uids issued by a publish within the expiration time accept a response")]
    UnknownFunction(String),
    /// The function has answered already: the first response stands.
    #[error("function uid `{0}` has already posted its response; the first response stands (a function answers once)")]
    AlreadyAnswered(String),
    /// Other writers changed the run's record every time a change was
    /// re-applied to it: nothing of the change was written.
    /// (It holds the uid's prefix only, as above.)
    #[error("the record of run `{uid}` was changed by other writers {attempts} times in a row; this change was not written, try again")]
    Conflict {
        /// The run's uid, its prefix.
        uid: String,
        /// How many times the change was applied and lost its race.
        attempts: u32,
    },
    /// The backend failed.
    #[error("the {backend} store is unavailable: {message}")]
    Unavailable {
        /// `embedded` or `redis`.
        backend: &'static str,
        /// What failed.
        message: String,
    },
}

impl StoreError {
    /// What kind of failure this is.
    pub fn kind(&self) -> crate::error::Code {
        use crate::error::Code;
        match self {
            StoreError::UnknownFunction(_) => Code::UnknownFunction,
            StoreError::AlreadyAnswered(_) => Code::AlreadyAnswered,
            // Contention, as passing as an outage: a retry succeeds.
            StoreError::Unavailable { .. } | StoreError::Conflict { .. } => Code::StoreUnavailable,
        }
    }

    /// Every code [`kind`](Self::kind) can give: what the route table
    /// (`http::routes`) checks each route's documented errors against. The
    /// match has no wildcard, like kind's: a new variant does not compile
    /// until its codes are listed here too.
    pub fn codes() -> Vec<crate::error::Code> {
        use crate::error::Code;
        let _every_variant_is_listed = |e: &Self| match e {
            StoreError::UnknownFunction(_)
            | StoreError::AlreadyAnswered(_)
            | StoreError::Unavailable { .. }
            | StoreError::Conflict { .. } => (),
        };
        vec![
            Code::UnknownFunction,
            Code::AlreadyAnswered,
            Code::StoreUnavailable,
        ]
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionIndex {
    request_uid: RequestUid,
    expires_at: u64,
}

/// What a record is. Each kind names its redb table and its Redis key
/// prefix here, once for both backends; existing stores hold these names,
/// so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A publish ([`RunRecord`]).
    Request,
    /// A function uid's index: its request and expiry.
    Function,
    /// A function's response ([`StoredResponse`]).
    Response,
    /// An Idempotency-Key's claim.
    Idempotency,
    /// A webhook delivery id seen, so a replayed delivery is refused.
    Delivery,
    /// A run in the history, by creation time ([`RunSummary`]).
    Run,
    /// A run in its topic's history.
    TopicRun,
    /// A run among its parent's children.
    Child,
    /// The log tails of a finished run ([`StoredLogs`]).
    Logs,
    /// A callback not delivered yet, and who delivers it ([`OutboxEntry`]).
    Outbox,
    /// A run holding a slot of its topic ([`Slot`]), by `<topic>\x1f<uid>`.
    Slot,
    /// A run waiting for a slot, or dispatched and not applied yet
    /// ([`QueueEntry`]), by request uid.
    Queue,
    /// The order of a topic's queue: `<topic>\x1f<seq>` → its request uid.
    QueueOrder,
    /// Where a topic's schedule stands ([`ScheduleMark`]), by topic.
    ScheduleMark,
}

/// A table of the embedded store: keys are strings, values JSON.
type Table = TableDefinition<'static, &'static str, &'static [u8]>;

impl Kind {
    /// Every kind, in the order the embedded store opens and purges its tables.
    const ALL: [Kind; 14] = [
        Kind::Request,
        Kind::Function,
        Kind::Response,
        Kind::Idempotency,
        Kind::Delivery,
        Kind::Run,
        Kind::TopicRun,
        Kind::Child,
        Kind::Logs,
        Kind::Outbox,
        Kind::Slot,
        Kind::Queue,
        Kind::QueueOrder,
        Kind::ScheduleMark,
    ];

    /// Its table in the embedded store.
    fn table(self) -> Table {
        TableDefinition::new(match self {
            Kind::Request => "requests",
            Kind::Function => "functions",
            Kind::Response => "responses",
            Kind::Idempotency => "idempotency",
            Kind::Delivery => "deliveries",
            Kind::Run => "runs",
            Kind::TopicRun => "runs_by_topic",
            Kind::Child => "children",
            Kind::Logs => "logs",
            Kind::Outbox => "outbox",
            Kind::Slot => "slots",
            Kind::Queue => "queue",
            Kind::QueueOrder => "queue_order",
            Kind::ScheduleMark => "schedule_marks",
        })
    }

    /// Its prefix in Redis: its keys are `gitfaas:<prefix>:<key>`.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Function => "function",
            Kind::Response => "response",
            Kind::Idempotency => "idempotency",
            Kind::Delivery => "delivery",
            Kind::Run => "run",
            Kind::TopicRun => "topic-run",
            Kind::Child => "child",
            Kind::Logs => "logs",
            Kind::Outbox => "outbox",
            Kind::Slot => "slot",
            Kind::Queue => "queue",
            Kind::QueueOrder => "queue-order",
            Kind::ScheduleMark => "schedule-mark",
        }
    }
}

/// The store: embedded or Redis.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    clock: Clock,
    ttl: Duration,
}

#[derive(Clone)]
enum Backend {
    Embedded(Arc<Embedded>),
    Redis(Redis),
}

/// How soon a write must survive a crash of the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk before the call returns.
    Now,
    /// Visible at once, on disk within [`FLUSH_AFTER`] (Redis: as configured).
    Soon,
}

/// The longest a [`Durability::Soon`] write waits for its group commit.
pub const FLUSH_AFTER: Duration = Duration::from_millis(50);

/// What a change of a run's record decided ([`Store::update_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write the record as changed.
    Write,
    /// Write nothing: the record stays as it is.
    Keep,
}

/// A record after [`Store::update_run`].
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    /// The record as stored now: as changed when `written`, else as read.
    pub record: RunRecord,
    /// Whether the change was written.
    pub written: bool,
}

/// How many times [`Store::update_run`] reads the record again and
/// re-applies a change that lost its race, before [`StoreError::Conflict`].
/// A run has a few writers at once (its apply, tracker, callback, a
/// cancel), each writing a handful of times.
pub const UPDATE_ATTEMPTS: u32 = 16;

/// A request's record as stored: its revision first, so that the Redis
/// script reads it without decoding the record.
#[derive(Serialize)]
struct Revised<'a> {
    revision: u64,
    #[serde(flatten)]
    request: &'a RunRecord,
}

/// The revision of a stored record; 0 in records written before there were
/// revisions (and for a record that is not there).
#[derive(Deserialize)]
struct Revision {
    #[serde(default)]
    revision: u64,
}

fn revision_of(raw: &[u8]) -> u64 {
    serde_json::from_slice::<Revision>(raw).map_or(0, |r| r.revision)
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Store {
    /// Opens (or creates) the embedded store in `dir`.
    pub async fn open_embedded(
        dir: &Path,
        clock: Clock,
        ttl: Duration,
    ) -> Result<Self, StoreError> {
        let embedded = Embedded::open(dir).await?;
        Ok(Store {
            backend: Backend::Embedded(embedded),
            clock,
            ttl,
        })
    }

    /// Connects to Redis at `url` (`redis://[:password@]host:port/db`).
    pub async fn connect_redis(url: &str, clock: Clock, ttl: Duration) -> Result<Self, StoreError> {
        let redis = Redis::connect(url).await?;
        Ok(Store {
            backend: Backend::Redis(redis),
            clock,
            ttl,
        })
    }

    /// `embedded` or `redis`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Embedded(_) => "embedded",
            Backend::Redis(_) => "redis",
        }
    }

    /// The clock deciding expiry.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// When a record written at `now` expires. Saturating: the settings
    /// bound the ttl (10 years), but a ttl near `u64::MAX` seconds must not
    /// wrap around to a record that expired before it was written.
    fn expiry(&self, now: u64) -> u64 {
        now.saturating_add(self.ttl.as_secs())
    }

    /// A new record for a request created now.
    pub fn new_run(&self, request_uid: &RequestUid, topic: &str, commit: &str) -> RunRecord {
        let (now, created_ns) = self.clock.now_precise();
        RunRecord {
            request_uid: request_uid.clone(),
            topic: topic.to_string(),
            commit: commit.to_string(),
            created_at: now,
            created_ns,
            expires_at: self.expiry(now),
            functions: Vec::new(),
            report: None,
            http_status: None,
            callback: None,
            state: RunState::Pending,
            finished_at: None,
            parent: None,
            result_from_stdout: false,
            limited: false,
            attempts: Vec::new(),
            inputs: None,
            retry_of: None,
            trigger: Trigger::Http,
            scheduled_time: None,
            cloudevent: None,
        }
    }

    /// Writes a new request's record whole, and indexes its function uids:
    /// its creation, when no one else knows it yet. Every later change
    /// goes through [`Self::update_run`]: a whole record written over
    /// another writer's loses that writer's change.
    pub async fn save_run(
        &self,
        request: &RunRecord,
        durability: Durability,
    ) -> Result<(), StoreError> {
        self.write_run(request, None, durability).await.map(|_| ())
    }

    /// Changes a run's record with `change`, written only if no one wrote
    /// the record since it was read (compare-and-set on its revision);
    /// else read again and `change` applied again, up to
    /// [`UPDATE_ATTEMPTS`] times, then [`StoreError::Conflict`]. So
    /// `change` must depend on nothing but the record it is given. None
    /// for an unknown or expired uid.
    pub async fn update_run(
        &self,
        request_uid: &RequestUid,
        durability: Durability,
        change: impl FnMut(&mut RunRecord) -> Decision,
    ) -> Result<Option<Updated>, StoreError> {
        self.update(request_uid, None, durability, change).await
    }

    /// [`Self::update_run`], or `new` written when there is no record
    /// (an apply whose record's creation never reached the store).
    pub async fn upsert_run(
        &self,
        new: &RunRecord,
        durability: Durability,
        change: impl FnMut(&mut RunRecord) -> Decision,
    ) -> Result<Updated, StoreError> {
        let updated = self
            .update(&new.request_uid, Some(new), durability, change)
            .await?;
        Ok(updated.unwrap_or_else(|| Updated {
            record: new.clone(),
            written: false,
        }))
    }

    async fn update(
        &self,
        request_uid: &RequestUid,
        absent: Option<&RunRecord>,
        durability: Durability,
        mut change: impl FnMut(&mut RunRecord) -> Decision,
    ) -> Result<Option<Updated>, StoreError> {
        for attempt in 0..UPDATE_ATTEMPTS {
            if attempt > 0 {
                // Writers that lost to each other try again at different
                // times, not in step (where the same one loses again).
                use rand::Rng;
                let most = 500u64 << attempt.min(7);
                let pause = rand::rng().random_range(0..=most);
                tokio::time::sleep(Duration::from_micros(pause)).await;
            }
            let (current, revision) = self.revised(request_uid).await?;
            let record = match (current, absent) {
                (Some(mut record), _) => {
                    if change(&mut record) == Decision::Keep {
                        return Ok(Some(Updated {
                            record,
                            written: false,
                        }));
                    }
                    record
                }
                (None, Some(new)) => new.clone(),
                (None, None) => return Ok(None),
            };
            if self.write_run(&record, Some(revision), durability).await? {
                return Ok(Some(Updated {
                    record,
                    written: true,
                }));
            }
        }
        Err(StoreError::Conflict {
            uid: crate::telemetry::uid_prefix(request_uid.as_str()),
            attempts: UPDATE_ATTEMPTS,
        })
    }

    /// A request's record if it exists and has not expired, and the
    /// revision of what is stored under its uid (0 when nothing is).
    async fn revised(
        &self,
        request_uid: &RequestUid,
    ) -> Result<(Option<RunRecord>, u64), StoreError> {
        let Some(raw) = self.get(Kind::Request, request_uid.as_str()).await? else {
            return Ok((None, 0));
        };
        let now = self.clock.now();
        let record = serde_json::from_slice::<RunRecord>(&raw)
            .ok()
            .filter(|r| r.expires_at > now);
        Ok((record, revision_of(&raw)))
    }

    /// Writes a request's record (its revision one above `expected`, or 1)
    /// with its function index and history entries, if the stored revision
    /// is `expected` (None: whatever is stored); whether it was written.
    async fn write_run(
        &self,
        request: &RunRecord,
        expected: Option<u64>,
        durability: Durability,
    ) -> Result<bool, StoreError> {
        let record = to_json(&Revised {
            revision: expected.map_or(1, |r| r.saturating_add(1)),
            request,
        });
        let index = to_json(&FunctionIndex {
            request_uid: request.request_uid.clone(),
            expires_at: request.expires_at,
        });
        let uids: Vec<String> = request
            .functions
            .iter()
            .map(|f| f.function_uid.as_str().to_string())
            .collect();
        let summary = RunSummary::of(request);
        let run = RunEntry {
            key: summary.history_key(),
            topic_key: topic_key(&summary.topic, &summary.history_key()),
            parent_key: summary
                .parent
                .as_ref()
                .map(|p| format!("{p}|{}", summary.history_key())),
            summary: to_json(&summary),
        };
        match &self.backend {
            Backend::Embedded(db) => {
                db.save_run(
                    request.request_uid.as_str().to_string(),
                    record,
                    index,
                    uids,
                    run,
                    expected,
                    durability,
                )
                .await
            }
            Backend::Redis(redis) => {
                let expired_before =
                    history_key(self.clock.now().saturating_sub(self.ttl.as_secs()), 0, "");
                redis
                    .save_run(request, record, index, uids, run, &expired_before, expected)
                    .await
            }
        }
    }

    /// A request that exists and has not expired.
    pub async fn run(&self, request_uid: &RequestUid) -> Result<Option<RunRecord>, StoreError> {
        Ok(self.revised(request_uid).await?.0)
    }

    /// Remembers a webhook delivery id for the expiration time; false when
    /// it was seen before (a replay).
    pub async fn remember_delivery(&self, id: &str) -> Result<bool, StoreError> {
        let expires_at = self.expiry(self.clock.now());
        let record = to_json(&ExpiresAt { expires_at });
        self.put_if_absent(Kind::Delivery, id, record, expires_at)
            .await
    }

    /// Whether `function_uid` may post its response now: issued, not
    /// expired, not answered yet. Checked before a response's body is read.
    pub async fn check_function(&self, function_uid: &FunctionUid) -> Result<(), StoreError> {
        self.function_index(function_uid).await?;
        if self
            .get(Kind::Response, function_uid.as_str())
            .await?
            .is_some()
        {
            return Err(StoreError::AlreadyAnswered(crate::telemetry::uid_prefix(
                function_uid.as_str(),
            )));
        }
        Ok(())
    }

    /// The run a live function uid was issued to: what a function vouches
    /// for with its own uid (`Gitfaas-Parent`), whether it has answered or
    /// not. [`StoreError::UnknownFunction`] when unknown or expired.
    pub async fn run_of_function(
        &self,
        function_uid: &FunctionUid,
    ) -> Result<RequestUid, StoreError> {
        Ok(self.function_index(function_uid).await?.request_uid)
    }

    async fn function_index(
        &self,
        function_uid: &FunctionUid,
    ) -> Result<FunctionIndex, StoreError> {
        let now = self.clock.now();
        self.get(Kind::Function, function_uid.as_str())
            .await?
            .and_then(|b| serde_json::from_slice::<FunctionIndex>(&b).ok())
            .filter(|i| i.expires_at > now)
            .ok_or_else(|| {
                StoreError::UnknownFunction(crate::telemetry::uid_prefix(function_uid.as_str()))
            })
    }

    /// Records a function's response; the uid must have been issued and not
    /// expired, and the first response stands: a second is refused
    /// ([`StoreError::AlreadyAnswered`]), atomically, also between replicas.
    pub async fn put_response(
        &self,
        function_uid: &FunctionUid,
        body: Value,
        raw: &[u8],
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let index = self.function_index(function_uid).await?;
        let response = StoredResponse {
            at: now,
            body,
            raw_base64: Some({
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(raw)
            }),
            expires_at: index.expires_at,
        };
        let inserted = self
            .put_if_absent(
                Kind::Response,
                function_uid.as_str(),
                to_json(&response),
                index.expires_at,
            )
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::AlreadyAnswered(crate::telemetry::uid_prefix(
                function_uid.as_str(),
            )))
        }
    }

    /// Keeps the log tails of a finished run, as long as its record.
    /// Written again (a cancel after the tracker, say), the last stands.
    pub async fn put_logs(
        &self,
        request: &RunRecord,
        tails: Vec<LogTail>,
    ) -> Result<(), StoreError> {
        let logs = StoredLogs {
            at: self.clock.now(),
            tails,
            expires_at: request.expires_at,
        };
        self.put(
            Kind::Logs,
            request.request_uid.as_str(),
            to_json(&logs),
            request.expires_at,
        )
        .await
    }

    /// The log tails kept of a run, if any (and not expired).
    pub async fn logs(&self, request_uid: &RequestUid) -> Result<Option<StoredLogs>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .get(Kind::Logs, request_uid.as_str())
            .await?
            .and_then(|b| serde_json::from_slice::<StoredLogs>(&b).ok())
            .filter(|l| l.expires_at > now))
    }

    /// The responses of a request's functions, in order; None while pending.
    pub async fn responses(
        &self,
        request: &RunRecord,
    ) -> Result<Vec<Option<StoredResponse>>, StoreError> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(request.functions.len());
        for f in &request.functions {
            let r = self
                .get(Kind::Response, f.function_uid.as_str())
                .await?
                .and_then(|b| serde_json::from_slice::<StoredResponse>(&b).ok())
                .filter(|r| r.expires_at > now);
            out.push(r);
        }
        Ok(out)
    }

    /// Makes every write so far durable (embedded; Redis persists as it is
    /// configured). Called on shutdown, so a stop loses nothing.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.persist().await,
            Backend::Redis(_) => Ok(()),
        }
    }

    /// Deletes expired records (embedded only; Redis expires keys itself).
    /// Returns how many were removed.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        let Backend::Embedded(db) = &self.backend else {
            return Ok(0);
        };
        db.purge_expired(self.clock.now()).await
    }

    /// How many requests are stored (for metrics).
    pub async fn request_count(&self) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.request_count().await,
            Backend::Redis(redis) => redis.request_count(self.clock.now()).await,
        }
    }

    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.get(kind, key).await,
            Backend::Redis(redis) => redis.get(kind, key).await,
        }
    }

    async fn put(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.put(kind, key, value).await,
            Backend::Redis(redis) => redis.put(kind, key, value, expires_at).await,
        }
    }

    /// Writes `value` unless `key` holds one; whether it was written.
    async fn put_if_absent(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.put_if_absent(kind, key, value).await,
            Backend::Redis(redis) => redis.put_if_absent(kind, key, value, expires_at).await,
        }
    }

    async fn delete(&self, kind: Kind, key: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.delete(kind, key).await,
            Backend::Redis(redis) => redis.delete(kind, key).await,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExpiresAt {
    expires_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stores already written hold these names: a renamed table or prefix
    /// would lose every record in them.
    #[test]
    fn record_kinds_keep_the_names_existing_stores_hold() {
        use redb::TableHandle;
        let names: Vec<(String, &str)> = Kind::ALL
            .iter()
            .map(|k| (k.table().name().to_string(), k.prefix()))
            .collect();
        let expected = [
            ("requests", "request"),
            ("functions", "function"),
            ("responses", "response"),
            ("idempotency", "idempotency"),
            ("deliveries", "delivery"),
            ("runs", "run"),
            ("runs_by_topic", "topic-run"),
            ("children", "child"),
            ("logs", "logs"),
            ("outbox", "outbox"),
            ("slots", "slot"),
            ("queue", "queue"),
            ("queue_order", "queue-order"),
            ("schedule_marks", "schedule-mark"),
        ]
        .map(|(t, p)| (t.to_string(), p));
        assert_eq!(names, expected);
    }

    /// The Redis script reads the revision at the head of the record
    /// (`^{"revision":N`), without decoding it; older records have none.
    #[tokio::test]
    async fn a_record_starts_with_its_revision_and_an_older_one_is_at_0() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = Clock::manual(1_800_000_000);
        let store = Store::open_embedded(dir.path(), clock, Duration::from_secs(60))
            .await
            .expect("open");
        let request = RunRecord {
            report: Some(serde_json::json!({"revision": 99})),
            ..store.new_run(&crate::uid::rid("r-1"), "t", "c")
        };
        let raw = to_json(&Revised {
            revision: 7,
            request: &request,
        });
        assert!(raw.starts_with(br#"{"revision":7,"requestUid":"r-1""#));
        assert_eq!(revision_of(&raw), 7);
        let read: RunRecord = serde_json::from_slice(&raw).expect("read");
        assert_eq!(
            read, request,
            "the revision is the store's, not the record's"
        );
        assert_eq!(revision_of(&to_json(&request)), 0);
        assert_eq!(revision_of(b"not json"), 0);
    }

    #[test]
    fn a_clock_at_the_end_of_u64_saturates() {
        let clock = Clock::manual(u64::MAX - 1);
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.now(), u64::MAX);
    }

    /// The settings refuse such a ttl; the store must still not overflow
    /// (a debug build panicked on `now + ttl`, a release build wrapped
    /// around to records that had expired before they were written).
    #[tokio::test]
    async fn a_ttl_near_u64_max_saturates_expiry_instead_of_overflowing() {
        let dir = tempfile::tempdir().expect("dir");
        let clock = Clock::manual(1_800_000_000);
        let store = Store::open_embedded(dir.path(), clock, Duration::from_secs(u64::MAX - 5))
            .await
            .expect("open");
        let request = store.new_run(&crate::uid::rid("r-1"), "t", "c");
        assert_eq!(request.expires_at, u64::MAX);
        store
            .save_run(&request, Durability::Now)
            .await
            .expect("save");
        assert!(store
            .run(&crate::uid::rid("r-1"))
            .await
            .expect("read")
            .is_some());
        assert!(store.remember_delivery("d-1").await.expect("remember"));
        let fingerprint = Fingerprint::of(&[], b"");
        let claim = store
            .claim_idempotency(
                "k",
                "t",
                &fingerprint,
                &crate::uid::rid("r-1"),
                Duration::from_secs(u64::MAX),
            )
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Fresh));
    }
}
