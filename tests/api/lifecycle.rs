//! After a publish: Job status, waiting, responses, callbacks, idempotency,
//! durability across a crash, and replicas sharing Redis.

use base64::Engine;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    config, eventually, post, spawn_app, spawn_app_with, spawn_one_topic_app, spawn_process,
    Fixture, FAILING_JOB, JOB,
};

#[tokio::test]
async fn a_completed_job_shows_succeeded_and_wait_returns_200() {
    let app = spawn_one_topic_app(JOB).await;
    let view = app.publish("t", "wait=90s", "x").await;
    let headers = &view.headers;
    view.assert_status(200);
    let uid = view.request_uid();
    assert_eq!(headers["location"], format!("/requests/{uid}").as_str());
    assert_eq!(view["done"], true);
    view.assert_succeeded();
    let object = &view["objects"][0];
    assert_eq!(object["kind"], "Job");
    assert_eq!(object["status"]["phase"], "Succeeded", "{view}");
    assert_eq!(object["status"]["succeeded"], 1);
    assert!(object["status"]["completionTime"].is_string(), "{view}");
    assert!(object["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "Complete" && c["status"] == "True"));

    let again = app.run(&uid).await;
    assert_eq!(again.phase(), Some("Succeeded"), "{again}");
    assert_eq!(again["objects"][0]["functionUid"], object["functionUid"]);
    assert_eq!(again["objects"][0]["path"], "j.yaml");
    app.cleanup().await;
}

#[tokio::test]
async fn a_failing_job_shows_failed_with_its_reason() {
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["f.yaml"])])),
        (
            "f.yaml",
            &FAILING_JOB.replace("backoffLimit: 0", "backoffLimit: 1"),
        ),
    ])
    .await;
    let view = app.publish("t", "wait=120s", "x").await;
    view.assert_status(200);
    assert_eq!(view["succeeded"], false);
    let st = &view["objects"][0]["status"];
    assert_eq!(st["phase"], "Failed", "{view}");
    assert_eq!(st["failed"], 2, "backoffLimit 1 means two pods: {view}");
    let failed = st["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .expect("Failed condition");
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    app.cleanup().await;
}

