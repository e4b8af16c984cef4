//! The store suites both backends pass, shared by tests/store.rs (the
//! embedded redb file: needs nothing) and tests/store_redis.rs (a real
//! redis-server). Time is moved with a manual clock, never waited for.
#![allow(dead_code)]

use std::time::Duration;

use gitfaas::object::ObjectRef;
use gitfaas::store::{
    Claim, Clock, Cursor, Durability, Fingerprint, LogTail, RunQuery, RunState, Store, StoreError,
    StoredFunction,
};
use gitfaas::uid::{FunctionUid, RequestUid};
use serde_json::json;

pub const TTL: Duration = Duration::from_secs(2 * 24 * 3600);
pub const START: u64 = 1_800_000_000;

/// A request uid as these suites name them.
pub fn rid(s: &str) -> RequestUid {
    RequestUid::parse(s).expect("a request uid")
}

/// A function uid as these suites name them.
pub fn fid(s: &str) -> FunctionUid {
    FunctionUid::parse(s).expect("a function uid")
}

pub fn uid(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

pub async fn embedded(dir: &std::path::Path, clock: Clock) -> Store {
    Store::open_embedded(dir, clock, TTL)
        .await
        .expect("open embedded store")
}

pub fn request_with(store: &Store, functions: usize) -> gitfaas::store::RunRecord {
    let r = uid("r");
    let mut req = store.new_run(&rid(&r), "topic", "abc123");
    req.functions = (0..functions)
        .map(|i| StoredFunction {
            function_uid: fid(&format!("f-{i}-{r}")),
            path: format!("m{i}.yaml"),
            objects: vec![ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: Some("ns".into()),
                name: format!("job-{i}"),
            }],
        })
        .collect();
    req
}

pub const LEASE: Duration = Duration::from_secs(60);

pub fn fp() -> Fingerprint {
    Fingerprint::of(&[("a".into(), "1".into())], b"body")
}

