//! Authentication, the git webhook, limits, maxConcurrent and large payloads.

use std::time::Duration;

use crate::helpers::{config, eventually, post, spawn_app_with, Answer, JOB};

/// A Job that never starts: no node matches its selector.
fn stuck_job() -> String {
    JOB.replace(
        "      restartPolicy: Never",
        "      restartPolicy: Never\n      nodeSelector:\n        no-such-node: \"true\"",
    )
}

#[tokio::test]
async fn bearer_tokens_guard_the_api_and_rotate_without_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "# team data\ntoken-one\ntoken-two\n").expect("write");
    let t = tokens.display().to_string();
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &["--api-token-file", &t],
    )
    .await;
    let url = format!("{}/publish/t", app.address);

    let body = post(&app.http, &url, &[], "x").await;
    let headers = &body.headers;
    body.assert_status(401);
    assert_eq!(body["error"], true);
    assert!(headers["www-authenticate"]
        .to_str()
        .unwrap_or("")
        .starts_with("Bearer"));
    post(&app.http, &url, &[("Authorization", "Bearer nope")], "x")
        .await
        .assert_status(401);
    let report = post(
        &app.http,
        &url,
        &[("Authorization", "Bearer token-two")],
        "x",
    )
    .await;
    report.assert_status(202);
    assert_eq!(
        app.job_count().await,
        1,
        "only the authenticated publish applied"
    );

    let r = report.request_uid();
    let f = report.function_uid();
    for path in [
        format!("/requests/{r}"),
        format!("/response/{r}"),
        "/refresh".to_string(),
    ] {
        let resp = app
            .http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 401, "{path} needs a token");
        let resp = app
            .http
            .get(format!("{}{path}", app.address))
            .bearer_auth("token-one")
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 200, "{path} with a token");
    }
    let status = app.respond(&f, "done").await.status;
    assert_eq!(
        status, 200,
        "the function uid is the credential for posting a response"
    );
    for open in ["/healthz", "/readyz", "/metrics"] {
        let resp = app
            .http
            .get(format!("{}{open}", app.address))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 200, "{open} stays open");
    }

    // Rotation: the file changes; gitfaas looks at it once a second, so the
    // new token works, and the old one stops working, within about a second.
    std::fs::write(&tokens, "token-three-rotated\n").expect("rotate");
    eventually(
        "the rotated token file to be read",
        Duration::from_secs(5),
        || async {
            let status = post(
                &app.http,
                &url,
                &[("Authorization", "Bearer token-three-rotated")],
                "x",
            )
            .await
            .status;
            (status == 202).then_some(())
        },
    )
    .await;
    let status = post(
        &app.http,
        &url,
        &[("Authorization", "Bearer token-one")],
        "x",
    )
    .await
    .status;
    assert_eq!(status, 401, "the removed token no longer works");
    app.cleanup().await;
}

/// A page on another site makes the victim's browser POST a "simple"
/// request (text/plain, no preflight); DNS rebinding makes it reach gitfaas
/// under the attacker's name. Neither applies anything.
#[tokio::test]
async fn browsers_cannot_publish_cross_site_or_through_a_foreign_host() {
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &[
            "--allowed-hosts",
            "127.0.0.1",
            "--allowed-origins",
            "https://console.example.com",
        ],
    )
    .await;
    let url = format!("{}/publish/t", app.address);
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("a foreign Origin", &[("Origin", "http://evil.example")]),
        (
            "Sec-Fetch-Site: cross-site",
            &[("Sec-Fetch-Site", "cross-site")],
        ),
        ("the null Origin", &[("Origin", "null")]),
        ("a rebound host name", &[("Host", "evil.example:5000")]),
    ];
    for (what, headers) in cases {
        let body = post(&app.http, &url, headers, "x").await;
        assert_eq!(body.status, 403, "{what}: {body}");
        assert_eq!(body["error"], true, "{what}: a JSON error");
    }
    let resp = app
        .http
        .get(format!("{}/refresh", app.address))
        .header("Origin", "http://evil.example")
        .send()
        .await
        .expect("refresh");
    assert_eq!(
        resp.status().as_u16(),
        403,
        "GET /refresh syncs: refused cross-site too"
    );
    assert_eq!(app.job_count().await, 0, "nothing was applied");
    // A listed origin, gitfaas' own, and a client without browser headers pass.
    for headers in [
        vec![("Origin", "https://console.example.com")],
        vec![("Origin", app.address.as_str())],
        vec![],
    ] {
        let body = post(&app.http, &url, &headers, "x").await;
        assert_eq!(body.status, 202, "{headers:?}: {body}");
    }
    // The probes answer whatever the Host (the kubelet sends the pod's IP).
    let resp = app
        .http
        .get(format!("{}/healthz", app.address))
        .header("Host", "10.1.2.3:5000")
        .send()
        .await
        .expect("healthz");
    assert_eq!(resp.status().as_u16(), 200);
    app.cleanup().await;
}

