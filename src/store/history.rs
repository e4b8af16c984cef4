//! The history of runs: a run's summary, the keys that order it (newest
//! first, per topic, per parent), cursors, and the facade's queries.

use serde::{Deserialize, Serialize};

use super::{Backend, RunRecord, RunState, Store, StoreError, Trigger};

use crate::uid::RequestUid;

/// A run as the history lists it: what `GET /requests` shows of each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Its uid.
    pub request_uid: RequestUid,
    /// The topic.
    pub topic: String,
    /// The commit of its manifests.
    pub commit: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Its fraction (nanoseconds).
    #[serde(default)]
    pub created_ns: u32,
    /// Unix seconds after which it is gone.
    pub expires_at: u64,
    /// Where it stands.
    pub state: RunState,
    /// The run that published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<RequestUid>,
    /// What started it.
    #[serde(default, skip_serializing_if = "Trigger::is_http")]
    pub trigger: Trigger,
    /// The tick a schedule fired it for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
}

impl RunSummary {
    /// The summary of a stored request.
    pub fn of(r: &RunRecord) -> Self {
        RunSummary {
            request_uid: r.request_uid.clone(),
            topic: r.topic.clone(),
            commit: r.commit.clone(),
            created_at: r.created_at,
            created_ns: r.created_ns,
            expires_at: r.expires_at,
            state: r.state,
            parent: r.parent.clone(),
            trigger: r.trigger,
            scheduled_time: r.scheduled_time.clone(),
        }
    }

    /// Its key in the history: newest last in byte order, so a reverse
    /// scan lists newest first (equal times by uid).
    pub(super) fn history_key(&self) -> String {
        history_key(self.created_at, self.created_ns, self.request_uid.as_str())
    }
}

pub(super) fn history_key(created_at: u64, created_ns: u32, request_uid: &str) -> String {
    format!("{created_at:020}.{created_ns:09}|{request_uid}")
}

/// The separator of a topic and a history key in the per-topic index: below
/// every character a topic name may hold.
pub(super) const TOPIC_SEPARATOR: char = '\u{1f}';

pub(super) fn topic_key(topic: &str, history_key: &str) -> String {
    format!("{topic}{TOPIC_SEPARATOR}{history_key}")
}

/// Where a page of the history ended: the next page lists what is older.
/// Opaque to clients (`cursor=` in `GET /requests`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    created_at: u64,
    created_ns: u32,
    request_uid: String,
}

/// A cursor that is not one this server handed out.
#[derive(Debug, thiserror::Error)]
#[error("cursor is not one a page of GET /requests handed out: pass the `next` of the previous page as it was, or leave cursor out for the newest runs")]
pub struct BadCursor;

impl Cursor {
    /// The text a page hands out.
    pub fn encode(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(history_key(
            self.created_at,
            self.created_ns,
            &self.request_uid,
        ))
    }

    /// A cursor from the text a page handed out.
    pub fn decode(text: &str) -> Result<Cursor, BadCursor> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| BadCursor)?;
        let raw = String::from_utf8(raw).map_err(|_| BadCursor)?;
        Cursor::of_key(&raw).ok_or(BadCursor)
    }

    /// The cursor after the entry of history key `key`.
    pub(super) fn of_key(key: &str) -> Option<Cursor> {
        let (created, uid) = key.split_once('|')?;
        let (secs, nanos) = created.split_once('.')?;
        if secs.len() != 20 || nanos.len() != 9 || uid.is_empty() || uid.len() > 200 {
            return None;
        }
        Some(Cursor {
            created_at: secs.parse().ok()?,
            created_ns: nanos.parse().ok()?,
            request_uid: uid.to_string(),
        })
    }

    pub(super) fn key(&self) -> String {
        history_key(self.created_at, self.created_ns, self.request_uid.as_str())
    }
}

/// Which runs a page of the history lists.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only this topic's.
    pub topic: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs this trigger started.
    pub trigger: Option<Trigger>,
    /// Only runs created at or after this (Unix seconds).
    pub since: Option<u64>,
    /// At most this many.
    pub limit: usize,
    /// Older than where the previous page ended.
    pub cursor: Option<Cursor>,
}

