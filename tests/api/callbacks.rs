//! Where callbacks may go: internal targets refused at publish or at
//! delivery (never connected to), redirects not followed, nothing the target
//! said echoed in `/requests/{uid}`, deliveries bounded in flight, and
//! every POST signed as Standard Webhooks says. Every receiver is a real TCP
//! listener on 127.0.0.1 that counts its connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{config, eventually, spawn_app_with, Answer, TestApp, JOB};

/// What a receiver gives away if gitfaas were to echo it.
const MARKER: &str = "internal-service-secret-4711";

/// How long to keep listening after the Job finished, for a late connection.
const GRACE: Duration = Duration::from_secs(3);

/// A TCP listener on 127.0.0.1 answering every request with `status` (and
/// `extra` header lines) and a body holding [`MARKER`].
pub(crate) struct Receiver {
    pub(crate) port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    most_open: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start(status: &'static str, extra: String, hold: Duration) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let r = Receiver {
            port,
            accepted: Arc::default(),
            open: Arc::default(),
            most_open: Arc::default(),
            requests: Arc::default(),
        };
        let (accepted, open, most_open, requests) = (
            Arc::clone(&r.accepted),
            Arc::clone(&r.open),
            Arc::clone(&r.most_open),
            Arc::clone(&r.requests),
        );
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
                most_open.fetch_max(now_open, Ordering::SeqCst);
                let (open, requests, extra) =
                    (Arc::clone(&open), Arc::clone(&requests), extra.clone());
                tokio::spawn(async move {
                    let request =
                        tokio::time::timeout(Duration::from_secs(5), read_request(&mut conn))
                            .await
                            .unwrap_or_default();
                    requests.lock().expect("lock").push(request);
                    tokio::time::sleep(hold).await;
                    let answer = format!(
                        "HTTP/1.1 {status}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{MARKER}",
                        MARKER.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                    let _ = conn.shutdown().await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        r
    }

    pub(crate) async fn ok() -> Receiver {
        Self::start("200 OK", String::new(), Duration::ZERO).await
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("lock").clone()
    }
}

/// The request head and body, as text (bounded by its Content-Length).
async fn read_request(conn: &mut tokio::net::TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while buf.len() < 1 << 20 {
        let n = match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn app(extra: &[&str]) -> TestApp {
    spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        extra,
    )
    .await
}

/// Publishes to `t` with `X-Callback-Url: hook`.
async fn publish_with(app: &TestApp, hook: &str) -> Answer {
    app.publish_with("t", "", &[("X-Callback-Url", hook)], "x")
        .await
}

/// The request's view once its callback has made its first attempt (saved
/// together with `delivered` / `abandoned`).
/// A receiver on 127.0.0.1 answering 200, a gitfaas that may call it, one
/// publish with it as the callback: the run's view once delivered.
async fn delivered_to_a_loopback_receiver() -> (Receiver, TestApp, Answer) {
    let receiver = Receiver::ok().await;
    let app = app(&[
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1",
    ])
    .await;
    let uid = publish_with(&app, &format!("http://127.0.0.1:{}/hook", receiver.port))
        .await
        .accepted();
    let view = first_attempt(&app, &uid).await;
    assert_eq!(view["callback"]["delivered"], true, "{view}");
    (receiver, app, view)
}

async fn first_attempt(app: &TestApp, uid: &str) -> Answer {
    app.wait_for_run(
        uid,
        "the callback's first attempt",
        Duration::from_secs(120),
        |v| {
            v["callback"]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    )
    .await
}

/// Waits until the request's Job has finished, then the grace period.
async fn job_finished_plus_grace(app: &TestApp, uid: &str) {
    app.wait_for_run(uid, "the Job to finish", Duration::from_secs(120), |v| {
        v.done()
    })
    .await;
    tokio::time::sleep(GRACE).await;
}

/// An attempt shows when, whether delivered, the status and a category: nothing else.
fn assert_only_fixed_fields(view: &Answer) {
    for a in view["callback"]["attempts"].as_array().expect("attempts") {
        let mut keys: Vec<&str> = a
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["at", "delivered", "error", "status"], "{a}");
    }
    let text = view.to_string();
    assert!(
        !text.contains(MARKER),
        "the receiver's body is echoed: {text}"
    );
}

#[tokio::test]
async fn a_loopback_literal_is_refused_at_publish_and_never_connected_to() {
    let receiver = Receiver::ok().await;
    let port = receiver.port;
    let strict = app(&[]).await;
    let body = publish_with(&strict, &format!("http://127.0.0.1:{port}/")).await;
    body.assert_status(400);
    let message = body.message();
    assert!(
        message.contains("https") && message.contains("--callback-allow-http"),
        "{message}"
    );
    let body = publish_with(&strict, &format!("https://127.0.0.1:{port}/")).await;
    body.assert_status(400);
    let message = body.message();
    assert!(
        message.contains("loopback") && message.contains("--callback-allowed-hosts"),
        "{message}"
    );
    strict.cleanup().await;

    // Plain http allowed, the address still is not, however it is written.
    let http = app(&["--callback-allow-http"]).await;
    for hook in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://0.0.0.0:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://metadata.google.internal/computeMetadata/v1/".to_string(),
    ] {
        let body = publish_with(&http, &hook).await;
        assert_eq!(body.status, 400, "{hook}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("--callback-allowed-hosts")),
            "{hook}: {body}"
        );
    }
    assert_eq!(
        http.job_count().await,
        0,
        "a refused publish applies nothing"
    );
    // A Job that did run and finish: still nothing reached the listener.
    let view = http.publish("t", "wait=90s", "x").await;
    view.assert_status(200);
    tokio::time::sleep(GRACE).await;
    assert_eq!(receiver.accepted(), 0, "connections reached the listener");
    http.cleanup().await;
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_at_delivery() {
    let receiver = Receiver::ok().await;
    let app = app(&["--callback-allow-http"]).await;
    let report = publish_with(&app, &format!("http://localhost:{}/hook", receiver.port)).await;
    assert_eq!(
        report.status, 202,
        "a name is checked when it resolves: {report}"
    );
    let uid = report.request_uid();
    let view = first_attempt(&app, &uid).await;
    let cb = &view["callback"];
    assert_eq!(cb["delivered"], false, "{view}");
    assert_eq!(cb["abandoned"], true, "a refusal is not retried: {view}");
    let attempts = cb["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{view}");
    assert_eq!(attempts[0]["error"], "refused: internal address", "{view}");
    assert_eq!(attempts[0]["status"], Value::Null);
    assert_eq!(attempts[0]["delivered"], false);
    assert_only_fixed_fields(&view);
    let text = cb["attempts"].to_string();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("::1"),
        "{text}"
    );
    job_finished_plus_grace(&app, &uid).await;
    assert_eq!(receiver.accepted(), 0, "connections reached the listener");
    app.cleanup().await;
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let second = Receiver::ok().await;
    let first = Receiver::start(
        "307 Temporary Redirect",
        format!("Location: http://127.0.0.1:{}/internal\r\n", second.port),
        Duration::ZERO,
    )
    .await;
    let app = app(&[
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1",
    ])
    .await;
    let uid = publish_with(&app, &format!("http://127.0.0.1:{}/hook", first.port))
        .await
        .accepted();
    let view = first_attempt(&app, &uid).await;
    let attempt = &view["callback"]["attempts"][0];
    assert_eq!(attempt["status"], 307, "{view}");
    assert_eq!(attempt["delivered"], false, "{view}");
    assert_eq!(attempt["error"], "redirect not followed", "{view}");
    assert_eq!(view["callback"]["delivered"], false);
    assert_only_fixed_fields(&view);
    let posts = first.requests();
    assert!(
        posts[0].starts_with("POST /hook ") && posts[0].contains(&uid),
        "the first receiver gets the POST: {posts:?}"
    );
    tokio::time::sleep(GRACE).await;
    assert_eq!(second.accepted(), 0, "the redirect was followed");
    app.cleanup().await;
}

#[tokio::test]
async fn an_allowed_host_answering_200_is_delivered_without_its_body_echoed() {
    let (receiver, app, view) = delivered_to_a_loopback_receiver().await;
    let attempts = view["callback"]["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{view}");
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["delivered"], true);
    assert_eq!(attempts[0]["error"], Value::Null);
    assert_only_fixed_fields(&view);
    let posts = receiver.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body = posts[0].split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body: Value = serde_json::from_str(body).expect("a JSON view");
    assert_eq!(body["requestUid"], view["requestUid"]);
    assert_eq!(body["done"], true);
    app.cleanup().await;
}

#[tokio::test]
async fn callback_posts_in_flight_are_bounded() {
    // Each POST is held 6 s (under the 10 s client timeout): two unbounded
    // deliveries ready within that time would overlap.
    let receiver = Receiver::start("200 OK", String::new(), Duration::from_secs(6)).await;
    let app = app(&[
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1",
        "--max-callbacks-in-flight",
        "1",
    ])
    .await;
    let hook = format!("http://127.0.0.1:{}/hook", receiver.port);
    let (a, b) = tokio::join!(publish_with(&app, &hook), publish_with(&app, &hook));
    for report in [&a, &b] {
        report.assert_status(202);
        let view = first_attempt(&app, &report.request_uid()).await;
        assert_eq!(view["callback"]["delivered"], true, "{view}");
    }
    assert_eq!(receiver.accepted(), 2);
    assert_eq!(
        receiver.most_open.load(Ordering::SeqCst),
        1,
        "two POSTs at once"
    );
    app.cleanup().await;
}

/// A header of a request as the receiver read it (name in any case).
fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
    let head = request.split_once("\r\n\r\n").map_or(request, |(h, _)| h);
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Every callback is signed as the Standard Webhooks specification says,
/// under `--callback-signing-secret-file`: a receiver answering 503 gets
/// the retries, each with the same `webhook-id` (random, not the request
/// uid; `X-Gitfaas-Delivery-Id` equal to it) and its own timestamp and
/// signature. The Python code README.md documents for receivers, run as
/// written, verifies each POST and refuses it altered; so does the
/// specification's reference library, standardwebhooks from PyPI
/// (tests/callbacks/install.sh puts it in a cache outside the repository).
#[tokio::test]
async fn callbacks_are_signed_and_the_documented_receiver_code_verifies_them() {
    use base64::Engine;
    let dir = tempfile::tempdir().expect("dir");
    let secret_file = dir.path().join("signing-secret");
    let key: [u8; 32] = rand::random();
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    std::fs::write(&secret_file, format!("{secret}\n")).expect("write");
    let receiver = Receiver::start("503 Service Unavailable", String::new(), Duration::ZERO).await;
    let app = app(&[
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1",
        "--callback-signing-secret-file",
        &secret_file.display().to_string(),
    ])
    .await;
    let uid = publish_with(&app, &format!("http://127.0.0.1:{}/hook", receiver.port))
        .await
        .accepted();
    let posts = eventually(
        "the callback and its first retry",
        Duration::from_secs(120),
        || async {
            let posts = receiver.requests();
            (posts.len() >= 2).then_some(posts)
        },
    )
    .await;
    let view = app.run(&uid).await;
    let kept = view["callback"]["webhookId"]
        .as_str()
        .unwrap_or_else(|| panic!("no webhookId in {view}"))
        .to_string();
    assert!(
        kept.starts_with("msg_") && !kept.contains(&uid[2..10]),
        "{kept}"
    );
    let signing = gitfaas::callback::SigningSecret::parse(&secret).expect("secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    for post in &posts {
        let id = header(post, "webhook-id").unwrap_or_else(|| panic!("no webhook-id: {post}"));
        assert_eq!(id, kept, "every attempt carries the callback's one id");
        assert_eq!(header(post, "x-gitfaas-delivery-id"), Some(id));
        assert_eq!(header(post, "x-gitfaas-request-uid"), Some(uid.as_str()));
        let ts: u64 = header(post, "webhook-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no webhook-timestamp: {post}"));
        assert!(ts.abs_diff(now) < 120, "{ts} is this attempt's time");
        let body = post.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert_eq!(
            header(post, "webhook-signature"),
            Some(signing.sign(id, ts, body.as_bytes()).as_str()),
            "signed over the bytes sent"
        );
        let parsed: Value = serde_json::from_str(body).expect("a JSON view");
        assert_eq!(parsed["requestUid"], uid.as_str());
    }

