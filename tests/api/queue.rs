//! Topics with `"overflow": "queue"`: a publish beyond `maxConcurrent`
//! waits in the store and is applied first-in first-out as the topic's runs
//! finish; the queue outlives its gitfaas; and the limit holds exactly
//! across replicas sharing one Redis, one of them killed mid-burst.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::Value;

use crate::helpers::{eventually, spawn_app_with, spawn_process, Fixture, JOB};

/// A Job that waits (suspended) until the test lets it run.
fn suspended_job() -> String {
    JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0")
}

fn queue_config(max: u32, max_queued: u32) -> String {
    format!(
        r#"{{"topics": [{{"name": "q", "configs": ["j.yaml"], "maxConcurrent": {max}, "overflow": "queue", "maxQueued": {max_queued}}}]}}"#
    )
}

/// The Jobs of run `uid`.
async fn jobs_of(jobs: &kube::Api<Job>, uid: &str) -> Vec<Job> {
    jobs.list(&ListParams::default().labels(&format!("gitfaas.io/request-uid={uid}")))
        .await
        .expect("list")
        .items
}

async fn resume(jobs: &kube::Api<Job>, job: &Job) {
    let name = job.metadata.name.clone().expect("name");
    jobs.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
    )
    .await
    .expect("resume the Job");
}

fn unfinished(job: &Job) -> bool {
    !job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter()
                .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        })
}

#[tokio::test]
async fn a_queued_topic_applies_in_order_as_runs_finish_and_a_queued_run_can_be_taken_off() {
    let job = suspended_job();
    let app = spawn_app_with(
        &[("config.json", &queue_config(1, 2)), ("j.yaml", &job)],
        &[],
    )
    .await;
    let first = app.publish("q", "", "one").await;
    first.assert_status(202);
    assert!(
        first.body.get("status").is_none(),
        "applied at once: {first}"
    );
    let mut queued = Vec::new();
    let mut answered = Vec::new();
    for (n, body) in [(1, "two"), (2, "three")] {
        let report = app.publish("q", "", body).await;
        report.assert_status(202);
        report.assert_state("Queued");
        assert_eq!(report["position"], n, "{report}");
        queued.push(report.request_uid());
        answered.push(report["applies"][0]["functionUid"].clone());
    }
    // Beyond maxQueued: 429, nothing applied, nothing queued.
    let refused = app.publish("q", "", "four").await;
    let headers = &refused.headers;
    refused.assert_error(429, "topic_busy");
    assert!(headers.contains_key("retry-after"));
    refused.assert_message_contains("maxQueued");
    assert_eq!(app.job_count().await, 1, "only the first run is applied");

    // The view says where a queued run stands, and the history lists it.
    let view = app.run(&queued[1]).await;
    view.assert_state("Queued");
    assert_eq!(view["queue"]["position"], 2, "{view}");
    assert_eq!(view["done"], false, "{view}");
    let page = app.get("/requests?status=queued").await;
    let listed: BTreeSet<&str> = page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["requestUid"].as_str())
        .collect();
    assert_eq!(
        listed,
        queued.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );

    // The third is taken off the queue: cancelled, never applied.
    app.cancel(&queued[1]).await.assert_status(200);
    let view = app.run(&queued[1]).await;
    view.assert_state("Cancelled");
    let view = app.run(&queued[0]).await;
    assert_eq!(view["queue"]["position"], 1, "the second moved up: {view}");

    // The first finishes: the second is applied, with the body it was published with.
    let jobs = app.jobs();
    let uid = first.request_uid();
    resume(&jobs, &jobs_of(&jobs, &uid).await[0]).await;
    let second = eventually(
        "the queued run to be applied",
        Duration::from_secs(60),
        || async { jobs_of(&jobs, &queued[0]).await.into_iter().next() },
    )
    .await;
    assert_eq!(
        crate::helpers::env(&second, "PAYLOAD").as_deref(),
        Some("dHdv"),
        "base64 of `two`"
    );
    let view = app.run(&queued[0]).await;
    view.assert_state("Running");
    assert!(view.body.get("queue").is_none(), "{view}");
    // Its function uid is the one its publish answered (a reader of the
    // run sees its prefix only).
    assert_eq!(
        crate::helpers::env(&second, "FUNCTION_UID"),
        answered[0].as_str().map(String::from)
    );
    let prefix = view["functions"][0]["functionUid"]
        .as_str()
        .expect("prefix");
    assert_eq!(prefix.chars().count(), 11, "{view}");
    assert!(
        answered[0]
            .as_str()
            .is_some_and(|f| f.starts_with(prefix.trim_end_matches('…'))),
        "{view}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        jobs_of(&jobs, &queued[1]).await.is_empty(),
        "the cancelled run is never applied"
    );
    assert_eq!(app.job_count().await, 2);
    app.cleanup().await;
}