/// A page of the history, newest first.
#[derive(Debug, Clone)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<RunSummary>,
    /// Where the next page starts; None when there is no more.
    pub next: Option<Cursor>,
}

/// A run's entries in the history, as a backend writes them.
pub(super) struct RunEntry {
    /// In the history of all runs.
    pub(super) key: String,
    /// In its topic's.
    pub(super) topic_key: String,
    /// Among its parent's children (`<parent>|<history key>`), if it has one.
    pub(super) parent_key: Option<String>,
    /// The [`RunSummary`], JSON.
    pub(super) summary: Vec<u8>,
}

/// Index entries a page looks at, at most, before it answers with what it
/// found (fewer than asked for) and a cursor to go on from: a filter that
/// matches nothing must not scan the whole history in one request.
pub(super) const SCAN_PER_PAGE: usize = 5000;

impl Store {
    /// A page of the history: the runs `query` asks for, newest first, that
    /// have not expired. A page may hold fewer than `limit` runs and still
    /// have a `next`: it stops after looking at [`SCAN_PER_PAGE`] entries.
    pub async fn runs(&self, query: &RunQuery) -> Result<RunPage, StoreError> {
        let now = self.clock.now();
        let limit = query.limit.max(1);
        let mut after = query.cursor.as_ref().map(Cursor::key);
        let mut runs = Vec::with_capacity(limit);
        let mut scanned = 0;
        loop {
            // A page's worth plus one: the extra tells whether more exist.
            let want = (limit - runs.len() + 1).clamp(16, 1000);
            let batch = self
                .history(query.topic.as_deref(), after.as_deref(), want)
                .await?;
            let exhausted = batch.len() < want;
            for (key, summary) in batch {
                scanned += 1;
                let Some(summary) = summary else {
                    after = Some(key);
                    continue;
                };
                if query.since.is_some_and(|since| summary.created_at < since) {
                    // Older than `since`, and so is everything after it.
                    return Ok(RunPage { runs, next: None });
                }
                let wanted = summary.expires_at > now
                    && query.state.is_none_or(|s| s == summary.state)
                    && query.trigger.is_none_or(|t| t == summary.trigger);
                if wanted {
                    if runs.len() == limit {
                        let last: &RunSummary = &runs[limit - 1];
                        return Ok(RunPage {
                            next: Cursor::of_key(&last.history_key()),
                            runs,
                        });
                    }
                    runs.push(summary);
                }
                after = Some(key);
                if scanned >= SCAN_PER_PAGE {
                    let next = after.as_deref().and_then(Cursor::of_key);
                    return Ok(RunPage { runs, next });
                }
            }
            if exhausted {
                return Ok(RunPage { runs, next: None });
            }
        }
    }

    /// The runs that named `parent` as theirs, oldest first, at most `n`,
    /// not expired.
    pub async fn children(
        &self,
        parent: &RequestUid,
        n: usize,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let now = self.clock.now();
        let raw = match &self.backend {
            Backend::Embedded(db) => db.children(parent.as_str(), n).await?,
            Backend::Redis(redis) => redis.children(parent.as_str(), n).await?,
        };
        Ok(raw
            .iter()
            .filter_map(|b| serde_json::from_slice::<RunSummary>(b).ok())
            .filter(|r| r.expires_at > now)
            .collect())
    }

    /// Up to `n` history entries older than `after` (a history key), newest
    /// first, of `topic` or of all: each key, and its summary unless it is
    /// gone.
    async fn history(
        &self,
        topic: Option<&str>,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, Option<RunSummary>)>, StoreError> {
        let raw = match &self.backend {
            Backend::Embedded(db) => db.history(topic, after, n).await?,
            Backend::Redis(redis) => redis.history(topic, after, n).await?,
        };
        Ok(raw
            .into_iter()
            .map(|(k, b)| {
                let summary = b.and_then(|b| serde_json::from_slice::<RunSummary>(&b).ok());
                (k, summary)
            })
            .collect())
    }
}
