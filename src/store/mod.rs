//! What outlives a publish: request → function uids and objects, each
//! function's response, callback attempts and idempotency keys, all expiring
//! after `EXPIRATION_TIME` (default 2 days).
//!
//! Two backends behind one type, passing one test suite (`tests/store.rs`):
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
//! The facade, the records and the clock are here: the facade builds the
//! records and decides expiry, and hands each read and write to its
//! backend, `embedded` (redb) or `redis`, which owns how it is stored.

mod embedded;
mod redis;
mod slots;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::TableDefinition;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::redis::Redis;
use crate::object::ObjectRef;
use embedded::Embedded;
pub use slots::{Admission, QueueEntry, Slot, SlotAsk};

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
            StoreError::Unavailable { .. } => Code::StoreUnavailable,
        }
    }
}

/// Seconds since the Unix epoch, for expiry. Based on the system time at
/// start plus tokio's monotonic clock, or, in tests, moved by hand.
#[derive(Clone)]
pub struct Clock {
    base_unix: u64,
    base: tokio::time::Instant,
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Clock {
            base_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            base: tokio::time::Instant::now(),
            manual: None,
        }
    }

    /// A clock that stands still at `unix` until [`Clock::advance`].
    pub fn manual(unix: u64) -> Self {
        Clock {
            base_unix: unix,
            base: tokio::time::Instant::now(),
            manual: Some(Arc::new(AtomicU64::new(unix))),
        }
    }

    /// Moves a manual clock forward (no effect on the real one).
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.manual {
            // Saturating: fetch_add would wrap to the epoch.
            let _ = m.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(by.as_secs()))
            });
        }
    }

    /// Now, with its fraction of a second (nanoseconds): orders the runs
    /// created within one second. A manual clock has no fraction.
    pub fn now_precise(&self) -> (u64, u32) {
        match &self.manual {
            Some(m) => (m.load(Ordering::SeqCst), 0),
            None => {
                let elapsed = self.base.elapsed();
                (
                    self.base_unix.saturating_add(elapsed.as_secs()),
                    elapsed.subsec_nanos(),
                )
            }
        }
    }

    /// Now, in Unix seconds.
    pub fn now(&self) -> u64 {
        match &self.manual {
            Some(m) => m.load(Ordering::SeqCst),
            None => self.base_unix.saturating_add(self.base.elapsed().as_secs()),
        }
    }
}

/// One function (manifest) of a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredFunction {
    /// Its uid.
    pub function_uid: String,
    /// The manifest's path.
    pub path: String,
    /// The objects it applied.
    pub objects: Vec<ObjectRef>,
}

/// One delivery attempt of a callback. Nothing the receiver sent (body,
/// headers) and no error text is kept: `/requests/{uid}` shows this, and an
/// echo would tell a caller what answered where (design §12).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackAttempt {
    /// When (RFC 3339).
    pub at: String,
    /// Whether it was delivered (a 2xx). Absent in older records: false.
    #[serde(default)]
    pub delivered: bool,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed, as a fixed category; older free-text errors read as `failed`.
    pub error: Option<crate::callback::Failure>,
}

/// A callback requested with `X-Callback-Url`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackState {
    /// Where to POST.
    pub url: String,
    /// Whether a POST succeeded (2xx).
    pub delivered: bool,
    /// Whether delivery was given up.
    pub abandoned: bool,
    /// Every attempt so far.
    pub attempts: Vec<CallbackAttempt>,
    /// The `webhook-id` every POST of this callback carries (`msg_` and
    /// random characters, made at publish), so a retry or another gitfaas
    /// taking it over sends the same one. Absent in records written before
    /// callbacks were signed: made at their next attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_id: Option<String>,
}

