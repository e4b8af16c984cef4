//! The dispatcher on the embedded store: slots and queues of a limited
//! topic, the pump, the retries of a transient failure with their backoff
//! (tokio's paused clock), and the sweep taking over a dead holder's slots
//! (the store's manual clock past the lease). Queued runs are applied by a
//! scripted [`QueuedApply`]; the admission's count of active Jobs goes to
//! the mocked API server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::catalog::{Overflow, Retry};
use crate::error::Code;
use crate::fixtures::{eventually, mock_api, Exchange, Wired, LEASE};
use crate::store::{RunInputs, RunRecord, RunState, SlotAsk, StoredFunction};

/// Topic `t`, limited to one run at a time, whose runs wait in a queue.
const REPOSITORY: [(&str, &str); 2] = [
    (
        "config.json",
        r#"{"topics": [{"name": "t", "configs": ["cm.yaml"], "maxConcurrent": 1, "overflow": "queue", "maxQueued": 1}]}"#,
    ),
    (
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
    ),
];

/// The count of the topic's active Jobs an admission makes.
fn count_jobs() -> Exchange {
    Exchange::get("/apis/batch/v1/namespaces/ns/jobs?&labelSelector=gitfaas.io%2Ftopic%3Dt")
        .answers(
            200,
            json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}),
        )
}

/// What the applies of the scripted runs end with, in order, and how many
/// were made.
#[derive(Default)]
struct Applies {
    outcomes: Mutex<VecDeque<ApplyOutcome>>,
    made: AtomicU32,
}

impl Applies {
    fn new(outcomes: Vec<ApplyOutcome>) -> Arc<Self> {
        Arc::new(Applies {
            outcomes: Mutex::new(outcomes.into()),
            made: AtomicU32::new(0),
        })
    }

    fn made(&self) -> u32 {
        self.made.load(Ordering::SeqCst)
    }
}

struct ScriptedRun(Arc<Applies>);

impl QueuedApply for ScriptedRun {
    fn apply(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ApplyOutcome> + Send + '_>> {
        Box::pin(async move {
            self.0.made.fetch_add(1, Ordering::SeqCst);
            let next = self.0.outcomes.lock().expect("lock").pop_front();
            next.expect("an apply more than scripted")
        })
    }

    fn inputs(&self, callback: Option<String>) -> RunInputs {
        RunInputs {
            body: "aGVsbG8=".into(),
            params: Vec::new(),
            callback,
        }
    }
}

struct ScriptedLauncher(Arc<Applies>);

impl Launcher for ScriptedLauncher {
    fn read(&self, run: Value) -> Result<Box<dyn QueuedApply>, String> {
        assert_eq!(run, json!({"queued": "run"}), "the run the queue kept");
        Ok(Box::new(ScriptedRun(Arc::clone(&self.0))))
    }
}

fn applied() -> ApplyOutcome {
    ApplyOutcome {
        answer: json!({"error": false, "topic": "t"}),
        http_status: 202,
        failed: false,
        failure: None,
        message: None,
    }
}

fn unavailable() -> ApplyOutcome {
    ApplyOutcome {
        answer: json!({"error": true, "topic": "t"}),
        http_status: 503,
        failed: true,
        failure: Some(Code::ClusterError),
        message: Some("the API server answered 503".into()),
    }
}

/// The record of limited run `uid` of topic `t`: one ConfigMap, no Job
/// (so an apply ends it Succeeded, with no tracker to follow).
fn record(w: &Wired, uid: &str) -> RunRecord {
    let mut record = w.store.new_run(&crate::uid::rid(uid), "t", "c0ffee");
    record.limited = true;
    record.functions = vec![StoredFunction {
        function_uid: format!("f-1-{uid}").into(),
        path: "cm.yaml".into(),
        objects: vec![crate::object::ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: "a".into(),
        }],
    }];
    record
}

