//! The embedded backend: one redb file and its tables, the buffer of
//! [`Durability::Soon`] writes and their group commit, the small pool
//! redb's blocking calls run on, and each operation the facade asks for as
//! redb transactions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{
    Durability, ExpiresAt, IdempotencyRecord, Kind, RunEntry, StoreError, FLUSH_AFTER,
    TOPIC_SEPARATOR,
};

/// The redb database and its group commit.
pub(super) struct Embedded {
    db: redb::Database,
    /// Request records written [`Durability::Soon`], newest version each,
    /// until a group commit has them on disk. Reads look here first.
    buffer: Mutex<Buffer>,
    /// One group commit at a time, so batches reach the disk in the order
    /// their contents were taken (a later batch never holds older versions).
    flushing: Mutex<()>,
    wake: Arc<tokio::sync::Notify>,
    /// The last queue sequence number given.
    seq: std::sync::atomic::AtomicU64,
    /// Heartbeats: holder → until when (Unix seconds). One process opens
    /// the file, so only its own holders are ever alive.
    holders: Mutex<HashMap<String, u64>>,
}

#[derive(Default)]
struct Buffer {
    next: u64,
    requests: HashMap<String, Buffered>,
    /// function uid → request uid, for the function index.
    functions: HashMap<String, String>,
}

#[derive(Clone)]
struct Buffered {
    version: u64,
    record: Vec<u8>,
    index: Vec<u8>,
    uids: Vec<String>,
    /// Its history entries' keys and summary.
    run_key: String,
    topic_key: String,
    parent_key: Option<String>,
    summary: Vec<u8>,
}

impl std::ops::Deref for Embedded {
    type Target = redb::Database;
    fn deref(&self) -> &redb::Database {
        &self.db
    }
}