/// A publish as the store keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredRequest {
    /// Its uid.
    pub request_uid: String,
    /// The topic.
    pub topic: String,
    /// The commit of the manifests.
    pub commit: String,
    /// Unix seconds.
    pub created_at: u64,
    /// The fraction of the second it was created in (nanoseconds): orders
    /// the runs of one second in the history. 0 in older records.
    #[serde(default)]
    pub created_ns: u32,
    /// Unix seconds after which it is gone.
    pub expires_at: u64,
    /// Its functions, in manifest order.
    pub functions: Vec<StoredFunction>,
    /// The publish report, once the apply ended.
    pub report: Option<Value>,
    /// The HTTP status the publish answered with.
    pub status: Option<u16>,
    /// The callback, if one was asked for.
    pub callback: Option<CallbackState>,
    /// Where the run stands, as last recorded (the history lists this; a
    /// request's own view reads its objects live). Pending in records
    /// written before it was kept.
    #[serde(default)]
    pub state: RunState,
    /// When it reached a final state (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    /// The run that published this one, when the publish named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Its topic said `"result": "stdout"` when it was published: a
    /// function that posts nothing answers with its last line of stdout.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_from_stdout: bool,
    /// Its topic had `maxConcurrent`: the run holds (or waits for) one of
    /// its slots until it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub limited: bool,
    /// Each apply that met a transient failure, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<ApplyAttempt>,
    /// What was published, kept once its apply failed so that
    /// `POST /requests/{uid}/retry` can publish it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<RunInputs>,
    /// The failed run this one re-runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
}

impl StoredRequest {
    /// Every object its functions applied, in manifest order.
    pub fn objects(&self) -> Vec<ObjectRef> {
        self.functions
            .iter()
            .flat_map(|f| f.objects.iter().cloned())
            .collect()
    }
}

/// One apply of a run that failed and was (or would have been) tried again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyAttempt {
    /// When (RFC 3339).
    pub at: String,
    /// The failure's code (`cluster_unreachable`, `cluster_throttled`, …).
    pub code: String,
    /// What failed.
    pub message: String,
}

/// What a publish sent: enough to publish it again.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunInputs {
    /// The body, base64-encoded.
    pub body: String,
    /// The query parameters that were template variables.
    pub params: Vec<(String, String)>,
    /// `X-Callback-Url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<String>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunState {
    /// Recorded, not applied yet.
    #[default]
    Pending,
    /// Waiting in its topic's queue for a slot (`"overflow": "queue"`).
    Queued,
    /// Applied; its Jobs have not finished.
    Running,
    /// Applied, and its Jobs (if any) succeeded.
    Succeeded,
    /// Its apply failed, or one of its Jobs did.
    Failed,
    /// Cancelled (`DELETE /requests/{uid}`).
    Cancelled,
}

impl RunState {
    /// Every state, in the order the API documents them.
    pub const ALL: [RunState; 6] = [
        RunState::Pending,
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Pending => "Pending",
            RunState::Queued => "Queued",
            RunState::Running => "Running",
            RunState::Succeeded => "Succeeded",
            RunState::Failed => "Failed",
            RunState::Cancelled => "Cancelled",
        }
    }

    /// The state named `name`, in any case.
    pub fn parse(name: &str) -> Option<RunState> {
        RunState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether nothing more happens to the run.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

/// A run as the history lists it: what `GET /requests` shows of each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Its uid.
    pub request_uid: String,
    /// The topic.
    pub topic: String,
    /// The commit of its manifests.
    pub commit: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Its fraction (nanoseconds).
    #[serde(default)]
    pub created_ns: u32,
    /// Unix seconds after which it is gone.
    pub expires_at: u64,
    /// Where it stands.
    pub state: RunState,
    /// The run that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

impl RunSummary {
    /// The summary of a stored request.
    pub fn of(r: &StoredRequest) -> Self {
        RunSummary {
            request_uid: r.request_uid.clone(),
            topic: r.topic.clone(),
            commit: r.commit.clone(),
            created_at: r.created_at,
            created_ns: r.created_ns,
            expires_at: r.expires_at,
            state: r.state,
            parent: r.parent.clone(),
        }
    }

    /// Its key in the history: newest last in byte order, so a reverse
    /// scan lists newest first (equal times by uid).
    fn history_key(&self) -> String {
        history_key(self.created_at, self.created_ns, &self.request_uid)
    }
}

fn history_key(created_at: u64, created_ns: u32, request_uid: &str) -> String {
    format!("{created_at:020}.{created_ns:09}|{request_uid}")
}

/// The separator of a topic and a history key in the per-topic index: below
/// every character a topic name may hold.
const TOPIC_SEPARATOR: char = '\u{1f}';

fn topic_key(topic: &str, history_key: &str) -> String {
    format!("{topic}{TOPIC_SEPARATOR}{history_key}")
}

/// Where a page of the history ended: the next page lists what is older.
/// Opaque to clients (`cursor=` in `GET /requests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: u64,
    created_ns: u32,
    request_uid: String,
}

