//! The dispatch records of topics with `maxConcurrent`: the slots (one per
//! unfinished run, held by the gitfaas process that applies or follows
//! it), the queue of runs waiting for one (first in, first out, each with
//! what it applies), and the heartbeats that tell a live holder from a dead
//! one. Every decision that counts slots is one atomic step of the backend
//! (a redb write transaction; one Lua script on Redis), so any number of
//! replicas on one Redis keep a topic's limit and its queue order exactly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{to_json, Backend, Store, StoreError};

use crate::uid::RequestUid;

/// A run holding one of its topic's slots.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    /// The run.
    pub request_uid: RequestUid,
    /// Its topic.
    pub topic: String,
    /// The process applying or following it.
    pub holder: String,
    /// Whether its objects were applied (else its holder is applying them).
    pub applied: bool,
    pub(super) expires_at: u64,
}

/// A run waiting for a slot, with what it applies once it has one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    /// The run.
    pub request_uid: RequestUid,
    /// Its topic.
    pub topic: String,
    /// Its place in the order of the queue (embedded; on Redis the sorted
    /// set's score keeps it and this is 0).
    pub seq: u64,
    /// What the dispatcher applies (opaque here).
    pub run: Value,
    pub(super) expires_at: u64,
}

/// What [`Store::admit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// A slot is the run's: apply it now.
    Slot,
    /// The run waits, at this place (1 is next).
    Queued {
        /// Its place in the queue.
        position: u64,
    },
    /// No slot, and no room in the queue (or no queue): `maxQueued` runs
    /// wait.
    Full {
        /// Slots held (or the active Jobs counted, when more).
        held: u64,
        /// Runs waiting.
        queued: u64,
    },
    /// No slot, and the run does not fit in the bytes the queue may hold
    /// (`maxQueuedBytes`).
    FullOfBytes {
        /// Slots held (or the active Jobs counted, when more).
        held: u64,
        /// Runs waiting.
        queued: u64,
        /// What they take in the store.
        queued_bytes: u64,
        /// What this run would take.
        run_bytes: u64,
    },
}

/// A publish asking its topic for a slot.
pub struct SlotAsk<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The run.
    pub request_uid: &'a RequestUid,
    /// `maxConcurrent`.
    pub max: u32,
    /// Active Jobs of the topic counted in the cluster: the slots count as
    /// at least these (Jobs applied by a process whose store is gone).
    pub floor: u32,
    /// `maxQueued`, 0 for a topic that does not queue.
    pub max_queued: u32,
    /// `maxQueuedBytes`: the most the waiting runs' records (as stored)
    /// may take together, this one's included.
    pub max_queued_bytes: u64,
    /// Who asks.
    pub holder: &'a str,
    /// When the run's record expires.
    pub expires_at: u64,
    /// What to keep in the queue if the run waits.
    pub run: &'a Value,
}

impl Store {
    /// Gives `ask.request_uid` a slot of its topic when fewer than `max`
    /// are held and nobody waits; else queues it when the topic queues,
    /// fewer than `max_queued` wait and its record fits in what
    /// `max_queued_bytes` leaves; else answers Full (or FullOfBytes). A run
    /// that holds a slot already is given it again.
    pub async fn admit(&self, ask: &SlotAsk<'_>) -> Result<SlotDecision, StoreError> {
        let slot = to_json(&Slot {
            request_uid: ask.request_uid.clone(),
            topic: ask.topic.to_string(),
            holder: ask.holder.to_string(),
            applied: false,
            expires_at: ask.expires_at,
        });
        match &self.backend {
            Backend::Embedded(db) => db.admit(ask, slot).await,
            Backend::Redis(redis) => redis.admit(ask, slot).await,
        }
    }

