//! Idempotency keys: a claim with a lease, completed for the expiration
//! time or released, and the fingerprint that binds a key to its request.

use serde::{Deserialize, Serialize};

use super::{to_json, Backend, Kind, Store, StoreError};

use crate::uid::RequestUid;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct IdempotencyRecord {
    pub(super) request_uid: RequestUid,
    pub(super) topic: String,
    pub(super) expires_at: u64,
    /// What the request was: a retry must be the same request.
    #[serde(default)]
    pub(super) fingerprint: Fingerprint,
    /// While the publish runs: the claim is released if it is not completed
    /// by then (its publish died). None once completed.
    #[serde(default)]
    pub(super) lease_until: Option<u64>,
}

/// What identifies a publish for its Idempotency-Key: digests of its
/// parameters and of its body (the topic is kept beside them), and of a
/// CloudEvent's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    /// SHA-256 of the template parameters, sorted, as `name=value` lines.
    pub params: String,
    /// SHA-256 of the body (a CloudEvent's data).
    pub body: String,
    /// A CloudEvent's `Attributes::content_digest`; empty for a publish
    /// that is none (and left out of its record, which reads as before).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
}

impl Fingerprint {
    /// The fingerprint of a publish's parameters and body.
    pub fn of(params: &[(String, String)], body: &[u8]) -> Self {
        use sha2::Digest;
        let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        let mut h = sha2::Sha256::new();
        for (k, v) in sorted {
            // Lengths first: `a=b` + `c` can never hash as `a` + `b=c`.
            h.update((k.len() as u64).to_be_bytes());
            h.update(k.as_bytes());
            h.update((v.len() as u64).to_be_bytes());
            h.update(v.as_bytes());
        }
        Fingerprint {
            params: hex(&h.finalize()),
            body: hex(&sha2::Sha256::digest(body)),
            event: String::new(),
        }
    }

    /// The fingerprint of a CloudEvent's publish: its parameters and data
    /// as [`Self::of`], and `event`, the digest of its attributes.
    pub fn of_event(params: &[(String, String)], data: &[u8], event: String) -> Self {
        Fingerprint {
            event,
            ..Self::of(params, data)
        }
    }
}

/// The outcome of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is now ours.
    Fresh,
    /// An earlier publish holds the key.
    Existing {
        /// Its request uid.
        request_uid: RequestUid,
        /// Its topic.
        topic: String,
        /// Its parameters and body.
        fingerprint: Fingerprint,
    },
}

impl Store {
    /// Claims `key` (the caller's `Idempotency-Key` as the publish scopes
    /// it) for `request_uid` unless a live claim exists: one that
    /// has not expired and is either completed or within its `lease` (a
    /// claim whose publish died — a crash, a dropped connection — is free
    /// again once its lease has run out).
    pub async fn claim_idempotency(
        &self,
        key: &str,
        topic: &str,
        fingerprint: &Fingerprint,
        request_uid: &RequestUid,
        lease: std::time::Duration,
    ) -> Result<Claim, StoreError> {
        let now = self.clock.now();
        let expires_at = self.expiry(now);
        let record = to_json(&IdempotencyRecord {
            request_uid: request_uid.clone(),
            topic: topic.to_string(),
            expires_at,
            fingerprint: fingerprint.clone(),
            lease_until: Some(now.saturating_add(lease.as_secs().max(1))),
        });
        let existing: Option<IdempotencyRecord> = match &self.backend {
            Backend::Embedded(db) => db.claim_idempotency(key, record, now).await?,
            Backend::Redis(redis) => {
                redis
                    .claim_idempotency(key, record, now, expires_at)
                    .await?
            }
        };
        Ok(match existing {
            None => Claim::Fresh,
            Some(r) => Claim::Existing {
                request_uid: r.request_uid,
                topic: r.topic,
                fingerprint: r.fingerprint,
            },
        })
    }

    /// Marks the claim of `request_uid` completed: it then holds for the
    /// expiration time, whatever its lease said.
    pub async fn complete_idempotency(
        &self,
        key: &str,
        request_uid: &RequestUid,
    ) -> Result<(), StoreError> {
        let Some(mut record) = self
            .get(Kind::Idempotency, key)
            .await?
            .and_then(|b| serde_json::from_slice::<IdempotencyRecord>(&b).ok())
            .filter(|r| r.request_uid == *request_uid)
        else {
            return Ok(());
        };
        record.lease_until = None;
        let expires_at = record.expires_at;
        self.put(Kind::Idempotency, key, to_json(&record), expires_at)
            .await
    }

    /// Releases a claim made by `request_uid` (its publish failed before applying).
    pub async fn release_idempotency(
        &self,
        key: &str,
        request_uid: &RequestUid,
    ) -> Result<(), StoreError> {
        let owned = self
            .get(Kind::Idempotency, key)
            .await?
            .and_then(|b| serde_json::from_slice::<IdempotencyRecord>(&b).ok())
            .is_some_and(|r| r.request_uid == *request_uid);
        if owned {
            self.delete(Kind::Idempotency, key).await?;
        }
        Ok(())
    }
}
