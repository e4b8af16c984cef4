use super::read::next_line;
use super::wakes::Wakes;
use super::*;
use futures::TryStreamExt;
use serde_json::json;

fn lines_of(input: &[u8], max: usize) -> Vec<Vec<u8>> {
    futures::executor::block_on(async {
        // A reader that hands out 3 bytes at a time, as a network does.
        let chunks: Vec<std::io::Result<Vec<u8>>> =
            input.chunks(3).map(|c| Ok(c.to_vec())).collect();
        let mut reader = futures::stream::iter(chunks).into_async_read();
        let mut out = Vec::new();
        let mut line = Vec::new();
        while next_line(&mut reader, &mut line, max).await.expect("read") {
            out.push(line.clone());
        }
        out
    })
}

#[test]
fn lines_are_cut_at_newlines_and_at_the_bound() {
    assert_eq!(
        lines_of(b"one\ntwo\nthree", 100),
        [b"one\n".to_vec(), b"two\n".to_vec(), b"three".to_vec()]
    );
    assert_eq!(
        lines_of(b"abcdefghij\nk\n", 4),
        [
            b"abcd".to_vec(),
            b"efgh".to_vec(),
            b"ij\n".to_vec(),
            b"k\n".to_vec()
        ],
        "a long line comes in pieces of at most 4 bytes"
    );
    assert_eq!(lines_of(b"", 4), Vec::<Vec<u8>>::new());
    assert_eq!(lines_of(b"\n\n", 4), [b"\n".to_vec(), b"\n".to_vec()]);
}

fn tail_of(input: &[u8], max: usize) -> (String, bool) {
    futures::executor::block_on(async {
        let chunks: Vec<std::io::Result<Vec<u8>>> =
            input.chunks(7).map(|c| Ok(c.to_vec())).collect();
        let reader = futures::stream::iter(chunks).into_async_read();
        read_tail(reader, max).await.expect("read")
    })
}

#[test]
fn a_tail_keeps_the_last_bytes_from_a_line_start() {
    assert_eq!(tail_of(b"one\ntwo\n", 64), ("one\ntwo\n".into(), false));
    assert_eq!(tail_of(b"", 64), (String::new(), false));
    // 10 lines of 10 bytes; 25 bytes keep the last two whole lines.
    let log: Vec<u8> = (0..10)
        .flat_map(|i| format!("line {i:03}\n").into_bytes())
        .collect();
    assert_eq!(tail_of(&log, 25), ("line 008\nline 009\n".into(), true));
    // A long log read through a small bound: memory stays bounded, the
    // end is exact.
    let long: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let (text, cut) = tail_of(&long, 12);
    assert!(cut);
    assert_eq!(
        text, "19998\n19999\n",
        "a cut at a line start keeps that line"
    );
    let (text, _) = tail_of(&long, 13);
    assert_eq!(
        text, "19998\n19999\n",
        "a cut inside a line drops the piece"
    );
    // One line longer than the bound: its end.
    assert_eq!(tail_of(b"abcdefghij", 4), ("ghij".into(), true));
    // Invalid UTF-8 is replaced, not an error.
    assert_eq!(tail_of(b"ok \xff\n", 64).0, "ok \u{fffd}\n");
}

fn pod(status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "uid": "u"},
        "spec": {"initContainers": [{"name": "init"}], "containers": [{"name": "main"}, {"name": "side"}]},
        "status": status,
    }))
    .expect("a Pod")
}

#[test]
fn a_container_that_runs_or_ran_has_a_log_one_still_waiting_has_none() {
    let p = PodState::of(
        &pod(json!({
            "phase": "Running",
            "initContainerStatuses": [{"name": "init", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0}}}],
            "containerStatuses": [
                {"name": "main", "image": "i", "imageID": "", "ready": true, "restartCount": 2,
                 "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"exitCode": 1}}},
                {"name": "side", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ContainerCreating"}}}
            ]
        })),
        "ns",
    )
    .expect("a pod");
    let started: Vec<(String, i32)> = p
        .started(&None)
        .map(|t| (t.container, t.instance.restarts))
        .collect();
    assert_eq!(started, [("init".to_string(), 0), ("main".to_string(), 2)]);
    assert!(p.waiting(&None), "side has not started");
    assert!(!p.waiting(&Some("main".into())));
    let only: Vec<String> = p
        .started(&Some("main".into()))
        .map(|t| t.container)
        .collect();
    assert_eq!(only, ["main"]);
    let done = PodState::of(&pod(json!({"phase": "Failed"})), "ns").expect("a pod");
    assert!(
        done.terminal && !done.waiting(&None),
        "nothing starts in a failed pod"
    );
    assert_eq!(done.started(&None).count(), 0);
}