fn limit() -> Limit {
    Limit {
        max: 1,
        overflow: Overflow::Queue {
            max_queued: 1,
            max_queued_bytes: 1 << 20,
        },
        namespaces: Default::default(),
    }
}

async fn state_of(w: &Wired, uid: &str) -> Option<RunRecord> {
    w.store.run(&crate::uid::rid(uid)).await.expect("the store")
}

async fn holders(w: &Wired) -> Vec<(String, String)> {
    w.store
        .slots("t")
        .await
        .expect("the store")
        .into_iter()
        .map(|s| (s.request_uid.into_string(), s.holder))
        .collect()
}

#[tokio::test]
async fn a_full_topic_queues_a_run_and_applies_it_when_the_slot_frees() {
    let (client, api) = mock_api(vec![count_jobs(), count_jobs(), count_jobs()]);
    let w = Wired::new(client, &REPOSITORY).await;
    let applies = Applies::new(vec![applied()]);
    let dispatcher = w.dispatcher(Arc::new(ScriptedLauncher(Arc::clone(&applies))));
    let limit = limit();
    let ask = |uid: &'static str, record: &'static RunRecord| Ask {
        topic: "t",
        request_uid: Box::leak(Box::new(crate::uid::rid(uid))),
        limit: &limit,
        run: json!({"queued": "run"}),
        record,
    };
    let first: &'static RunRecord = Box::leak(Box::new(record(&w, "r-1")));
    let mut queued = record(&w, "r-2");
    queued.state = RunState::Queued;
    let second: &'static RunRecord = Box::leak(Box::new(queued.clone()));
    let third: &'static RunRecord = Box::leak(Box::new(record(&w, "r-3")));

    assert!(matches!(
        dispatcher.admit(ask("r-1", first)).await,
        Ok(Admitted::Slot)
    ));
    assert!(matches!(
        dispatcher.admit(ask("r-2", second)).await,
        Ok(Admitted::Queued(1))
    ));
    match dispatcher.admit(ask("r-3", third)).await {
        Err(AdmitError::Full(full)) => assert_eq!(
            full,
            Full::Queue {
                active: 1,
                queued: 1
            }
        ),
        other => panic!("expected a full queue, got {:?}", other.map(|_| ())),
    }
    // The publish records the queued run right after the decision.
    w.store
        .save_run(&queued, Durability::Now)
        .await
        .expect("saved");

    // The slot is taken: the pump dispatches nothing.
    dispatcher.pump("t").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(applies.made(), 0);
    assert_eq!(
        holders(&w).await,
        [("r-1".into(), w.lifecycle.holder().into())]
    );
    assert_eq!(
        w.store
            .queue_position("t", &crate::uid::rid("r-2"))
            .await
            .expect("store"),
        Some(1)
    );

    // The first run ends: its slot goes to the queued run, which is applied.
    w.runs.free_slot("t", &crate::uid::rid("r-1")).await;
    dispatcher.pump("t").await;
    eventually("the queued run recorded Succeeded", || async {
        state_of(&w, "r-2")
            .await
            .is_some_and(|r| r.state == RunState::Succeeded)
    })
    .await;
    assert_eq!(applies.made(), 1);
    let r2 = state_of(&w, "r-2").await.expect("recorded");
    assert_eq!(r2.http_status, Some(202));
    assert_eq!(r2.report, Some(json!({"error": false, "topic": "t"})));
    assert!(r2.finished_at.is_some());
    // Nothing of it to follow: its slot is free again, the queue empty.
    eventually("the slot freed", || async { holders(&w).await.is_empty() }).await;
    assert_eq!(w.store.queue_len("t").await.expect("store"), 0);

    drop((dispatcher, w));
    api.done().await;
}