pub async fn suite(store: Store, clock: Clock) {
    // Requests round-trip; unknown uids are None.
    let mut req = request_with(&store, 2);
    store.save_run(&req, Durability::Soon).await.expect("save");
    // What /metrics reports: the live requests (a Redis count without a SCAN).
    assert_eq!(store.request_count().await.expect("count"), 1);
    assert_eq!(
        store.run(&req.request_uid).await.expect("read"),
        Some(req.clone())
    );
    assert_eq!(store.run(&rid("r-unknown")).await.expect("read"), None);
    // Responses: only issued function uids (also those of a record still
    // waiting for its group commit); one entry per function, None while pending.
    let f0 = req.functions[0].function_uid.clone();
    store
        .put_response(&f0, json!({"rows": 3}), br#"{"rows": 3}"#)
        .await
        .expect("response");
    // The first response stands, in both backends.
    store
        .check_function(&req.functions[1].function_uid)
        .await
        .expect("may answer");
    let err = store
        .put_response(&f0, json!("second"), b"second")
        .await
        .expect_err("a second response");
    assert!(matches!(err, StoreError::AlreadyAnswered(_)), "{err}");
    let err = store.check_function(&f0).await.expect_err("answered");
    assert!(matches!(err, StoreError::AlreadyAnswered(_)), "{err}");
    assert!(
        !err.to_string().contains(f0.as_str()),
        "messages carry a prefix of the uid, never the credential: {err}"
    );
    let err = store
        .put_response(&fid("f-never-issued"), json!("x"), b"x")
        .await
        .expect_err("unknown uid");
    assert!(matches!(err, StoreError::UnknownFunction(_)), "{err}");
    let responses = store.responses(&req).await.expect("responses");
    assert_eq!(responses.len(), 2);
    assert_eq!(
        responses[0].as_ref().map(|r| r.body.clone()),
        Some(json!({"rows": 3}))
    );
    // The Python shape: the bytes as posted, base64-encoded.
    assert_eq!(
        responses[0].as_ref().map(|r| r.base64()),
        Some("eyJyb3dzIjogM30=".to_string())
    );
    assert!(responses[1].is_none());

    // A record is replaced whole.
    req.report = Some(json!({"requestUid": req.request_uid, "error": false}));
    req.http_status = Some(202);
    store.save_run(&req, Durability::Now).await.expect("update");
    assert_eq!(
        store
            .run(&req.request_uid)
            .await
            .expect("read")
            .and_then(|r| r.http_status),
        Some(202)
    );

    // Idempotency keys: first claim wins, a second sees it; release frees it.
    let key = uid("key");
    assert_eq!(
        store
            .claim_idempotency(&key, "topic", &fp(), &rid("r-1"), LEASE)
            .await
            .expect("claim"),
        Claim::Fresh
    );
    assert_eq!(
        store
            .claim_idempotency(&key, "topic", &fp(), &rid("r-2"), LEASE)
            .await
            .expect("claim"),
        Claim::Existing {
            request_uid: rid("r-1"),
            topic: "topic".into(),
            fingerprint: fp(),
        }
    );
    store
        .release_idempotency(&key, &rid("r-2"))
        .await
        .expect("release by another is a no-op");
    assert!(matches!(
        store
            .claim_idempotency(&key, "topic", &fp(), &rid("r-3"), LEASE)
            .await
            .expect("claim"),
        Claim::Existing { .. }
    ));
    store
        .release_idempotency(&key, &rid("r-1"))
        .await
        .expect("release");
    assert_eq!(
        store
            .claim_idempotency(&key, "topic", &fp(), &rid("r-4"), LEASE)
            .await
            .expect("claim"),
        Claim::Fresh
    );

    // Expiry: just before, everything is there; just after, it is gone.
    clock.advance(TTL - Duration::from_secs(1));
    assert!(store.run(&req.request_uid).await.expect("read").is_some());
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        store.run(&req.request_uid).await.expect("read"),
        None,
        "an expired request is gone"
    );
    if store.backend_name() == "redis" {
        // (The embedded store counts what it keeps until its periodic purge.)
        assert_eq!(
            store.request_count().await.expect("count"),
            0,
            "and not counted"
        );
    }
    let err = store
        .put_response(&req.functions[1].function_uid, json!("late"), b"late")
        .await
        .expect_err("expired");
    assert!(matches!(err, StoreError::UnknownFunction(_)), "{err}");
    assert!(store
        .responses(&req)
        .await
        .expect("responses")
        .iter()
        .all(Option::is_none));
    assert_eq!(
        store
            .claim_idempotency(&key, "topic", &fp(), &rid("r-5"), LEASE)
            .await
            .expect("claim"),
        Claim::Fresh,
        "an expired key is free"
    );
    // A claim whose publish died is free once its lease has run out; a
    // completed one holds for the expiration time.
    let died = uid("died");
    assert_eq!(
        store
            .claim_idempotency(&died, "topic", &fp(), &rid("r-died"), LEASE)
            .await
            .expect("claim"),
        Claim::Fresh
    );
    let done = uid("done");
    assert_eq!(
        store
            .claim_idempotency(&done, "topic", &fp(), &rid("r-done"), LEASE)
            .await
            .expect("claim"),
        Claim::Fresh
    );
    store
        .complete_idempotency(&done, &rid("r-done"))
        .await
        .expect("complete");
    clock.advance(LEASE - Duration::from_secs(1));
    assert!(
        matches!(
            store
                .claim_idempotency(&died, "topic", &fp(), &rid("r-retry"), LEASE)
                .await
                .expect("claim"),
            Claim::Existing { .. }
        ),
        "within the lease: still in progress"
    );
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        store
            .claim_idempotency(&died, "topic", &fp(), &rid("r-retry"), LEASE)
            .await
            .expect("claim"),
        Claim::Fresh,
        "the lease ran out: the key is free again"
    );
    assert!(
        matches!(
            store
                .claim_idempotency(&done, "topic", &fp(), &rid("r-again"), LEASE)
                .await
                .expect("claim"),
            Claim::Existing { .. }
        ),
        "a completed claim outlives its lease"
    );

    // The outbox: one holder at a time, renewed by it, taken over by
    // another once its lease ran out.
    let called = request_with(&store, 1);
    let uid_of = |entries: &[gitfaas::store::OutboxEntry]| -> Vec<(String, String)> {
        entries
            .iter()
            .filter(|e| e.request_uid == called.request_uid)
            .map(|e| (e.request_uid.to_string(), e.holder.clone()))
            .collect()
    };
    assert!(store
        .outbox_claim(&called, "a", LEASE)
        .await
        .expect("claim"));
    assert!(
        !store
            .outbox_claim(&called, "b", LEASE)
            .await
            .expect("claim"),
        "a's lease runs"
    );
    clock.advance(LEASE / 2);
    assert!(
        store
            .outbox_claim(&called, "a", LEASE)
            .await
            .expect("renew"),
        "a renews"
    );
    clock.advance(LEASE / 2 + Duration::from_secs(1));
    assert!(
        !store
            .outbox_claim(&called, "b", LEASE)
            .await
            .expect("claim"),
        "renewed: a's lease still runs"
    );
    assert_eq!(
        uid_of(&store.outbox(100_000).await.expect("outbox")),
        [(called.request_uid.to_string(), "a".to_string())]
    );
    clock.advance(LEASE);
    assert!(
        store
            .outbox_claim(&called, "b", LEASE)
            .await
            .expect("take over"),
        "a's lease ran out: b takes it over"
    );
    assert!(
        !store
            .outbox_claim(&called, "a", LEASE)
            .await
            .expect("claim"),
        "a lost it"
    );
    store.outbox_done(&called.request_uid).await.expect("done");
    assert!(uid_of(&store.outbox(100_000).await.expect("outbox")).is_empty());

    // Log tails: kept as long as their record, the last write standing.
    let run = request_with(&store, 1);
    store.save_run(&run, Durability::Now).await.expect("save");
    assert_eq!(store.logs(&run.request_uid).await.expect("logs"), None);
    let tail = |text: &str| LogTail {
        namespace: "ns".into(),
        job: "job-0".into(),
        pod: "job-0-abcde".into(),
        container: "main".into(),
        init: false,
        succeeded: true,
        text: text.into(),
        truncated: false,
    };
    store
        .put_logs(&run, vec![tail("first\n")])
        .await
        .expect("put logs");
    store
        .put_logs(&run, vec![tail("one\ntwo\n"), tail("")])
        .await
        .expect("put logs again");
    let kept = store
        .logs(&run.request_uid)
        .await
        .expect("logs")
        .expect("kept");
    assert_eq!(kept.tails, vec![tail("one\ntwo\n"), tail("")]);
    assert_eq!(store.logs(&rid("r-unknown")).await.expect("logs"), None);
    clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(
        store.logs(&run.request_uid).await.expect("logs"),
        None,
        "gone with its record"
    );

    // A schedule's mark: none at first, the last written stands, kept
    // past the runs' expiration time (a yearly schedule's mark is read a
    // year on), gone after its own.
    let topic = uid("sched");
    assert_eq!(store.schedule_mark(&topic).await.expect("mark"), None);
    store
        .set_schedule_mark(&topic, "* * * * * UTC", 1_800_000_000)
        .await
        .expect("set mark");
    store
        .set_schedule_mark(&topic, "* * * * * UTC", 1_800_000_060)
        .await
        .expect("set mark again");
    clock.advance(TTL + Duration::from_secs(1));
    let mark = store
        .schedule_mark(&topic)
        .await
        .expect("mark")
        .expect("kept past the runs' expiration");
    assert_eq!(
        (mark.schedule.as_str(), mark.done_through),
        ("* * * * * UTC", 1_800_000_060)
    );
    clock.advance(Duration::from_secs(gitfaas::store::MARK_TTL_SECS));
    assert_eq!(store.schedule_mark(&topic).await.expect("mark"), None);
}

