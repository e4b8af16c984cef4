//! The ledger of runs after their publish: [`Lifecycle`] owns the store,
//! the cluster and the callback client for them; a run's record is written
//! here, as a whole at creation ([`Lifecycle::record`]) and afterwards as a
//! change applied to the newest record ([`Lifecycle::update`]); records the
//! store could not take are kept in memory and written when it is back.
//!
//! Its views and waits are in `view.rs`, its callbacks in `callbacks.rs`:
//! `impl Lifecycle` blocks of their own. It knows nothing of HTTP routing.

use std::sync::Arc;
use std::time::Duration;

use super::callbacks::RetryPolicy;
use crate::callback;
use crate::cluster::{Applier, ApplyError};
use crate::store::{Decision, Durability, RunRecord, Store, StoreError};
use crate::tasks::Tasks;
use crate::uid::RequestUid;

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

/// A deadline for a wait too long to add to an Instant: later than any
/// expiration time the settings allow (10 years).
pub(super) const LAST_DEADLINE: Duration = Duration::from_secs(20 * 365 * 86400);

/// Follows requests: the store plus the cluster.
pub struct Lifecycle {
    /// Where requests are kept.
    pub store: Store,
    /// The cluster.
    pub applier: Arc<Applier>,
    /// The server's background work: callback deliveries are tasks of it,
    /// cancelled at shutdown.
    pub tasks: Tasks,
    pub(super) callbacks: callback::CallbackClient,
    pub(super) retry: RetryPolicy,
    /// Bytes of each container's log kept when a run finishes.
    pub(super) log_archive_bytes: usize,
    /// This process, as the holder of outbox leases.
    pub(super) holder: String,
    /// The callbacks this process is delivering (bounded by
    /// [`MAX_DELIVERING`]). std Mutex: no .await while held.
    pub(super) delivering: std::sync::Mutex<std::collections::HashSet<RequestUid>>,
    /// Records the store could not take (Redis down): kept here and written
    /// when it is back, so no acknowledged publish is lost. std Mutex: no
    /// .await while held.
    pending: std::sync::Mutex<std::collections::HashMap<RequestUid, Pending>>,
    /// Held while a record of `pending` is written, so that its changes are
    /// written once: by [`Lifecycle::flush_pending`] or by the next
    /// [`Lifecycle::update`] of its run, never by both.
    pub(super) flushing: tokio::sync::Mutex<()>,
}

/// A change of a run's record ([`Lifecycle::update`]): a function of that
/// record alone, so that it applies again to a newer one.
pub type Change = Arc<dyn Fn(&mut RunRecord) -> Decision + Send + Sync>;

/// A record the store could not take: the apply's copy, written when the
/// store has none, else `change` (every change since the store last took
/// one; None: its creation alone) applied to the store's: written over a
/// newer record, the copy would undo what others wrote meanwhile (a
/// callback attempt, a cancel). A run's apply writes it a bounded number of
/// times (at most a few more than `retry.attempts`), so the chain is bounded.
struct Pending {
    copy: RunRecord,
    change: Option<Change>,
}

impl Pending {
    /// Writes it: the copy where the store has no record, else its change.
    async fn write(&self, store: &Store, durability: Durability) -> Result<RunRecord, StoreError> {
        let change = self.change.clone();
        let updated = store
            .upsert_run(&self.copy, durability, |r| {
                change.as_ref().map_or(Decision::Keep, |c| c(r))
            })
            .await?;
        Ok(updated.record)
    }
}

/// `first`, then `then`: written if either says so.
fn chain(first: Option<Change>, then: Change) -> Change {
    match first {
        None => then,
        Some(first) => Arc::new(move |r: &mut RunRecord| {
            let a = first(r);
            let b = then(r);
            if a == Decision::Write || b == Decision::Write {
                Decision::Write
            } else {
                Decision::Keep
            }
        }),
    }
}