/// A cursor that is not one this server handed out.
#[derive(Debug, thiserror::Error)]
#[error("cursor is not one a page of GET /requests handed out: pass the `next` of the previous page as it was, or leave cursor out for the newest runs")]
pub struct BadCursor;

impl Cursor {
    /// The text a page hands out.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(history_key(
            self.created_at,
            self.created_ns,
            &self.request_uid,
        ))
    }

    /// A cursor from the text a page handed out.
    pub fn decode(text: &str) -> Result<Cursor, BadCursor> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| BadCursor)?;
        let raw = String::from_utf8(raw).map_err(|_| BadCursor)?;
        Cursor::of_key(&raw).ok_or(BadCursor)
    }

    /// The cursor after the entry of history key `key`.
    fn of_key(key: &str) -> Option<Cursor> {
        let (created, uid) = key.split_once('|')?;
        let (secs, nanos) = created.split_once('.')?;
        if secs.len() != 20 || nanos.len() != 9 || uid.is_empty() || uid.len() > 200 {
            return None;
        }
        Some(Cursor {
            created_at: secs.parse().ok()?,
            created_ns: nanos.parse().ok()?,
            request_uid: uid.to_string(),
        })
    }

    fn key(&self) -> String {
        history_key(self.created_at, self.created_ns, &self.request_uid)
    }
}

/// Which runs a page of the history lists.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only this topic's.
    pub topic: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs created at or after this (Unix seconds).
    pub since: Option<u64>,
    /// At most this many.
    pub limit: usize,
    /// Older than where the previous page ended.
    pub cursor: Option<Cursor>,
}

/// A page of the history, newest first.
#[derive(Debug, Clone)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Where the next page starts; None when there is no more.
    pub next: Option<Cursor>,
}

/// A run's entries in the history, as a backend writes them.
struct RunEntry {
    /// In the history of all runs.
    key: String,
    /// In its topic's.
    topic_key: String,
    /// Among its parent's children (`<parent>|<history key>`), if it has one.
    parent_key: Option<String>,
    /// The [`RunSummary`], JSON.
    summary: Vec<u8>,
}

/// Index entries a page looks at, at most, before it answers with what it
/// found (fewer than asked for) and a cursor to go on from: a filter that
/// matches nothing must not scan the whole history in one request.
const SCAN_PER_PAGE: usize = 5000;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionIndex {
    request_uid: String,
    expires_at: u64,
}

/// The end of one container's log, kept when its run finished so that
/// `GET /requests/{uid}/logs` answers after its pod is gone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogTail {
    /// The namespace of its pod.
    pub namespace: String,
    /// The Job the pod ran for.
    pub job: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// An init container.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// Its pod ended Succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub succeeded: bool,
    /// The last bytes of the log (invalid UTF-8 replaced), whole lines.
    pub text: String,
    /// Whether earlier output was left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A finished run's log tails, oldest pod first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredLogs {
    /// When they were read (Unix seconds).
    pub at: u64,
    /// Each container's tail.
    pub tails: Vec<LogTail>,
    expires_at: u64,
}