#[tokio::test]
async fn a_queue_outlives_its_gitfaas() {
    let job = suspended_job();
    let fx = Fixture::new(&[("config.json", &queue_config(1, 5)), ("j.yaml", &job)]).await;
    let (dir, data) = (fx.dir_arg(), fx.data_arg());
    let args = [
        "--dir",
        &dir,
        "--data-dir",
        &data,
        "--namespace",
        &fx.ns,
        "--dispatch-lease",
        "3s",
    ];
    let http = reqwest::Client::new();
    let mut first = spawn_process(&args).await;
    let mut uids = Vec::new();
    for body in ["one", "two", "three"] {
        uids.push(first.publish("q", "", body).await.accepted());
    }
    crate::helpers::sigterm(first.child.id());
    crate::helpers::wait_exit(&mut first.child).await;

    let second = spawn_process(&args).await;
    let jobs = fx.jobs();
    assert_eq!(
        jobs.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
    for i in 0..2 {
        let running = jobs_of(&jobs, &uids[i]).await;
        assert_eq!(running.len(), 1, "run {i} is applied once");
        resume(&jobs, &running[0]).await;
        eventually(
            "the next queued run to be applied by the second gitfaas",
            Duration::from_secs(60),
            || async { (!jobs_of(&jobs, &uids[i + 1]).await.is_empty()).then_some(()) },
        )
        .await;
    }
    let resp = http
        .get(format!("{}/requests/{}", second.address, uids[2]))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    let view: Value = resp.json().await.expect("JSON");
    assert_eq!(view["status"], "Running", "{view}");
    assert_eq!(
        jobs.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        3
    );
    fx.cleanup().await;
}

/// Three gitfaas on one Redis, 300 publishes to a topic limited to 5, one
/// replica killed (-9) a third of the way in: never more than 5 unfinished
/// Jobs (sampled from the API server throughout), every accepted publish
/// applied exactly once.
#[tokio::test]
async fn three_replicas_on_one_redis_keep_the_limit_and_apply_every_run_once() {
    const PUBLISHES: usize = 300;
    const LIMIT: usize = 5;
    // A database of its own, emptied: the slots of an earlier run must not count.
    let redis = crate::helpers::redis_database(3).await;
    let fx = Fixture::new(&[
        ("config.json", &queue_config(LIMIT as u32, PUBLISHES as u32)),
        ("j.yaml", JOB),
    ])
    .await;
    let dir = fx.dir_arg();
    let args = [
        "--dir",
        &dir,
        "--redis-url",
        &redis,
        "--namespace",
        &fx.ns,
        "--dispatch-lease",
        "3s",
    ];
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(spawn_process(&args).await);
    }
    let addresses: Vec<String> = replicas.iter().map(|r| r.address.clone()).collect();

    // The sampler: unfinished Jobs of the topic, every 100 ms.
    let jobs = fx.jobs();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (jobs, stop) = (jobs.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut most, mut samples) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(list) = jobs
                    .list(&ListParams::default().labels("gitfaas.io/topic=q"))
                    .await
                {
                    most = most.max(list.items.iter().filter(|j| unfinished(j)).count());
                    samples += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (most, samples)
        })
    };

    // 300 publishes, 8 at a time, round-robin over the replicas; the first
    // replica is killed after 100.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut victim = replicas.remove(0);
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (http, addresses, accepted, refused, next, killed) = (
            http.clone(),
            addresses.clone(),
            accepted.clone(),
            refused.clone(),
            next.clone(),
            killed.clone(),
        );
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= PUBLISHES {
                    return;
                }
                let mut target = i % addresses.len();
                if target == 0 && killed.load(std::sync::atomic::Ordering::SeqCst) {
                    target = 1 + i % (addresses.len() - 1);
                }
                let sent = http
                    .post(format!("{}/publish/q", addresses[target]))
                    .header("content-type", "text/plain")
                    .body(format!("message {i}"))
                    .send()
                    .await;
                let answer = match sent {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        r.json::<Value>().await.ok().map(|v| (status, v))
                    }
                    Err(_) => None,
                };
                match answer {
                    Some((202, report)) => {
                        let uid = crate::helpers::request_uid(&report);
                        accepted.lock().expect("lock").push(uid);
                    }
                    // Refused or cut off by the kill: the caller knows it
                    // was not taken.
                    _ => {
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }
        }));
    }
    eventually("a third of the burst", Duration::from_secs(120), || async {
        (next.load(std::sync::atomic::Ordering::SeqCst) >= PUBLISHES / 3).then_some(())
    })
    .await;
    victim.child.kill().expect("kill -9");
    victim.child.wait().expect("reap");
    killed.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }
    let accepted: Vec<String> = accepted.lock().expect("lock").clone();
    let refused = refused.load(std::sync::atomic::Ordering::SeqCst);

    // Every accepted run applied (the killed replica's queued and running
    // ones finish on the others).
    let deadline = std::time::Instant::now() + Duration::from_secs(400);
    let per_run = loop {
        let list = jobs
            .list(&ListParams::default().labels("gitfaas.io/topic=q"))
            .await
            .expect("list");
        let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
        for j in &list.items {
            let labels = j.metadata.labels.clone().unwrap_or_default();
            if let Some(uid) = labels.get("gitfaas.io/request-uid") {
                *per_run.entry(uid.clone()).or_default() += 1;
            }
        }
        let done = accepted.iter().all(|u| per_run.contains_key(u))
            && list.items.iter().all(|j| !unfinished(j));
        if done || std::time::Instant::now() > deadline {
            break per_run;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (most, samples) = sampler.await.expect("sampler");
    let applied = accepted.iter().filter(|u| per_run.contains_key(*u)).count();
    let twice = per_run.values().filter(|n| **n > 1).count();
    let lost = accepted.len() - applied;
    let strays = per_run.keys().filter(|u| !accepted.contains(u)).count();
    eprintln!(
        "publishes {PUBLISHES}: accepted {}, refused {refused}, applied {applied}, applied twice {twice}, lost {lost}, applied without an answer {strays}; at most {most} unfinished Jobs in {samples} samples",
        accepted.len()
    );
    assert!(samples > 20, "the sampler ran ({samples} samples)");
    assert!(
        most <= LIMIT,
        "{most} unfinished Jobs at once, the limit is {LIMIT}"
    );
    assert_eq!(twice, 0, "no run applied twice");
    assert_eq!(lost, 0, "every accepted run applied");
    assert!(
        accepted.len() >= PUBLISHES * 2 / 3,
        "most publishes were accepted ({} of {PUBLISHES})",
        accepted.len()
    );
    drop(replicas);
    fx.cleanup().await;
}

/// 55 publishes to a topic limited to 5 (50 runs queued), then the API
/// server gitfaas talks to is killed for 20 s: every run is applied once it
/// is back, none twice.
#[tokio::test]
async fn fifty_queued_runs_outlive_an_api_server_killed_for_20_seconds() {
    use crate::outage::OwnApiServer;
    const RUNS: usize = 55;
    let mut apiserver = OwnApiServer::start().await;
    let kc_arg = apiserver.kubeconfig_arg();
    let app = spawn_app_with(
        &[
            (
                "config.json",
                // Attempts every 2 s at most: the runs go soon after the API
                // server is back (the default backoff reaches 30 s).
                &queue_config(5, RUNS as u32).replace(
                    r#""maxQueued""#,
                    r#""retry": {"attempts": 60, "backoff": "500ms", "maxBackoff": "2s"}, "maxQueued""#,
                ),
            ),
            ("j.yaml", JOB),
        ],
        &["--kubeconfig", &kc_arg],
    )
    .await;
    let mut accepted = Vec::new();
    for i in 0..RUNS {
        accepted.push(app.publish("q", "", &format!("m{i}")).await.accepted());
    }
    apiserver.kill();
    tokio::time::sleep(Duration::from_secs(20)).await;
    apiserver.restart().await;
    let jobs = app.jobs();
    let per_run = eventually(
        "every queued run to be applied",
        Duration::from_secs(300),
        || async {
            let list = jobs.list(&ListParams::default()).await.ok()?;
            let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
            for j in &list.items {
                if let Some(uid) = j
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("gitfaas.io/request-uid"))
                {
                    *per_run.entry(uid.clone()).or_default() += 1;
                }
            }
            accepted
                .iter()
                .all(|u| per_run.contains_key(u))
                .then_some(per_run)
        },
    )
    .await;
    let twice = per_run.values().filter(|n| **n > 1).count();
    eprintln!(
        "published {RUNS} (50 queued), API server down 20 s: accepted {}, applied {}, applied twice {twice}, lost 0",
        accepted.len(),
        per_run.len()
    );
    assert_eq!(twice, 0);
    assert_eq!(per_run.len(), RUNS);
    app.cleanup().await;
}

