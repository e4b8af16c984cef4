//! The whole of a publish on the embedded store against the mocked API
//! server: the Idempotency-Key claim (a replay answers the first publish
//! and applies nothing; a publish that applied nothing releases it), and
//! the dry run that records nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::fixtures::{mock_api, resources, stored, Exchange, Wired};
use crate::object::{LABEL_MANAGED_BY, LABEL_REQUEST_UID, LABEL_TOPIC};

const CMS: &str = "/api/v1/namespaces/ns/configmaps";
const CREATE: &str = "?&fieldManager=gitfaas";
const DRY_CREATE: &str = "?&dryRun=All&fieldManager=gitfaas";

/// Topic `one` of ConfigMap `a`, topic `two` of ConfigMaps `a` and `b`
/// (dry run whole before they are created), topic `q` of ConfigMap `a`,
/// one run at a time, the others queued.
const REPOSITORY: [(&str, &str); 3] = [
    (
        "config.json",
        r#"{"topics": [{"name": "one", "configs": ["a.yaml"]}, {"name": "two", "configs": ["a.yaml", "b.yaml"]}, {"name": "q", "configs": ["a.yaml"], "maxConcurrent": 1, "overflow": "queue"}]}"#,
    ),
    (
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n",
    ),
    (
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  k: v\n",
    ),
];

fn discover_core() -> Exchange {
    Exchange::get("/api/v1").answers(200, resources("v1", &[("configmaps", "ConfigMap")]))
}

fn created(query: &str, name: &str, request_uid: &str, topic: &str) -> Exchange {
    Exchange::post(&format!("{CMS}{query}"))
        .with_body(json!({"metadata": {"name": name, "namespace": "ns"}}))
        .answers(
            201,
            stored(
                &json!({"metadata": {"name": name}}),
                &format!("uid-{name}"),
                &[
                    (LABEL_MANAGED_BY, "gitfaas"),
                    (LABEL_TOPIC, topic),
                    (LABEL_REQUEST_UID, request_uid),
                ],
            ),
        )
}

/// A publisher over `w`, wired as the application wires it.
fn publisher(w: &Wired) -> Publisher {
    publisher_and_dispatcher(w).0
}

/// A publisher over `w` and its dispatcher.
fn publisher_and_dispatcher(w: &Wired) -> (Publisher, Arc<Dispatcher>) {
    let relauncher = crate::publish::Relauncher::new(
        Arc::clone(&w.lifecycle.applier),
        Policy::default(),
        w.lifecycle.tasks.clone(),
        Arc::clone(&w.rollbacks),
    );
    let dispatcher = w.dispatcher(Arc::new(relauncher.clone()));
    let publisher = Publisher::new(Parts {
        syncer: Arc::clone(&w.syncer),
        applier: Arc::clone(&w.lifecycle.applier),
        lifecycle: Arc::clone(&w.lifecycle),
        runs: Arc::clone(&w.runs),
        policy: Policy::default(),
        public_url: "http://gitfaas.test".into(),
        limits: Limits {
            max_in_flight: 4,
            max_query_params: 16,
            max_param_bytes: 1024,
            idempotency_lease: Duration::from_secs(60),
            max_waiters: 4,
            log_archive_bytes: 0,
            dispatch_lease: crate::fixtures::LEASE,
        },
        max_payload_bytes: 1 << 20,
        in_flight: Arc::new(Semaphore::new(4)),
        tasks: w.lifecycle.tasks.clone(),
        dispatcher: Arc::clone(&dispatcher),
        relauncher,
        rollbacks: Arc::clone(&w.rollbacks),
    });
    (publisher, dispatcher)
}

/// Request `request_uid` to `topic` with `body`, by caller `c`.
fn order(request_uid: &str, topic: &str, body: &'static str, key: Option<&str>) -> Order {
    Order {
        request_uid: request_uid.into(),
        topic: topic.into(),
        caller: "c".into(),
        body: bytes::Bytes::from_static(body.as_bytes()),
        params: Vec::new(),
        dry_run: false,
        wait: None,
        idempotency_key: key.map(crate::uid::IdempotencyKey::from),
        callback: None,
        parent: None,
        parent_function: None,
        trace_id: None,
        retry_of: None,
        trigger: crate::store::Trigger::Http,
        scheduled_time: None,
        cloudevent: None,
        filter: Some(Default::default()),
    }
}