/// Run `r-1` holding its slot, applied by the dispatcher with `retry`
/// against `outcomes`; its record, the applies made and the time it took.
async fn apply_with_retry(
    retry: Retry,
    outcomes: Vec<ApplyOutcome>,
) -> (RunRecord, u32, Duration, Vec<(String, String)>) {
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    let applies = Applies::new(outcomes);
    let dispatcher = w.dispatcher(Arc::new(ScriptedLauncher(Arc::clone(&applies))));
    let record = record(&w, "r-1");
    let admitted = w
        .store
        .admit(&SlotAsk {
            topic: "t",
            request_uid: &crate::uid::rid("r-1"),
            max: 1,
            floor: 0,
            max_queued: 0,
            max_queued_bytes: 0,
            holder: w.lifecycle.holder(),
            expires_at: record.expires_at,
            run: &Value::Null,
        })
        .await
        .expect("the store");
    assert!(matches!(admitted, crate::store::SlotDecision::Slot));
    let started = tokio::time::Instant::now();
    dispatcher
        .apply_and_finish(
            Box::new(ScriptedRun(Arc::clone(&applies))),
            record,
            retry,
            0,
        )
        .await;
    let took = started.elapsed();
    let stored = state_of(&w, "r-1").await.expect("recorded");
    let slots = holders(&w).await;
    let made = applies.made();
    drop((dispatcher, w));
    api.done().await;
    (stored, made, took, slots)
}

const RETRY: Retry = Retry {
    attempts: 3,
    backoff: Duration::from_secs(2),
    max_backoff: Duration::from_secs(60),
};

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_tried_again_after_its_backoff_and_recorded_as_an_attempt() {
    let (record, made, took, slots) = apply_with_retry(RETRY, vec![unavailable(), applied()]).await;
    assert_eq!(made, 2);
    // The first backoff, 2 s, with up to half of it again as jitter.
    assert!(
        took >= Duration::from_secs(2)
            && took <= Duration::from_secs(3) + Duration::from_millis(100),
        "{took:?}"
    );
    assert_eq!(record.state, RunState::Succeeded);
    assert_eq!(record.http_status, Some(202));
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].code, Code::ClusterError.as_str());
    assert_eq!(record.attempts[0].message, "the API server answered 503");
    assert!(
        record.inputs.is_none(),
        "only a dead letter keeps its inputs"
    );
    assert!(slots.is_empty(), "{slots:?}");
}

#[tokio::test(start_paused = true)]
async fn a_run_failing_every_attempt_is_a_dead_letter_with_its_attempts() {
    let (record, made, took, slots) =
        apply_with_retry(RETRY, vec![unavailable(), unavailable(), unavailable()]).await;
    assert_eq!(made, 3);
    // 2 s then 4 s, each with up to half of it again.
    assert!(
        took >= Duration::from_secs(6)
            && took <= Duration::from_secs(9) + Duration::from_millis(100),
        "{took:?}"
    );
    assert_eq!(record.state, RunState::Failed);
    assert_eq!(record.http_status, Some(503));
    assert_eq!(record.attempts.len(), 3);
    assert!(record
        .attempts
        .iter()
        .all(|a| a.code == Code::ClusterError.as_str()));
    let inputs = record
        .inputs
        .expect("a dead letter keeps what it published");
    assert_eq!(inputs.body, "aGVsbG8=");
    assert!(record.finished_at.is_some());
    assert!(slots.is_empty(), "a dead letter frees its slot: {slots:?}");
}

/// `r-1` holding the slot of topic `t` for the process `gitfaas-dead`,
/// whose heartbeat holds for [`LEASE`] from now.
async fn held_by_a_dead_holder(w: &Wired, record: &RunRecord, run: &Value) {
    w.store
        .heartbeat("gitfaas-dead", LEASE)
        .await
        .expect("the store");
    let admitted = w
        .store
        .admit(&SlotAsk {
            topic: "t",
            request_uid: &record.request_uid,
            max: 1,
            floor: 0,
            max_queued: 1,
            max_queued_bytes: 1 << 20,
            holder: "gitfaas-dead",
            expires_at: record.expires_at,
            run,
        })
        .await
        .expect("the store");
    assert!(matches!(admitted, crate::store::SlotDecision::Slot));
}

