//! The store suites (tests/store_suites) against a real redis-server,
//! started by `make test` (URL in GITFAAS_TEST_REDIS_URL), and what only
//! Redis does. Time is moved with a manual clock, never waited for.

mod store_suites;

use std::time::Duration;

use gitfaas::store::{Claim, Clock, Durability, Store};
use serde_json::json;

use store_suites::*;

/// The test server's URL, from `make test` (tests/redis.sh).
fn redis_url() -> String {
    std::env::var("GITFAAS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("GITFAAS_TEST_REDIS_URL is not set: run `make test`, or `eval \"$(tests/redis.sh up)\"` first")
    })
}

/// A store on database 1 of the test server, not emptied: for the suites
/// that keep to keys of their own (fresh uids and topics).
async fn redis_shared(clock: Clock) -> Store {
    let url = format!("{}/1", redis_url().trim_end_matches('/'));
    Store::connect_redis(&url, clock, TTL)
        .await
        .expect("connect to redis")
}

/// A store on database 2 of the test server, not emptied, for the suites
/// that run for a while with keys of their own: the FLUSHDB of [`redis`]
/// on database 1 would take their records from under them.
async fn redis_apart(clock: Clock) -> Store {
    let url = format!("{}/2", redis_url().trim_end_matches('/'));
    Store::connect_redis(&url, clock, TTL)
        .await
        .expect("connect to redis")
}

async fn redis(clock: Clock) -> Store {
    let url = redis_url();
    // A database of its own, emptied first: the suite counts what Redis
    // holds, and an earlier run's records outlive it (their expiry is by
    // the manual clock, years ahead).
    let url = format!("{}/1", url.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .expect("FLUSHDB");
    Store::connect_redis(&url, clock, TTL)
        .await
        .expect("connect to redis")
}

#[tokio::test]
async fn the_redis_store_lists_the_history() {
    let clock = Clock::manual(START);
    history_suite(redis_shared(clock.clone()).await, clock).await;
}

#[tokio::test]
async fn the_redis_store_passes_the_suite() {
    let clock = Clock::manual(START);
    suite(redis(clock.clone()).await, clock).await;
}

#[tokio::test]
async fn a_redis_that_is_down_is_a_clear_error() {
    let err = Store::connect_redis("redis://127.0.0.1:1", Clock::manual(START), TTL)
        .await
        .err()
        .expect("no server on port 1");
    assert!(
        err.to_string().contains("redis store is unavailable"),
        "{err}"
    );
}

/// A ttl near u64::MAX (the settings refuse it; the store must not break on
/// it): every Redis write carries an expiry Redis accepts (`as i64` made it
/// negative, `now + ttl` overflowed). In a database of its own, and deleted
/// after: the suite counts database 0's requests, and these never expire.
#[tokio::test]
async fn a_redis_store_with_a_ttl_near_u64_max_writes_and_reads() {
    let url = redis_url();
    let server = match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => url,
    };
    let url = format!("{server}/15");
    let store = Store::connect_redis(
        &url,
        Clock::manual(START),
        Duration::from_secs(u64::MAX - 5),
    )
    .await
    .expect("connect to redis");
    let req = request_with(&store, 1);
    let function = req.functions[0].function_uid.clone();
    let (delivery, key) = (uid("d"), uid("k"));
    let saved = store.save_run(&req, Durability::Now).await;
    let read = store.run(&req.request_uid).await;
    let answered = store
        .put_response(&function, json!({"ok": true}), b"{\"ok\":true}")
        .await;
    let remembered = store.remember_delivery(&delivery).await;
    let claimed = store
        .claim_idempotency(&key, "topic", &fp(), &req.request_uid, LEASE)
        .await;

    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let _: () = redis::pipe()
        .del(format!("gitfaas:request:{}", req.request_uid))
        .del(format!("gitfaas:function:{function}"))
        .del(format!("gitfaas:response:{function}"))
        .del(format!("gitfaas:delivery:{delivery}"))
        .del(format!("gitfaas:idempotency:{key}"))
        .zrem("gitfaas:requests-by-expiry", req.request_uid.as_str())
        .query_async(&mut conn)
        .await
        .expect("clean up");

    saved.expect("saved with a far expiry");
    assert!(read.expect("read").is_some());
    answered.expect("response");
    assert!(remembered.expect("delivery"));
    assert!(matches!(claimed.expect("claim"), Claim::Fresh));
}

#[tokio::test]
async fn the_redis_store_bounds_a_queue_s_bytes() {
    queue_bytes_suite(redis_shared(Clock::manual(START)).await).await;
}

#[tokio::test]
async fn the_redis_store_keeps_slots_and_queues() {
    // Its own topic (a fresh uid): no flush, so the suites beside it keep theirs.
    slots_suite(redis_shared(Clock::manual(START)).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_store_loses_no_change_of_writers_racing_on_one_record() {
    let clock = Clock::manual(START);
    let (retried, conflicts) = race_suite(redis_apart(clock).await).await;
    eprintln!(
        "{RACE_WRITERS} writers x {RACE_UPDATES} updates and a cancel: 0 lost, {retried} re-applied after losing a race, {conflicts} conflicts made again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_store_applies_a_change_again_when_it_loses_its_race() {
    conflict_suite(redis_apart(Clock::manual(START)).await).await;
}
