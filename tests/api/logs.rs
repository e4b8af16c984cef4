//! `GET /requests/{uid}/logs` against real containers on the local
//! cluster's real node (tests/cluster/node.sh): lines come back prefixed
//! `<pod>/<container>: `, `?tail=`, `?container=`, `?follow=true` as lines
//! are printed and until the Job has finished, the pods of a retried Job,
//! and no `pods/log` connection left behind, counted by the API server
//! itself (`apiserver_longrunning_requests`). The refusals (404, 400, 429)
//! and the answers without logs (Pending, Gone) need no real container and
//! run on kwok.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};

use crate::common::{until, Step};
use crate::helpers::*;

/// The tests that count the API server's long-running requests run alone
/// (write); the others may run together (read), since each of them opens
/// and closes `pods/log` streams of its own.
static COUNTING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A Job in the examples image whose containers (name, shell script) run
/// once each.
fn job(name: &str, backoff_limit: u32, containers: &[(&str, &str)]) -> String {
    let containers: String = containers
        .iter()
        .map(|(name, script)| {
            format!(
                r#"        - name: {name}
          image: {EXAMPLES_IMAGE}
          imagePullPolicy: IfNotPresent
          command: ["/bin/sh", "-c", {script:?}]
"#
            )
        })
        .collect();
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}-{{{{RANDOM}}}}
spec:
  backoffLimit: {backoff_limit}
  template:
    spec:
      restartPolicy: Never
      containers:
{containers}"#
    )
}

/// gitfaas on the real node with `manifest` as topic `t`; None without a
/// real node.
async fn app_with(manifest: &str) -> Option<TestApp> {
    app_with_flags(manifest, &[]).await
}

