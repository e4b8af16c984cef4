//! An Idempotency-Key claimed by a publish, held as a guard.
//!
//! A claim ends one of two ways: completed (the key answers with this run
//! for the expiration time) once the run is recorded, or released (the key
//! is free again at once) when the publish applied nothing. A guard that is
//! dropped without either — an early return, a `?`, a panic, a caller gone
//! — is released in a drained background task, so a key is never left
//! claimed until its lease ends because one way out forgot it.

use crate::store::Store;
use crate::tasks::{TaskName, Tasks};
use crate::uid::RequestUid;

/// A claimed Idempotency-Key (`<caller>/<key>`) of the publish
/// `request_uid`.
#[must_use = "a claim is completed or released; dropped, it is released"]
pub struct IdempotencyClaim {
    settle: Option<Settle>,
}

struct Settle {
    store: Store,
    tasks: Tasks,
    key: String,
    request_uid: RequestUid,
}

impl IdempotencyClaim {
    /// The claim of `key` for `request_uid`, made in `store`.
    pub fn new(store: Store, tasks: Tasks, key: String, request_uid: RequestUid) -> Self {
        IdempotencyClaim {
            settle: Some(Settle {
                store,
                tasks,
                key,
                request_uid,
            }),
        }
    }

    /// The key now answers with this run for the expiration time, past its
    /// lease.
    pub async fn complete(mut self) {
        if let Some(s) = self.settle.take() {
            if let Err(e) = s.store.complete_idempotency(&s.key, &s.request_uid).await {
                tracing::warn!(error = %e, "completing the idempotency claim failed; it lapses with its lease");
            }
        }
    }

    /// The publish applied nothing: a retry with the key runs again at once.
    pub async fn release(mut self) {
        if let Some(s) = self.settle.take() {
            s.release().await;
        }
    }
}

impl Settle {
    async fn release(self) {
        if let Err(e) = self
            .store
            .release_idempotency(&self.key, &self.request_uid)
            .await
        {
            tracing::warn!(error = %e, "releasing the idempotency key failed; it lapses with its lease");
        }
    }
}

impl Drop for IdempotencyClaim {
    fn drop(&mut self) {
        let Some(s) = self.settle.take() else {
            return;
        };
        // Drained: shutdown waits for it (one store call).
        let tasks = s.tasks.clone();
        let name = TaskName::new("release idempotency claim").about(s.request_uid.clone());
        tracing::debug!(
            request_uid = s.request_uid.as_str(),
            "an idempotency claim left unsettled is released"
        );
        tasks.spawn_drained(name, s.release());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Claim as Claimed, Clock, Fingerprint};
    use std::time::Duration;

    /// The same key claimed by another publish: Fresh when the first claim
    /// was released, Existing while it holds.
    async fn claimed_again(store: &Store) -> bool {
        let lease = Duration::from_secs(600);
        matches!(
            store
                .claim_idempotency(
                    "c/k",
                    "t",
                    &Fingerprint::default(),
                    &crate::uid::rid("r-2"),
                    lease
                )
                .await
                .expect("claim"),
            Claimed::Existing { .. }
        )
    }

    async fn with_claim() -> (tempfile::TempDir, Store, Tasks, IdempotencyClaim) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open_embedded(dir.path(), Clock::system(), Duration::from_secs(3600))
            .await
            .expect("store");
        let lease = Duration::from_secs(600);
        let fresh = store
            .claim_idempotency(
                "c/k",
                "t",
                &Fingerprint::default(),
                &crate::uid::rid("r-1"),
                lease,
            )
            .await
            .expect("claim");
        assert!(matches!(fresh, Claimed::Fresh));
        let tasks = Tasks::new();
        let claim = IdempotencyClaim::new(store.clone(), tasks.clone(), "c/k".into(), "r-1".into());
        (dir, store, tasks, claim)
    }

    #[tokio::test]
    async fn completed_the_key_holds() {
        let (_dir, store, _tasks, claim) = with_claim().await;
        claim.complete().await;
        assert!(claimed_again(&store).await);
    }

    #[tokio::test]
    async fn released_the_key_is_free_at_once() {
        let (_dir, store, _tasks, claim) = with_claim().await;
        claim.release().await;
        assert!(!claimed_again(&store).await);
    }

    /// An early return or a `?` that forgets the claim: released all the same.
    #[tokio::test]
    async fn dropped_the_key_is_released_in_the_background() {
        let (_dir, store, tasks, claim) = with_claim().await;
        let early = |claim: IdempotencyClaim| -> Result<(), &'static str> {
            let _held = claim;
            Err("a ? on the way")
        };
        assert!(early(claim).is_err());
        tasks.shutdown(Duration::from_secs(5)).await;
        assert!(!claimed_again(&store).await);
    }

    /// A panic while the claim is held: the unwinding drops it.
    #[tokio::test]
    async fn a_panic_releases_the_key() {
        let (_dir, store, tasks, claim) = with_claim().await;
        let panicked = tokio::spawn(async move {
            let _held = claim;
            panic!("a bug mid-publish");
        })
        .await;
        assert!(panicked.is_err());
        tasks.shutdown(Duration::from_secs(5)).await;
        assert!(!claimed_again(&store).await);
    }
}