#[tokio::test]
async fn wait_answers_202_with_the_status_so_far_at_its_deadline() {
    // A Job that cannot start: its pod stays Pending for lack of a matching node.
    let stuck = JOB.replace(
        "      restartPolicy: Never",
        "      restartPolicy: Never\n      nodeSelector:\n        no-such-node: \"true\"",
    );
    let app = spawn_one_topic_app(&stuck).await;
    let view = app.publish("t", "wait=2s", "x").await;
    view.assert_status(202);
    assert_eq!(view["done"], false);
    assert!(view["succeeded"].is_null());
    assert!(
        matches!(view.phase(), Some("Pending" | "Running")),
        "{view}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_function_response_appears_in_responses_and_requests() {
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["a.yaml", "b.yaml"])])),
        ("a.yaml", JOB),
        ("b.yaml", JOB),
    ])
    .await;
    let report = app.publish("t", "", "x").await;
    let r = report.accepted();
    let f0 = report.function_uid();

    app.get(&format!("/response/{r}")).await.assert_status(200);
    let resp = app
        .http
        .post(format!("{}/response/{f0}", app.address))
        .header("content-type", "application/json")
        .body(r#"{"rows": 42}"#)
        .send()
        .await
        .expect("post json");
    assert_eq!(resp.status().as_u16(), 200);
    // The first response stands: a second one is refused, not swapped in.
    let body = app.respond(&f0, "42 rows converted").await;
    body.assert_status(409);
    body.assert_message_contains("first response stands");

    let body = app.get(&format!("/response/{r}")).await;
    body.assert_status(200);
    assert_eq!(body["error"], false);
    // The Python gitfaas' shape: the bytes as posted, base64-encoded.
    let expected = base64::engine::general_purpose::STANDARD.encode(r#"{"rows": 42}"#);
    assert_eq!(
        body["responses"],
        serde_json::json!([expected, null]),
        "one entry per function, null while pending"
    );
    let body = app.get(&format!("/response/{r}?decoded=true")).await;
    body.assert_status(200);
    assert_eq!(
        body["responses"],
        serde_json::json!([{"rows": 42}, null]),
        "decoded on request"
    );
    let body = app.get(&format!("/response/{r}?decoded=maybe")).await;
    body.assert_status(400);
    let view = app.run(&r).await;
    assert_eq!(*view.response(0), serde_json::json!({"rows": 42}));
    assert!(view.response(1).is_null());
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_uids_and_empty_responses_are_refused() {
    let app = spawn_one_topic_app(JOB).await;
    let body = app.respond("f-not-issued", "x").await;
    body.assert_status(404);
    body.assert_message_contains("unknown or expired function uid");
    let body = app.get("/response/r-not-issued").await;
    assert_eq!(
        (body.status, body["error"].clone()),
        (404, Value::Bool(true))
    );
    app.get("/requests/r-not-issued").await.assert_status(404);
    let report = app.publish("t", "", "x").await;
    let f = report.function_uid();
    let body = app.respond(&f, "").await;
    body.assert_status(400);
    app.cleanup().await;
}

/// A keyed publish whose apply failed answers the same error again when
/// retried with its key: status, and the body with its code, as every
/// error body has.
#[tokio::test]
async fn a_failed_publish_replayed_by_its_key_answers_the_same_error_body() {
    let fixed = JOB.replace("collect-{{RANDOM}}", "replayed-fixed");
    let app = spawn_app(&[
        ("config.json", &config(&[("fixed", &["fixed.yaml"])])),
        ("fixed.yaml", &fixed),
    ])
    .await;
    let url = format!("{}/publish/fixed", app.address);
    let first = post(&app.http, &url, &[], "first").await;
    first.assert_status(202);
    // The Job of that name exists now: this apply fails.
    let key = [("Idempotency-Key", "fails-once")];
    let failed = post(&app.http, &url, &key, "second").await;
    let headers = &failed.headers;
    failed.assert_error(409, "job_exists");
    assert!(headers.get("idempotent-replayed").is_none());
    let replayed = post(&app.http, &url, &key, "second").await;
    let headers = &replayed.headers;
    replayed.assert_status(409);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(replayed.body, failed.body);
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_idempotency_key_twice_creates_one_job() {
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("t", &["j.yaml"]), ("u", &["j.yaml"])]),
        ),
        ("j.yaml", JOB),
    ])
    .await;
    let url = format!("{}/publish/t", app.address);
    let r1 = post(&app.http, &url, &[("Idempotency-Key", "order-17")], "x").await;
    let h1 = &r1.headers;
    let r2 = post(&app.http, &url, &[("Idempotency-Key", "order-17")], "x").await;
    let h2 = &r2.headers;
    assert_eq!((r1.status, r2.status), (202, 202), "{r1} {r2}");
    assert_eq!(r1["requestUid"], r2["requestUid"]);
    assert!(h1.get("idempotent-replayed").is_none());
    assert_eq!(h2["idempotent-replayed"], "true");
    assert_eq!(app.job_count().await, 1);
    let body = app
        .publish_with("u", "", &[("Idempotency-Key", "order-17")], "x")
        .await;
    assert_eq!(body.status, 422, "a key reused for another topic: {body}");
    let r4 = post(&app.http, &url, &[("Idempotency-Key", "order-18")], "x").await;
    r4.assert_status(202);
    assert_ne!(r4["requestUid"], r1["requestUid"]);
    assert_eq!(app.job_count().await, 2);
    app.cleanup().await;
}