impl Embedded {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // The buffer holds plain data; a panic elsewhere cannot leave it half-updated.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stage(
        &self,
        key: String,
        record: Vec<u8>,
        index: Vec<u8>,
        uids: Vec<String>,
        run: RunEntry,
    ) {
        Self::stage_in(&mut self.buffer(), key, record, index, uids, run);
    }

    /// Stages a request's record if the revision stored under `key` is
    /// `expected`; whether it did. The newest version is the buffer's, else
    /// the disk's: both are read under the buffer's lock, so no other
    /// version is staged between the comparison and this one (a group
    /// commit empties the buffer only of what it has on disk already).
    /// Staged, not written in a transaction of its own: a group commit
    /// holding an older version would write it over this one.
    fn stage_if(
        &self,
        expected: u64,
        key: String,
        record: Vec<u8>,
        index: Vec<u8>,
        uids: Vec<String>,
        run: RunEntry,
    ) -> Result<bool, redb::Error> {
        let mut b = self.buffer();
        let current = match b.requests.get(&key) {
            Some(staged) => super::revision_of(&staged.record),
            None => {
                let txn = self.db.begin_read()?;
                let table = txn.open_table(Kind::Request.table())?;
                let stored = table.get(key.as_str())?;
                stored.map_or(0, |v| super::revision_of(v.value()))
            }
        };
        if current != expected {
            return Ok(false);
        }
        Self::stage_in(&mut b, key, record, index, uids, run);
        Ok(true)
    }

    fn stage_in(
        b: &mut Buffer,
        key: String,
        record: Vec<u8>,
        index: Vec<u8>,
        uids: Vec<String>,
        run: RunEntry,
    ) {
        b.next += 1;
        let version = b.next;
        for uid in &uids {
            b.functions.insert(uid.clone(), key.clone());
        }
        b.requests.insert(
            key,
            Buffered {
                version,
                record,
                index,
                uids,
                run_key: run.key,
                topic_key: run.topic_key,
                parent_key: run.parent_key,
                summary: run.summary,
            },
        );
    }

    /// A staged value of `kind` (a request's record or a function's index).
    fn staged(&self, kind: Kind, key: &str) -> Option<Vec<u8>> {
        let b = self.buffer();
        match kind {
            Kind::Request => b.requests.get(key).map(|r| r.record.clone()),
            Kind::Function => b
                .functions
                .get(key)
                .and_then(|r| b.requests.get(r))
                .map(|r| r.index.clone()),
            _ => None,
        }
    }

    /// Writes everything staged in one durable transaction.
    fn flush(&self) -> Result<(), redb::Error> {
        let _one = self.flushing.lock().unwrap_or_else(|e| e.into_inner());
        let batch: Vec<(String, Buffered)> = self
            .buffer()
            .requests
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut requests = txn.open_table(Kind::Request.table())?;
            let mut functions = txn.open_table(Kind::Function.table())?;
            let mut runs = txn.open_table(Kind::Run.table())?;
            let mut topic_runs = txn.open_table(Kind::TopicRun.table())?;
            let mut children = txn.open_table(Kind::Child.table())?;
            for (key, b) in &batch {
                requests.insert(key.as_str(), b.record.as_slice())?;
                for uid in &b.uids {
                    functions.insert(uid.as_str(), b.index.as_slice())?;
                }
                runs.insert(b.run_key.as_str(), b.summary.as_slice())?;
                topic_runs.insert(b.topic_key.as_str(), b.summary.as_slice())?;
                if let Some(k) = &b.parent_key {
                    children.insert(k.as_str(), b.summary.as_slice())?;
                }
            }
        }
        txn.commit()?;
        // Only what is on disk leaves the buffer; a version staged meanwhile stays.
        let mut buffer = self.buffer();
        for (key, written) in batch {
            if buffer.requests.get(&key).map(|b| b.version) == Some(written.version) {
                buffer.requests.remove(&key);
                for uid in &written.uids {
                    if buffer.functions.get(uid) == Some(&key) {
                        buffer.functions.remove(uid);
                    }
                }
            }
        }
        Ok(())
    }

    /// The group commit: wakes on the first staged write, waits
    /// [`FLUSH_AFTER`] so the writes of a burst share it, then flushes. Ends
    /// when the store is dropped (which flushes what is left).
    ///
    /// Not a task of `tasks`, on purpose: it must flush for as long as
    /// anyone writes, and drained tasks still write records while shutdown
    /// waits for them. Its life is the store's, which the CLI and tests open
    /// without any server; the server's last `flush` and the store's drop
    /// leave nothing staged.
    fn spawn_flusher(this: &Arc<Embedded>) {
        let weak = Arc::downgrade(this);
        let wake = Arc::clone(&this.wake);
        tokio::spawn(async move {
            loop {
                wake.notified().await;
                tokio::time::sleep(FLUSH_AFTER).await;
                let Some(db) = weak.upgrade() else { return };
                if let Err(e) = blocking(move || db.flush()).await {
                    tracing::warn!(error = %e, "the store could not write recent records to disk; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    wake.notify_one();
                }
            }
        });
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "the store could not write its last records to disk");
        }
        self.wake.notify_one();
    }
}

/// Page cache of the embedded store.
const EMBEDDED_CACHE_BYTES: usize = 8 << 20;

fn embedded_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: "embedded",
        message: e.to_string(),
    }
}

/// Runs a redb call on the blocking pool. redb has one writer at a time, so
/// a burst of publishes would otherwise park hundreds of blocking threads
/// (each with its own stack and malloc arena) on its write lock: a few
/// permits keep the thread count, and the memory, flat.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, redb::Error> + Send + 'static,
) -> Result<T, StoreError> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
    let _permit = PERMITS.acquire().await.map_err(embedded_err)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(embedded_err)?
        .map_err(embedded_err)
}

