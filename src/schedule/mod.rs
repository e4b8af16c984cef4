//! Schedules: topics that run by themselves, at the ticks of a cron
//! expression in a time zone (config.json's `schedule`), exactly once per
//! tick whatever the number of replicas.
//!
//! - [`cron`]: the expression and its zone, parsed when a commit is read
//!   (a leaf, which the catalog uses), and the ticks around an instant,
//!   daylight saving time included.
//! - [`lease`]: which replica fires: the holder of a Kubernetes Lease, who
//!   stops firing before another may take it.
//! - [`ticker`]: the firing: which ticks are due (missed ticks as CronJob
//!   treats them), and each published as an ordinary run under a per-tick
//!   idempotency key.
//!
//! The store keeps each schedule's mark (`store::schedules`); the
//! services own the two background tasks ([`crate::services`]).

pub mod cron;
pub mod lease;
pub mod ticker;

use serde::Serialize;

/// The scheduler as `GET /status` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulerStatus {
    /// Whether this replica holds the Lease and fires the schedules now.
    pub leader: bool,
    /// The Lease, `namespace/name`.
    pub lease: String,
    /// This replica's `holderIdentity`.
    pub identity: String,
}
