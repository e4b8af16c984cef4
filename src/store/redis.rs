//! The Redis backend: its connection, the commands of each operation the
//! facade asks for (an idempotency claim is one Lua script), its keys
//! (`gitfaas:<kind>:<key>`, and the sorted set of requests by expiry), its
//! expiries (ours plus a grace, within what Redis accepts) and its errors.

use std::time::Duration;

use super::{IdempotencyRecord, Kind, RunEntry, RunRecord, StoreError};

fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable {
        backend: "redis",
        message: e.to_string(),
    }
}

/// The Redis sorted set of request uids scored by their expiry (Unix seconds).
const REDIS_REQUESTS_BY_EXPIRY: &str = "gitfaas:requests-by-expiry";

/// Redis keeps keys this much longer than our expiry, so our clock (not
/// Redis') decides when a record is gone; then Redis cleans up.
const REDIS_GRACE: i64 = 3600;

/// The latest `EXPIREAT`/`EXAT` Redis takes: it keeps expiries in
/// milliseconds and refuses seconds whose milliseconds overflow an i64.
const REDIS_MAX_EXPIRE_AT: i64 = i64::MAX / 1000;

/// Our expiry (Unix seconds) plus [`REDIS_GRACE`], as Redis' `EXAT`: `as
/// i64` would turn an expiry past `i64::MAX` negative (a key gone at once).
fn redis_expire_at(expires_at: u64) -> i64 {
    i64::try_from(expires_at)
        .unwrap_or(i64::MAX)
        .saturating_add(REDIS_GRACE)
        .min(REDIS_MAX_EXPIRE_AT)
}

/// The history: a sorted set of history keys (`<created>|<uid>`), all
/// scored 0 so that they sort by the key itself and a page is one
/// `ZREVRANGEBYLEX`; one set of all runs and one per topic.
const REDIS_HISTORY: &str = "gitfaas:runs";

fn redis_topic_history(topic: &str) -> String {
    format!("gitfaas:runs-of-topic:{topic}")
}

/// The outbox: a sorted set of the request uids whose callback is in it,
/// scored by their expiry.
const REDIS_OUTBOX: &str = "gitfaas:outbox-by-expiry";

fn redis_children(parent: &str) -> String {
    format!("gitfaas:children-of:{parent}")
}

fn redis_key(kind: Kind, key: &str) -> String {
    format!("gitfaas:{}:{key}", kind.prefix())
}

/// The Redis backend: a connection manager, shared by clones.
#[derive(Clone)]
pub(super) struct Redis {
    conn: redis::aio::ConnectionManager,
}

/// What the facade asks of Redis: commands on keys that expire.
impl Redis {
    /// Connects to Redis at `url`, reconnecting by itself afterwards.
    pub(super) async fn connect(url: &str) -> Result<Redis, StoreError> {
        let client = redis::Client::open(url).map_err(redis_err)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let manager = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(redis_err)?;
        Ok(Redis { conn: manager })
    }