impl Lifecycle {
    /// A lifecycle over `store` and `applier`, calling back through
    /// `callbacks` in tasks of `tasks`.
    pub fn new(
        store: Store,
        applier: Arc<Applier>,
        callbacks: callback::CallbackClient,
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
            flushing: Default::default(),
        }
    }

    /// Keeps what the finished run `record` leaves for when its pods are
    /// gone ([`crate::run::outputs`]): its log tails, and the responses taken
    /// from stdout when its topic asks for them and it `succeeded`. Best
    /// effort: a failure is logged, not returned.
    pub async fn keep_outputs(&self, record: &RunRecord, succeeded: bool) {
        if let Err(e) = crate::run::outputs::keep(
            &self.applier,
            &self.store,
            record,
            self.log_archive_bytes,
            succeeded,
        )
        .await
        {
            tracing::info!(request_uid = record.request_uid.as_str(), error = %e, "keeping the run's logs failed; its logs answer only while its pods exist");
        }
    }

    /// Saves a new request's record (its creation: [`Store::save_run`]).
    /// When the store is unavailable the record is kept in memory and
    /// [`Self::flush_pending`] writes it later; the error is still returned
    /// so the caller can decide whether to go on.
    pub async fn record(
        &self,
        record: &RunRecord,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let written = self.store.save_run(record, durability).await;
        self.kept_unless_written(record, written)
    }

    /// [`Self::record`] for a record another process may have written
    /// first and moved on (a queued run a dispatcher applied from the
    /// queue's copy): written only if the store has none. Kept in memory
    /// like any other when the store is unavailable; its flush writes it
    /// only if still absent.
    pub async fn record_if_absent(
        &self,
        record: &RunRecord,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let written = self
            .store
            .upsert_run(record, durability, |_| Decision::Keep)
            .await
            .map(|_| ());
        self.kept_unless_written(record, written)
    }

    /// After a creation's write: the record no longer pending once written,
    /// kept in memory for [`Self::flush_pending`] when it was not.
    fn kept_unless_written(
        &self,
        record: &RunRecord,
        written: Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match written {
            Ok(()) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&record.request_uid);
                }
                Ok(())
            }
            Err(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(
                        record.request_uid.clone(),
                        Pending {
                            copy: record.clone(),
                            change: None,
                        },
                    );
                }
                tracing::warn!(request_uid = record.request_uid.as_str(), error = %e, "the store is unavailable; the record is kept in memory until it is back");
                Err(e)
            }
        }
    }

    /// Changes the record of a run this process applies: `change` applied
    /// to the caller's copy, and to the store's newest record
    /// ([`Store::update_run`]; the copy is written when the store has
    /// none). `record` becomes the record written. When the store is
    /// unavailable the change is kept in memory, after any kept before,
    /// and [`Self::flush_pending`] writes it later; the error is still
    /// returned.
    pub async fn update(
        &self,
        record: &mut RunRecord,
        durability: Durability,
        change: Change,
    ) -> Result<(), StoreError> {
        change(record);
        let uid = record.request_uid.clone();
        let kept = self.pending.lock().is_ok_and(|p| p.contains_key(&uid));
        // Absent, it is not being flushed either (a flush takes a record
        // out of `pending` once written): then no lock is needed.
        let _flushing = if kept {
            Some(self.flushing.lock().await)
        } else {
            None
        };
        let earlier = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&uid))
            .and_then(|p| p.change);
        let pending = Pending {
            copy: record.clone(),
            change: Some(chain(earlier, change)),
        };
        match pending.write(&self.store, durability).await {
            Ok(written) => {
                *record = written;
                Ok(())
            }
            Err(e) => {
                if let Ok(mut p) = self.pending.lock() {
                    p.insert(uid, pending);
                }
                tracing::warn!(request_uid = record.request_uid.as_str(), error = %e, "the store is unavailable; the record's change is kept in memory until it is back");
                Err(e)
            }
        }
    }

    /// Writes the records kept in memory; returns how many are still pending.
    pub async fn flush_pending(&self) -> usize {
        let _flushing = self.flushing.lock().await;
        let uids: Vec<RequestUid> = match self.pending.lock() {
            Ok(p) => p.keys().cloned().collect(),
            Err(_) => return 0,
        };
        for uid in uids {
            // Left in `pending` until written: meanwhile an update of its
            // run sees it there and waits for this flush.
            let Some((copy, change)) = self.pending.lock().ok().and_then(|p| {
                p.get(&uid)
                    .map(|kept| (kept.copy.clone(), kept.change.clone()))
            }) else {
                continue;
            };
            let pending = Pending { copy, change };
            if pending.write(&self.store, Durability::Now).await.is_err() {
                break;
            }
            tracing::info!(
                request_uid = uid.as_str(),
                "kept record written to the store"
            );
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&uid);
            }
        }
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// This process, as a holder of leases and slots.
    pub fn holder(&self) -> &str {
        &self.holder
    }
}