#[tokio::test]
async fn a_sweep_takes_over_the_slot_of_a_holder_whose_heartbeat_lapsed() {
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    let applies = Applies::new(Vec::new());
    let dispatcher = w.dispatcher(Arc::new(ScriptedLauncher(Arc::clone(&applies))));
    // Published directly (not queued), its apply died with its process.
    let mut record = record(&w, "r-1");
    record.functions.clear();
    held_by_a_dead_holder(&w, &record, &Value::Null).await;
    w.store
        .save_run(&record, Durability::Now)
        .await
        .expect("saved");

    // Within the lease: its holder may be alive.
    w.clock.advance(LEASE - Duration::from_secs(1));
    assert_eq!(dispatcher.sweep().await.expect("a sweep"), 0);
    assert_eq!(holders(&w).await, [("r-1".into(), "gitfaas-dead".into())]);
    assert_eq!(
        state_of(&w, "r-1").await.map(|r| r.state),
        Some(RunState::Pending)
    );

    // Past it: taken over; nothing of it was applied, so it is a dead letter.
    w.clock.advance(Duration::from_secs(2));
    assert_eq!(dispatcher.sweep().await.expect("a sweep"), 1);
    let r1 = state_of(&w, "r-1").await.expect("recorded");
    assert_eq!(r1.state, RunState::Failed);
    assert_eq!(r1.http_status, Some(503));
    assert_eq!(r1.finished_at, Some(w.clock.now()));
    assert!(holders(&w).await.is_empty());
    assert_eq!(applies.made(), 0);

    drop((dispatcher, w));
    api.done().await;
}

#[tokio::test]
async fn a_sweep_applies_the_queued_run_a_dead_holder_had_dispatched() {
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    let applies = Applies::new(vec![applied()]);
    let dispatcher = w.dispatcher(Arc::new(ScriptedLauncher(Arc::clone(&applies))));
    // r-1 runs; r-2 waits, then the dead process frees r-1's slot and
    // takes r-2 from the queue, and dies before it applies it.
    let first = record(&w, "r-1");
    held_by_a_dead_holder(&w, &first, &Value::Null).await;
    let mut second = record(&w, "r-2");
    second.functions.clear();
    second.state = RunState::Queued;
    let entry = serde_json::to_value(Entry {
        run: json!({"queued": "run"}),
        record: second.clone(),
    })
    .expect("json");
    let queued = w
        .store
        .admit(&SlotAsk {
            topic: "t",
            request_uid: &crate::uid::rid("r-2"),
            max: 1,
            floor: 0,
            max_queued: 1,
            max_queued_bytes: 1 << 20,
            holder: "gitfaas-dead",
            expires_at: second.expires_at,
            run: &entry,
        })
        .await
        .expect("the store");
    assert!(matches!(
        queued,
        crate::store::SlotDecision::Queued { position: 1 }
    ));
    w.store
        .save_run(&second, Durability::Now)
        .await
        .expect("saved");
    assert!(w
        .store
        .slot_release("t", &crate::uid::rid("r-1"))
        .await
        .expect("the store"));
    let taken = w
        .store
        .dispatch_next("t", 1, "gitfaas-dead")
        .await
        .expect("the store");
    assert_eq!(
        taken.map(|e| e.request_uid.into_string()),
        Some("r-2".to_string())
    );

    w.clock.advance(LEASE + Duration::from_secs(1));
    assert_eq!(dispatcher.sweep().await.expect("a sweep"), 1);
    eventually("the adopted run recorded Succeeded", || async {
        state_of(&w, "r-2")
            .await
            .is_some_and(|r| r.state == RunState::Succeeded)
    })
    .await;
    assert_eq!(applies.made(), 1);
    eventually("the slot freed", || async { holders(&w).await.is_empty() }).await;

    drop((dispatcher, w));
    api.done().await;
}