/// As [`app_with`], with extra `serve` flags.
async fn app_with_flags(manifest: &str, extra: &[&str]) -> Option<TestApp> {
    let kube = kube::Client::try_default().await.expect("kube client");
    let node = real_node(&kube).await?;
    let files = [
        ("config.json", config(&[("t", &["job.yaml"])])),
        ("job.yaml", manifest.to_string()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Some(spawn_app_on_real_node(&files, extra, &node).await)
}

/// An answer of the logs endpoint: status, Gitfaas-Run-Status,
/// Gitfaas-Log-Source, body.
struct LogAnswer {
    status: u16,
    run: String,
    source: String,
    content_type: String,
    body: String,
}

impl LogAnswer {
    /// Panics unless this is an empty 200 saying the run is `run`.
    #[track_caller]
    fn assert_empty(&self, run: &str, context: &str) {
        assert_eq!(
            (self.status, self.run.as_str(), self.body.as_str()),
            (200, run, ""),
            "{context}"
        );
    }
}

async fn logs(app: &TestApp, uid: &str, query: &str) -> LogAnswer {
    let response = app
        .http
        .get(format!("{}/requests/{uid}/logs?{query}", app.address))
        .send()
        .await
        .expect("GET logs");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (run, content_type) = (header("gitfaas-run-status"), header("content-type"));
    let source = header("gitfaas-log-source");
    LogAnswer {
        status: response.status().as_u16(),
        run,
        source,
        content_type,
        body: response.text().await.expect("body"),
    }
}

/// A request's pods, oldest first.
async fn pod_names(app: &TestApp, job: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let mut list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("pods")
        .items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    list.into_iter().filter_map(|p| p.metadata.name).collect()
}

fn uid_and_job(view: &Answer) -> (String, String) {
    let uid = view.request_uid();
    let job = view["objects"][0]["name"]
        .as_str()
        .or_else(|| view["applies"][0]["objects"][0]["name"].as_str())
        .unwrap_or_else(|| panic!("no object in {view}"))
        .to_string();
    (uid, job)
}

/// `pods/log` requests the API server is serving right now (every client's).
async fn log_streams(kube: &kube::Client) -> f64 {
    let metrics = crate::helpers::api_server_metrics(kube).await;
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{")
                && l.contains("resource=\"pods\"")
                && l.contains("subresource=\"log\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        // Not sum(): an empty f64 sum is -0, which prints as such.
        .fold(0.0, |a, b| a + b)
}

/// Waits until the API server serves `expected` log streams; returns what
/// it last counted.
async fn log_streams_become(kube: &kube::Client, expected: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let n = log_streams(kube).await;
        if n == expected || Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_containers_lines_come_back_prefixed_and_tail_keeps_the_last() {
    let _shared = COUNTING.read().await;
    let manifest = job("echo", 0, &[("main", "echo one; echo two; echo three")]);
    let Some(app) = app_with(&manifest).await else {
        return;
    };
    let view = app.publish("t", "wait=120s", "x").await;
    view.assert_status(200);
    view.assert_succeeded();
    let (uid, job) = uid_and_job(&view);
    let pods = pod_names(&app, &job).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = &pods[0];

    let all = logs(&app, &uid, "").await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.run, "Succeeded");
    assert_eq!(all.source, "cluster");
    assert!(
        all.content_type.starts_with("text/plain"),
        "{}",
        all.content_type
    );
    assert_eq!(
        all.body,
        format!("{pod}/main: one\n{pod}/main: two\n{pod}/main: three\n")
    );
    let last = logs(&app, &uid, "tail=1").await;
    assert_eq!(last.status, 200, "{}", last.body);
    assert_eq!(last.body, format!("{pod}/main: three\n"));
    let none = logs(&app, &uid, "tail=0").await;
    assert_eq!((none.status, none.body.as_str()), (200, ""));
    app.cleanup().await;
}

#[tokio::test]
async fn once_the_ttl_has_removed_the_job_and_its_pod_the_tails_kept_answer() {
    let _shared = COUNTING.read().await;
    // 200 lines of 9 bytes; 100 bytes of each log are kept.
    let manifest = job(
        "kept",
        0,
        &[
            (
                "main",
                "i=0; while [ $i -lt 200 ]; do printf 'line %03d\\n' $i; i=$((i+1)); done",
            ),
            ("side", "echo side says hi"),
        ],
    )
    .replace(
        "  backoffLimit: 0\n",
        "  backoffLimit: 0\n  ttlSecondsAfterFinished: 5\n",
    );
    let Some(app) = app_with_flags(&manifest, &["--log-archive-bytes", "100"]).await else {
        return;
    };
    let view = app.publish("t", "wait=120s", "x").await;
    view.assert_status(200);
    view.assert_succeeded();
    let (uid, job) = uid_and_job(&view);
    let pods = pod_names(&app, &job).await;
    assert_eq!(pods.len(), 1, "{pods:?}");
    let pod = &pods[0];
    until(
        "the TTL controller deletes the Job and its pod",
        Duration::from_secs(90),
        || async {
            let job_left = app.jobs().get_opt(&job).await.expect("get").is_some();
            match (job_left, pod_names(&app, &job).await.len()) {
                (false, 0) => Step::Done(()),
                seen => Step::Wait(format!("Job present, pods: {seen:?}")),
            }
        },
    )
    .await;

    let kept = logs(&app, &uid, "").await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(
        (kept.run.as_str(), kept.source.as_str()),
        ("Succeeded", "kept"),
        "{}",
        kept.body
    );
    // The last 100 bytes from a line start: 11 whole lines, after a note.
    let mut expected = format!("{pod}/main: [gitfaas] earlier lines were not kept (--log-archive-bytes bounds what is kept of each container)\n");
    for i in 189..200 {
        expected.push_str(&format!("{pod}/main: line {i:03}\n"));
    }
    expected.push_str(&format!("{pod}/side: side says hi\n"));
    assert_eq!(kept.body, expected);
    let last = logs(&app, &uid, "tail=2&container=main").await;
    assert_eq!(
        last.body,
        format!("{pod}/main: line 198\n{pod}/main: line 199\n")
    );
    let body = app
        .get(&format!("/requests/{uid}/logs?container=other"))
        .await;
    body.assert_status(400);
    let message = body.message();
    assert!(message.contains("main, side"), "{body}");
    // A follow of kept logs ends at once.
    let followed = tokio::time::timeout(Duration::from_secs(10), logs(&app, &uid, "follow=true"))
        .await
        .expect("a follow of kept logs ends at once");
    assert_eq!(followed.body, expected);
    app.cleanup().await;
}

#[tokio::test]
async fn a_cancelled_run_keeps_what_its_pod_wrote_before_its_job_went() {
    let _shared = COUNTING.read().await;
    let manifest = job("cancel", 0, &[("main", "echo started; sleep 600")]);
    let Some(app) = app_with(&manifest).await else {
        return;
    };
    let receipt = app.publish("t", "", "x").await;
    receipt.assert_status(202);
    let (uid, job) = uid_and_job(&receipt);
    until(
        "the pod writes its line",
        Duration::from_secs(120),
        || async {
            let now = logs(&app, &uid, "").await;
            match now.body.ends_with(": started\n") {
                true => Step::Done(()),
                false => Step::Wait(format!("{} {}", now.run, now.body)),
            }
        },
    )
    .await;
    let pod = pod_names(&app, &job).await.remove(0);
    app.cancel(&uid).await.assert_status(200);
    app.wait_until_job_gone(&job, Duration::from_secs(60)).await;
    let kept = logs(&app, &uid, "").await;
    assert_eq!(
        (kept.status, kept.run.as_str(), kept.source.as_str()),
        (200, "Cancelled", "kept"),
        "{}",
        kept.body
    );
    assert_eq!(kept.body, format!("{pod}/main: started\n"));
    app.cleanup().await;
}

#[tokio::test]
async fn container_picks_one_of_two_containers() {
    let _shared = COUNTING.read().await;
    let manifest = job(
        "two",
        0,
        &[
            ("main", "echo from main"),
            ("side", "echo from side; echo side again"),
        ],
    );
    let Some(app) = app_with(&manifest).await else {
        return;
    };
    let view = app.publish("t", "wait=120s", "x").await;
    view.assert_status(200);
    view.assert_succeeded();
    let (uid, job) = uid_and_job(&view);
    let pod = pod_names(&app, &job).await.remove(0);

    let side = logs(&app, &uid, "container=side").await;
    assert_eq!(side.status, 200, "{}", side.body);
    assert_eq!(
        side.body,
        format!("{pod}/side: from side\n{pod}/side: side again\n")
    );
    let main = logs(&app, &uid, "container=main").await;
    assert_eq!(main.body, format!("{pod}/main: from main\n"));
    let both = logs(&app, &uid, "").await;
    assert_eq!(
        both.body,
        format!("{pod}/main: from main\n{pod}/side: from side\n{pod}/side: side again\n"),
        "every container, in the pod's order"
    );
    let body = app
        .get(&format!("/requests/{uid}/logs?container=nope"))
        .await;
    body.assert_error(400, "bad_request");
    let message = body.message();
    assert!(
        message.contains("container=nope") && message.contains("main, side"),
        "{body}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn follow_streams_lines_as_they_are_printed_and_ends_when_the_job_has_finished() {
    let _alone = COUNTING.write().await;
    let manifest = job("follow", 0, &[("main", "echo first; sleep 3; echo second")]);
    let Some(app) = app_with(&manifest).await else {
        return;
    };
    let baseline = log_streams(&app.kube).await;
    let receipt = app.publish("t", "", "x").await;
    receipt.assert_status(202);
    let (uid, job) = uid_and_job(&receipt);
    let started = Instant::now();
    let mut response = app
        .http
        .get(format!("{}/requests/{uid}/logs?follow=true", app.address))
        .send()
        .await
        .expect("GET logs");
    assert_eq!(response.status(), 200);
    let run = response
        .headers()
        .get("gitfaas-run-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        ["Pending", "Running"].contains(&run.as_str()),
        "the Job has just been created: {run}"
    );
    let mut body = String::new();
    let mut arrivals = Vec::new();
    let mut during = None;
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(120), response.chunk())
            .await
            .expect("the follow ends within 2 minutes")
            .expect("a chunk");
        let Some(chunk) = chunk else { break };
        body.push_str(&String::from_utf8_lossy(&chunk));
        let lines = body.lines().count();
        while arrivals.len() < lines {
            arrivals.push(started.elapsed());
            if arrivals.len() == 1 {
                // The first line came while the container still sleeps: it
                // was streamed, not read at the end.
                let job = app.job(&job).await;
                let conditions = job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                assert!(
                    !conditions.iter().any(|c| c.status == "True"
                        && ["Complete", "Failed"].contains(&c.type_.as_str())),
                    "the Job had not finished when the first line arrived: {conditions:?}"
                );
                during = Some(log_streams(&app.kube).await);
            }
        }
    }
    let ended = started.elapsed();
    let pod = pod_names(&app, &job).await.remove(0);
    assert_eq!(body, format!("{pod}/main: first\n{pod}/main: second\n"));
    let view = app.run(&uid).await;
    assert_eq!(
        view["done"], true,
        "the stream ended once the Job had finished: {view}"
    );
    let after = log_streams_become(&app.kube, baseline, Duration::from_secs(10)).await;
    println!(
        "follow: lines at {arrivals:?}, end at {ended:?}; pods/log streams on the API server: {baseline} before, {during:?} during, {after} after"
    );
    assert!(
        during.is_some_and(|d| d >= baseline + 1.0),
        "the follow held a pods/log stream: {during:?} vs {baseline}"
    );
    assert_eq!(after, baseline, "no pods/log stream left open");
    app.cleanup().await;
}

#[tokio::test]
async fn a_client_that_goes_away_mid_follow_leaves_no_log_stream_open() {
    let _alone = COUNTING.write().await;
    let manifest = job("leave", 0, &[("main", "echo started; sleep 120")]);
    let Some(app) = app_with(&manifest).await else {
        return;
    };
    let baseline = log_streams(&app.kube).await;
    let receipt = app.publish("t", "", "x").await;
    receipt.assert_status(202);
    let (uid, job) = uid_and_job(&receipt);
    // A client of its own: its connection goes when it is dropped.
    let http = reqwest::Client::new();
    let mut response = http
        .get(format!("{}/requests/{uid}/logs?follow=true", app.address))
        .send()
        .await
        .expect("GET logs");
    assert_eq!(response.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(90), response.chunk())
        .await
        .expect("the first line within 90 s")
        .expect("a chunk")
        .expect("not the end");
    assert!(
        String::from_utf8_lossy(&first).ends_with(": started\n"),
        "{first:?}"
    );
    let during = log_streams(&app.kube).await;
    drop(response);
    drop(http);
    let left = Instant::now();
    let after = log_streams_become(&app.kube, baseline, Duration::from_secs(15)).await;
    let took = left.elapsed();
    println!(
        "client gone: pods/log streams on the API server: {baseline} before, {during} during, {after} {took:?} after it left"
    );
    assert!(during >= baseline + 1.0, "{during} vs {baseline}");
    assert_eq!(after, baseline, "the follow's pods/log stream was closed");
    let view = app.run(&uid).await;
    assert_eq!(
        view["done"], false,
        "the Job still runs: the stream ended because its client went away: {view}"
    );
    // The permit went with it: a new read is served.
    let again = logs(&app, &uid, "").await;
    assert_eq!(again.status, 200, "{}", again.body);
    let pod = pod_names(&app, &job).await.remove(0);
    assert_eq!(again.body, format!("{pod}/main: started\n"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_retried_job_shows_the_logs_of_both_pods_and_a_follow_picks_up_the_retry() {
    let _shared = COUNTING.read().await;
    let manifest = job(
        "retry",
        1,
        &[("main", "echo \"attempt in $(hostname)\"; exit 1")],
    );
    let Some(app) = app_with(&manifest).await else {
        return;
    };
    let receipt = app.publish("t", "", "x").await;
    receipt.assert_status(202);
    let (uid, job) = uid_and_job(&receipt);
    // Followed from the start: the second pod starts after the first
    // failed (and the Job controller's backoff), and is picked up.
    let response = app
        .http
        .get(format!("{}/requests/{uid}/logs?follow=true", app.address))
        .send()
        .await
        .expect("GET logs");
    assert_eq!(response.status(), 200);
    let followed = tokio::time::timeout(Duration::from_secs(180), response.text())
        .await
        .expect("the follow ends once the Job has failed")
        .expect("body");
    let pods = pod_names(&app, &job).await;
    assert_eq!(pods.len(), 2, "backoffLimit 1: two attempts: {pods:?}");
    let expected: String = pods
        .iter()
        .map(|p| format!("{p}/main: attempt in {p}\n"))
        .collect();
    assert_eq!(followed, expected);
    let read = logs(&app, &uid, "").await;
    assert_eq!(read.run, "Failed");
    assert_eq!(read.body, expected, "oldest pod first");
    app.cleanup().await;
}

#[tokio::test]
async fn bad_queries_and_unknown_requests_are_refused_and_a_run_without_logs_says_why() {
    let (app, receipt) = app_with_a_suspended_run().await;
    let body = app.get("/requests/r-nope/logs").await;
    body.assert_error(404, "not_found");
    let (uid, job) = uid_and_job(&receipt);
    for (query, names) in [
        ("follow=maybe", "follow=maybe"),
        ("tail=-1", "tail=-1"),
        ("tail=lots", "tail=lots"),
        ("container=Not_A_Name", "container=Not_A_Name"),
        ("container=other", "main"),
        ("since=1h", "`since`"),
    ] {
        let body = app.get(&format!("/requests/{uid}/logs?{query}")).await;
        assert_eq!(body.status, 400, "{query}: {body}");
        assert_eq!(body.code(), "bad_request", "{query}: {body}");
        assert_eq!(body["error"], true, "{query}: {body}");
        let message = body.message();
        assert!(message.contains(names), "{query}: {body}");
    }
    // Suspended: no pod has started. What is known, not an error.
    let pending = logs(&app, &uid, "").await;
    pending.assert_empty("Pending", "");
    app.jobs()
        .delete(&job, &DeleteParams::background())
        .await
        .expect("delete the Job");
    app.wait_until_job_gone(&job, Duration::from_secs(30)).await;
    for query in ["", "follow=true", "container=other"] {
        let gone = tokio::time::timeout(Duration::from_secs(10), logs(&app, &uid, query))
            .await
            .expect("a request whose Jobs are gone answers at once, also with follow");
        gone.assert_empty("Gone", query);
    }
    app.cleanup().await;
}

/// A Job that carries the request's label but that the request did not
/// create (another tenant's, made to look like it) is never read, nor
/// counted in the run's status: on kwok, a read of its pod would show as
/// a `cannot read this log` line.
#[tokio::test]
async fn a_job_wearing_the_requests_label_that_it_did_not_create_is_not_read() {
    let (app, receipt) = app_with_a_suspended_run().await;
    let (uid, _) = uid_and_job(&receipt);
    let impostor: k8s_openapi::api::batch::v1::Job = serde_json::from_value(serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "impostor", "labels": {"gitfaas.io/request-uid": uid}},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]
        }}}
    }))
    .expect("job");
    app.jobs()
        .create(&kube::api::PostParams::default(), &impostor)
        .await
        .expect("create the impostor");
    until(
        "the impostor's pod runs",
        Duration::from_secs(60),
        || async {
            match pod_names(&app, "impostor").await.len() {
                0 => Step::Wait("no pod yet".into()),
                _ => Step::Done(()),
            }
        },
    )
    .await;
    let read = logs(&app, &uid, "").await;
    read.assert_empty("Pending", "only the request's own (suspended) Job counts");
    app.cleanup().await;
}

