//! The callback outbox: a callback from its publish until it is delivered
//! or given up, held under a lease that a sweep takes over.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{to_json, Backend, Kind, RunRecord, Store, StoreError};

use crate::uid::RequestUid;

/// A callback in the outbox: not delivered (nor given up) yet, and the
/// gitfaas process delivering it, which holds it until `lease_until` and
/// renews that while it works. Once the lease has run out (its process
/// died, or stopped), any process may take it over.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    /// The request whose callback it is.
    pub request_uid: RequestUid,
    /// The process delivering it.
    pub holder: String,
    /// Until when (Unix seconds) it holds it.
    pub lease_until: u64,
    pub(super) expires_at: u64,
}

impl Store {
    /// Takes the callback of `request` for `holder` until `lease` from now:
    /// puts it in the outbox when it is not there, renews it when `holder`
    /// holds it, takes it over when its lease ran out; false while another
    /// holder's lease runs. Atomic, also between replicas on Redis.
    pub async fn outbox_claim(
        &self,
        request: &RunRecord,
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
                db.outbox_claim(request.request_uid.as_str(), value, holder, now)
                    .await
            }
            Backend::Redis(redis) => {
                redis
                    .outbox_claim(
                        request.request_uid.as_str(),
                        value,
                        holder,
                        now,
                        request.expires_at,
                    )
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
    pub async fn outbox_done(&self, request_uid: &RequestUid) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.delete(Kind::Outbox, request_uid.as_str()).await,
            Backend::Redis(redis) => redis.outbox_done(request_uid.as_str()).await,
        }
    }
}