async fn publish(p: &Publisher, order: Order) -> Result<Outcome, WorkflowError> {
    let admission = p.admit().expect("admitted");
    p.publish(admission, order, std::future::pending()).await
}

/// Run r-0 takes topic `q`'s one slot.
async fn hold_the_only_slot(w: &Wired) {
    let admitted = w
        .store
        .admit(&crate::store::SlotAsk {
            topic: "q",
            request_uid: &crate::uid::rid("r-0"),
            max: 1,
            floor: 0,
            max_queued: 0,
            max_queued_bytes: 0,
            holder: w.lifecycle.holder(),
            expires_at: u64::MAX,
            run: &Value::Null,
        })
        .await
        .expect("the store");
    assert!(matches!(admitted, crate::store::SlotDecision::Slot));
}

async fn state_of(w: &Wired, uid: &str) -> Option<RunState> {
    w.store
        .run(&crate::uid::rid(uid))
        .await
        .expect("the store")
        .map(|r| r.state)
}

#[tokio::test]
async fn a_publish_again_with_its_idempotency_key_is_answered_the_first_answer_and_applies_nothing()
{
    let (client, api) = mock_api(vec![discover_core(), created(CREATE, "a", "r-1", "one")]);
    let w = Wired::new(client, &REPOSITORY).await;
    let p = publisher(&w);

    let Outcome::Applied(first) = publish(&p, order("r-1", "one", "hello", Some("k")))
        .await
        .expect("applied")
    else {
        panic!("expected an apply");
    };
    assert!(!first.error);
    assert_eq!(state_of(&w, "r-1").await, Some(RunState::Succeeded));

    match publish(&p, order("r-2", "one", "hello", Some("k"))).await {
        Ok(Outcome::Replayed {
            request_uid,
            http_status,
            report,
        }) => {
            assert_eq!(request_uid, "r-1");
            assert_eq!(http_status, 202);
            assert_eq!(report, first.outcome().answer);
        }
        other => panic!("expected a replay, got {other:?}"),
    }
    assert_eq!(state_of(&w, "r-2").await, None, "the replay records no run");

    // The same key with another body is another request: refused.
    match publish(&p, order("r-3", "one", "bye", Some("k"))).await {
        Err(WorkflowError::IdempotencyMismatch { key, what }) => {
            assert_eq!(key, "k");
            assert_eq!(what, "the body");
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }

    drop((p, w));
    api.done().await;
}

#[tokio::test]
async fn a_failed_apply_is_replayed_with_its_failure_and_not_applied_again() {
    let (client, api) = mock_api(vec![
        discover_core(),
        Exchange::post(&format!("{CMS}{CREATE}")).refuses(403, "Forbidden"),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    let p = publisher(&w);

    let Err(WorkflowError::Failed(report)) =
        publish(&p, order("r-1", "one", "hello", Some("k"))).await
    else {
        panic!("expected the apply to fail");
    };
    assert_eq!(report.failure, Some(Code::ClusterForbidden));
    let record = w
        .store
        .run(&crate::uid::rid("r-1"))
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(record.state, RunState::Failed);
    assert!(record.inputs.is_some(), "a dead letter keeps its inputs");

    match publish(&p, order("r-2", "one", "hello", Some("k"))).await {
        Ok(Outcome::Replayed {
            request_uid,
            http_status,
            report: answer,
        }) => {
            assert_eq!(request_uid, "r-1");
            assert_eq!(http_status, report.http_status());
            assert_eq!(answer, report.outcome().answer);
            assert_eq!(answer["code"], Code::ClusterForbidden.as_str());
        }
        other => panic!("expected a replay, got {other:?}"),
    }

    drop((p, w));
    api.done().await;
}

#[tokio::test]
async fn a_publish_that_applied_nothing_releases_its_key_for_the_next() {
    let (client, api) = mock_api(vec![
        // The first: the dry run of the whole topic is refused.
        discover_core(),
        created(DRY_CREATE, "a", "r-1", "two"),
        Exchange::post(&format!("{CMS}{DRY_CREATE}")).refuses(403, "Forbidden"),
        // The second, with the same key: dry run, then created.
        created(DRY_CREATE, "a", "r-2", "two"),
        created(DRY_CREATE, "b", "r-2", "two"),
        created(CREATE, "a", "r-2", "two"),
        created(CREATE, "b", "r-2", "two"),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    let p = publisher(&w);

    match publish(&p, order("r-1", "two", "hello", Some("k"))).await {
        Err(WorkflowError::Publish(PublishError::DryRun { path, .. })) => {
            assert_eq!(path, "b.yaml")
        }
        other => panic!("expected the dry run to fail, got {other:?}"),
    }
    assert_eq!(state_of(&w, "r-1").await, None, "nothing recorded");

    let outcome = publish(&p, order("r-2", "two", "hello", Some("k")))
        .await
        .expect("applied");
    assert!(
        matches!(outcome, Outcome::Applied(ref r) if !r.error),
        "{outcome:?}"
    );
    assert_eq!(state_of(&w, "r-2").await, Some(RunState::Succeeded));

    drop((p, w));
    api.done().await;
}

#[tokio::test]
async fn a_dry_run_applies_and_records_nothing_and_is_never_a_replay() {
    let (client, api) = mock_api(vec![
        discover_core(),
        created(CREATE, "a", "r-1", "one"),
        // The dry run with the same key: checked again, not replayed.
        created(DRY_CREATE, "a", "r-2", "one"),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    let p = publisher(&w);

    let outcome = publish(&p, order("r-1", "one", "hello", Some("k")))
        .await
        .expect("applied");
    assert!(matches!(outcome, Outcome::Applied(_)), "{outcome:?}");

    let mut dry = order("r-2", "one", "hello", Some("k"));
    dry.dry_run = true;
    match publish(&p, dry).await {
        Ok(Outcome::DryRun(report)) => {
            assert!(!report.error && report.dry_run, "{report:?}");
            assert_eq!(report.request_uid, "r-2");
            assert!(report.applies[0].rendered.is_some());
        }
        other => panic!("expected a dry run, got {other:?}"),
    }
    assert_eq!(state_of(&w, "r-2").await, None, "a dry run records nothing");

    drop((p, w));
    api.done().await;
}

#[tokio::test(start_paused = true)]
async fn a_queued_run_is_applied_when_its_slot_frees_and_tried_again_after_a_503() {
    let (client, api) = mock_api(vec![
        // The publish: rendered, its topic's active Jobs counted, queued.
        discover_core(),
        Exchange::get("/apis/batch/v1/namespaces/ns/jobs?&labelSelector=gitfaas.io%2Ftopic%3Dq")
            .answers(
                200,
                json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}),
            ),
        // Dispatched: the API server is unavailable, then the run applies.
        Exchange::post(&format!("{CMS}{CREATE}")).refuses(503, "ServiceUnavailable"),
        // A create the server failed may have created the object: it did not.
        Exchange::get(&format!("{CMS}/a")).refuses(404, "NotFound"),
        created(CREATE, "a", "r-1", "q"),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    let (p, dispatcher) = publisher_and_dispatcher(&w);
    hold_the_only_slot(&w).await;

    match publish(&p, order("r-1", "q", "hello", None)).await {
        Ok(Outcome::Queued(report)) => assert_eq!(report.position, Some(1)),
        other => panic!("expected the run queued, got {other:?}"),
    }
    assert_eq!(state_of(&w, "r-1").await, Some(RunState::Queued));

    let started = tokio::time::Instant::now();
    w.runs.free_slot("q", &crate::uid::rid("r-0")).await;
    dispatcher.pump("q").await;
    crate::fixtures::eventually("the queued run applied", || async {
        state_of(&w, "r-1").await == Some(RunState::Succeeded)
    })
    .await;
    // Retry::QUEUED: 0.5 s, with up to half of it again.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took <= Duration::from_millis(800),
        "{took:?}"
    );
    let record = w
        .store
        .run(&crate::uid::rid("r-1"))
        .await
        .expect("store")
        .expect("kept");
    assert_eq!(record.attempts.len(), 1);
    assert_eq!(record.attempts[0].code, Code::ClusterError.as_str());
    assert_eq!(record.http_status, Some(202));
    crate::fixtures::eventually("the slot freed", || async {
        w.store.slots("q").await.expect("store").is_empty()
    })
    .await;

    drop((p, dispatcher, w));
    api.done().await;
}

#[tokio::test]
async fn a_queued_publish_does_not_take_back_what_a_dispatcher_recorded_first() {
    let (client, api) = mock_api(vec![
        // The publish: rendered, its topic's active Jobs counted, queued.
        discover_core(),
        Exchange::get("/apis/batch/v1/namespaces/ns/jobs?&labelSelector=gitfaas.io%2Ftopic%3Dq")
            .answers(
                200,
                json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}),
            ),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    let (p, dispatcher) = publisher_and_dispatcher(&w);
    hold_the_only_slot(&w).await;
    // A dispatcher that waited for r-1's record in vain applied it from
    // the queue's copy and recorded it Succeeded before the publish's own
    // write of its record (Queued) came.
    let mut ahead = w.store.new_run(&crate::uid::rid("r-1"), "q", "c1");
    ahead.state = RunState::Succeeded;
    w.store
        .save_run(&ahead, crate::store::Durability::Now)
        .await
        .expect("the store");

    match publish(&p, order("r-1", "q", "hello", None)).await {
        Ok(Outcome::Queued(report)) => assert_eq!(report.position, Some(1)),
        other => panic!("expected the run queued, got {other:?}"),
    }
    assert_eq!(state_of(&w, "r-1").await, Some(RunState::Succeeded));

    drop((p, dispatcher, w));
    api.done().await;
}

#[tokio::test]
async fn a_filtered_publish_claims_queues_applies_and_records_nothing() {
    // Topic `q` as in REPOSITORY, with a filter.
    let files = [
        (
            "config.json",
            r#"{"topics": [{"name": "q", "configs": ["a.yaml"], "maxConcurrent": 1, "overflow": "queue", "filter": "body.go == true"}]}"#,
        ),
        REPOSITORY[1],
    ];
    let (client, api) = mock_api(vec![
        // Only the publish that passes is rendered, counted and queued.
        discover_core(),
        Exchange::get("/apis/batch/v1/namespaces/ns/jobs?&labelSelector=gitfaas.io%2Ftopic%3Dq")
            .answers(
                200,
                json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": []}),
            ),
    ]);
    let w = Wired::new(client, &files).await;
    let (p, dispatcher) = publisher_and_dispatcher(&w);
    hold_the_only_slot(&w).await;

    match publish(&p, order("r-1", "q", r#"{"go": false}"#, Some("k"))).await {
        Ok(Outcome::Filtered(f)) => {
            assert!(f.filtered);
            assert_eq!((f.request_uid.as_str(), f.topic.as_str()), ("r-1", "q"));
        }
        other => panic!("expected the publish filtered, got {other:?}"),
    }
    assert_eq!(state_of(&w, "r-1").await, None, "no run recorded");
    let mut dry = order("r-2", "q", r#"{"go": false}"#, None);
    dry.dry_run = true;
    assert!(matches!(publish(&p, dry).await, Ok(Outcome::Filtered(f)) if f.dry_run));

    // A filter that cannot decide is the request's problem.
    match publish(&p, order("r-3", "q", "not JSON", None)).await {
        Err(WorkflowError::Publish(e @ PublishError::Filter { .. })) => {
            assert_eq!(e.kind(), Code::FilterFailed);
            let message = e.to_string();
            assert!(
                message.contains("(body.go == true)") && message.contains("not JSON"),
                "{message}"
            );
        }
        other => panic!("expected the filter to fail, got {other:?}"),
    }

    // The key was not claimed (another body with it is no mismatch), and
    // the queue holds no filtered run: the one that passes is first.
    match publish(&p, order("r-4", "q", r#"{"go": true}"#, Some("k"))).await {
        Ok(Outcome::Queued(report)) => assert_eq!(report.position, Some(1)),
        other => panic!("expected the run queued, got {other:?}"),
    }
    drop((p, dispatcher, w));
    api.done().await;
}