    // The documented receiver code and the reference library, on the POSTs
    // exactly as they arrived.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<std::path::PathBuf> = posts
        .iter()
        .enumerate()
        .map(|(i, post)| {
            let f = dir.path().join(format!("post-{i}"));
            std::fs::write(&f, post).expect("write");
            f
        })
        .collect();
    let install = std::process::Command::new(root.join("tests/callbacks/install.sh"))
        .output()
        .expect("run tests/callbacks/install.sh");
    assert!(
        install.status.success(),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    let bin = String::from_utf8_lossy(&install.stdout).trim().to_string();
    let checked = std::process::Command::new(std::path::Path::new(&bin).join("python"))
        .arg(root.join("tests/callbacks/verify.py"))
        .arg(root.join("README.md"))
        .arg(&secret_file)
        .args(&files)
        .output()
        .expect("run tests/callbacks/verify.py");
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert_eq!(
        out.matches("ok: the documented code verifies").count(),
        posts.len(),
        "{out}"
    );
    assert_eq!(
        out.matches("ok: standardwebhooks 1.1.0 verifies").count(),
        posts.len(),
        "{out}"
    );
    assert!(
        out.contains("ok: the documented code refuses another body"),
        "{out}"
    );
    app.cleanup().await;
}

/// Without `--callback-signing-secret-file` a callback still goes out, with
/// its `webhook-id` and `webhook-timestamp` but no `webhook-signature`.
#[tokio::test]
async fn without_a_signing_secret_callbacks_go_out_unsigned() {
    let (receiver, app, _) = delivered_to_a_loopback_receiver().await;
    let posts = receiver.requests();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(header(&posts[0], "webhook-id").is_some_and(|id| id.starts_with("msg_")));
    assert!(header(&posts[0], "webhook-timestamp").is_some());
    assert_eq!(header(&posts[0], "webhook-signature"), None, "{}", posts[0]);
    app.cleanup().await;
}

/// A callback outlives the gitfaas that accepted its publish: killed with
/// SIGKILL while the run's Job is still suspended, the next gitfaas on the
/// same store takes the callback over from the outbox once its lease has
/// run out, and delivers it once, with the `webhook-id` the first gitfaas
/// made at publish (not the request uid) as its `X-Gitfaas-Delivery-Id`.
#[tokio::test]
async fn a_callback_outlives_a_kill_9_of_the_gitfaas_that_accepted_it() {
    use crate::helpers::{spawn_process, Fixture};
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let fx = Fixture::new(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", &suspended),
    ])
    .await;
    let hook = Receiver::ok().await;
    let (dir, data) = (fx.dir_arg(), fx.data_arg());
    let args = [
        "--dir",
        &dir,
        "--data-dir",
        &data,
        "--namespace",
        &fx.ns,
        "--callback-allow-http",
        "--callback-allowed-hosts",
        "127.0.0.1",
        "--callback-lease",
        "2s",
    ];
    let mut first = spawn_process(&args).await;
    let url = format!("http://127.0.0.1:{}/hook", hook.port);
    let receipt = first
        .publish_with("t", "", &[("X-Callback-Url", &url)], "x")
        .await;
    let uid = receipt.accepted();
    let job = receipt.first_object_name();
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reap");
    assert!(hook.requests().is_empty(), "nothing was called back yet");

    let second = spawn_process(&args).await;
    fx.jobs()
        .patch(
            &job,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"suspend": false}})),
        )
        .await
        .expect("resume the Job");
    eventually(
        "the second gitfaas calls back",
        Duration::from_secs(60),
        || async { (!hook.requests().is_empty()).then_some(()) },
    )
    .await;
    // Time for a repeat to show, if there were one.
    tokio::time::sleep(GRACE + Duration::from_secs(2)).await;
    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "delivered once: {requests:?}");
    assert!(
        requests[0].contains("\"succeeded\":true"),
        "{}",
        requests[0]
    );
    let view = second.get(&format!("/requests/{uid}")).await;
    assert_eq!(view["callback"]["delivered"], true, "{view}");
    let made_at_publish = view["callback"]["webhookId"].as_str().expect("webhookId");
    assert_eq!(header(&requests[0], "webhook-id"), Some(made_at_publish));
    assert_eq!(
        header(&requests[0], "x-gitfaas-delivery-id"),
        Some(made_at_publish),
        "{}",
        requests[0]
    );
    assert_ne!(made_at_publish, uid);
    drop(second);
    fx.cleanup().await;
}