/// The history (`GET /requests`), the same on both backends: newest first,
/// by topic or all, filtered by state and time, in pages, without expired
/// runs, showing each run's latest state.
pub async fn history_suite(store: Store, clock: Clock) {
    let topic = format!("t{}", uuid::Uuid::new_v4().simple());
    let other = format!("o{}", uuid::Uuid::new_v4().simple());
    let mut uids = Vec::new();
    for i in 0..7u64 {
        let t = if i % 3 == 2 { &other } else { &topic };
        let mut r = store.new_run(&rid(&uid("r")), t, "abc");
        r.state = if i % 2 == 0 {
            RunState::Succeeded
        } else {
            RunState::Failed
        };
        // Half written soon (staged for the group commit), half now.
        let durability = if i % 2 == 0 {
            Durability::Soon
        } else {
            Durability::Now
        };
        store.save_run(&r, durability).await.expect("save");
        uids.push((t.clone(), r.request_uid.to_string(), r.state));
        clock.advance(Duration::from_secs(10));
    }
    let of = |topic: &str| -> Vec<String> {
        uids.iter()
            .rev()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, u, _)| u.clone())
            .collect()
    };
    let page = |topic: Option<&str>, state, limit, cursor| RunQuery {
        topic: topic.map(str::to_string),
        state,
        trigger: None,
        since: None,
        limit,
        cursor,
    };
    // Newest first, one topic only.
    let all = store
        .runs(&page(Some(&topic), None, 50, None))
        .await
        .expect("runs");
    let listed: Vec<String> = all.runs.iter().map(|r| r.request_uid.to_string()).collect();
    assert_eq!(listed, of(&topic));
    assert!(all.next.is_none());
    assert_eq!(all.runs[0].topic, topic);
    // Pages of two, each going on where the last ended.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let p = store
            .runs(&page(Some(&topic), None, 2, cursor))
            .await
            .expect("page");
        assert!(p.runs.len() <= 2);
        seen.extend(p.runs.iter().map(|r| r.request_uid.to_string()));
        match p.next {
            // A cursor survives the round trip through its text.
            Some(c) => cursor = Some(Cursor::decode(&c.encode()).expect("cursor")),
            None => break,
        }
    }
    assert_eq!(seen, of(&topic));
    // By state.
    let failed = store
        .runs(&page(Some(&topic), Some(RunState::Failed), 50, None))
        .await
        .expect("failed runs");
    let expected: Vec<String> = uids
        .iter()
        .rev()
        .filter(|(t, _, s)| *t == topic && *s == RunState::Failed)
        .map(|(_, u, _)| u.clone())
        .collect();
    assert_eq!(
        failed
            .runs
            .iter()
            .map(|r| r.request_uid.to_string())
            .collect::<Vec<_>>(),
        expected
    );
    // All topics: both topics' runs, newest first (other tests' runs may be
    // there too, on a shared Redis).
    let everything = store.runs(&page(None, None, 500, None)).await.expect("all");
    let ours: Vec<String> = everything
        .runs
        .iter()
        .map(|r| r.request_uid.to_string())
        .filter(|u| uids.iter().any(|(_, v, _)| v == u))
        .collect();
    let newest_first: Vec<String> = uids.iter().rev().map(|(_, u, _)| u.clone()).collect();
    assert_eq!(ours, newest_first);
    // Since: only what was created at or after it.
    let since = store
        .runs(&RunQuery {
            topic: Some(other.clone()),
            since: Some(START + 50),
            limit: 50,
            ..RunQuery::default()
        })
        .await
        .expect("since");
    assert_eq!(since.runs.len(), 1, "{:?}", since.runs);
    // A new state shows in the history at once.
    let newest = of(&topic)[0].clone();
    let mut record = store
        .run(&rid(&newest))
        .await
        .expect("read")
        .expect("exists");
    record.state = RunState::Cancelled;
    store
        .save_run(&record, Durability::Soon)
        .await
        .expect("save");
    let cancelled = store
        .runs(&page(Some(&topic), Some(RunState::Cancelled), 50, None))
        .await
        .expect("cancelled");
    assert_eq!(cancelled.runs.len(), 1);
    assert_eq!(cancelled.runs[0].request_uid, newest);
    let again = store
        .runs(&page(Some(&topic), None, 50, None))
        .await
        .expect("runs");
    assert_eq!(
        again.runs.len(),
        of(&topic).len(),
        "updated, not duplicated"
    );
    // Expired runs are not listed.
    clock.advance(TTL);
    let gone = store
        .runs(&page(Some(&topic), None, 50, None))
        .await
        .expect("runs");
    assert!(gone.runs.is_empty(), "{:?}", gone.runs);
    // A cursor that is not one is refused.
    assert!(Cursor::decode("not a cursor").is_err());
    assert!(Cursor::decode("").is_err());
}

