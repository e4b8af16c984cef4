//! The runs on the embedded store: cancel (of a queued, a running and a
//! finished run), the settling of a run whose Jobs ended when its view is
//! read, and the tree of a pipeline. The cluster is the mocked API server
//! with its exact calls.

use serde_json::{json, Value};

use super::*;
use crate::fixtures::{mock_api, resources, stored, Exchange, Wired};
use crate::object::{ObjectRef, LABEL_MANAGED_BY, LABEL_TOPIC};
use crate::store::{SlotAsk, SlotDecision, StoredFunction};

const REPOSITORY: [(&str, &str); 2] = [
    (
        "config.json",
        r#"{"topics": [{"name": "t", "configs": ["job.yaml"], "maxConcurrent": 1, "overflow": "queue"}]}"#,
    ),
    (
        "job.yaml",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: busybox\n",
    ),
];

const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";

/// The list of `uid`'s Jobs a view makes, answered with `items`.
fn list_jobs(uid: &str, items: Vec<Value>) -> Exchange {
    Exchange::get(&format!(
        "{JOBS}?&labelSelector=gitfaas.io%2Frequest-uid%3D{uid}"
    ))
    .answers(
        200,
        json!({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": items}),
    )
}

/// Job `j` of run `uid` as the API server has it, with `status`.
fn job(uid: &str, status: Value) -> Value {
    let mut job = stored(
        &json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "ns"}}),
        "uid-j",
        &[
            (LABEL_MANAGED_BY, "gitfaas"),
            (LABEL_TOPIC, "t"),
            (LABEL_REQUEST_UID, uid),
        ],
    );
    job["status"] = status;
    job
}

/// The record of limited run `uid` of topic `t` in `state`, holding
/// the topic's slot; with Job `j` when `with_job`.
async fn run_in(w: &Wired, uid: &str, state: RunState, with_job: bool) -> RunRecord {
    let mut record = w.store.new_run(&crate::uid::rid(uid), "t", "c0ffee");
    record.limited = true;
    record.state = state;
    if with_job {
        record.functions = vec![StoredFunction {
            function_uid: format!("f-1-{uid}").into(),
            path: "job.yaml".into(),
            objects: vec![ObjectRef {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: Some("ns".into()),
                name: "j".into(),
            }],
        }];
    }
    let admitted = w
        .store
        .admit(&SlotAsk {
            topic: "t",
            request_uid: &crate::uid::rid(uid),
            max: 1,
            floor: 0,
            max_queued: 1,
            max_queued_bytes: 1 << 20,
            holder: w.lifecycle.holder(),
            expires_at: record.expires_at,
            run: &json!({"run": {}, "record": record}),
        })
        .await
        .expect("the store");
    match state {
        RunState::Queued => assert!(matches!(admitted, SlotDecision::Queued { .. })),
        _ => assert!(matches!(admitted, SlotDecision::Slot)),
    }
    w.store
        .save_run(&record, Durability::Now)
        .await
        .expect("saved");
    record
}

async fn recorded(w: &Wired, uid: &str) -> RunRecord {
    w.store
        .run(&crate::uid::rid(uid))
        .await
        .expect("the store")
        .expect("a record")
}

async fn slot_holders(w: &Wired) -> Vec<String> {
    w.store
        .slots("t")
        .await
        .expect("the store")
        .into_iter()
        .map(|s| s.request_uid.into_string())
        .collect()
}

