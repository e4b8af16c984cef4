//! The embedded backend: one redb file, its tables, the buffer of
//! [`Durability::Soon`](super::Durability::Soon) writes and their group
//! commit, and the small pool redb's blocking calls run on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redb::TableDefinition;

use super::{StoreError, FLUSH_AFTER};

pub(super) const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
pub(super) const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
pub(super) const RESPONSES: TableDefinition<&str, &[u8]> = TableDefinition::new("responses");
pub(super) const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// Webhook delivery ids seen, so a replayed delivery is refused.
pub(super) const DELIVERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");

/// The redb database and its group commit.
pub(super) struct Embedded {
    pub(super) db: redb::Database,
    /// Request records written [`Durability::Soon`], newest version each,
    /// until a group commit has them on disk. Reads look here first.
    pub(super) buffer: Mutex<Buffer>,
    /// One group commit at a time, so batches reach the disk in the order
    /// their contents were taken (a later batch never holds older versions).
    pub(super) flushing: Mutex<()>,
    pub(super) wake: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
pub(super) struct Buffer {
    next: u64,
    pub(super) requests: HashMap<String, Buffered>,
    /// function uid → request uid, for the function index.
    functions: HashMap<String, String>,
}

#[derive(Clone)]
pub(super) struct Buffered {
    version: u64,
    record: Vec<u8>,
    index: Vec<u8>,
    uids: Vec<String>,
}

impl std::ops::Deref for Embedded {
    type Target = redb::Database;
    fn deref(&self) -> &redb::Database {
        &self.db
    }
}

impl Embedded {
    pub(super) fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // The buffer holds plain data; a panic elsewhere cannot leave it half-updated.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stage(&self, key: String, record: Vec<u8>, index: Vec<u8>, uids: Vec<String>) {
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
            },
        );
    }

    /// A staged value of `kind` (`request` or `function`, as in the Redis keys).
    pub(super) fn staged(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        let b = self.buffer();
        match kind {
            "request" => b.requests.get(key).map(|r| r.record.clone()),
            "function" => b
                .functions
                .get(key)
                .and_then(|r| b.requests.get(r))
                .map(|r| r.index.clone()),
            _ => None,
        }
    }

    /// Writes everything staged in one durable transaction.
    pub(super) fn flush(&self) -> Result<(), redb::Error> {
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
            let mut requests = txn.open_table(REQUESTS)?;
            let mut functions = txn.open_table(FUNCTIONS)?;
            for (key, b) in &batch {
                requests.insert(key.as_str(), b.record.as_slice())?;
                for uid in &b.uids {
                    functions.insert(uid.as_str(), b.index.as_slice())?;
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
    pub(super) fn spawn_flusher(this: &Arc<Embedded>) {
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
pub(super) const EMBEDDED_CACHE_BYTES: usize = 8 << 20;

pub(super) fn embedded_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        backend: "embedded",
        message: e.to_string(),
    }
}

pub(super) type Table = TableDefinition<'static, &'static str, &'static [u8]>;

/// Runs a redb call on the blocking pool. redb has one writer at a time, so
/// a burst of publishes would otherwise park hundreds of blocking threads
/// (each with its own stack and malloc arena) on its write lock: a few
/// permits keep the thread count, and the memory, flat.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, redb::Error> + Send + 'static,
) -> Result<T, StoreError> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);
    let _permit = PERMITS.acquire().await.map_err(embedded_err)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(embedded_err)?
        .map_err(embedded_err)
}