/// A callback receiver that answers 500 to the first POST and 200 after.
async fn receiver() -> (String, Arc<Mutex<Vec<(u16, Value)>>>) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    let seen: Arc<Mutex<Vec<(u16, Value)>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let state = (Arc::clone(&seen), calls);
    let server = HttpServer::new(move || {
        let (seen, calls) = state.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Json<Value>| {
                let (seen, calls) = (Arc::clone(&seen), Arc::clone(&calls));
                async move {
                    let status = if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        500
                    } else {
                        200
                    };
                    seen.lock().expect("lock").push((status, body.into_inner()));
                    HttpResponse::build(
                        actix_web::http::StatusCode::from_u16(status).expect("status"),
                    )
                    .finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}/hook"), seen)
}

#[tokio::test]
async fn the_callback_is_retried_after_a_500_and_delivered_once() {
    let (hook, seen) = receiver().await;
    // The receiver is plain http on loopback: both need the admin's consent.
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &[
            "--callback-allow-http",
            "--callback-allowed-hosts",
            "127.0.0.1",
        ],
    )
    .await;
    let r = app
        .publish_with("t", "", &[("X-Callback-Url", &hook)], "x")
        .await
        .accepted();
    let view = app
        .wait_for_run(
            &r,
            "the callback to be delivered",
            Duration::from_secs(90),
            |v| v["callback"]["delivered"] == true,
        )
        .await;
    let calls = seen.lock().expect("lock").clone();
    assert_eq!(calls.len(), 2, "one 500, then one success: {calls:?}");
    assert_eq!(calls.iter().filter(|(s, _)| *s == 200).count(), 1);
    let (_, body) = &calls[1];
    assert_eq!(body["requestUid"], r.as_str());
    assert_eq!(body["done"], true);
    assert_eq!(body["objects"][0]["status"]["phase"], "Succeeded");
    let attempts = view["callback"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{view}");
    assert_eq!(attempts[0]["status"], 500);
    assert_eq!(attempts[0]["delivered"], false);
    assert_eq!(attempts[0]["error"], "error status");
    assert_eq!(attempts[1]["status"], 200);
    assert_eq!(attempts[1]["delivered"], true);
    let body = app
        .publish_with("t", "", &[("X-Callback-Url", "ftp://x")], "x")
        .await;
    body.assert_status(400);
    app.cleanup().await;
}

#[tokio::test]
async fn the_embedded_store_survives_a_kill_9_and_a_restart() {
    let fx = Fixture::job().await;
    let ns = fx.ns.clone();
    let state = tempfile::tempdir().expect("dir");
    let data = state.path().join("data").display().to_string();
    let fdir = fx.dir_arg();
    let args = ["--dir", &fdir, "--data-dir", &data, "--namespace", &ns];

    let mut first = spawn_process(&args).await;
    let report = first
        .publish_with("t", "", &[("Idempotency-Key", "k-1")], "x")
        .await;
    let r = report.accepted();
    let f = report.function_uid();
    first.respond(&f, "kept").await.assert_status(200);
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reap");

    let second = spawn_process(&args).await;
    let body = second.get(&format!("/response/{r}?decoded=true")).await;
    assert_eq!(body["responses"], serde_json::json!(["kept"]), "{body}");
    let again = second
        .publish_with("t", "", &[("Idempotency-Key", "k-1")], "x")
        .await;
    let headers = &again.headers;
    again.assert_status(202);
    assert_eq!(again["requestUid"], r.as_str());
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(fx.job_count().await, 1, "the replay created nothing");
    drop(second);
    fx.cleanup().await;
}

#[tokio::test]
async fn two_replicas_sharing_redis_serve_one_api() {
    let redis = std::env::var("GITFAAS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("GITFAAS_TEST_REDIS_URL is not set: run `make test`, or `eval \"$(tests/redis.sh up)\"` first")
    });
    let fx = Fixture::job().await;
    let (ns, dir) = (fx.ns.clone(), &fx.dir);
    let fdir = dir.path().display().to_string();
    let args = ["--dir", &fdir, "--redis-url", &redis, "--namespace", &ns];
    let a = spawn_process(&args).await;
    let b = spawn_process(&args).await;

    let key = format!("shared-{}", uuid::Uuid::new_v4());
    let report = a
        .publish_with("t", "", &[("Idempotency-Key", &key)], "x")
        .await;
    let r = report.accepted();
    let f = report.function_uid();
    let status = b.respond(&f, "from b").await.status;
    assert_eq!(status, 200, "a function may answer any replica");
    let body = a.get(&format!("/response/{r}?decoded=true")).await;
    assert_eq!(body["responses"], serde_json::json!(["from b"]));
    let again = b
        .publish_with("t", "", &[("Idempotency-Key", &key)], "x")
        .await;
    assert_eq!(
        again["requestUid"],
        r.as_str(),
        "the key is shared across replicas"
    );
    assert_eq!(fx.job_count().await, 1);
    drop((a, b));
    fx.cleanup().await;
}

