//! The runs of one application whose failed apply is still being rolled
//! back in the background.
//!
//! An attempt to apply such a run again must wait: its objects have the
//! names and the request label of the ones being deleted, and a "maybe
//! created" rollback would take the new attempt's objects for its own. The
//! registry is owned by the application (the dispatcher holds it, the
//! publisher borrows it), so two applications in one process never see each
//! other's rollbacks, and a waiter is woken when a rollback ends instead of
//! polling for it.
//!
//! Bounded by the rollback tasks themselves: an entry lives exactly as long
//! as its task, and each task gives up after about an hour.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::uid::RequestUid;

/// The rollbacks in progress, by request uid.
#[derive(Debug, Default)]
pub struct Rollbacks {
    // std Mutex: inserts, removes and lookups, never held across .await.
    runs: Mutex<HashSet<RequestUid>>,
    ended: Notify,
}

/// A run's entry, removed (and its waiters woken) when dropped: when its
/// rollback task ends, done, given up or stopped.
#[derive(Debug)]
pub struct Pending {
    rollbacks: Arc<Rollbacks>,
    request_uid: RequestUid,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.rollbacks
            .runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.request_uid);
        self.rollbacks.ended.notify_waiters();
    }
}

impl Rollbacks {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Rollbacks::default())
    }

    /// Records that `request_uid` is being rolled back, until the returned
    /// entry is dropped.
    pub fn start(self: &Arc<Self>, request_uid: &RequestUid) -> Pending {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(request_uid.clone());
        Pending {
            rollbacks: Arc::clone(self),
            request_uid: request_uid.clone(),
        }
    }

    /// Whether a failed apply of `request_uid` is still being rolled back.
    pub fn contains(&self, request_uid: &RequestUid) -> bool {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(request_uid)
    }

    /// Returns once no rollback of `request_uid` is in progress, or when
    /// `stop` is cancelled.
    pub async fn ended(&self, request_uid: &RequestUid, stop: &CancellationToken) {
        loop {
            // Registered before the look, so an end between the two is not
            // missed.
            let notified = self.ended.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.contains(request_uid) {
                return;
            }
            tokio::select! {
                () = notified => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiter_is_woken_when_its_runs_rollback_ends_and_not_before() {
        let rollbacks = Rollbacks::new();
        let stop = CancellationToken::new();
        let one = rollbacks.start(&crate::uid::rid("r-1"));
        let other = rollbacks.start(&crate::uid::rid("r-2"));
        let waiter = tokio::spawn({
            let (rollbacks, stop) = (Arc::clone(&rollbacks), stop.clone());
            async move { rollbacks.ended(&crate::uid::rid("r-1"), &stop).await }
        });
        drop(other);
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "another run's end does not end the wait"
        );
        drop(one);
        waiter.await.expect("woken");
        assert!(!rollbacks.contains(&crate::uid::rid("r-1")));
        // Nothing in progress: at once.
        rollbacks.ended(&crate::uid::rid("r-1"), &stop).await;
    }

    #[tokio::test]
    async fn two_registries_do_not_share_their_runs() {
        let (a, b) = (Rollbacks::new(), Rollbacks::new());
        let _pending = a.start(&crate::uid::rid("r-1"));
        assert!(a.contains(&crate::uid::rid("r-1")));
        assert!(!b.contains(&crate::uid::rid("r-1")));
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait() {
        let rollbacks = Rollbacks::new();
        let stop = CancellationToken::new();
        let _pending = rollbacks.start(&crate::uid::rid("r-1"));
        stop.cancel();
        rollbacks.ended(&crate::uid::rid("r-1"), &stop).await;
    }
}