#[test]
fn a_pod_is_the_jobs_only_when_the_job_controls_it() {
    let pod = |owners: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p",
            "labels": {"batch.kubernetes.io/controller-uid": "job-uid", "job-name": "j"},
            "ownerReferences": owners}}))
        .expect("a Pod")
    };
    let owner = |kind: &str, uid: &str, controller: bool| {
        json!({"apiVersion": if kind == "Job" { "batch/v1" } else { "v1" }, "kind": kind,
               "name": "j", "uid": uid, "controller": controller})
    };
    assert!(controlled_by(
        &pod(json!([owner("Job", "job-uid", true)])),
        "job-uid"
    ));
    for (owners, case) in [
        (json!([]), "labels alone"),
        (
            json!([owner("ConfigMap", "cm-uid", true)]),
            "another controller",
        ),
        (
            json!([owner("Job", "job-uid", false)]),
            "owned, not controlled",
        ),
        (json!([owner("Job", "other-uid", true)]), "another Job"),
        (
            json!([owner("ConfigMap", "job-uid", true)]),
            "the uid on another kind",
        ),
    ] {
        assert!(!controlled_by(&pod(owners), "job-uid"), "{case}");
    }
}

#[test]
fn the_run_status_says_what_is_known() {
    let cases = [
        (vec![], false, false, RunStatus::NoJobs),
        (vec![], true, false, RunStatus::Gone),
        (vec![(false, false)], true, false, RunStatus::Pending),
        (
            vec![(false, false), (true, false)],
            true,
            true,
            RunStatus::Running,
        ),
        (vec![(true, false)], true, true, RunStatus::Succeeded),
        (
            vec![(true, false), (true, true)],
            true,
            true,
            RunStatus::Failed,
        ),
    ];
    for (jobs, had, started, expected) in cases {
        assert_eq!(
            run_status(&jobs, had, started),
            expected,
            "{jobs:?} {had} {started}"
        );
    }
}

fn job_at(name: &str, resource_version: &str) -> crate::cluster::jobwatch::WatchedJob {
    serde_json::from_value(json!({"metadata": {
        "name": name, "namespace": "ns", "resourceVersion": resource_version}}))
    .expect("a Job")
}

/// A followed stream is woken by its own Jobs' changes only; a relist
/// wakes it but lists no pods unless one of them changed; a namespace
/// beyond the bound makes it blind (looked at by time instead).
#[tokio::test]
async fn a_stream_wakes_for_its_own_jobs_only() {
    use futures::FutureExt;
    use kube::runtime::watcher::Event;
    let (watch, mut hand) = crate::cluster::jobwatch::by_hand();
    let watch = Arc::new(watch);
    let mut wakes = Wakes::on(
        |ns| (ns == "ns").then(|| Arc::clone(&watch)),
        vec![
            ("ns".to_string(), "a".to_string()),
            ("far".to_string(), "b".to_string()),
        ],
    );
    assert!(wakes.blind, "far is beyond the bound");
    assert_eq!(watch.waited_on(), 1, "a, on the one watch");
    for i in 0..1000 {
        hand.event(Event::Apply(job_at(&format!("other-{i}"), "1")));
    }
    assert!(
        wakes.changed().now_or_never().is_none(),
        "others' events do not wake it"
    );
    hand.event(Event::Apply(job_at("a", "1")));
    assert_eq!(wakes.changed().now_or_never(), Some(true));
    hand.relist(vec![job_at("a", "1")]);
    assert_eq!(
        wakes.changed().now_or_never(),
        Some(false),
        "woken by the relist, a unchanged"
    );
    hand.relist(vec![job_at("a", "2")]);
    assert_eq!(wakes.changed().now_or_never(), Some(true));
    drop(hand);
    assert_eq!(
        wakes.changed().now_or_never(),
        Some(false),
        "the watch stopped"
    );
    assert!(wakes.changed().now_or_never().is_none(), "then no watch");
    drop(wakes);
    assert_eq!(watch.waited_on(), 0);
}