/// What the facade asks of the embedded backend: redb transactions, run on
/// the blocking pool.
impl Embedded {
    /// Opens (or creates) the database in `dir` with its tables, and starts
    /// its group commit.
    pub(super) async fn open(dir: &Path) -> Result<Arc<Embedded>, StoreError> {
        let dir = dir.to_path_buf();
        let db = tokio::task::spawn_blocking(move || -> Result<redb::Database, StoreError> {
            std::fs::create_dir_all(&dir)
                .map_err(|e| embedded_err(format!("cannot create {}: {e}", dir.display())))?;
            let path = dir.join("gitfaas.redb");
            // redb caches up to 1 GiB by default and keeps what it read: the
            // records are small and read once or twice, so a small cache keeps
            // the resident memory flat as the file grows.
            let db = redb::Builder::new()
                .set_cache_size(EMBEDDED_CACHE_BYTES)
                .create(&path)
                .map_err(|e| embedded_err(format!("{}: {e}", path.display())))?;
            let txn = db.begin_write().map_err(embedded_err)?;
            for kind in Kind::ALL {
                txn.open_table(kind.table()).map_err(embedded_err)?;
            }
            txn.commit().map_err(embedded_err)?;
            Ok(db)
        })
        .await
        .map_err(embedded_err)??;
        let embedded = Arc::new(Embedded {
            db,
            buffer: Default::default(),
            flushing: Default::default(),
            wake: Default::default(),
            seq: Default::default(),
            holders: Default::default(),
        });
        Embedded::spawn_flusher(&embedded);
        Ok(embedded)
    }

