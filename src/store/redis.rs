//! The Redis backend's keys (`gitfaas:<kind>:<key>`, and the sorted set of
//! requests by expiry), its expiries (ours plus a grace, within what Redis
//! accepts) and its errors.

use super::StoreError;

pub(super) fn redis_err(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable {
        backend: "redis",
        message: e.to_string(),
    }
}

/// The Redis sorted set of request uids scored by their expiry (Unix seconds).
pub(super) const REDIS_REQUESTS_BY_EXPIRY: &str = "gitfaas:requests-by-expiry";

/// Redis keeps keys this much longer than our expiry, so our clock (not
/// Redis') decides when a record is gone; then Redis cleans up.
const REDIS_GRACE: i64 = 3600;

/// The latest `EXPIREAT`/`EXAT` Redis takes: it keeps expiries in
/// milliseconds and refuses seconds whose milliseconds overflow an i64.
const REDIS_MAX_EXPIRE_AT: i64 = i64::MAX / 1000;

/// Our expiry (Unix seconds) plus [`REDIS_GRACE`], as Redis' `EXAT`: `as
/// i64` would turn an expiry past `i64::MAX` negative (a key gone at once).
pub(super) fn redis_expire_at(expires_at: u64) -> i64 {
    i64::try_from(expires_at)
        .unwrap_or(i64::MAX)
        .saturating_add(REDIS_GRACE)
        .min(REDIS_MAX_EXPIRE_AT)
}

pub(super) fn redis_key(kind: &str, key: &str) -> String {
    format!("gitfaas:{kind}:{key}")
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