    /// Writes a request's record, its place in the set by expiry and its
    /// function index, its summary and its places in the histories, in one
    /// Lua script: if the record's stored revision is `expected`, when
    /// given (a record not there, or written before revisions, is at 0);
    /// whether it was written.
    ///
    /// A script rather than WATCH/MULTI/EXEC: WATCH belongs to a
    /// connection, and this one is multiplexed (shared by every caller), so
    /// a WATCH would need a dedicated connection per update; the script is
    /// atomic in Redis, one round trip, like the claims above.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn save_run(
        &self,
        request: &RunRecord,
        record: Vec<u8>,
        index: Vec<u8>,
        uids: Vec<String>,
        run: RunEntry,
        expired_before: &str,
        expected: Option<u64>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        // The revision leads the record (`{"revision":N,…`): read without
        // decoding it. The summary beside the record, and the run's place
        // in both histories; entries of runs expired by now go (a key
        // expires by itself, a member of a set does not). The sorted set by
        // expiry is what /metrics counts, without scanning the keyspace.
        let script = redis::Script::new(
            r#"if ARGV[1] ~= '' then
                 local cur = redis.call('GET', KEYS[1])
                 local rev = 0
                 if cur then rev = tonumber(string.match(cur, '^{"revision":(%d+)') or '0') end
                 if rev ~= tonumber(ARGV[1]) then return 0 end
               end
               redis.call('SET', KEYS[2], ARGV[3], 'EXAT', ARGV[4])
               redis.call('ZADD', KEYS[3], 0, ARGV[5])
               redis.call('ZADD', KEYS[4], 0, ARGV[5])
               redis.call('ZREMRANGEBYLEX', KEYS[3], '-', ARGV[6])
               redis.call('ZREMRANGEBYLEX', KEYS[4], '-', ARGV[6])
               if ARGV[10] == '1' then
                 redis.call('ZADD', KEYS[6], 0, ARGV[5])
                 redis.call('EXPIREAT', KEYS[6], ARGV[4])
               end
               redis.call('SET', KEYS[1], ARGV[2], 'EXAT', ARGV[4])
               redis.call('ZADD', KEYS[5], ARGV[8], ARGV[7])
               for i = 7, #KEYS do
                 redis.call('SET', KEYS[i], ARGV[9], 'EXAT', ARGV[4])
               end
               return 1"#,
        );
        let at = redis_expire_at(request.expires_at);
        let children = match (&request.parent, &run.parent_key) {
            (Some(parent), Some(_)) => Some(redis_children(parent.as_str())),
            _ => None,
        };
        let mut invocation = script.prepare_invoke();
        invocation
            .key(redis_key(Kind::Request, request.request_uid.as_str()))
            .key(redis_key(Kind::Run, request.request_uid.as_str()))
            .key(REDIS_HISTORY)
            .key(redis_topic_history(&request.topic))
            .key(REDIS_REQUESTS_BY_EXPIRY)
            // Unused without a parent; a key all the same, so the
            // function keys always start at 7.
            .key(children.clone().unwrap_or_else(|| redis_children("")));
        for uid in &uids {
            invocation.key(redis_key(Kind::Function, uid));
        }
        let written: i64 = invocation
            .arg(expected.map(|e| e.to_string()).unwrap_or_default())
            .arg(record)
            .arg(run.summary)
            .arg(at)
            .arg(&run.key)
            .arg(format!("({expired_before}"))
            .arg(request.request_uid.as_str())
            .arg(request.expires_at)
            .arg(index)
            .arg(if children.is_some() { "1" } else { "0" })
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(written == 1)
    }

    /// Up to `n` summaries of the history (of `topic`, else of all runs)
    /// older than the history key `after`, newest first; one round trip for
    /// the keys, one for the summaries.
    pub(super) async fn history(
        &self,
        topic: Option<&str>,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        let set = topic.map_or_else(|| REDIS_HISTORY.to_string(), redis_topic_history);
        let max = after.map_or_else(|| "+".to_string(), |a| format!("({a}"));
        // A summary gone (its key expired) leaves an entry the next save's
        // trim removes: None here.
        self.runs_in(redis::cmd("ZREVRANGEBYLEX").arg(&set).arg(max).arg("-"), n)
            .await
    }

    /// Up to `n` summaries of the runs whose parent is `parent`, oldest
    /// first.
    pub(super) async fn children(
        &self,
        parent: &str,
        n: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let set = redis_children(parent);
        let runs = self
            .runs_in(redis::cmd("ZRANGEBYLEX").arg(&set).arg("-").arg("+"), n)
            .await?;
        Ok(runs.into_iter().filter_map(|(_, v)| v).collect())
    }

    /// The first `n` history keys a range command of a sorted set names,
    /// each with its run's summary (None when gone): two round trips.
    async fn runs_in(
        &self,
        range: &mut redis::Cmd,
        n: usize,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = range
            .arg("LIMIT")
            .arg(0)
            .arg(n)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One summary key per history key, in order (a malformed member
        // names a key that does not exist).
        let summaries: Vec<String> = keys
            .iter()
            .map(|k| redis_key(Kind::Run, k.split_once('|').map_or("", |(_, uid)| uid)))
            .collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&summaries)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(keys.into_iter().zip(values).collect())
    }

    /// Writes `record` for `key` unless a live claim holds it (one not
    /// expired, and completed or within its lease, at `now`), in one Lua
    /// script; that claim.
    pub(super) async fn claim_idempotency(
        &self,
        key: &str,
        record: Vec<u8>,
        now: u64,
        expires_at: u64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let k = redis_key(Kind::Idempotency, key);
        // Read, then set only if absent or expired by our clock: a
        // WATCH-free compare-and-set done in one Lua script.
        let script = redis::Script::new(
            r"local cur = redis.call('GET', KEYS[1])
                      if cur then
                        local ok, rec = pcall(cjson.decode, cur)
                        local lease = rec['leaseUntil']
                        local held = lease == nil or lease == cjson.null or tonumber(lease) > tonumber(ARGV[2])
                        if ok and tonumber(rec['expiresAt']) > tonumber(ARGV[2]) and held then return cur end
                      end
                      redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[3])
                      return false",
        );
        let cur: Option<Vec<u8>> = script
            .key(&k)
            .arg(record)
            .arg(now)
            .arg(redis_expire_at(expires_at))
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(cur.and_then(|b| serde_json::from_slice(b.as_slice()).ok()))
    }

    /// The outbox claim ([`super::Store::outbox_claim`]) in one Lua
    /// script: the entry, and its place in the outbox's sorted set (by
    /// expiry).
    pub(super) async fn outbox_claim(
        &self,
        key: &str,
        value: Vec<u8>,
        holder: &str,
        now: u64,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            r"local cur = redis.call('GET', KEYS[1])
              if cur then
                local ok, e = pcall(cjson.decode, cur)
                if ok and e['holder'] ~= ARGV[2] and tonumber(e['leaseUntil']) > tonumber(ARGV[3]) then
                  return 0
                end
              end
              redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[4])
              redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
              return 1",
        );
        let taken: i64 = script
            .key(redis_key(Kind::Outbox, key))
            .key(REDIS_OUTBOX)
            .arg(value)
            .arg(holder)
            .arg(now)
            .arg(redis_expire_at(expires_at))
            .arg(expires_at)
            .arg(key)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(taken == 1)
    }

    /// Up to `n` outbox entries, oldest expiry first; those gone (expired)
    /// leave the sorted set on the way.
    pub(super) async fn outbox(&self, n: usize, now: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        let _: () = redis::cmd("ZREMRANGEBYSCORE")
            .arg(REDIS_OUTBOX)
            .arg("-inf")
            .arg(now)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        let stop = isize::try_from(n).unwrap_or(isize::MAX).saturating_sub(1);
        let uids: Vec<String> = redis::cmd("ZRANGE")
            .arg(REDIS_OUTBOX)
            .arg(0)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = uids.iter().map(|u| redis_key(Kind::Outbox, u)).collect();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(values.into_iter().flatten().collect())
    }

    /// Takes an entry out of the outbox and its sorted set.
    pub(super) async fn outbox_done(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .atomic()
            .del(redis_key(Kind::Outbox, key))
            .ignore()
            .zrem(REDIS_OUTBOX, key)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    /// How many requests are stored and not expired at `now`.
    pub(super) async fn request_count(&self, now: u64) -> Result<u64, StoreError> {
        // A sorted set of request uids by expiry, kept beside the
        // records: a count is ZCARD after dropping the expired
        // (each dropped once), not a SCAN of the keyspace (611 ms
        // at 300k keys, on every scrape).
        let mut conn = self.conn.clone();
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(REDIS_REQUESTS_BY_EXPIRY)
            .arg("-inf")
            .arg(now)
            .ignore()
            .zcard(REDIS_REQUESTS_BY_EXPIRY)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(count)
    }

    /// A record.
    pub(super) async fn get(&self, kind: Kind, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(redis_key(kind, key))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    /// Writes a record (insert or replace).
    pub(super) async fn put(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(redis_key(kind, key))
            .arg(value)
            .arg("EXAT")
            .arg(redis_expire_at(expires_at))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }

    /// Writes `value` unless `key` holds one; whether it was written.
    pub(super) async fn put_if_absent(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(redis_key(kind, key))
            .arg(value)
            .arg("NX")
            .arg("EXAT")
            .arg(redis_expire_at(expires_at))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(set.is_some())
    }

    /// Deletes a record.
    pub(super) async fn delete(&self, kind: Kind, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(redis_key(kind, key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(redis_err)
    }
}

/// A topic's slots: a hash, request uid → [`super::Slot`].
fn redis_slots(topic: &str) -> String {
    format!("gitfaas:slots-of:{topic}")
}

/// A topic's queue: a sorted set of request uids scored by their sequence
/// number (what each run applies is under `gitfaas:queue:<uid>`).
fn redis_queue(topic: &str) -> String {
    format!("gitfaas:queue-of:{topic}")
}

/// The bytes each queued run's record takes, by request uid, while it is in
/// the topic's sorted set (an entry leaves with it).
fn redis_queue_sizes(topic: &str) -> String {
    format!("gitfaas:queue-bytes-of:{topic}")
}

/// Their sum: what the topic's queue takes (`maxQueuedBytes` bounds it).
fn redis_queued_bytes(topic: &str) -> String {
    format!("gitfaas:queued-bytes:{topic}")
}

/// The counter of queue sequence numbers, shared by every replica.
const REDIS_QUEUE_SEQ: &str = "gitfaas:queue-seq";

/// The topics that have held slots or queued runs.
const REDIS_LIMITED_TOPICS: &str = "gitfaas:limited-topics";

fn redis_holder(holder: &str) -> String {
    format!("gitfaas:holder:{holder}")
}

/// The slots and the queue ([`super::slots`]): each decision one Lua script.
impl Redis {
    pub(super) async fn admit(
        &self,
        ask: &super::SlotAsk<'_>,
        slot: Vec<u8>,
    ) -> Result<super::SlotDecision, StoreError> {
        use super::SlotDecision;
        let mut conn = self.conn.clone();
        // The queued copy is written as built (cjson would turn the run's
        // integers into floats); its place is the sorted set's score, its
        // size is counted beside it (maxQueuedBytes).
        let script = redis::Script::new(
            r"local uid = ARGV[1]
              if redis.call('HEXISTS', KEYS[1], uid) == 1 then return {1, 0, 0, 0, 0} end
              local held = redis.call('HLEN', KEYS[1])
              local queued = redis.call('ZCARD', KEYS[2])
              local occupied = math.max(held, tonumber(ARGV[3]))
              redis.call('SADD', KEYS[5], ARGV[8])
              if queued == 0 and occupied < tonumber(ARGV[2]) then
                redis.call('HSET', KEYS[1], uid, ARGV[5])
                return {1, 0, 0, 0, 0}
              end
              if queued < tonumber(ARGV[4]) then
                local size = string.len(ARGV[6])
                local bytes = tonumber(redis.call('GET', KEYS[7]) or '0')
                if bytes + size > tonumber(ARGV[9]) then
                  return {4, occupied, queued, bytes, size}
                end
                local seq = redis.call('INCR', KEYS[4])
                redis.call('ZADD', KEYS[2], seq, uid)
                redis.call('SET', KEYS[3], ARGV[6], 'EXAT', ARGV[7])
                redis.call('HSET', KEYS[6], uid, size)
                redis.call('INCRBY', KEYS[7], size)
                return {2, queued + 1, 0, 0, 0}
              end
              return {3, occupied, queued, 0, 0}",
        );
        let entry = super::to_json(&super::QueueEntry {
            request_uid: ask.request_uid.clone(),
            topic: ask.topic.to_string(),
            seq: 0,
            run: ask.run.clone(),
            expires_at: ask.expires_at,
        });
        let (code, a, b, c, d): (i64, u64, u64, u64, u64) = script
            .key(redis_slots(ask.topic))
            .key(redis_queue(ask.topic))
            .key(redis_key(Kind::Queue, ask.request_uid.as_str()))
            .key(REDIS_QUEUE_SEQ)
            .key(REDIS_LIMITED_TOPICS)
            .key(redis_queue_sizes(ask.topic))
            .key(redis_queued_bytes(ask.topic))
            .arg(ask.request_uid.as_str())
            .arg(ask.max)
            .arg(ask.floor)
            .arg(ask.max_queued)
            .arg(slot)
            .arg(entry)
            .arg(redis_expire_at(ask.expires_at))
            .arg(ask.topic)
            .arg(ask.max_queued_bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(match code {
            1 => SlotDecision::Slot,
            2 => SlotDecision::Queued { position: a },
            4 => SlotDecision::FullOfBytes {
                held: a,
                queued: b,
                queued_bytes: c,
                run_bytes: d,
            },
            _ => SlotDecision::Full { held: a, queued: b },
        })
    }

    pub(super) async fn dispatch_next(
        &self,
        topic: &str,
        max: u32,
        holder: &str,
    ) -> Result<Option<super::QueueEntry>, StoreError> {
        let mut conn = self.conn.clone();
        // Pops heads until one still has its queued copy (a copy gone with
        // its expiry is skipped), and gives it a slot.
        let script = redis::Script::new(
            r"if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
              while true do
                local head = redis.call('ZRANGE', KEYS[2], 0, 0)
                if #head == 0 then return false end
                local uid = head[1]
                redis.call('ZREM', KEYS[2], uid)
                local size = redis.call('HGET', KEYS[3], uid)
                if size then
                  redis.call('HDEL', KEYS[3], uid)
                  redis.call('DECRBY', KEYS[4], size)
                end
                local entry = redis.call('GET', ARGV[3] .. uid)
                if entry then
                  local ok, e = pcall(cjson.decode, entry)
                  if ok then
                    local slot = cjson.encode({requestUid = uid, topic = ARGV[4], holder = ARGV[2], applied = false, expiresAt = e['expiresAt']})
                    redis.call('HSET', KEYS[1], uid, slot)
                    return entry
                  end
                end
              end",
        );
        let entry: Option<Vec<u8>> = script
            .key(redis_slots(topic))
            .key(redis_queue(topic))
            .key(redis_queue_sizes(topic))
            .key(redis_queued_bytes(topic))
            .arg(max)
            .arg(holder)
            .arg(redis_key(Kind::Queue, ""))
            .arg(topic)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(entry.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub(super) async fn dequeue(&self, topic: &str, request_uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            r"if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
              redis.call('DEL', KEYS[2])
              local size = redis.call('HGET', KEYS[3], ARGV[1])
              if size then
                redis.call('HDEL', KEYS[3], ARGV[1])
                redis.call('DECRBY', KEYS[4], size)
              end
              return 1",
        );
        let taken: i64 = script
            .key(redis_queue(topic))
            .key(redis_key(Kind::Queue, request_uid))
            .key(redis_queue_sizes(topic))
            .key(redis_queued_bytes(topic))
            .arg(request_uid)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(taken == 1)
    }

    pub(super) async fn queue_position(
        &self,
        topic: &str,
        request_uid: &str,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn.clone();
        let rank: Option<u64> = redis::cmd("ZRANK")
            .arg(redis_queue(topic))
            .arg(request_uid)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(rank.map(|r| r + 1))
    }

    pub(super) async fn queue_len(&self, topic: &str) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZCARD")
            .arg(redis_queue(topic))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    pub(super) async fn slots(&self, topic: &str) -> Result<Vec<super::Slot>, StoreError> {
        let mut conn = self.conn.clone();
        let values: Vec<Vec<u8>> = redis::cmd("HVALS")
            .arg(redis_slots(topic))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(values
            .iter()
            .filter_map(|v| serde_json::from_slice(v).ok())
            .collect())
    }

    pub(super) async fn slot_applied(
        &self,
        topic: &str,
        request_uid: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            r"local cur = redis.call('HGET', KEYS[1], ARGV[1])
              if cur then
                local ok, s = pcall(cjson.decode, cur)
                if ok then
                  s['applied'] = true
                  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(s))
                end
              end
              redis.call('DEL', KEYS[2])
              return 1",
        );
        let _: i64 = script
            .key(redis_slots(topic))
            .key(redis_key(Kind::Queue, request_uid))
            .arg(request_uid)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(())
    }

    pub(super) async fn slot_release(
        &self,
        topic: &str,
        request_uid: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            r"if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
              redis.call('DEL', KEYS[2])
              return 1",
        );
        let released: i64 = script
            .key(redis_slots(topic))
            .key(redis_key(Kind::Queue, request_uid))
            .arg(request_uid)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(released == 1)
    }

    pub(super) async fn slot_adopt(
        &self,
        topic: &str,
        request_uid: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let script = redis::Script::new(
            r"local cur = redis.call('HGET', KEYS[1], ARGV[1])
              if not cur then return 0 end
              local ok, s = pcall(cjson.decode, cur)
              if not ok or s['holder'] ~= ARGV[2] then return 0 end
              s['holder'] = ARGV[3]
              redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(s))
              return 1",
        );
        let adopted: i64 = script
            .key(redis_slots(topic))
            .arg(request_uid)
            .arg(from)
            .arg(to)
            .invoke_async(&mut conn)
            .await
            .map_err(redis_err)?;
        Ok(adopted == 1)
    }

    pub(super) async fn limited_topics(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SMEMBERS")
            .arg(REDIS_LIMITED_TOPICS)
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    pub(super) async fn heartbeat(&self, holder: &str, lease: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(redis_holder(holder))
            .arg(1)
            .arg("EX")
            .arg(lease.as_secs().max(1))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    pub(super) async fn resign(&self, holder: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(redis_holder(holder))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }

    pub(super) async fn alive(&self, holder: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(redis_holder(holder))
            .query_async(&mut conn)
            .await
            .map_err(redis_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_expiry_stays_within_what_redis_accepts() {
        assert_eq!(redis_expire_at(1_800_000_000), 1_800_000_000 + REDIS_GRACE);
        for huge in [u64::MAX, i64::MAX as u64, (i64::MAX / 1000) as u64] {
            assert_eq!(redis_expire_at(huge), REDIS_MAX_EXPIRE_AT, "{huge}");
        }
    }
}
