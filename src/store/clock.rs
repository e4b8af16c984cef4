//! The store's clock: expiry is decided by it, never by a backend's own
//! clock, so both backends behave the same and tests move time without
//! waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