    /// Stages a request's record and its function index (if the stored
    /// revision is `expected`, when given: [`Self::stage_if`]), to be
    /// written by the group commit or, for [`Durability::Now`], before
    /// returning; whether it was.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn save_run(
        self: &Arc<Self>,
        key: String,
        record: Vec<u8>,
        index: Vec<u8>,
        uids: Vec<String>,
        run: RunEntry,
        expected: Option<u64>,
        durability: Durability,
    ) -> Result<bool, StoreError> {
        // Staged, then written by the group commit (one transaction
        // for a burst) or, for `Now`, by a flush before returning.
        match expected {
            // A creation: no disk read, so a publish never waits on one.
            None => self.stage(key, record, index, uids, run),
            Some(expected) => {
                let db = Arc::clone(self);
                let staged =
                    blocking(move || db.stage_if(expected, key, record, index, uids, run)).await?;
                if !staged {
                    return Ok(false);
                }
            }
        }
        match durability {
            Durability::Soon => {
                self.wake.notify_one();
                Ok(true)
            }
            Durability::Now => {
                let db = Arc::clone(self);
                blocking(move || db.flush()).await.map(|()| true)
            }
        }
    }

    /// Writes `record` for `key` unless a live claim holds it (one not
    /// expired, and completed or within its lease, at `now`); that claim.
    pub(super) async fn claim_idempotency(
        self: &Arc<Self>,
        key: &str,
        record: Vec<u8>,
        now: u64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let db = Arc::clone(self);
        let key = key.to_string();
        blocking(move || {
            let txn = db.begin_write()?;
            let existing = {
                let mut table = txn.open_table(Kind::Idempotency.table())?;
                let current = table
                    .get(key.as_str())?
                    .and_then(|v| serde_json::from_slice::<IdempotencyRecord>(v.value()).ok())
                    .filter(|r| r.expires_at > now)
                    .filter(|r| r.lease_until.is_none_or(|l| l > now));
                if current.is_none() {
                    table.insert(key.as_str(), record.as_slice())?;
                }
                current
            };
            txn.commit()?;
            Ok(existing)
        })
        .await
    }

    /// Up to `n` summaries of the history (of `topic`, else of all runs)
    /// older than the history key `after`, newest first: the entries on
    /// disk merged with those staged for the group commit.
    pub(super) async fn history(
        self: &Arc<Self>,
        topic: Option<&str>,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        // Keys within the index: the per-topic one prefixes them.
        let prefix = topic
            .map(|t| format!("{t}{TOPIC_SEPARATOR}"))
            .unwrap_or_default();
        let upper = match after {
            Some(a) => format!("{prefix}{a}"),
            // Above every history key (digits first).
            None => format!("{prefix}~"),
        };
        let staged: Vec<(String, Vec<u8>)> = {
            let b = self.buffer();
            b.requests
                .values()
                .map(|r| {
                    let key = if topic.is_some() {
                        &r.topic_key
                    } else {
                        &r.run_key
                    };
                    (key.clone(), r.summary.clone())
                })
                .filter(|(k, _)| k.starts_with(&prefix) && k.as_str() < upper.as_str())
                .collect()
        };
        let db = Arc::clone(self);
        let kind = if topic.is_some() {
            Kind::TopicRun
        } else {
            Kind::Run
        };
        let lower = prefix.clone();
        let entries = db.index_range(kind, lower, upper, true, n, staged).await?;
        // History keys, without the topic's prefix.
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_string(), Some(v)))
            .collect())
    }

    /// Up to `n` summaries of the runs whose parent is `parent`, oldest
    /// first, staged ones included.
    pub(super) async fn children(
        self: &Arc<Self>,
        parent: &str,
        n: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let prefix = format!("{parent}|");
        let staged: Vec<(String, Vec<u8>)> = self
            .buffer()
            .requests
            .values()
            .filter_map(|r| {
                let k = r.parent_key.as_ref().filter(|k| k.starts_with(&prefix))?;
                Some((k.clone(), r.summary.clone()))
            })
            .collect();
        // Above every key of this parent: `}` sorts right after `|`.
        let upper = format!("{parent}}}");
        let entries = self
            .index_range(Kind::Child, prefix, upper, false, n, staged)
            .await?;
        Ok(entries.into_iter().map(|(_, v)| v).collect())
    }

    /// Up to `n` entries of the index table `kind` in `lower..upper`, in
    /// key order (`newest_first`: reversed), merged with `staged` (entries
    /// of records the group commit has not written yet, newer than their
    /// copies on disk).
    async fn index_range(
        self: &Arc<Self>,
        kind: Kind,
        lower: String,
        upper: String,
        newest_first: bool,
        n: usize,
        staged: Vec<(String, Vec<u8>)>,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let db = Arc::clone(self);
        let mut entries: Vec<(String, Vec<u8>)> = blocking(move || {
            let txn = db.begin_read()?;
            let table = txn.open_table(kind.table())?;
            let range = table.range::<&str>(lower.as_str()..upper.as_str())?;
            let mut out = Vec::with_capacity(n);
            let mut take = |entry: Result<_, redb::StorageError>| -> Result<bool, redb::Error> {
                let (k, v): (redb::AccessGuard<&str>, redb::AccessGuard<&[u8]>) = entry?;
                out.push((k.value().to_string(), v.value().to_vec()));
                Ok(out.len() < n)
            };
            if newest_first {
                for entry in range.rev() {
                    if !take(entry)? {
                        break;
                    }
                }
            } else {
                for entry in range {
                    if !take(entry)? {
                        break;
                    }
                }
            }
            Ok(out)
        })
        .await?;
        for (key, summary) in staged {
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(e) => e.1 = summary,
                None => entries.push((key, summary)),
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if newest_first {
            entries.reverse();
        }
        entries.truncate(n);
        Ok(entries)
    }

    /// Writes everything staged, on the blocking pool.
    pub(super) async fn persist(self: &Arc<Self>) -> Result<(), StoreError> {
        let db = Arc::clone(self);
        blocking(move || db.flush()).await
    }

    /// Deletes the records expired at `now`; how many there were.
    pub(super) async fn purge_expired(self: &Arc<Self>, now: u64) -> Result<usize, StoreError> {
        let db = Arc::clone(self);
        blocking(move || {
            let txn = db.begin_write()?;
            let mut removed = 0;
            {
                for kind in Kind::ALL {
                    let mut t = txn.open_table(kind.table())?;
                    let before = t.len()?;
                    t.retain(|_, v| {
                        serde_json::from_slice::<ExpiresAt>(v)
                            .map(|e| e.expires_at > now)
                            .unwrap_or(false)
                    })?;
                    removed += (before - t.len()?) as usize;
                }
            }
            txn.commit()?;
            Ok(removed)
        })
        .await
    }

    /// How many requests are stored, staged ones included.
    pub(super) async fn request_count(self: &Arc<Self>) -> Result<u64, StoreError> {
        let db = Arc::clone(self);
        blocking(move || {
            // Staged records count too; those already on disk once.
            let staged: Vec<String> = db.buffer().requests.keys().cloned().collect();
            let txn = db.begin_read()?;
            let table = txn.open_table(Kind::Request.table())?;
            let mut count = table.len()?;
            for key in &staged {
                if table.get(key.as_str())?.is_none() {
                    count += 1;
                }
            }
            Ok(count)
        })
        .await
    }

    /// A record, staged or on disk.
    pub(super) async fn get(
        self: &Arc<Self>,
        kind: Kind,
        key: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(staged) = self.staged(kind, key) {
            return Ok(Some(staged));
        }
        let db = Arc::clone(self);
        let key = key.to_string();
        blocking(move || {
            let txn = db.begin_read()?;
            let t = txn.open_table(kind.table())?;
            Ok(t.get(key.as_str())?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// The outbox claim ([`super::Store::outbox_claim`]) in one write
    /// transaction.
    pub(super) async fn outbox_claim(
        self: &Arc<Self>,
        key: &str,
        value: Vec<u8>,
        holder: &str,
        now: u64,
    ) -> Result<bool, StoreError> {
        let db = Arc::clone(self);
        let (key, holder) = (key.to_string(), holder.to_string());
        blocking(move || {
            let txn = db.begin_write()?;
            let taken = {
                let mut table = txn.open_table(Kind::Outbox.table())?;
                let held_by_another = table
                    .get(key.as_str())?
                    .and_then(|v| serde_json::from_slice::<super::OutboxEntry>(v.value()).ok())
                    .is_some_and(|e| e.holder != holder && e.lease_until > now);
                if !held_by_another {
                    table.insert(key.as_str(), value.as_slice())?;
                }
                !held_by_another
            };
            txn.commit()?;
            Ok(taken)
        })
        .await
    }

    /// The first `n` values of `kind`'s table, in key order.
    pub(super) async fn first(
        self: &Arc<Self>,
        kind: Kind,
        n: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let db = Arc::clone(self);
        blocking(move || {
            let txn = db.begin_read()?;
            let t = txn.open_table(kind.table())?;
            let mut out = Vec::new();
            for entry in t.iter()?.take(n) {
                let (_, v) = entry?;
                out.push(v.value().to_vec());
            }
            Ok(out)
        })
        .await
    }

    /// Writes a record (insert or replace).
    pub(super) async fn put(
        self: &Arc<Self>,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let db = Arc::clone(self);
        let key = key.to_string();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(kind.table())?
                .insert(key.as_str(), value.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    /// Writes `value` unless `key` holds one; whether it was written.
    pub(super) async fn put_if_absent(
        self: &Arc<Self>,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let db = Arc::clone(self);
        let key = key.to_string();
        blocking(move || {
            let txn = db.begin_write()?;
            let inserted = {
                let mut t = txn.open_table(kind.table())?;
                let present = t.get(key.as_str())?.is_some();
                if !present {
                    t.insert(key.as_str(), value.as_slice())?;
                }
                !present
            };
            txn.commit()?;
            Ok(inserted)
        })
        .await
    }

    /// Deletes a record.
    pub(super) async fn delete(self: &Arc<Self>, kind: Kind, key: &str) -> Result<(), StoreError> {
        let db = Arc::clone(self);
        let key = key.to_string();
        blocking(move || {
            let txn = db.begin_write()?;
            txn.open_table(kind.table())?.remove(key.as_str())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }
}

/// The first and the past-the-end key of `topic`'s records in a table keyed
/// `<topic>\x1f…`.
fn topic_range(topic: &str) -> (String, String) {
    (
        format!("{topic}{TOPIC_SEPARATOR}"),
        format!("{topic}{}", char::from(TOPIC_SEPARATOR as u8 + 1)),
    )
}

fn slot_key(topic: &str, request_uid: &str) -> String {
    format!("{topic}{TOPIC_SEPARATOR}{request_uid}")
}

fn order_key(topic: &str, seq: u64) -> String {
    format!("{topic}{TOPIC_SEPARATOR}{seq:020}")
}

/// An entry of the queue order: which run, until when, and how many bytes
/// its queued record takes (0 in entries written before they were counted).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    request_uid: String,
    expires_at: u64,
    #[serde(default)]
    bytes: u64,
}

/// The slots and the queue ([`super::slots`]), each decision one write
/// transaction.
impl Embedded {
    /// A sequence number above every one given before, in this process or
    /// an earlier one (which ran at an earlier time).
    fn next_seq(&self) -> u64 {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut prev = self.seq.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self
                .seq
                .compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => prev = seen,
            }
        }
    }

    pub(super) async fn admit(
        self: &Arc<Self>,
        ask: &super::SlotAsk<'_>,
        slot: Vec<u8>,
    ) -> Result<super::SlotDecision, StoreError> {
        use super::SlotDecision;
        let db = Arc::clone(self);
        let (topic, uid) = (ask.topic.to_string(), ask.request_uid.to_string());
        let run_uid = ask.request_uid.clone();
        let (max, floor, max_queued, max_bytes) = (
            u64::from(ask.max),
            u64::from(ask.floor),
            u64::from(ask.max_queued),
            ask.max_queued_bytes,
        );
        let seq = self.next_seq();
        let entry = super::to_json(&super::QueueEntry {
            request_uid: run_uid,
            topic: topic.clone(),
            seq,
            run: ask.run.clone(),
            expires_at: ask.expires_at,
        });
        let run_bytes = u64::try_from(entry.len()).unwrap_or(u64::MAX);
        let order = super::to_json(&Order {
            request_uid: uid.clone(),
            expires_at: ask.expires_at,
            bytes: run_bytes,
        });
        blocking(move || {
            let txn = db.begin_write()?;
            let (start, end) = topic_range(&topic);
            let admission = {
                let mut slots = txn.open_table(Kind::Slot.table())?;
                let mut orders = txn.open_table(Kind::QueueOrder.table())?;
                let held = slots.range(start.as_str()..end.as_str())?.count() as u64;
                let (mut queued, mut queued_bytes) = (0u64, 0u64);
                for item in orders.range(start.as_str()..end.as_str())? {
                    let (_, v) = item?;
                    queued += 1;
                    let bytes = serde_json::from_slice::<Order>(v.value()).map_or(0, |o| o.bytes);
                    queued_bytes = queued_bytes.saturating_add(bytes);
                }
                let key = slot_key(&topic, &uid);
                if slots.get(key.as_str())?.is_some() {
                    SlotDecision::Slot
                } else if queued == 0 && held.max(floor) < max {
                    slots.insert(key.as_str(), slot.as_slice())?;
                    SlotDecision::Slot
                } else if queued < max_queued && queued_bytes.saturating_add(run_bytes) > max_bytes
                {
                    SlotDecision::FullOfBytes {
                        held: held.max(floor),
                        queued,
                        queued_bytes,
                        run_bytes,
                    }
                } else if queued < max_queued {
                    orders.insert(order_key(&topic, seq).as_str(), order.as_slice())?;
                    txn.open_table(Kind::Queue.table())?
                        .insert(uid.as_str(), entry.as_slice())?;
                    SlotDecision::Queued {
                        position: queued + 1,
                    }
                } else {
                    SlotDecision::Full {
                        held: held.max(floor),
                        queued,
                    }
                }
            };
            txn.commit()?;
            Ok(admission)
        })
        .await
    }

    pub(super) async fn dispatch_next(
        self: &Arc<Self>,
        topic: &str,
        max: u32,
        holder: &str,
    ) -> Result<Option<super::QueueEntry>, StoreError> {
        let db = Arc::clone(self);
        let (topic, holder) = (topic.to_string(), holder.to_string());
        blocking(move || {
            let txn = db.begin_write()?;
            let (start, end) = topic_range(&topic);
            let next = {
                let mut slots = txn.open_table(Kind::Slot.table())?;
                let mut orders = txn.open_table(Kind::QueueOrder.table())?;
                let queue = txn.open_table(Kind::Queue.table())?;
                let held = slots.range(start.as_str()..end.as_str())?.count() as u64;
                let mut next = None;
                if held < u64::from(max) {
                    // The first entry whose run is still queued (an entry
                    // whose run was taken off is skipped and dropped).
                    let mut dropped = Vec::new();
                    for item in orders.range(start.as_str()..end.as_str())? {
                        let (k, v) = item?;
                        dropped.push(k.value().to_string());
                        let Ok(order) = serde_json::from_slice::<Order>(v.value()) else {
                            continue;
                        };
                        if let Some(raw) = queue.get(order.request_uid.as_str())? {
                            if let Ok(entry) =
                                serde_json::from_slice::<super::QueueEntry>(raw.value())
                            {
                                next = Some(entry);
                                break;
                            }
                        }
                    }
                    for k in dropped {
                        orders.remove(k.as_str())?;
                    }
                    if let Some(entry) = &next {
                        let slot = super::to_json(&super::Slot {
                            request_uid: entry.request_uid.clone(),
                            topic: topic.clone(),
                            holder: holder.clone(),
                            applied: false,
                            expires_at: entry.expires_at,
                        });
                        slots.insert(
                            slot_key(&topic, entry.request_uid.as_str()).as_str(),
                            slot.as_slice(),
                        )?;
                    }
                }
                next
            };
            txn.commit()?;
            Ok(next)
        })
        .await
    }

    pub(super) async fn dequeue(
        self: &Arc<Self>,
        topic: &str,
        request_uid: &str,
    ) -> Result<bool, StoreError> {
        let db = Arc::clone(self);
        let (topic, uid) = (topic.to_string(), request_uid.to_string());
        blocking(move || {
            let txn = db.begin_write()?;
            let taken = {
                let mut queue = txn.open_table(Kind::Queue.table())?;
                let slots = txn.open_table(Kind::Slot.table())?;
                // Dispatched (a slot is its): no longer waiting.
                if slots.get(slot_key(&topic, &uid).as_str())?.is_some() {
                    false
                } else {
                    let seq = queue
                        .remove(uid.as_str())?
                        .and_then(|v| serde_json::from_slice::<super::QueueEntry>(v.value()).ok())
                        .map(|e| e.seq);
                    if let Some(seq) = seq {
                        txn.open_table(Kind::QueueOrder.table())?
                            .remove(order_key(&topic, seq).as_str())?;
                    }
                    seq.is_some()
                }
            };
            txn.commit()?;
            Ok(taken)
        })
        .await
    }

    pub(super) async fn queue_position(
        self: &Arc<Self>,
        topic: &str,
        request_uid: &str,
    ) -> Result<Option<u64>, StoreError> {
        let db = Arc::clone(self);
        let (topic, uid) = (topic.to_string(), request_uid.to_string());
        blocking(move || {
            let txn = db.begin_read()?;
            let queue = txn.open_table(Kind::Queue.table())?;
            let slots = txn.open_table(Kind::Slot.table())?;
            if slots.get(slot_key(&topic, &uid).as_str())?.is_some() {
                return Ok(None);
            }
            let Some(seq) = queue
                .get(uid.as_str())?
                .and_then(|v| serde_json::from_slice::<super::QueueEntry>(v.value()).ok())
                .map(|e| e.seq)
            else {
                return Ok(None);
            };
            let (start, _) = topic_range(&topic);
            let ahead = txn
                .open_table(Kind::QueueOrder.table())?
                .range(start.as_str()..order_key(&topic, seq).as_str())?
                .count() as u64;
            Ok(Some(ahead + 1))
        })
        .await
    }

    pub(super) async fn queue_len(self: &Arc<Self>, topic: &str) -> Result<u64, StoreError> {
        let db = Arc::clone(self);
        let topic = topic.to_string();
        blocking(move || {
            let txn = db.begin_read()?;
            let (start, end) = topic_range(&topic);
            Ok(txn
                .open_table(Kind::QueueOrder.table())?
                .range(start.as_str()..end.as_str())?
                .count() as u64)
        })
        .await
    }

    pub(super) async fn slots(
        self: &Arc<Self>,
        topic: &str,
    ) -> Result<Vec<super::Slot>, StoreError> {
        let db = Arc::clone(self);
        let topic = topic.to_string();
        blocking(move || {
            let txn = db.begin_read()?;
            let (start, end) = topic_range(&topic);
            let mut out = Vec::new();
            for item in txn
                .open_table(Kind::Slot.table())?
                .range(start.as_str()..end.as_str())?
            {
                let (_, v) = item?;
                if let Ok(slot) = serde_json::from_slice(v.value()) {
                    out.push(slot);
                }
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn slot_applied(
        self: &Arc<Self>,
        topic: &str,
        request_uid: &str,
    ) -> Result<(), StoreError> {
        let db = Arc::clone(self);
        let key = slot_key(topic, request_uid);
        let uid = request_uid.to_string();
        blocking(move || {
            let txn = db.begin_write()?;
            {
                let mut slots = txn.open_table(Kind::Slot.table())?;
                let slot = slots
                    .get(key.as_str())?
                    .and_then(|v| serde_json::from_slice::<super::Slot>(v.value()).ok());
                if let Some(mut slot) = slot {
                    slot.applied = true;
                    slots.insert(key.as_str(), super::to_json(&slot).as_slice())?;
                }
                txn.open_table(Kind::Queue.table())?.remove(uid.as_str())?;
            }
            txn.commit()?;
            Ok(())
        })
        .await
    }

    pub(super) async fn slot_release(
        self: &Arc<Self>,
        topic: &str,
        request_uid: &str,
    ) -> Result<bool, StoreError> {
        let db = Arc::clone(self);
        let key = slot_key(topic, request_uid);
        let uid = request_uid.to_string();
        blocking(move || {
            let txn = db.begin_write()?;
            let released = {
                let released = txn
                    .open_table(Kind::Slot.table())?
                    .remove(key.as_str())?
                    .is_some();
                if released {
                    txn.open_table(Kind::Queue.table())?.remove(uid.as_str())?;
                }
                released
            };
            txn.commit()?;
            Ok(released)
        })
        .await
    }

    pub(super) async fn slot_adopt(
        self: &Arc<Self>,
        topic: &str,
        request_uid: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let db = Arc::clone(self);
        let key = slot_key(topic, request_uid);
        let (from, to) = (from.to_string(), to.to_string());
        blocking(move || {
            let txn = db.begin_write()?;
            let adopted = {
                let mut slots = txn.open_table(Kind::Slot.table())?;
                let slot = slots
                    .get(key.as_str())?
                    .and_then(|v| serde_json::from_slice::<super::Slot>(v.value()).ok());
                match slot {
                    Some(mut slot) if slot.holder == from => {
                        slot.holder = to;
                        slots.insert(key.as_str(), super::to_json(&slot).as_slice())?;
                        true
                    }
                    _ => false,
                }
            };
            txn.commit()?;
            Ok(adopted)
        })
        .await
    }

    pub(super) async fn limited_topics(self: &Arc<Self>) -> Result<Vec<String>, StoreError> {
        let db = Arc::clone(self);
        blocking(move || {
            let txn = db.begin_read()?;
            let mut topics: Vec<String> = Vec::new();
            for kind in [Kind::Slot, Kind::QueueOrder] {
                for item in txn.open_table(kind.table())?.iter()? {
                    let (k, _) = item?;
                    if let Some((topic, _)) = k.value().split_once(TOPIC_SEPARATOR) {
                        if !topics.iter().any(|t| t == topic) {
                            topics.push(topic.to_string());
                        }
                    }
                }
            }
            Ok(topics)
        })
        .await
    }

    pub(super) fn heartbeat(&self, holder: &str, until: u64) {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        if until == 0 {
            holders.remove(holder);
        } else {
            holders.insert(holder.to_string(), until);
        }
    }

    pub(super) fn alive(&self, holder: &str, now: u64) -> bool {
        self.holders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(holder)
            .is_some_and(|until| *until > now)
    }
}