#[tokio::test]
async fn cancelling_a_running_run_records_it_cancelled_deletes_its_jobs_and_frees_its_slot() {
    let (client, api) = mock_api(vec![
        // Still running?
        list_jobs("r-1", vec![job("r-1", json!({"active": 1}))]),
        // Its Job, deleted by uid when it is the run's own.
        Exchange::get("/apis/batch/v1").answers(200, resources("batch/v1", &[("jobs", "Job")])),
        Exchange::get(&format!("{JOBS}/j")).answers(200, job("r-1", json!({"active": 1}))),
        Exchange::delete(&format!("{JOBS}/j?"))
            .with_body(
                json!({"propagationPolicy": "Background", "preconditions": {"uid": "uid-j"}}),
            )
            .answers(200, json!({})),
        // The view answered.
        list_jobs("r-1", Vec::new()),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    run_in(&w, "r-1", RunState::Running, true).await;
    assert_eq!(slot_holders(&w).await, ["r-1"]);

    let Some(Cancel::Cancelled(view)) = w
        .runs
        .cancel(&crate::uid::rid("r-1"))
        .await
        .expect("a cancel")
    else {
        panic!("expected the run cancelled");
    };
    assert_eq!(view.state, RunState::Cancelled);
    let r1 = recorded(&w, "r-1").await;
    assert_eq!(r1.state, RunState::Cancelled);
    assert_eq!(r1.finished_at, Some(w.clock.now()));
    assert!(slot_holders(&w).await.is_empty());

    drop(w);
    api.done().await;
}

#[tokio::test]
async fn cancelling_a_queued_run_takes_it_out_of_its_queue_without_a_call() {
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    run_in(&w, "r-1", RunState::Running, false).await;
    run_in(&w, "r-2", RunState::Queued, false).await;
    assert_eq!(w.store.queue_len("t").await.expect("the store"), 1);

    let Some(Cancel::Cancelled(view)) = w
        .runs
        .cancel(&crate::uid::rid("r-2"))
        .await
        .expect("a cancel")
    else {
        panic!("expected the run cancelled");
    };
    assert_eq!(view.state, RunState::Cancelled);
    assert_eq!(recorded(&w, "r-2").await.state, RunState::Cancelled);
    assert_eq!(w.store.queue_len("t").await.expect("the store"), 0);
    // The running run keeps its slot.
    assert_eq!(slot_holders(&w).await, ["r-1"]);

    drop(w);
    api.done().await;
}

#[tokio::test]
async fn a_finished_run_is_not_cancelled_and_an_unknown_one_is_none() {
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    for state in [RunState::Succeeded, RunState::Failed, RunState::Pending] {
        let uid = format!("r-{}", state.as_str());
        let mut record = w.store.new_run(&crate::uid::rid(&uid), "t", "c0ffee");
        record.state = state;
        w.store
            .save_run(&record, Durability::Now)
            .await
            .expect("saved");
        match w
            .runs
            .cancel(&crate::uid::rid(&uid))
            .await
            .expect("an answer")
        {
            Some(Cancel::NotCancellable(s)) => assert_eq!(s, state),
            _ => panic!("a {} run was cancelled", state.as_str()),
        }
        assert_eq!(recorded(&w, &uid).await.state, state);
    }
    assert!(w
        .runs
        .cancel(&crate::uid::rid("r-unknown"))
        .await
        .expect("an answer")
        .is_none());

    drop(w);
    api.done().await;
}

#[tokio::test]
async fn reading_a_run_whose_jobs_ended_settles_it_and_frees_its_slot() {
    let complete = json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
    let failed = json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]});
    let (client, api) = mock_api(vec![
        list_jobs("r-1", vec![job("r-1", complete)]),
        list_jobs("r-2", vec![job("r-2", failed)]),
    ]);
    let w = Wired::new(client, &REPOSITORY).await;
    for (uid, ended) in [("r-1", RunState::Succeeded), ("r-2", RunState::Failed)] {
        run_in(&w, uid, RunState::Running, true).await;
        let view = w
            .runs
            .view(&crate::uid::rid(uid))
            .await
            .expect("a view")
            .expect("known");
        assert!(view.done);
        let record = recorded(&w, uid).await;
        assert_eq!(record.state, ended, "{uid}");
        assert_eq!(record.finished_at, Some(w.clock.now()));
        assert!(slot_holders(&w).await.is_empty(), "{uid}'s slot is freed");
    }

    drop(w);
    api.done().await;
}

