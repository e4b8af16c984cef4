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
        let mut b = self.buffer();
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
        });
        Embedded::spawn_flusher(&embedded);
        Ok(embedded)
    }

    /// Stages a request's record and its function index, to be written by
    /// the group commit or, for [`Durability::Now`], before returning.
    pub(super) async fn save_request(
        self: &Arc<Self>,
        key: String,
        record: Vec<u8>,
        index: Vec<u8>,
        uids: Vec<String>,
        run: RunEntry,
        durability: Durability,
    ) -> Result<(), StoreError> {
        // Staged, then written by the group commit (one transaction
        // for a burst) or, for `Now`, by a flush before returning.
        self.stage(key, record, index, uids, run);
        match durability {
            Durability::Soon => {
                self.wake.notify_one();
                Ok(())
            }
            Durability::Now => {
                let db = Arc::clone(self);
                blocking(move || db.flush()).await
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