/// A callback in the outbox: not delivered (nor given up) yet, and the
/// gitfaas process delivering it, which holds it until `lease_until` and
/// renews that while it works. Once the lease has run out (its process
/// died, or stopped), any process may take it over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The request whose callback it is.
    pub request_uid: String,
    /// The process delivering it.
    pub holder: String,
    /// Until when (Unix seconds) it holds it.
    pub lease_until: u64,
    expires_at: u64,
}

/// A function's response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    /// When it arrived (Unix seconds).
    pub at: u64,
    /// The body: JSON as sent, text as a string.
    pub body: Value,
    /// The bytes as posted, base64-encoded: what `GET /response/{requestUid}`
    /// answers by default, as the Python gitfaas did. None in records written
    /// before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_base64: Option<String>,
    expires_at: u64,
}

impl StoredResponse {
    /// The response as the Python gitfaas returned it: the posted bytes,
    /// base64-encoded (re-serialized from the body for older records).
    pub fn base64(&self) -> String {
        use base64::Engine;
        match &self.raw_base64 {
            Some(b) => b.clone(),
            None => base64::engine::general_purpose::STANDARD.encode(match &self.body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdempotencyRecord {
    request_uid: String,
    topic: String,
    expires_at: u64,
    /// What the request was: a retry must be the same request.
    #[serde(default)]
    fingerprint: Fingerprint,
    /// While the publish runs: the claim is released if it is not completed
    /// by then (its publish died). None once completed.
    #[serde(default)]
    lease_until: Option<u64>,
}

/// What identifies a publish for its Idempotency-Key: digests of its
/// parameters and of its body (the topic is kept beside them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    /// SHA-256 of the template parameters, sorted, as `name=value` lines.
    pub params: String,
    /// SHA-256 of the body.
    pub body: String,
}

impl Fingerprint {
    /// The fingerprint of a publish's parameters and body.
    pub fn of(params: &[(String, String)], body: &[u8]) -> Self {
        use sha2::Digest;
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        let mut h = sha2::Sha256::new();
        for (k, v) in sorted {
            // Lengths first: `a=b` + `c` can never hash as `a` + `b=c`.
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
        Fingerprint {
            params: hex(&h.finalize()),
            body: hex(&sha2::Sha256::digest(body)),
        }
    }
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is now ours.
    Fresh,
    /// An earlier publish holds the key.
    Existing {
        /// Its request uid.
        request_uid: String,
        /// Its topic.
        topic: String,
        /// Its parameters and body.
        fingerprint: Fingerprint,
    },
}

/// What a record is. Each kind names its redb table and its Redis key
/// prefix here, once for both backends; existing stores hold these names,
/// so they never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A publish ([`StoredRequest`]).
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
}

/// A table of the embedded store: keys are strings, values JSON.
type Table = TableDefinition<'static, &'static str, &'static [u8]>;

impl Kind {
    /// Every kind, in the order the embedded store opens and purges its tables.
    const ALL: [Kind; 13] = [
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
    pub fn new_request(&self, request_uid: &str, topic: &str, commit: &str) -> StoredRequest {
        let (now, created_ns) = self.clock.now_precise();
        StoredRequest {
            request_uid: request_uid.to_string(),
            topic: topic.to_string(),
            commit: commit.to_string(),
            created_at: now,
            created_ns,
            expires_at: self.expiry(now),
            functions: Vec::new(),
            report: None,
            status: None,
            callback: None,
            state: RunState::Pending,
            finished_at: None,
            parent: None,
            result_from_stdout: false,
            limited: false,
            attempts: Vec::new(),
            inputs: None,
            retry_of: None,
        }
    }

    /// Saves a request (insert or replace) and indexes its function uids.
    pub async fn save_request(
        &self,
        request: &StoredRequest,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let record = to_json(request);
        let index = to_json(&FunctionIndex {
            request_uid: request.request_uid.clone(),
            expires_at: request.expires_at,
        });
        let uids: Vec<String> = request
            .functions
            .iter()
            .map(|f| f.function_uid.clone())
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
                db.save_request(
                    request.request_uid.clone(),
                    record,
                    index,
                    uids,
                    run,
                    durability,
                )
                .await
            }
            Backend::Redis(redis) => {
                let expired_before =
                    history_key(self.clock.now().saturating_sub(self.ttl.as_secs()), 0, "");
                redis
                    .save_request(request, record, index, uids, run, &expired_before)
                    .await
            }
        }
    }

    /// A page of the history: the runs `query` asks for, newest first, that
    /// have not expired. A page may hold fewer than `limit` runs and still
    /// have a `next`: it stops after looking at [`SCAN_PER_PAGE`] entries.
    pub async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let now = self.clock.now();
        let limit = query.limit.max(1);
        let mut after = query.cursor.as_ref().map(Cursor::key);
        let mut runs = Vec::with_capacity(limit);
        let mut scanned = 0;
        loop {
            // A page's worth plus one: the extra tells whether more exist.
            let want = (limit - runs.len() + 1).clamp(16, 1000);
            let batch = self
                .history(query.topic.as_deref(), after.as_deref(), want)
                .await?;
            let exhausted = batch.len() < want;
            for (key, summary) in batch {
                scanned += 1;
                let Some(summary) = summary else {
                    after = Some(key);
                    continue;
                };
                if query.since.is_some_and(|since| summary.created_at < since) {
                    // Older than `since`, and so is everything after it.
                    return Ok(RunPage { runs, next: None });
                }
                let wanted =
                    summary.expires_at > now && query.state.is_none_or(|s| s == summary.state);
                if wanted {
                    if runs.len() == limit {
                        let last: &RunSummary = &runs[limit - 1];
                        return Ok(RunPage {
                            next: Cursor::of_key(&last.history_key()),
                            runs,
                        });
                    }
                    runs.push(summary);
                }
                after = Some(key);
                if scanned >= SCAN_PER_PAGE {
                    let next = after.as_deref().and_then(Cursor::of_key);
                    return Ok(RunPage { runs, next });
                }
            }
            if exhausted {
                return Ok(RunPage { runs, next: None });
            }
        }
    }

    /// The runs that named `parent` as theirs, oldest first, at most `n`,
    /// not expired.
    pub async fn children(&self, parent: &str, n: usize) -> Result<Vec<RunSummary>, StoreError> {
        let now = self.clock.now();
        let raw = match &self.backend {
            Backend::Embedded(db) => db.children(parent, n).await?,
            Backend::Redis(redis) => redis.children(parent, n).await?,
        };
        Ok(raw
            .iter()
            .filter_map(|b| serde_json::from_slice::<RunSummary>(b).ok())
            .filter(|r| r.expires_at > now)
            .collect())
    }

    /// Up to `n` history entries older than `after` (a history key), newest
    /// first, of `topic` or of all: each key, and its summary unless it is
    /// gone.
    async fn history(
        &self,
        topic: Option<&str>,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, Option<RunSummary>)>, StoreError> {
        let raw = match &self.backend {
            Backend::Embedded(db) => db.history(topic, after, n).await?,
            Backend::Redis(redis) => redis.history(topic, after, n).await?,
        };
        Ok(raw
            .into_iter()
            .map(|(k, b)| {
                let summary = b.and_then(|b| serde_json::from_slice::<RunSummary>(&b).ok());
                (k, summary)
            })
            .collect())
    }

    /// A request that exists and has not expired.
    pub async fn request(&self, request_uid: &str) -> Result<Option<StoredRequest>, StoreError> {
        let raw = self.get(Kind::Request, request_uid).await?;
        let now = self.clock.now();
        Ok(raw
            .and_then(|b| serde_json::from_slice::<StoredRequest>(&b).ok())
            .filter(|r| r.expires_at > now))
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
    pub async fn check_function(&self, function_uid: &str) -> Result<(), StoreError> {
        self.function_index(function_uid).await?;
        if self.get(Kind::Response, function_uid).await?.is_some() {
            return Err(StoreError::AlreadyAnswered(crate::telemetry::uid_prefix(
                function_uid,
            )));
        }
        Ok(())
    }

    /// The run a live function uid was issued to: what a function vouches
    /// for with its own uid (`Gitfaas-Parent`), whether it has answered or
    /// not. [`StoreError::UnknownFunction`] when unknown or expired.
    pub async fn run_of_function(&self, function_uid: &str) -> Result<String, StoreError> {
        Ok(self.function_index(function_uid).await?.request_uid)
    }

    async fn function_index(&self, function_uid: &str) -> Result<FunctionIndex, StoreError> {
        let now = self.clock.now();
        self.get(Kind::Function, function_uid)
            .await?
            .and_then(|b| serde_json::from_slice::<FunctionIndex>(&b).ok())
            .filter(|i| i.expires_at > now)
            .ok_or_else(|| StoreError::UnknownFunction(crate::telemetry::uid_prefix(function_uid)))
    }

    /// Records a function's response; the uid must have been issued and not
    /// expired, and the first response stands: a second is refused
    /// ([`StoreError::AlreadyAnswered`]), atomically, also between replicas.
    pub async fn put_response(
        &self,
        function_uid: &str,
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
                function_uid,
                to_json(&response),
                index.expires_at,
            )
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(StoreError::AlreadyAnswered(crate::telemetry::uid_prefix(
                function_uid,
            )))
        }
    }