#[tokio::test]
async fn the_tree_of_any_run_of_a_pipeline_starts_at_its_root() {
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    for (uid, parent, state) in [
        ("root", None, RunState::Succeeded),
        ("a", Some("root"), RunState::Succeeded),
        ("b", Some("root"), RunState::Running),
        ("a1", Some("a"), RunState::Failed),
    ] {
        let mut record = w.store.new_run(&crate::uid::rid(uid), "t", "c0ffee");
        record.parent = parent.map(crate::uid::rid);
        record.state = state;
        w.store
            .save_run(&record, Durability::Now)
            .await
            .expect("saved");
        w.clock.advance(std::time::Duration::from_secs(1));
    }
    fn shape(node: &TreeNode) -> Value {
        json!([
            node.request_uid,
            node.state,
            node.children.iter().map(shape).collect::<Vec<_>>()
        ])
    }
    for asked in ["a1", "b", "root"] {
        let tree = w
            .runs
            .tree(&crate::uid::rid(asked))
            .await
            .expect("the store")
            .expect("known");
        assert!(!tree.truncated);
        assert_eq!(
            shape(&tree.root),
            json!([
                "root",
                "Succeeded",
                [
                    ["a", "Succeeded", [["a1", "Failed", []]]],
                    ["b", "Running", []],
                ]
            ]),
            "asked for {asked}"
        );
    }
    assert!(w
        .runs
        .tree(&crate::uid::rid("nobody"))
        .await
        .expect("the store")
        .is_none());

    drop(w);
    api.done().await;
}

/// A tracker lives as long as its run's Jobs, 10,000 at once: its future
/// must hold the wait alone, not the end's work (4 KB of keeping logs, a
/// view) nor the record. 5,168 bytes before issue 28's change; about 1 KB
/// after. The bound is loose (compilers differ); what it catches is an
/// end's work inlined again.
/// A tracked run whose Job the watch showed and then lost (deleted: by its
/// TTL, or by hand, as a queued run's slot is freed) is recorded Succeeded
/// at once, as its view would count a Job that is gone, and its slot
/// freed, without a call to the API server: the mocked one expects none.
#[tokio::test]
async fn a_tracked_run_whose_job_is_deleted_ends_without_asking_the_api_server() {
    use kube::runtime::watcher::Event;
    let (client, api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    let (watch, mut hand) = crate::cluster::jobwatch::by_hand();
    let job: crate::cluster::jobwatch::WatchedJob = serde_json::from_value(
        json!({"metadata": {"name": "j", "namespace": "ns", "resourceVersion": "1"}}),
    )
    .expect("a Job");
    hand.event(Event::Apply(job.clone()));
    w.lifecycle.applier.job_watches().insert("ns", watch);
    run_in(&w, "r-1", RunState::Running, true).await;
    w.runs.track(crate::uid::rid("r-1"));
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let waiting = |w: &Wired| {
        w.lifecycle
            .applier
            .job_watches()
            .namespace("ns")
            .is_some_and(|watch| watch.waited_on() == 1)
    };
    while !waiting(&w) {
        assert!(
            tokio::time::Instant::now() < until,
            "the tracker never waited on j"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(recorded(&w, "r-1").await.state, RunState::Running);
    hand.event(Event::Delete(job));
    while recorded(&w, "r-1").await.state == RunState::Running {
        assert!(
            tokio::time::Instant::now() < until,
            "the run's end was never recorded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let record = recorded(&w, "r-1").await;
    assert_eq!(record.state, RunState::Succeeded);
    assert_eq!(record.finished_at, Some(w.clock.now()));
    assert!(slot_holders(&w).await.is_empty(), "its slot is freed");

    drop(w);
    api.done().await;
}

#[tokio::test]
async fn a_trackers_future_stays_small() {
    let (client, _api) = mock_api(Vec::new());
    let w = Wired::new(client, &REPOSITORY).await;
    let uid = crate::uid::rid("r-1");
    let follow = w.runs.follow(&uid, None);
    let size = std::mem::size_of_val(&follow);
    eprintln!("follow: {size} bytes");
    assert!(size <= 2048, "a tracker's future is {size} bytes");
}