#[tokio::test]
async fn beyond_the_bound_a_log_stream_is_refused_and_a_closed_one_frees_its_place() {
    let (app, receipt) = app_with_a_suspended_run().await;
    let (uid, _) = uid_and_job(&receipt);
    let url = format!("{}/requests/{uid}/logs?follow=true", app.address);
    // Each follow on a client of its own, so dropping one closes its connection.
    let mut open = Vec::new();
    for _ in 0..gitfaas::cluster::MAX_LOG_STREAMS {
        let http = reqwest::Client::new();
        let response = http.get(&url).send().await.expect("GET logs");
        assert_eq!(response.status(), 200);
        open.push((http, response));
    }
    let body = app.get(&format!("/requests/{uid}/logs?follow=true")).await;
    body.assert_error(429, "too_many_requests");
    drop(open.pop());
    until(
        "a closed follow frees its place",
        Duration::from_secs(10),
        || async {
            let response = app.http.get(&url).send().await.expect("GET logs");
            match response.status().as_u16() {
                200 => Step::Done(()),
                429 => Step::Wait("still 429".into()),
                other => Step::Fail(format!("status {other}")),
            }
        },
    )
    .await;
    drop(open);
    app.cleanup().await;
}

/// A follow whose client sends more on its connection (a pipelined request
/// with a large body, cut short) and then closes it: the bytes actix does
/// not read must not hide the close. Every permit is free again soon after,
/// not held until the run ends (they were, for as long as the run lasted,
/// with the connections in CLOSE_WAIT).
#[tokio::test]
async fn follows_whose_clients_close_behind_pipelined_bytes_free_their_permits() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (app, receipt) = app_with_a_suspended_run().await;
    let (uid, _) = uid_and_job(&receipt);
    let host = app.address.trim_start_matches("http://").to_string();
    let mut connections = Vec::new();
    for _ in 0..gitfaas::cluster::MAX_LOG_STREAMS {
        let mut c = tokio::net::TcpStream::connect(&host)
            .await
            .expect("connect");
        c.write_all(
            format!("GET /requests/{uid}/logs?follow=true HTTP/1.1\r\nHost: {host}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write the follow");
        // The follow's head is in: it holds a permit now. Read all of it:
        // a socket closed with unread bytes of its own resets the
        // connection, which is no test of a quiet FIN.
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut buf = [0u8; 1024];
            let n = c.read(&mut buf).await.expect("read");
            assert!(n > 0, "the follow's head");
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        c.write_all(
            format!("POST /publish/t HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10000000\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write the pipelined request");
        // 400 KiB of its 10 MB: more than actix reads ahead, so bytes wait
        // unread in front of the FIN.
        let body = vec![b'a'; 400 * 1024];
        let _ = tokio::time::timeout(Duration::from_secs(2), c.write_all(&body)).await;
        connections.push(c);
    }
    // A FIN queued behind bytes the server's full receive window refuses
    // never leaves the client: that connection is still open as far as
    // anyone can tell. Those are reset instead; the others close quietly,
    // their FIN behind the unread bytes.
    let unsent = |c: &tokio::net::TcpStream| {
        use std::os::fd::AsRawFd;
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int: the bytes not yet acknowledged.
        let r = unsafe { libc::ioctl(c.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        r != 0 || queued > 0
    };
    let settle = Instant::now() + Duration::from_secs(3);
    while connections.iter().any(unsent) && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut quiet = 0;
    for c in &connections {
        if unsent(c) {
            socket2::SockRef::from(c)
                .set_linger(Some(Duration::ZERO))
                .expect("linger");
        } else {
            quiet += 1;
        }
    }
    println!(
        "{quiet} of {} follows close with a FIN behind unread bytes",
        connections.len()
    );
    assert!(
        quiet >= connections.len() / 2,
        "{quiet} closed quietly: no test"
    );
    let read = logs(&app, &uid, "").await;
    assert_eq!(read.status, 429, "every permit is held: {}", read.body);
    let client_ports: Vec<u16> = connections
        .iter()
        .filter_map(|c| c.local_addr().ok().map(|a| a.port()))
        .collect();
    drop(connections);
    // All of them: as many follows as the bound are served again. An
    // attempt that meets a 429 drops what it opened and waits for those
    // to be let go (a close is seen within a second).
    let url = format!("{}/requests/{uid}/logs?follow=true", app.address);
    let mut served = Vec::new();
    let mut open = Vec::new();
    for _ in 0..5 {
        open = Vec::new();
        for _ in 0..gitfaas::cluster::MAX_LOG_STREAMS {
            let http = reqwest::Client::new();
            let response = http.get(&url).send().await.expect("GET logs");
            match response.status().as_u16() {
                200 => open.push((http, response)),
                429 => break,
                other => panic!("status {other}"),
            }
        }
        served.push(open.len());
        if open.len() == gitfaas::cluster::MAX_LOG_STREAMS {
            break;
        }
        drop(std::mem::take(&mut open));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // A FIN that a full receive window refused is still on its way: that
    // connection is open as far as the server's kernel can tell, and may
    // hold its permit. Every other one must have let go of it.
    let server_port = host.rsplit(':').next().unwrap_or_default().to_string();
    let still_open = std::process::Command::new("ss")
        .args(["-Htn", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let port = |c: Option<&&str>| c.and_then(|a| a.rsplit(':').next()).map(str::to_string);
            port(cols.get(2)) == Some(server_port.clone())
                && port(cols.get(3))
                    .and_then(|p| p.parse::<u16>().ok())
                    .is_some_and(|p| client_ports.contains(&p))
        })
        .count();
    assert!(
        open.len() + still_open >= gitfaas::cluster::MAX_LOG_STREAMS,
        "follows served at each attempt: {served:?}, {still_open} closed connections whose FIN the server has not seen"
    );
    drop(open);
    app.cleanup().await;
}