/// The slots and queue of a limited topic, the same on both backends.
pub async fn slots_suite(store: Store) {
    use gitfaas::store::{SlotAsk, SlotDecision};
    let topic = uid("topic");
    let run = serde_json::json!({"objects": [{"kind": "Job", "n": 1}]});
    let ask = |uid: &'static str, max_queued: u32| SlotAsk {
        topic: "",
        request_uid: Box::leak(Box::new(rid(uid))),
        max: 2,
        floor: 0,
        max_queued,
        max_queued_bytes: u64::MAX,
        holder: "h1",
        expires_at: START + 3600,
        run: &run,
    };
    let admit = |name: &'static str, max_queued: u32, floor: u32| {
        let store = store.clone();
        let topic = topic.clone();
        let run = run.clone();
        async move {
            let mut a = ask(name, max_queued);
            a.topic = &topic;
            a.floor = floor;
            a.run = &run;
            store.admit(&a).await.expect("admit")
        }
    };
    // Two slots, then the queue in order, then full.
    assert_eq!(admit("a", 2, 0).await, SlotDecision::Slot);
    assert_eq!(
        admit("a", 2, 0).await,
        SlotDecision::Slot,
        "asking again is the same slot"
    );
    assert_eq!(admit("b", 2, 0).await, SlotDecision::Slot);
    assert_eq!(admit("c", 2, 0).await, SlotDecision::Queued { position: 1 });
    assert_eq!(admit("d", 2, 0).await, SlotDecision::Queued { position: 2 });
    assert_eq!(
        admit("e", 2, 0).await,
        SlotDecision::Full { held: 2, queued: 2 }
    );
    assert_eq!(store.queue_len(&topic).await.expect("len"), 2);
    assert_eq!(
        store.queue_position(&topic, &rid("d")).await.expect("pos"),
        Some(2)
    );
    assert_eq!(
        store.queue_position(&topic, &rid("a")).await.expect("pos"),
        None
    );
    // The queued copy is kept as given.
    let kept = store
        .queued(&rid("c"))
        .await
        .expect("queued")
        .expect("c kept");
    assert_eq!(kept.run, run);
    // No slot free: nothing dispatched.
    assert!(store
        .dispatch_next(&topic, 2, "h2")
        .await
        .expect("next")
        .is_none());
    // A freed slot goes to the head of the queue, held by who dispatches it.
    assert!(store
        .slot_release(&topic, &rid("a"))
        .await
        .expect("release"));
    assert!(
        !store.slot_release(&topic, &rid("a")).await.expect("again"),
        "freed once"
    );
    let next = store
        .dispatch_next(&topic, 2, "h2")
        .await
        .expect("next")
        .expect("c");
    assert_eq!(next.request_uid, "c");
    assert_eq!(next.run, run);
    assert!(store
        .dispatch_next(&topic, 2, "h2")
        .await
        .expect("next")
        .is_none());
    assert_eq!(
        store.queue_position(&topic, &rid("d")).await.expect("pos"),
        Some(1)
    );
    let slots = store.slots(&topic).await.expect("slots");
    let c = slots
        .iter()
        .find(|s| s.request_uid == "c")
        .expect("c holds a slot");
    assert_eq!((c.holder.as_str(), c.applied), ("h2", false));
    // A dispatched run keeps its queued copy until it is applied.
    assert!(store.queued(&rid("c")).await.expect("queued").is_some());
    store
        .slot_applied(&topic, &rid("c"))
        .await
        .expect("applied");
    assert!(store.queued(&rid("c")).await.expect("queued").is_none());
    let slots = store.slots(&topic).await.expect("slots");
    assert!(slots.iter().any(|s| s.request_uid == "c" && s.applied));
    // A dispatched run is no longer waiting: it cannot be taken off.
    assert!(!store.dequeue(&topic, &rid("c")).await.expect("dequeue"));
    // A waiting one can; it is then never dispatched.
    assert!(store.dequeue(&topic, &rid("d")).await.expect("dequeue"));
    assert!(store.queued(&rid("d")).await.expect("queued").is_none());
    assert_eq!(store.queue_len(&topic).await.expect("len"), 0);
    assert!(store
        .slot_release(&topic, &rid("b"))
        .await
        .expect("release"));
    assert!(store
        .dispatch_next(&topic, 2, "h1")
        .await
        .expect("next")
        .is_none());
    // With nobody waiting, a free slot is taken at once.
    assert_eq!(admit("f", 2, 0).await, SlotDecision::Slot);
    // Active Jobs counted in the cluster count as held slots.
    assert!(store
        .slot_release(&topic, &rid("f"))
        .await
        .expect("release"));
    assert_eq!(
        admit("g", 0, 2).await,
        SlotDecision::Full { held: 2, queued: 0 },
        "the floor fills the topic"
    );
    // Adoption: only from the holder named, once.
    assert!(!store
        .slot_adopt(&topic, &rid("c"), "h1", "h3")
        .await
        .expect("adopt"));
    assert!(store
        .slot_adopt(&topic, &rid("c"), "h2", "h3")
        .await
        .expect("adopt"));
    assert!(!store
        .slot_adopt(&topic, &rid("c"), "h2", "h4")
        .await
        .expect("adopt"));
    let slots = store.slots(&topic).await.expect("slots");
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].holder, "h3");
    assert!(slots[0].applied, "adoption keeps what the slot says");
    assert!(store
        .limited_topics()
        .await
        .expect("topics")
        .contains(&topic));
    // Heartbeats.
    assert!(!store.alive("h9").await.expect("alive"));
    store
        .heartbeat("h9", std::time::Duration::from_secs(30))
        .await
        .expect("heartbeat");
    assert!(store.alive("h9").await.expect("alive"));
    store.resign("h9").await.expect("resign");
    assert!(!store.alive("h9").await.expect("alive"));
}