/// A redis-server of its own on `port`, persisting every write (AOF,
/// fsync always) in `dir`: killed and started again, it has what it
/// acknowledged.
fn durable_redis(port: u16, dir: &std::path::Path) -> crate::helpers::RedisServer {
    let dir = dir.display().to_string();
    crate::helpers::redis_server(
        port,
        &[
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            &dir,
        ],
    )
}

/// Counts what became of `uids`: (applied, applied twice, lost).
async fn applied_once(
    jobs: &kube::Api<Job>,
    uids: &[String],
    within: Duration,
) -> (usize, usize, usize) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let list = jobs.list(&ListParams::default()).await.expect("list");
        let mut per_run: BTreeMap<String, usize> = BTreeMap::new();
        for j in &list.items {
            if let Some(uid) = j
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("gitfaas.io/request-uid"))
            {
                *per_run.entry(uid.clone()).or_default() += 1;
            }
        }
        let applied = uids.iter().filter(|u| per_run.contains_key(*u)).count();
        if applied == uids.len() || std::time::Instant::now() > deadline {
            let twice = per_run.values().filter(|n| **n > 1).count();
            return (applied, twice, uids.len() - applied);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Redis killed (-9) and started again mid-burst: a publish to a queued
/// topic while it is down is refused (503 store_unavailable: the queue
/// decision needs the store), and every accepted run is applied once.
#[tokio::test]
async fn a_redis_restart_mid_burst_refuses_clearly_and_loses_no_accepted_run() {
    let redis_dir = tempfile::tempdir().expect("dir");
    let port = crate::helpers::free_port();
    let mut redis = durable_redis(port, redis_dir.path());
    let fx = Fixture::new(&[("config.json", &queue_config(2, 100)), ("j.yaml", JOB)]).await;
    let dir = fx.dir_arg();
    let url = format!("redis://127.0.0.1:{port}");
    let args = [
        "--dir",
        &dir,
        "--redis-url",
        &url,
        "--namespace",
        &fx.ns,
        "--dispatch-lease",
        "3s",
    ];
    let gitfaas = spawn_process(&args).await;
    let mut accepted = Vec::new();
    for i in 0..15 {
        accepted.push(
            gitfaas
                .publish("q", "", &format!("before {i}"))
                .await
                .accepted(),
        );
    }
    redis.kill();
    let refused = gitfaas.publish("q", "", "while down").await;
    refused.assert_error(503, "store_unavailable");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _redis = durable_redis(port, redis_dir.path());
    let after = gitfaas
        .publish_until_accepted("q", "after", "publishing again", Duration::from_secs(30))
        .await;
    accepted.push(after.request_uid());
    for i in 0..5 {
        accepted.push(
            gitfaas
                .publish("q", "", &format!("after {i}"))
                .await
                .accepted(),
        );
    }
    let (applied, twice, lost) =
        applied_once(&fx.jobs(), &accepted, Duration::from_secs(180)).await;
    eprintln!(
        "Redis restarted mid-burst: accepted {}, refused 1 (503 while down), applied {applied}, applied twice {twice}, lost {lost}",
        accepted.len()
    );
    assert_eq!((twice, lost), (0, 0));
    drop(gitfaas);
    fx.cleanup().await;
}

/// SIGTERM to one of two replicas on one Redis in the middle of a burst:
/// it hands its slots back, and the other applies everything it accepted
/// and queued, once.
#[tokio::test]
async fn sigterm_to_a_replica_mid_burst_hands_its_runs_to_the_other() {
    let redis = crate::helpers::redis_database(4).await;
    let fx = Fixture::new(&[("config.json", &queue_config(3, 100)), ("j.yaml", JOB)]).await;
    let dir = fx.dir_arg();
    let args = [
        "--dir",
        &dir,
        "--redis-url",
        &redis,
        "--namespace",
        &fx.ns,
        "--dispatch-lease",
        "30s",
    ];
    let mut first = spawn_process(&args).await;
    let second = spawn_process(&args).await;
    let mut accepted = Vec::new();
    for i in 0..30 {
        let to = if i % 2 == 0 { &first } else { &second };
        accepted.push(to.publish("q", "", &format!("m{i}")).await.accepted());
    }
    crate::helpers::sigterm(first.child.id());
    crate::helpers::wait_exit(&mut first.child).await;
    for i in 30..40 {
        accepted.push(second.publish("q", "", &format!("m{i}")).await.accepted());
    }
    // The lease is 30 s: finishing well within it shows the hand-back.
    let (applied, twice, lost) =
        applied_once(&fx.jobs(), &accepted, Duration::from_secs(120)).await;
    eprintln!(
        "SIGTERM mid-burst: accepted {}, applied {applied}, applied twice {twice}, lost {lost}",
        accepted.len()
    );
    assert_eq!((twice, lost), (0, 0));
    drop(second);
    fx.cleanup().await;
}

/// A queued run is checked again by the gitfaas that applies it: queued
/// under `--pod-security baseline`, dispatched by one that says
/// `restricted`, it is refused (Failed, a dead letter) and never applied.
#[tokio::test]
async fn a_queued_run_meets_the_policy_of_the_gitfaas_that_applies_it() {
    let job = suspended_job();
    let fx = Fixture::new(&[("config.json", &queue_config(1, 5)), ("j.yaml", &job)]).await;
    let (dir, data) = (fx.dir_arg(), fx.data_arg());
    let base = [
        "--dir",
        dir.as_str(),
        "--data-dir",
        data.as_str(),
        "--namespace",
        fx.ns.as_str(),
        "--dispatch-lease",
        "3s",
    ];
    let http = reqwest::Client::new();
    let mut first = spawn_process(&base).await;
    let mut uids = Vec::new();
    for body in ["one", "two"] {
        let report = first.publish("q", "", body).await;
        uids.push(report.accepted());
    }
    crate::helpers::sigterm(first.child.id());
    crate::helpers::wait_exit(&mut first.child).await;

    let strict: Vec<&str> = base
        .iter()
        .copied()
        .chain(["--pod-security", "restricted"])
        .collect();
    let second = spawn_process(&strict).await;
    let jobs = fx.jobs();
    let running = jobs_of(&jobs, &uids[0]).await;
    assert_eq!(running.len(), 1);
    jobs.delete(
        &running[0].metadata.name.clone().expect("name"),
        &kube::api::DeleteParams::background(),
    )
    .await
    .expect("delete");
    let view: Value = eventually(
        "the queued run to be refused by the stricter policy",
        Duration::from_secs(60),
        || async {
            let resp = http
                .get(format!("{}/requests/{}", second.address, uids[1]))
                .send()
                .await
                .ok()?;
            let view: Value = resp.json().await.ok()?;
            (view["status"] == "Failed").then_some(view)
        },
    )
    .await;
    assert!(
        view["report"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("restricted"),
        "{view}"
    );
    assert!(jobs_of(&jobs, &uids[1]).await.is_empty(), "never applied");
    fx.cleanup().await;
}

#[tokio::test]
async fn a_queue_is_bounded_in_bytes_and_a_queued_body_is_applied_exactly() {
    use base64::Engine;
    let config = r#"{"topics": [{"name": "q", "configs": ["j.yaml"], "maxConcurrent": 1, "overflow": "queue", "maxQueued": 2, "maxQueuedBytes": 65536}]}"#;
    let app = spawn_app_with(
        &[("config.json", config), ("j.yaml", &suspended_job())],
        &[],
    )
    .await;
    let first = app.publish("q", "", "one").await;
    first.assert_status(202);
    // 30 000 bytes: 40 000 of base64, the run's record about as much.
    let body: String = (0..30_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let big = app.publish("q", "", &body).await;
    big.assert_status(202);
    big.assert_state("Queued");

    // A second one would take the queue past 64 KiB: 429, naming that bound.
    let refused = app.publish("q", "", &body).await;
    let headers = &refused.headers;
    refused.assert_error(429, "topic_busy");
    assert!(headers.contains_key("retry-after"));
    let message = refused.message();
    assert!(
        message.contains("would pass the topic's maxQueuedBytes (65536)"),
        "{message}"
    );
    assert!(
        message.contains("raise maxQueuedBytes in config.json"),
        "{message}"
    );
    assert!(message.contains("and 1 waiting that take "), "{message}");
    // A small one still fits; then maxQueued is the bound met, and named.
    let small = app.publish("q", "", "small").await;
    small.assert_status(202);
    assert_eq!(small["position"], 2, "{small}");
    let refused = app.publish("q", "", "x").await;
    refused.assert_status(429);
    let message = refused.message();
    assert!(
        message.contains("as many as its maxQueued allows"),
        "{message}"
    );
    assert!(!message.contains("maxQueuedBytes"), "{message}");
    let page = app.get("/requests?status=queued").await;
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(app.job_count().await, 1, "only the first run is applied");

    // The first finishes: the big one is applied with its body exactly,
    // though the queue kept it once.
    let jobs = app.jobs();
    let uid = first.request_uid();
    resume(&jobs, &jobs_of(&jobs, &uid).await[0]).await;
    let big_uid = big.request_uid();
    let applied = eventually(
        "the queued run to be applied",
        Duration::from_secs(60),
        || async { jobs_of(&jobs, &big_uid).await.into_iter().next() },
    )
    .await;
    assert_eq!(
        crate::helpers::env(&applied, "PAYLOAD"),
        Some(base64::engine::general_purpose::STANDARD.encode(&body))
    );
    app.cleanup().await;
}