    /// Keeps the log tails of a finished run, as long as its record.
    /// Written again (a cancel after the tracker, say), the last stands.
    pub async fn put_logs(
        &self,
        request: &StoredRequest,
        tails: Vec<LogTail>,
    ) -> Result<(), StoreError> {
        let logs = StoredLogs {
            at: self.clock.now(),
            tails,
            expires_at: request.expires_at,
        };
        self.put(
            Kind::Logs,
            &request.request_uid,
            to_json(&logs),
            request.expires_at,
        )
        .await
    }

    /// The log tails kept of a run, if any (and not expired).
    pub async fn logs(&self, request_uid: &str) -> Result<Option<StoredLogs>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .get(Kind::Logs, request_uid)
            .await?
            .and_then(|b| serde_json::from_slice::<StoredLogs>(&b).ok())
            .filter(|l| l.expires_at > now))
    }

    /// Takes the callback of `request` for `holder` until `lease` from now:
    /// puts it in the outbox when it is not there, renews it when `holder`
    /// holds it, takes it over when its lease ran out; false while another
    /// holder's lease runs. Atomic, also between replicas on Redis.
    pub async fn outbox_claim(
        &self,
        request: &StoredRequest,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let entry = OutboxEntry {
            request_uid: request.request_uid.clone(),
            holder: holder.to_string(),
            lease_until: now.saturating_add(lease.as_secs().max(1)),
            expires_at: request.expires_at,
        };
        let value = to_json(&entry);
        match &self.backend {
            Backend::Embedded(db) => {
                db.outbox_claim(&request.request_uid, value, holder, now)
                    .await
            }
            Backend::Redis(redis) => {
                redis
                    .outbox_claim(&request.request_uid, value, holder, now, request.expires_at)
                    .await
            }
        }
    }

    /// Up to `n` callbacks in the outbox (held or not), oldest expiry first.
    pub async fn outbox(&self, n: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let now = self.clock.now();
        let raw = match &self.backend {
            Backend::Embedded(db) => db.first(Kind::Outbox, n).await?,
            Backend::Redis(redis) => redis.outbox(n, now).await?,
        };
        Ok(raw
            .iter()
            .filter_map(|b| serde_json::from_slice::<OutboxEntry>(b).ok())
            .filter(|e| e.expires_at > now)
            .collect())
    }

    /// Takes a delivered (or given up) callback out of the outbox.
    pub async fn outbox_done(&self, request_uid: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.delete(Kind::Outbox, request_uid).await,
            Backend::Redis(redis) => redis.outbox_done(request_uid).await,
        }
    }

    /// The responses of a request's functions, in order; None while pending.
    pub async fn responses(
        &self,
        request: &StoredRequest,
    ) -> Result<Vec<Option<StoredResponse>>, StoreError> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(request.functions.len());
        for f in &request.functions {
            let r = self
                .get(Kind::Response, &f.function_uid)
                .await?
                .and_then(|b| serde_json::from_slice::<StoredResponse>(&b).ok())
                .filter(|r| r.expires_at > now);
            out.push(r);
        }
        Ok(out)
    }

    /// Claims `key` for `request_uid` unless a live claim exists: one that
    /// has not expired and is either completed or within its `lease` (a
    /// claim whose publish died — a crash, a dropped connection — is free
    /// again once its lease has run out).
    pub async fn claim_idempotency(
        &self,
        key: &str,
        topic: &str,
        fingerprint: &Fingerprint,
        request_uid: &str,
        lease: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let now = self.clock.now();
        let expires_at = self.expiry(now);
        let record = to_json(&IdempotencyRecord {
            request_uid: request_uid.to_string(),
            topic: topic.to_string(),
            expires_at,
            fingerprint: fingerprint.clone(),
            lease_until: Some(now.saturating_add(lease.as_secs().max(1))),
        });
        let existing: Option<IdempotencyRecord> = match &self.backend {
            Backend::Embedded(db) => db.claim_idempotency(key, record, now).await?,
            Backend::Redis(redis) => {
                redis
                    .claim_idempotency(key, record, now, expires_at)
                    .await?
            }
        };
        Ok(match existing {
            None => Claim::Fresh,
            Some(r) => Claim::Existing {
                request_uid: r.request_uid,
                topic: r.topic,
                fingerprint: r.fingerprint,
            },
        })
    }

    /// Marks the claim of `request_uid` completed: it then holds for the
    /// expiration time, whatever its lease said.
    pub async fn complete_idempotency(
        &self,
        key: &str,
        request_uid: &str,
    ) -> Result<(), StoreError> {
        let Some(mut record) = self
            .get(Kind::Idempotency, key)
            .await?
            .and_then(|b| serde_json::from_slice::<IdempotencyRecord>(&b).ok())
            .filter(|r| r.request_uid == request_uid)
        else {
            return Ok(());
        };
        record.lease_until = None;
        let expires_at = record.expires_at;
        self.put(Kind::Idempotency, key, to_json(&record), expires_at)
            .await
    }

    /// Releases a claim made by `request_uid` (its publish failed before applying).
    pub async fn release_idempotency(
        &self,
        key: &str,
        request_uid: &str,
    ) -> Result<(), StoreError> {
        let owned = self
            .get(Kind::Idempotency, key)
            .await?
            .and_then(|b| serde_json::from_slice::<IdempotencyRecord>(&b).ok())
            .is_some_and(|r| r.request_uid == request_uid);
        if owned {
            self.delete(Kind::Idempotency, key).await?;
        }
        Ok(())
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
        ]
        .map(|(t, p)| (t.to_string(), p));
        assert_eq!(names, expected);
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
        let request = store.new_request("r-1", "t", "c");
        assert_eq!(request.expires_at, u64::MAX);
        store
            .save_request(&request, Durability::Now)
            .await
            .expect("save");
        assert!(store.request("r-1").await.expect("read").is_some());
        assert!(store.remember_delivery("d-1").await.expect("remember"));
        let fingerprint = Fingerprint::of(&[], b"");
        let claim = store
            .claim_idempotency("k", "t", &fingerprint, "r-1", Duration::from_secs(u64::MAX))
            .await
            .expect("claim");
        assert!(matches!(claim, Claim::Fresh));
    }
}