/// Established TCP connections of process `pid` to `port` on the loopback.
fn connections_to(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    l.strip_prefix("socket:[")?
                        .strip_suffix(']')
                        .map(String::from)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 {
                continue;
            }
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if f[3] == "01" && remote_port == Some(port) && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

/// Nothing to exhaust: waiting publishes and pending callbacks share one
/// watch per namespace, so 200 waits and 50 callbacks hold nowhere near 250
/// API-server connections (each wait used to hold a watch, one HTTP/1.1
/// connection, of its own).
#[tokio::test]
async fn two_hundred_waits_and_fifty_callbacks_share_one_watch() {
    let _alone = crate::helpers::LOAD.lock().await;
    const WAITERS: usize = 200;
    const CALLBACKS: usize = 50;
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let fx = Fixture::new(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", &suspended),
    ])
    .await;
    let (fdir, data) = (fx.dir_arg(), fx.data_arg());
    let gitfaas = spawn_process(&[
        "--dir",
        &fdir,
        "--data-dir",
        &data,
        "--namespace",
        &fx.ns,
        "--max-waiters",
        "300",
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1",
    ])
    .await;
    let kc =
        kube::config::Kubeconfig::read_from(crate::helpers::kubeconfig_path()).expect("kubeconfig");
    let server = kc.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.server.clone())
        .expect("server");
    let api_port: u16 = server
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .expect("port");
    let http = reqwest::Client::new();
    let mut waits = Vec::new();
    for _ in 0..WAITERS {
        let (http, url) = (
            http.clone(),
            format!("{}/publish/t?wait=60s", gitfaas.address),
        );
        waits.push(tokio::spawn(async move {
            http.post(url)
                .body("x")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
        // Staggered, so the applies need few connections; the waits overlap.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    // Pending callbacks follow the same watch.
    for _ in 0..CALLBACKS {
        let body = gitfaas
            .publish_with(
                "t",
                "",
                &[("X-Callback-Url", "http://127.0.0.1:9/hook")],
                "c",
            )
            .await;
        body.assert_status(202);
    }
    eventually(
        "every publish applied",
        Duration::from_secs(120),
        || async {
            let n = fx.jobs().list(&Default::default()).await.ok()?.items.len();
            (n == WAITERS + CALLBACKS).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = gitfaas.child.id();
    let held = connections_to(pid, api_port);
    // The API server's own count of Job watches in namespaces (every test's
    // gitfaas and waits together): one shared watch per namespace, not one
    // per waiting request.
    let metrics = crate::helpers::api_server_metrics(&fx.kube).await;
    let watches: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{")
                && l.contains("resource=\"jobs\"")
                && l.contains("scope=\"namespace\"")
                && l.contains("verb=\"WATCH\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    println!("{WAITERS} waiting publishes and {CALLBACKS} pending callbacks: {held} connections to the API server, {watches} namespaced Job watches on it");
    assert!(
        watches < (WAITERS / 4) as f64,
        "{watches} Job watches for {WAITERS} waits: they do not share a watch"
    );
    assert!(
        held < WAITERS,
        "{held} connections for {WAITERS} waits and {CALLBACKS} callbacks: they do not share a watch"
    );
    for w in &waits {
        assert!(!w.is_finished(), "every publish is still waiting");
    }
    for w in waits {
        w.abort();
    }
    drop(gitfaas);
    fx.cleanup().await;
}