/// `maxQueuedBytes`: what the waiting runs take together is bounded, a
/// run that leaves the queue (dispatched, taken off) frees its bytes, and
/// the answer says which bound was met. The same on both backends.
pub async fn queue_bytes_suite(store: Store) {
    use gitfaas::store::{SlotAsk, SlotDecision};
    let topic = uid("bytes");
    let big = serde_json::json!({"body": "b".repeat(10_000)});
    let small = serde_json::json!({"body": "s"});
    let admit = |name: &'static str, run: &serde_json::Value, max_queued: u32| {
        let (store, topic, run) = (store.clone(), topic.clone(), run.clone());
        async move {
            store
                .admit(&SlotAsk {
                    topic: &topic,
                    request_uid: &rid(name),
                    max: 1,
                    floor: 0,
                    max_queued,
                    max_queued_bytes: 25_000,
                    holder: "h1",
                    expires_at: START + 3600,
                    run: &run,
                })
                .await
                .expect("admit")
        }
    };
    assert_eq!(
        admit("qb-a", &big, 10).await,
        SlotDecision::Slot,
        "a slot costs no queue bytes"
    );
    assert_eq!(
        admit("qb-b", &big, 10).await,
        SlotDecision::Queued { position: 1 }
    );
    assert_eq!(
        admit("qb-c", &big, 10).await,
        SlotDecision::Queued { position: 2 }
    );
    let SlotDecision::FullOfBytes {
        held,
        queued,
        queued_bytes,
        run_bytes,
    } = admit("qb-d", &big, 10).await
    else {
        panic!("the third big run passes maxQueuedBytes");
    };
    assert_eq!((held, queued), (1, 2));
    assert!((10_000..10_400).contains(&run_bytes), "{run_bytes}");
    assert!((20_000..20_800).contains(&queued_bytes), "{queued_bytes}");
    assert!(queued_bytes + run_bytes > 25_000);
    assert_eq!(
        store.queue_len(&topic).await.expect("len"),
        2,
        "d is not queued"
    );
    assert!(store.queued(&rid("qb-d")).await.expect("queued").is_none());
    // A small one fits in what is left.
    assert_eq!(
        admit("qb-e", &small, 10).await,
        SlotDecision::Queued { position: 3 }
    );
    // maxQueued is met first: that bound is the one named.
    assert_eq!(
        admit("qb-f", &big, 3).await,
        SlotDecision::Full { held: 1, queued: 3 }
    );
    // Taken off the queue: its bytes are free again.
    assert!(store.dequeue(&topic, &rid("qb-b")).await.expect("dequeue"));
    assert_eq!(
        admit("qb-g", &big, 10).await,
        SlotDecision::Queued { position: 3 }
    );
    assert!(matches!(
        admit("qb-h", &big, 10).await,
        SlotDecision::FullOfBytes { .. }
    ));
    // Dispatched: its bytes are free again too.
    assert!(store
        .slot_release(&topic, &rid("qb-a"))
        .await
        .expect("release"));
    let next = store
        .dispatch_next(&topic, 1, "h1")
        .await
        .expect("next")
        .expect("c");
    assert_eq!(next.request_uid, "qb-c");
    assert_eq!(
        admit("qb-i", &big, 10).await,
        SlotDecision::Queued { position: 3 }
    );
    assert!(matches!(
        admit("qb-j", &big, 10).await,
        SlotDecision::FullOfBytes { .. }
    ));
}

