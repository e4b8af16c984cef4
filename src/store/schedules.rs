//! The schedules' marks: per topic, the tick up to which its schedule is
//! done (fired, or skipped as missed, or before the schedule existed), so
//! that the replica leading after another, or after all were down, knows
//! which ticks are still to fire. One small record per scheduled topic,
//! rewritten at each of its ticks.

use serde::{Deserialize, Serialize};

use super::{to_json, Kind, Store, StoreError};

/// How long a mark outlives its last write: longer than a yearly
/// schedule's period, so a mark is there at its next tick whatever the
/// expiration time of runs.
pub const MARK_TTL_SECS: u64 = 400 * 24 * 3600;

/// Where a topic's schedule stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleMark {
    /// The schedule it is about (its expression and time zone): a mark of
    /// another schedule of the topic does not count for this one.
    pub schedule: String,
    /// Every tick at or before this (Unix seconds) is done.
    pub done_through: i64,
    /// When the mark expires (Unix seconds).
    pub expires_at: u64,
}

impl Store {
    /// The mark of `topic`'s schedule, if one was kept and has not expired.
    pub async fn schedule_mark(&self, topic: &str) -> Result<Option<ScheduleMark>, StoreError> {
        let now = self.clock.now();
        Ok(self
            .get(Kind::ScheduleMark, topic)
            .await?
            .and_then(|b| serde_json::from_slice::<ScheduleMark>(&b).ok())
            .filter(|m| m.expires_at > now))
    }

    /// Keeps that `topic`'s schedule (`schedule`, its identity) is done
    /// through `done_through`; on disk before it returns.
    pub async fn set_schedule_mark(
        &self,
        topic: &str,
        schedule: &str,
        done_through: i64,
    ) -> Result<(), StoreError> {
        let expires_at = self.clock.now().saturating_add(MARK_TTL_SECS);
        let mark = ScheduleMark {
            schedule: schedule.to_string(),
            done_through,
            expires_at,
        };
        self.put(Kind::ScheduleMark, topic, to_json(&mark), expires_at)
            .await
    }
}
