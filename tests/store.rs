//! The store suites on the embedded backend (a redb file in a temporary
//! directory), and what only it does: durability across a reopen, the
//! group commit. Needs nothing running: `make test-unit` runs it. The same
//! suites against a real redis-server: tests/store_redis.rs.

mod store_suites;

use std::time::Duration;

use gitfaas::store::{Claim, Clock, Durability, Store, FLUSH_AFTER};
use serde_json::json;

use store_suites::*;

#[tokio::test]
async fn the_embedded_store_lists_the_history() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(START);
    history_suite(embedded(dir.path(), clock.clone()).await, clock).await;
}

#[tokio::test]
async fn the_embedded_store_passes_the_suite() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(START);
    suite(embedded(dir.path(), clock.clone()).await, clock).await;
}

#[tokio::test]
async fn the_embedded_store_keeps_everything_across_a_reopen_and_purges_expired_records() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(START);
    let store = embedded(dir.path(), clock.clone()).await;
    let req = request_with(&store, 1);
    store.save_run(&req, Durability::Now).await.expect("save");
    store
        .put_response(&req.functions[0].function_uid, json!("done"), b"done")
        .await
        .expect("response");
    assert_eq!(
        store
            .claim_idempotency("k", "topic", &fp(), &req.request_uid, LEASE)
            .await
            .expect("claim"),
        Claim::Fresh
    );
    drop(store);

    let store = embedded(dir.path(), clock.clone()).await;
    assert_eq!(
        store.run(&req.request_uid).await.expect("read"),
        Some(req.clone())
    );
    assert_eq!(
        store.responses(&req).await.expect("responses")[0]
            .as_ref()
            .map(|r| r.body.clone()),
        Some(json!("done"))
    );
    assert!(matches!(
        store
            .claim_idempotency("k", "topic", &fp(), &rid("r-other"), LEASE)
            .await
            .expect("claim"),
        Claim::Existing { .. }
    ));
    assert_eq!(store.request_count().await.expect("count"), 1);

    clock.advance(TTL + Duration::from_secs(1));
    let removed = store.purge_expired().await.expect("purge");
    assert_eq!(
        removed, 6,
        "request, its two history entries, function index, response and key"
    );
    assert_eq!(store.request_count().await.expect("count"), 0);
}

/// What a crash would leave: a copy of the file taken while the store is
/// open holds only durable commits (redb recovers the last durable root).
async fn crash_copy(dir: &std::path::Path, clock: Clock) -> Store {
    let copy = tempfile::tempdir().expect("dir").keep();
    std::fs::copy(dir.join("gitfaas.redb"), copy.join("gitfaas.redb")).expect("copy");
    embedded(&copy, clock).await
}

#[tokio::test]
async fn a_record_written_soon_is_on_disk_after_the_group_commit_and_one_written_now_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(START);
    let store = embedded(dir.path(), clock.clone()).await;

    let now = request_with(&store, 1);
    store.save_run(&now, Durability::Now).await.expect("save");
    let copy = crash_copy(dir.path(), clock.clone()).await;
    assert_eq!(
        copy.run(&now.request_uid).await.expect("read"),
        Some(now.clone()),
        "a durable write is in the file when the call returns"
    );

    let soon = request_with(&store, 1);
    store.save_run(&soon, Durability::Soon).await.expect("save");
    assert_eq!(
        store.run(&soon.request_uid).await.expect("read"),
        Some(soon.clone()),
        "visible at once"
    );
    assert_eq!(
        store.request_count().await.expect("count"),
        2,
        "counted at once"
    );
    // The group commit runs FLUSH_AFTER after the write; allow a loaded machine.
    let deadline = std::time::Instant::now() + FLUSH_AFTER * 100;
    loop {
        tokio::time::sleep(FLUSH_AFTER).await;
        let copy = crash_copy(dir.path(), clock.clone()).await;
        if copy.run(&soon.request_uid).await.expect("read") == Some(soon.clone()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a Soon write was not durable {:?} after it",
            FLUSH_AFTER * 100
        );
    }
}

#[tokio::test]
async fn the_embedded_store_bounds_a_queue_s_bytes() {
    let dir = tempfile::tempdir().expect("dir");
    let store = embedded(dir.path(), Clock::manual(START)).await;
    queue_bytes_suite(store).await;
}

#[tokio::test]
async fn the_embedded_store_keeps_slots_and_queues() {
    let dir = tempfile::tempdir().expect("dir");
    let store = embedded(dir.path(), Clock::manual(START)).await;
    slots_suite(store).await;
}

/// A queue survives a reopen of the embedded store: same order, same copies.
#[tokio::test]
async fn the_embedded_queue_survives_a_reopen() {
    use gitfaas::store::{SlotAsk, SlotDecision};
    let dir = tempfile::tempdir().expect("dir");
    let run = serde_json::json!({"x": 1});
    {
        let store = embedded(dir.path(), Clock::manual(START)).await;
        for (name, expected) in [
            ("a", SlotDecision::Slot),
            ("b", SlotDecision::Queued { position: 1 }),
            ("c", SlotDecision::Queued { position: 2 }),
        ] {
            let got = store
                .admit(&SlotAsk {
                    topic: "t",
                    request_uid: &rid(name),
                    max: 1,
                    floor: 0,
                    max_queued: 5,
                    max_queued_bytes: u64::MAX,
                    holder: "h1",
                    expires_at: START + 3600,
                    run: &run,
                })
                .await
                .expect("admit");
            assert_eq!(got, expected);
        }
    }
    let store = embedded(dir.path(), Clock::manual(START)).await;
    assert_eq!(
        store.queue_position("t", &rid("c")).await.expect("pos"),
        Some(2)
    );
    assert!(store.slot_release("t", &rid("a")).await.expect("release"));
    let next = store
        .dispatch_next("t", 1, "h2")
        .await
        .expect("next")
        .expect("b");
    assert_eq!(next.request_uid, "b");
    assert_eq!(next.run, run);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_store_loses_no_change_of_writers_racing_on_one_record() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = Clock::manual(START);
    let (retried, conflicts) = race_suite(embedded(dir.path(), clock).await).await;
    eprintln!(
        "{RACE_WRITERS} writers x {RACE_UPDATES} updates and a cancel: 0 lost, {retried} re-applied after losing a race, {conflicts} conflicts made again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_applies_a_change_again_when_it_loses_its_race() {
    let dir = tempfile::tempdir().expect("dir");
    conflict_suite(embedded(dir.path(), Clock::manual(START)).await).await;
}