/// Nothing to exhaust: a waiting publish gives its in-flight permit back
/// once applied, waits are bounded before anything is applied, and a body
/// that never finishes is cut off.
#[tokio::test]
async fn waits_and_slow_bodies_hold_nothing_they_should_not() {
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", &suspended),
        ],
        &["--max-in-flight", "1", "--max-waiters", "1"],
    )
    .await;
    let url = format!("{}/publish/t", app.address);
    // A suspended Job never finishes: this publish would wait its whole 120 s.
    let waiting = tokio::spawn({
        let (http, url) = (app.http.clone(), url.clone());
        async move {
            post(&http, &format!("{url}?wait=120s"), &[], "x")
                .await
                .status
        }
    });
    eventually(
        "the first publish applied",
        Duration::from_secs(20),
        || async { (app.job_count().await == 1).then_some(()) },
    )
    .await;
    // The Job is visible a moment before its publish gives the permit back.
    eventually(
        "a publish beside the waiting one",
        Duration::from_secs(10),
        || async {
            let status = post(&app.http, &url, &[], "y").await.status;
            (status == 202).then_some(())
        },
    )
    .await;
    assert!(
        !waiting.is_finished(),
        "the waiting publish holds no in-flight permit while it waits"
    );
    let body = post(&app.http, &format!("{url}?wait=5s"), &[], "z").await;
    assert_eq!(body.status, 429, "a second waiter is refused: {body}");
    body.assert_message_contains("nothing was applied");
    assert_eq!(
        app.job_count().await,
        2,
        "the refused waiter applied nothing"
    );
    // Its client hangs up (the aborted request closes its connection): the
    // wait ends and its waiter slot is free long before its 120 s.
    waiting.abort();
    eventually(
        "a waiter after the first one's client went away",
        Duration::from_secs(15),
        || async {
            let status = post(&app.http, &format!("{url}?wait=1s"), &[], "w")
                .await
                .status;
            (status != 429).then_some(())
        },
    )
    .await;

    // A body that never finishes: 408, not a connection held open.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    conn.write_all(
        format!("POST /publish/t HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly ten b").as_bytes(),
    )
    .await
    .expect("write");
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(40), conn.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cut off at the read deadline"
    );
    app.cleanup().await;
}

/// A one-topic app with the webhook on, its secret `hook-s3cret` (the temp
/// dir holding the secret file lives as long as the second value).
async fn webhook_app() -> (crate::helpers::TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "hook-s3cret\n").expect("write");
    let s = secret.display().to_string();
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &["--webhook-secret-file", &s],
    )
    .await;
    (app, dir)
}