/// Writers of the race in [`cas_suite`], and the changes each makes.
pub const RACE_WRITERS: u16 = 8;
pub const RACE_UPDATES: u16 = 25;

/// A run's record written by many writers at once, each change made with
/// compare-and-set (`update_run`): a cancel among callback attempts
/// appended by [`RACE_WRITERS`] tasks, [`RACE_UPDATES`] each. Nothing is
/// lost: every attempt is there once, and the cancel too. Returns how many
/// times a change lost its race and was applied again, and how many
/// changes lost all their races (`Conflict`, nothing written) and were
/// made again.
/// Needs a multi-threaded runtime, so that the writers run in parallel.
pub async fn race_suite(store: Store) -> (usize, usize) {
    use gitfaas::store::{CallbackAttempt, CallbackState, Decision};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let mut req = request_with(&store, 1);
    req.topic = uid("race");
    req.state = RunState::Running;
    req.callback = Some(CallbackState {
        url: "http://127.0.0.1:1/cb".into(),
        delivered: false,
        abandoned: false,
        attempts: Vec::new(),
        webhook_id: None,
    });
    store.save_run(&req, Durability::Now).await.expect("save");
    let uid = req.request_uid.clone();
    let applied = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..RACE_WRITERS {
        let (store, uid, applied, conflicts) = (
            store.clone(),
            uid.clone(),
            Arc::clone(&applied),
            Arc::clone(&conflicts),
        );
        writers.spawn(async move {
            for i in 0..RACE_UPDATES {
                // Half written soon (staged for the embedded group commit).
                let durability = if i % 2 == 0 {
                    Durability::Soon
                } else {
                    Durability::Now
                };
                // A change that lost every race (Conflict) was not
                // written: its caller tries it again, as an HTTP client
                // does after a 503.
                let updated = loop {
                    let tried = store
                        .update_run(&uid, durability, |r| {
                            applied.fetch_add(1, Ordering::Relaxed);
                            let Some(cb) = r.callback.as_mut() else {
                                return Decision::Keep;
                            };
                            cb.attempts.push(CallbackAttempt {
                                at: "2027-01-15T08:00:00Z".into(),
                                delivered: false,
                                http_status: Some(w * 1000 + i),
                                error: None,
                            });
                            Decision::Write
                        })
                        .await;
                    match tried {
                        Err(StoreError::Conflict { .. }) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                        }
                        other => break other.expect("update").expect("exists"),
                    }
                };
                assert!(updated.written);
                tokio::task::yield_now().await;
            }
        });
    }
    let canceller = {
        let (store, uid, applied) = (store.clone(), uid.clone(), Arc::clone(&applied));
        tokio::spawn(async move {
            tokio::task::yield_now().await;
            store
                .update_run(&uid, Durability::Now, |r| {
                    applied.fetch_add(1, Ordering::Relaxed);
                    r.state = RunState::Cancelled;
                    r.finished_at = Some(START);
                    Decision::Write
                })
                .await
                .expect("cancel")
                .expect("exists")
        })
    };
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    assert!(canceller.await.expect("canceller").written);

    let record = store.run(&uid).await.expect("read").expect("exists");
    assert_eq!(record.state, RunState::Cancelled, "the cancel was lost");
    let mut seen: Vec<u16> = record
        .callback
        .expect("callback")
        .attempts
        .iter()
        .filter_map(|a| a.http_status)
        .collect();
    seen.sort_unstable();
    let mut expected: Vec<u16> = (0..RACE_WRITERS)
        .flat_map(|w| (0..RACE_UPDATES).map(move |i| w * 1000 + i))
        .collect();
    expected.sort_unstable();
    let lost = expected.iter().filter(|e| !seen.contains(e)).count();
    assert_eq!(lost, 0, "callback attempts lost in the race");
    assert_eq!(seen, expected, "every attempt once");
    // The history's summary follows the record's last write.
    let summary = store
        .runs(&RunQuery {
            topic: Some(req.topic.clone()),
            state: Some(RunState::Cancelled),
            trigger: None,
            limit: 10,
            cursor: None,
            since: None,
        })
        .await
        .expect("runs");
    assert!(summary.runs.iter().any(|r| r.request_uid == uid));
    let writes = usize::from(RACE_WRITERS * RACE_UPDATES) + 1;
    (
        applied.load(Ordering::Relaxed) - writes,
        conflicts.load(Ordering::Relaxed),
    )
}

