//! The application's parts and the background work they run.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::run::dispatch::Dispatcher;
use crate::run::lifecycle::Lifecycle;
use crate::store::Store;

/// One sweep of the callback outbox (at start, then every lease): takes
/// over the callbacks whose lease ran out.
pub(crate) async fn sweep_outbox(lifecycle: Arc<Lifecycle>) {
    match lifecycle.sweep_outbox().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(callbacks = n, "callbacks taken over from the outbox"),
        Err(e) => {
            tracing::info!(error = %e, "cannot read the outbox; it is swept again every --callback-lease")
        }
    }
}

/// One sweep of the dispatch slots (at start, then every third of
/// `--dispatch-lease`): the heartbeat, the slots of dead processes taken
/// over, the queues pumped.
pub(crate) async fn sweep_dispatch(dispatcher: Arc<Dispatcher>) {
    match dispatcher.sweep().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            slots = n,
            "dispatch slots taken over from a stopped gitfaas"
        ),
        Err(e) => {
            tracing::info!(error = %e, "cannot sweep the dispatch slots; tried again every third of --dispatch-lease")
        }
    }
}

/// One round of the hourly purge of expired records.
pub(crate) async fn purge_expired(store: Store) {
    match store.purge_expired().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "expired records purged"),
        Err(e) => tracing::warn!(error = %e, "purging expired records failed"),
    }
}

/// Gives memory freed after a burst back to the OS. glibc keeps freed
/// chunks in per-thread arenas: after 1,000 concurrent publishes about 50 MB
/// stayed resident although nothing used it; `malloc_trim` releases it.
/// Called every 5 s while no publish is in flight; it takes well under a millisecond.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free heap pages to the kernel; it
        // is thread-safe and touches no memory the program owns.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Releases free memory when no publish is in flight.
pub(crate) async fn trim_when_idle(in_flight: Arc<Semaphore>, max: usize) {
    if in_flight.available_permits() == max {
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    }
}