#[tokio::test]
async fn a_replayed_webhook_starts_nothing() {
    let (app, _secret) = webhook_app().await;
    let hook = format!("{}/webhook/git", app.address);
    let body = r#"{"ref": "refs/heads/main"}"#;
    let sig = gitfaas::auth::sign("hook-s3cret", body.as_bytes());
    let delivery = [
        ("X-Hub-Signature-256", sig.as_str()),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    // The first delivery's sync must be over before the push: one that
    // ran late (a loaded machine) would serve the pushed commit and look
    // like the replay's. Its end shows as a new `lastSync` (to the second).
    let synced = app.get("/status").await["sync"]["lastSync"].clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let resp = post(&app.http, &hook, &delivery, body).await;
    resp.assert_status(202);
    eventually(
        "the first delivery's sync to end",
        Duration::from_secs(10),
        || async {
            let s = app.get("/status").await;
            (s["sync"]["lastSync"] != synced).then_some(())
        },
    )
    .await;
    // The same signed delivery, captured and sent again after a push.
    let before = app.get("/status").await;
    let pushed = app
        .repo
        .commit(&[("j.yaml", &JOB.replace("collect-", "pushed-"))], "pushed");
    let resp = post(&app.http, &hook, &delivery, body).await;
    resp.assert_status(409);
    resp.assert_message_contains("already received");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = app.get("/status").await;
    assert_eq!(
        after["commit"], before["commit"],
        "the replay started no sync"
    );

    // The generic signature with a timestamp: a stale one is refused.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let stale = now - 3600;
    let sig = gitfaas::auth::sign_at("hook-s3cret", stale, body.as_bytes());
    let ts = stale.to_string();
    let resp = post(
        &app.http,
        &hook,
        &[
            ("X-Gitfaas-Signature-256", &sig),
            ("X-Gitfaas-Timestamp", &ts),
        ],
        body,
    )
    .await;
    resp.assert_status(401);
    resp.assert_message_contains("X-Gitfaas-Timestamp");
    let sig = gitfaas::auth::sign_at("hook-s3cret", now, body.as_bytes());
    let ts = now.to_string();
    let generic = [
        ("X-Gitfaas-Signature-256", sig.as_str()),
        ("X-Gitfaas-Timestamp", ts.as_str()),
    ];
    let resp = post(&app.http, &hook, &generic, body).await;
    resp.assert_status(202);
    eventually(
        "the pushed commit to serve",
        Duration::from_secs(10),
        || async {
            let s = app.get("/status").await;
            (s["commit"] == pushed.as_str()).then_some(())
        },
    )
    .await;
    // The same signed call, captured and sent again within the five
    // minutes its timestamp allows, after a push: remembered, refused.
    let before = app.get("/status").await;
    app.repo.commit(
        &[("j.yaml", &JOB.replace("collect-", "generic-"))],
        "pushed",
    );
    for _ in 0..2 {
        let resp = post(&app.http, &hook, &generic, body).await;
        resp.assert_error(409, "delivery_replayed");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = app.get("/status").await;
    assert_eq!(
        after["commit"], before["commit"],
        "the generic replay started no sync"
    );
    app.cleanup().await;
}

/// A generic signature of the body alone (no timestamp) could be replayed
/// forever: it is refused even when it is right, and the answer says what
/// to sign instead.
#[tokio::test]
async fn a_generic_webhook_signed_without_a_timestamp_is_refused() {
    let (app, _secret) = webhook_app().await;
    let hook = format!("{}/webhook/git", app.address);
    let body = r#"{"ref": "refs/heads/main"}"#;
    let before = app.get("/status").await;
    app.repo.commit(
        &[("j.yaml", &JOB.replace("collect-", "unstamped-"))],
        "pushed",
    );
    let sig = gitfaas::auth::sign("hook-s3cret", body.as_bytes());
    for _ in 0..3 {
        let resp = post(&app.http, &hook, &[("X-Gitfaas-Signature-256", &sig)], body).await;
        resp.assert_status(401);
        let message = resp.message();
        assert!(
            message.contains("<timestamp>.<body>") && message.contains("X-Gitfaas-Timestamp"),
            "{resp}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = app.get("/status").await;
    assert_eq!(after["commit"], before["commit"], "nothing was synced");
    app.cleanup().await;
}

#[tokio::test]
async fn the_webhook_syncs_only_on_a_valid_signature() {
    let (app, _secret) = webhook_app().await;
    let status = app.get("/status").await;
    let first = status["commit"].as_str().expect("commit").to_string();
    let second = app
        .repo
        .commit(&[("j.yaml", &JOB.replace("collect-", "second-"))], "second");
    let body = r#"{"ref": "refs/heads/main"}"#;
    let hook = format!("{}/webhook/git", app.address);

    let refused: [(&str, Vec<(&str, String)>); 3] = [
        ("unsigned", vec![]),
        (
            "wrong HMAC",
            vec![(
                "X-Hub-Signature-256",
                gitfaas::auth::sign("other", body.as_bytes()),
            )],
        ),
        (
            "wrong GitLab token",
            vec![("X-Gitlab-Token", "nope".to_string())],
        ),
    ];
    for (what, headers) in refused {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = post(&app.http, &hook, &h, body).await;
        assert_eq!(resp.status, 401, "{what}: {resp}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = app.get("/status").await;
    assert_eq!(
        status["commit"],
        first.as_str(),
        "a refused webhook starts no sync"
    );

    let sig = gitfaas::auth::sign("hook-s3cret", body.as_bytes());
    let resp = post(
        &app.http,
        &hook,
        &[("X-Hub-Signature-256", &sig), ("X-GitHub-Event", "push")],
        body,
    )
    .await;
    resp.assert_status(202);
    eventually(
        "the pushed commit to serve",
        Duration::from_secs(10),
        || async {
            let s = app.get("/status").await;
            (s["commit"] == second.as_str()).then_some(())
        },
    )
    .await;
    let third = app
        .repo
        .commit(&[("j.yaml", &JOB.replace("collect-", "third-"))], "third");
    post(&app.http, &hook, &[("X-Gitlab-Token", "hook-s3cret")], body)
        .await
        .assert_status(202);
    eventually(
        "the GitLab-pushed commit to serve",
        Duration::from_secs(10),
        || async {
            let s = app.get("/status").await;
            (s["commit"] == third.as_str()).then_some(())
        },
    )
    .await;
    app.cleanup().await;
}

#[tokio::test]
async fn query_limits_and_in_flight_backpressure() {
    let stuck = stuck_job();
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", &stuck),
        ],
        &[
            "--max-in-flight",
            "1",
            "--max-query-params",
            "3",
            "--max-param-bytes",
            "16",
        ],
    )
    .await;
    let body = app.publish("t", "a=1&b=2&c=3&d=4", "x").await;
    body.assert_status(400);
    body.assert_message_contains("--max-query-params");
    let body = app
        .publish("t", &format!("a={}", "x".repeat(17)), "x")
        .await;
    body.assert_status(400);
    body.assert_message_contains("--max-param-bytes");

    // A publish whose body is still arriving holds the only permit (a
    // waiting one gives it back once applied); another is refused at once.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://").to_string();
    let mut holder = None;
    for _ in 0..10 {
        let mut conn = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        conn.write_all(
            format!("POST /publish/t HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 10\r\n\r\nx")
                .as_bytes(),
        )
        .await
        .expect("write");
        // No answer within 300 ms: it holds the permit, reading its body.
        let mut buf = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(300), conn.read(&mut buf))
            .await
            .is_err()
        {
            holder = Some(conn);
            break;
        }
    }
    let holder = holder.expect("a publish holding the permit");
    let refused = app
        .http
        .post(format!("{}/publish/t", app.address))
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status().as_u16(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body = Answer::read(refused).await;
    body.assert_message_contains("in flight");
    drop(holder);
    app.publish_until_accepted(
        "t",
        "x",
        "the permit to be free again",
        Duration::from_secs(10),
    )
    .await;
    app.cleanup().await;
}

/// `?ns=` spreading a topic's Jobs over namespaces does not overshoot its
/// limit: every allowed namespace is counted.
#[tokio::test]
async fn max_concurrent_counts_every_allowed_namespace() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let one = crate::helpers::namespace(&kube).await;
    let two = crate::helpers::namespace(&kube).await;
    let stuck = stuck_job().replace("metadata:\n", "metadata:\n  namespace: \"{{ns}}\"\n");
    let cfg = r#"{"topics": [{"name": "t", "configs": ["j.yaml"], "maxConcurrent": 1}]}"#;
    let allowed = format!("{one},{two}");
    let app = spawn_app_with(
        &[("config.json", cfg), ("j.yaml", &stuck)],
        &["--allowed-namespaces", &allowed],
    )
    .await;
    let body = app.publish("t", &format!("ns={one}"), "x").await;
    body.assert_status(202);
    let body = app.publish("t", &format!("ns={two}"), "x").await;
    assert_eq!(
        body.status, 429,
        "the Job in the other namespace counts: {body}"
    );
    let jobs: kube::Api<k8s_openapi::api::batch::v1::Job> =
        kube::Api::namespaced(kube.clone(), &two);
    assert!(jobs
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn max_concurrent_refuses_a_publish_while_the_topic_has_its_active_jobs() {
    let stuck = stuck_job();
    let cfg = r#"{"topics": [{"name": "t", "configs": ["j.yaml"], "maxConcurrent": 2}, {"name": "free", "configs": ["j.yaml"]}]}"#;
    let app = spawn_app_with(&[("config.json", cfg), ("j.yaml", &stuck)], &[]).await;
    for _ in 0..2 {
        let body = app.publish("t", "", "x").await;
        body.assert_status(202);
    }
    let body = app.publish("t", "", "x").await;
    let headers = &body.headers;
    body.assert_status(429);
    assert_eq!(headers["retry-after"], "5");
    body.assert_message_contains("maxConcurrent is 2");
    assert_eq!(app.job_count().await, 2);
    let status = app.publish("free", "", "x").await.status;
    assert_eq!(status, 202, "another topic is not limited");
    // Once a Job is gone, the topic accepts again.
    let jobs = app
        .jobs()
        .list(&kube::api::ListParams::default().labels("gitfaas.io/topic=t"))
        .await
        .expect("list");
    let name = jobs.items[0].metadata.name.clone().expect("name");
    app.jobs()
        .delete(&name, &kube::api::DeleteParams::background())
        .await
        .expect("delete");
    app.publish_until_accepted(
        "t",
        "x",
        "the topic to accept again",
        Duration::from_secs(20),
    )
    .await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_large_payload_travels_in_a_secret_owned_by_the_job() {
    let job = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: big-{{RANDOM}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          env:
            - name: PAYLOAD_FILE
              value: /payload/payload
          volumeMounts:
            - name: payload
              mountPath: /payload
      volumes:
        - name: payload
          secret:
            secretName: "{{PAYLOAD_SECRET}}"
"#;
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", job),
        ],
        &[],
    )
    .await;
    // Far beyond what an env var holds, within the 1 MiB body limit.
    let body: String = (0..900 * 1024)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let report = app.publish("t", "", &body).await;
    let r = report.accepted();
    let job_name = report.first_object_name();
    let secret_name = format!("gitfaas-payload-{}", r.trim_start_matches("r-"));
    let job = app.job(&job_name).await;
    let volumes = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.volumes.clone())
        .expect("volumes");
    assert_eq!(
        volumes[0]
            .secret
            .as_ref()
            .and_then(|s| s.secret_name.clone()),
        Some(secret_name.clone())
    );

    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(app.kube.clone(), &app.namespace);
    let secret = secrets
        .get(&secret_name)
        .await
        .expect("the payload Secret exists");
    let data = secret.data.clone().expect("data");
    assert_eq!(
        data["payload"].0,
        body.as_bytes(),
        "the Secret holds the body byte for byte"
    );
    let owners = secret
        .metadata
        .owner_references
        .clone()
        .expect("owner references");
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "Job");
    assert_eq!(owners[0].name, job_name);
    assert_eq!(Some(owners[0].uid.clone()), job.metadata.uid.clone());
    assert_eq!(
        secret.metadata.labels.expect("labels")["gitfaas.io/request-uid"],
        r
    );

    // The garbage collector deletes the Secret with its Job.
    app.jobs()
        .delete(&job_name, &kube::api::DeleteParams::background())
        .await
        .expect("delete job");
    eventually(
        "the Secret to be garbage-collected",
        Duration::from_secs(60),
        || async {
            secrets
                .get_opt(&secret_name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
    app.cleanup().await;
}

/// A reader of runs holds no other caller's capability: neither the
/// function uid (the credential of `POST /response`) nor the callback URL's
/// query (a receiver's own secret) appears in a run's view, the history or
/// the tree; the publisher's own answer still carries the function uid.
#[tokio::test]
async fn readers_of_runs_see_no_function_uid_and_no_callback_secret() {
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", &stuck_job()),
        ],
        &[
            "--callback-allow-http",
            "--callback-allowed-hosts",
            "127.0.0.1",
        ],
    )
    .await;
    let report = app
        .publish_with(
            "t",
            "",
            &[(
                "X-Callback-Url",
                "http://127.0.0.1:9/hook?token=rcv-s3cret-value",
            )],
            "x",
        )
        .await;
    let uid = report.accepted();
    let function = report.function_uid();
    assert_eq!(function.len(), 77, "the publisher gets the whole uid");
    for path in [
        format!("/requests/{uid}"),
        "/requests?limit=50".to_string(),
        format!("/requests/{uid}/tree"),
    ] {
        let body = app.get(&path).await;
        assert_eq!(body.status, 200, "{path}: {body}");
        let text = body.to_string();
        assert!(
            !text.contains(&function),
            "{path} shows a function uid: {text}"
        );
        assert!(
            !text.contains(&function[10..40]),
            "{path} shows part of a function uid: {text}"
        );
        assert!(!text.contains("rcv-s3cret-value"), "{path}: {text}");
    }
    let view = app.run(&uid).await;
    assert_eq!(
        view["callback"]["url"], "http://127.0.0.1:9/hook?…",
        "{view}"
    );
    assert_eq!(
        view["functions"][0]["functionUid"],
        format!("{}…", &function[..10]),
        "{view}"
    );
    app.cleanup().await;
}