/// The compare-and-set itself, on both backends: a change that loses its
/// race is applied again to the newer record (both writes kept); one that
/// loses every time is not written and answers `Conflict`; an unknown uid
/// is None; a change that keeps writes nothing. The racing write is made
/// from inside the change, on another thread, so it needs a
/// multi-threaded runtime.
pub async fn conflict_suite(store: Store) {
    use gitfaas::store::{Decision, UPDATE_ATTEMPTS};

    let req = request_with(&store, 1);
    store.save_run(&req, Durability::Soon).await.expect("save");
    let uid = req.request_uid.clone();
    let handle = tokio::runtime::Handle::current();
    // Another writer's change, made while a change is being applied.
    let race = |commit: &str| {
        let (store, uid, commit, handle) = (
            store.clone(),
            uid.clone(),
            commit.to_string(),
            handle.clone(),
        );
        std::thread::spawn(move || {
            handle.block_on(store.update_run(&uid, Durability::Soon, |r| {
                r.commit.push_str(&commit);
                Decision::Write
            }))
        })
        .join()
        .expect("racing writer")
        .expect("racing write")
        .expect("exists")
    };

    // Lost once, then applied again to the record the race wrote.
    let mut calls = 0;
    let updated = store
        .update_run(&uid, Durability::Now, |r| {
            calls += 1;
            if calls == 1 {
                assert!(race("+other").written);
            }
            r.http_status = Some(201);
            Decision::Write
        })
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(calls, 2, "applied again after losing its race");
    assert!(updated.written);
    let stored = store.run(&uid).await.expect("read").expect("exists");
    assert_eq!(stored, updated.record);
    assert_eq!(stored.commit, "abc123+other", "the racing write kept");
    assert_eq!(stored.http_status, Some(201), "the change kept");

    // Lost every time: nothing written, a typed conflict.
    let mut calls = 0u32;
    let err = store
        .update_run(&uid, Durability::Now, |r| {
            calls += 1;
            race(".");
            r.http_status = Some(500);
            Decision::Write
        })
        .await
        .expect_err("loses every race");
    assert!(
        matches!(err, StoreError::Conflict { attempts, .. } if attempts == UPDATE_ATTEMPTS),
        "{err}"
    );
    assert_eq!(calls, UPDATE_ATTEMPTS);
    assert!(
        !err.to_string().contains(uid.as_str()),
        "a prefix of the uid: {err}"
    );
    let stored = store.run(&uid).await.expect("read").expect("exists");
    assert_eq!(
        stored.http_status,
        Some(201),
        "the losing change is not written"
    );
    assert_eq!(
        stored.commit,
        format!("abc123+other{}", ".".repeat(UPDATE_ATTEMPTS as usize)),
        "every racing write kept"
    );

    // Keep: nothing written, the record as read.
    let kept = store
        .update_run(&uid, Durability::Now, |r| {
            r.http_status = Some(418);
            Decision::Keep
        })
        .await
        .expect("update")
        .expect("exists");
    assert!(!kept.written);
    assert_eq!(
        store
            .run(&uid)
            .await
            .expect("read")
            .and_then(|r| r.http_status),
        Some(201)
    );

    // Unknown: None, and nothing created; upsert creates it.
    let absent = request_with(&store, 1);
    assert_eq!(
        store
            .update_run(&absent.request_uid, Durability::Now, |_| Decision::Write)
            .await
            .expect("update"),
        None
    );
    assert_eq!(store.run(&absent.request_uid).await.expect("read"), None);
    let created = store
        .upsert_run(&absent, Durability::Now, |_| Decision::Write)
        .await
        .expect("upsert");
    assert!(created.written);
    assert_eq!(
        store.run(&absent.request_uid).await.expect("read"),
        Some(absent.clone())
    );
    // Present: the change applies to what is stored, the copy is not written.
    let mut copy = absent.clone();
    copy.commit = "stale".into();
    let changed = store
        .upsert_run(&copy, Durability::Now, |r| {
            r.http_status = Some(204);
            Decision::Write
        })
        .await
        .expect("upsert");
    assert_eq!(changed.record.commit, "abc123");
    assert_eq!(changed.record.http_status, Some(204));
}