    /// Takes the first run waiting for `topic` off the queue and gives it
    /// a slot held by `holder`, when fewer than `max` are held.
    pub async fn dispatch_next(
        &self,
        topic: &str,
        max: u32,
        holder: &str,
    ) -> Result<Option<QueueEntry>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.dispatch_next(topic, max, holder).await,
            Backend::Redis(redis) => redis.dispatch_next(topic, max, holder).await,
        }
    }

    /// What a queued (or dispatched, not yet applied) run applies.
    pub async fn queued(&self, request_uid: &RequestUid) -> Result<Option<QueueEntry>, StoreError> {
        let raw = match &self.backend {
            Backend::Embedded(db) => db.get(super::Kind::Queue, request_uid.as_str()).await?,
            Backend::Redis(redis) => redis.get(super::Kind::Queue, request_uid.as_str()).await?,
        };
        Ok(raw.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Takes a waiting run off its queue; false when it is not waiting
    /// (dispatched meanwhile, or never queued).
    pub async fn dequeue(&self, topic: &str, request_uid: &RequestUid) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.dequeue(topic, request_uid.as_str()).await,
            Backend::Redis(redis) => redis.dequeue(topic, request_uid.as_str()).await,
        }
    }

    /// A waiting run's place in its queue (1 is next); None when it is not
    /// waiting.
    pub async fn queue_position(
        &self,
        topic: &str,
        request_uid: &RequestUid,
    ) -> Result<Option<u64>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.queue_position(topic, request_uid.as_str()).await,
            Backend::Redis(redis) => redis.queue_position(topic, request_uid.as_str()).await,
        }
    }

    /// How many runs wait for `topic`.
    pub async fn queue_len(&self, topic: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.queue_len(topic).await,
            Backend::Redis(redis) => redis.queue_len(topic).await,
        }
    }

    /// The slots of `topic`.
    pub async fn slots(&self, topic: &str) -> Result<Vec<Slot>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.slots(topic).await,
            Backend::Redis(redis) => redis.slots(topic).await,
        }
    }

    /// Marks a slot's run applied and lets its queued copy go.
    pub async fn slot_applied(
        &self,
        topic: &str,
        request_uid: &RequestUid,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.slot_applied(topic, request_uid.as_str()).await,
            Backend::Redis(redis) => redis.slot_applied(topic, request_uid.as_str()).await,
        }
    }

    /// Frees a run's slot (and its queued copy); false when it held none.
    pub async fn slot_release(
        &self,
        topic: &str,
        request_uid: &RequestUid,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.slot_release(topic, request_uid.as_str()).await,
            Backend::Redis(redis) => redis.slot_release(topic, request_uid.as_str()).await,
        }
    }

    /// Hands a slot from `from` (a holder found dead) to `to`; false when
    /// it is gone or someone else took it first.
    pub async fn slot_adopt(
        &self,
        topic: &str,
        request_uid: &RequestUid,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.slot_adopt(topic, request_uid.as_str(), from, to).await,
            Backend::Redis(redis) => {
                redis
                    .slot_adopt(topic, request_uid.as_str(), from, to)
                    .await
            }
        }
    }

    /// The topics that hold slots or queue runs (or did lately).
    pub async fn limited_topics(&self) -> Result<Vec<String>, StoreError> {
        match &self.backend {
            Backend::Embedded(db) => db.limited_topics().await,
            Backend::Redis(redis) => redis.limited_topics().await,
        }
    }

    /// Says `holder` is alive for `lease` more.
    pub async fn heartbeat(
        &self,
        holder: &str,
        lease: std::time::Duration,
    ) -> Result<(), StoreError> {
        let until = self.clock.now().saturating_add(lease.as_secs().max(1));
        match &self.backend {
            Backend::Embedded(db) => {
                db.heartbeat(holder, until);
                Ok(())
            }
            Backend::Redis(redis) => redis.heartbeat(holder, lease).await,
        }
    }

    /// Says `holder` stopped: what it holds may be taken over at once.
    pub async fn resign(&self, holder: &str) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Embedded(db) => {
                db.heartbeat(holder, 0);
                Ok(())
            }
            Backend::Redis(redis) => redis.resign(holder).await,
        }
    }

    /// Whether `holder`'s heartbeat is current.
    pub async fn alive(&self, holder: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        match &self.backend {
            Backend::Embedded(db) => Ok(db.alive(holder, now)),
            Backend::Redis(redis) => redis.alive(holder).await,
        }
    }
}
