//! The `gitfaas` binary as operators run it: flags, logs, SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::OpenUnlessChosen as _;
use crate::helpers::{
    config, eventually, free_port, kubeconfig_path, post, stop_and_read_log, Answer, Fixture, JOB,
};

/// The binary serving `fx`'s directory with `extra` flags, its log piped;
/// returns once `/readyz` answers, with the base URL.
async fn start_logged(fx: &Fixture, extra: &[&str]) -> (std::process::Child, String) {
    let port = free_port();
    let data = fx.data_arg();
    let own_store: &[&str] = if extra.contains(&"--data-dir") {
        &[]
    } else {
        &["--data-dir", &data]
    };
    let child = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .args(["serve", "--dir"])
        .arg(fx.dir.path())
        .args(own_store)
        .args(extra)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--namespace",
            &fx.ns,
            "--kubeconfig",
        ])
        .arg(kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .open_unless_chosen()
        .spawn()
        .expect("start gitfaas");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually("gitfaas to be ready", Duration::from_secs(30), || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    (child, base)
}

#[tokio::test]
async fn the_binary_serves_a_directory_and_stops_cleanly_on_sigterm() {
    let fx = Fixture::job().await;
    let (mut child, base) = start_logged(&fx, &[]).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{base}/publish/t"))
        .body("from the binary")
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 202);

    let (status, log) = stop_and_read_log(&mut child).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(log.contains("stopped"), "{log}");
    fx.cleanup().await;
}

/// A callback waiting for a Job that never finishes does not hold up a
/// stop: SIGTERM ends the process within seconds although the shutdown
/// timeout is a minute, and the log names the request whose callback it
/// left in the outbox (for the next gitfaas on the store).
#[tokio::test]
async fn sigterm_leaves_a_pending_callback_in_the_outbox_and_exits_promptly() {
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let fx = Fixture::new(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", &suspended),
    ])
    .await;
    let (mut child, base) = start_logged(
        &fx,
        &[
            "--callback-allow-http",
            "--callback-allowed-hosts",
            "127.0.0.1",
            "--shutdown-timeout",
            "60s",
        ],
    )
    .await;
    let uid = {
        // A client of its own, gone before the signal: an idle keep-alive
        // connection would be part of actix' drain.
        let http = reqwest::Client::new();
        let report = post(
            &http,
            &format!("{base}/publish/t"),
            &[("X-Callback-Url", "http://127.0.0.1:9/hook")],
            "x",
        )
        .await;
        report.assert_status(202);
        report.request_uid()
    };
    let signalled = std::time::Instant::now();
    let (status, log) = stop_and_read_log(&mut child).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}\n{log}");
    assert!(
        took < Duration::from_secs(10),
        "{took:?} from SIGTERM to exit with a 60 s shutdown timeout\n{log}"
    );
    let line = log
        .lines()
        .find(|l| l.contains("left in the outbox"))
        .unwrap_or_else(|| panic!("no line about the callback left in the outbox:\n{log}"));
    assert!(line.contains(&uid), "{line}");
    assert!(log.contains("stopped"), "{log}");
    fx.cleanup().await;
}

/// The function uid is the credential of `POST /response`, query values are
/// callers' data: neither reaches a log line, at debug level, in any form
/// gitfaas writes (access log, publish, response, status of the request).
#[tokio::test]
async fn no_function_uid_or_query_value_reaches_the_log() {
    let job = crate::helpers::JOB.replace(
        "            - name: GITFAAS_URL",
        "            - name: WHO\n              value: \"{{who}}\"\n            - name: GITFAAS_URL",
    );
    let fx = Fixture::new(&[
        (
            "config.json",
            &crate::helpers::config(&[("t", &["j.yaml"])]),
        ),
        ("j.yaml", &job),
    ])
    .await;
    // Port 0: the binary picks a free port and logs it (no race for one).
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .args(["serve", "--dir"])
        .arg(fx.dir.path())
        .args(["--log-level", "debug", "--listen", "127.0.0.1:0"])
        .args(["--data-dir", &fx.data_arg()])
        .args(["--namespace", &fx.ns, "--kubeconfig"])
        .arg(kubeconfig_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .open_unless_chosen()
        .spawn()
        .expect("start gitfaas");
    // Debug logs fill a pipe's buffer within seconds: read them as they come.
    let stderr = child.stderr.take().expect("stderr");
    let shared = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = std::thread::spawn({
        let shared = shared.clone();
        move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut log) = shared.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        }
    });
    let port: u16 = eventually("gitfaas to log its port", Duration::from_secs(30), || {
        let shared = shared.clone();
        async move {
            let log = shared.lock().ok()?.clone();
            let line = log.lines().find(|l| l.contains("listening"))?;
            let plain: String = line
                .split('\u{1b}')
                .map(|p| p.split_once('m').map_or(p, |(_, rest)| rest))
                .collect();
            let after = plain.split("port=").nth(1)?;
            after
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        }
    })
    .await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    eventually("gitfaas to be ready", Duration::from_secs(30), || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let report = Answer::read(
        http.post(format!("{base}/publish/t?who=qv-s3cret-value"))
            .body("x")
            .send()
            .await
            .expect("publish"),
    )
    .await;
    let uid = report.function_uid();
    let r = report.request_uid();
    for _ in 0..2 {
        // The second is refused (409): its error is logged too.
        http.post(format!("{base}/response/{uid}"))
            .body("done")
            .send()
            .await
            .expect("response");
    }
    // The same uid in forms the router treats alike or refuses: the `f`
    // percent-encoded (routed to /response/{uid}), a method the route does
    // not serve (405, the path in its message), the uid where a request uid
    // belongs (404, the uid in its message).
    let encoded = format!("{base}/response/%66{}", &uid[1..]);
    let answered = http
        .post(&encoded)
        .body("again")
        .send()
        .await
        .expect("encoded");
    assert_eq!(
        answered.status().as_u16(),
        409,
        "routed as /response/{{uid}}"
    );
    http.put(format!("{base}/response/{uid}"))
        .body("x")
        .send()
        .await
        .expect("put");
    http.get(format!("{base}/requests/{uid}"))
        .send()
        .await
        .expect("a function uid as a request uid");
    http.get(format!("{base}/requests/{r}"))
        .send()
        .await
        .expect("view");
    crate::helpers::sigterm(child.id());
    crate::helpers::wait_exit(&mut child).await;
    reader.join().expect("log reader");
    let log = shared.lock().expect("log").clone();
    assert!(
        log.contains("/response/f-"),
        "the access log names the path: {log}"
    );
    assert!(
        !log.contains(&uid),
        "a whole function uid was logged:\n{log}"
    );
    // Its second half (the random part of the uuid) alone is a leak too.
    assert!(
        !log.contains(&uid[10..40]),
        "part of a function uid was logged:\n{log}"
    );
    assert!(
        !log.contains("qv-s3cret-value"),
        "a query value was logged:\n{log}"
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn credentials_never_reach_the_logs_or_the_status() {
    let port = free_port();
    let cache = tempfile::tempdir().expect("dir");
    // Nothing listens on port 9: the fetch fails and is logged, retried and reported.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .args([
            "serve",
            "--git-url",
            "https://alice:url-s3cr3t@127.0.0.1:9/functions.git",
            "--git-user",
            "alice",
            "--git-token",
            "tok-xyzzy-42",
            // Refused without it (see the test below); here: warned about.
            "--allow-secret-flags",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--poll-interval",
            "2s",
            "--log-level",
            "debug",
            "--kubeconfig",
        ])
        .arg(kubeconfig_path())
        .arg("--cache-dir")
        .arg(cache.path().join("git"))
        .arg("--data-dir")
        .arg(cache.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .open_unless_chosen()
        .spawn()
        .expect("start gitfaas");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let status: serde_json::Value =
        eventually("two failed syncs", Duration::from_secs(30), || async {
            let s: serde_json::Value = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (s["sync"]["consecutiveFailures"].as_u64()? >= 2).then_some(s)
        })
        .await;
    let (code, body) = {
        let r = http
            .post(format!("{base}/publish/t"))
            .send()
            .await
            .expect("publish");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    assert_eq!(code, 503, "no snapshot yet: {body}");
    let (_, log) = stop_and_read_log(&mut child).await;
    assert!(
        log.contains("git fetch from https://***@127.0.0.1:9/functions.git failed"),
        "{log}"
    );
    assert!(
        log.contains("--git-token was given on the command line")
            && log.contains("--git-token-file")
            && log.contains("--git-url with credentials in it"),
        "an allowed secret flag is warned about: {log}"
    );
    for text in [log.as_str(), &status.to_string(), &body] {
        assert!(
            !text.contains("url-s3cr3t") && !text.contains("tok-xyzzy-42"),
            "a secret leaked: {text}"
        );
    }
    let cached = std::fs::read_dir(cache.path())
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .collect::<Vec<_>>();
    for repo in cached {
        let cfg = std::fs::read_to_string(repo.join("config")).unwrap_or_default();
        assert!(
            !cfg.contains("s3cr3t") && !cfg.contains("tok-xyzzy"),
            "credentials written to disk: {cfg}"
        );
    }
}

#[tokio::test]
async fn metrics_count_publishes_and_json_logs_carry_the_request_uid() {
    let fx = Fixture::job().await;
    let data = fx.dir.path().join("data").display().to_string();
    let (mut child, base) = start_logged(&fx, &["--log-format", "json", "--data-dir", &data]).await;
    let http = reqwest::Client::new();
    let report = Answer::read(
        http.post(format!("{base}/publish/t"))
            .body("m")
            .send()
            .await
            .expect("publish"),
    )
    .await;
    let uid = report.request_uid();
    let resp = http
        .post(format!("{base}/publish/nope"))
        .send()
        .await
        .expect("publish");
    assert_eq!(resp.status().as_u16(), 404);
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for expected in [
        r#"gitfaas_publishes_total{topic="t",outcome="applied"} 1"#,
        r#"gitfaas_publishes_total{topic="unknown",outcome="refused"} 1"#,
        "gitfaas_sync_consecutive_failures 0",
        "gitfaas_store_requests 1",
        "gitfaas_apply_seconds_count 1",
        "gitfaas_render_seconds_count 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert!(
        metrics.contains("gitfaas_sync_commit{commit=\"dir-"),
        "{metrics}"
    );

    let (_, log) = stop_and_read_log(&mut child).await;
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "JSON log lines expected: {log}");
    let in_publish: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["spans"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["name"] == "publish" || s["topic"].is_string())
            })
        })
        .collect();
    assert!(in_publish.len() >= 2, "the publishes logged: {log}");
    assert!(
        in_publish
            .iter()
            .any(|l| l["message"] == "request refused" && l["code"] == "unknown_topic"),
        "the refused publish logged once, with its code, in its request's span: {log}"
    );
    for line in &in_publish {
        let carried = line["spans"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["request_uid"].is_string()));
        assert!(
            carried,
            "a publish log line without its request uid: {line}"
        );
    }
    assert!(
        in_publish.iter().any(|l| l.to_string().contains(&uid)),
        "{log}"
    );
    fx.cleanup().await;
}

/// A start-up error names each cause once: anyhow prints the chain of
/// sources, so an error whose message also holds its source's said it twice.
#[test]
fn a_missing_kubeconfig_is_reported_once_with_its_hint() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("config.json"), r#"{"topics": []}"#).expect("config");
    let data = dir.path().join("data");
    let missing = dir.path().join("no-such-kubeconfig");
    let run = |flags: &[&std::ffi::OsStr]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
            .args(["serve", "--listen", "127.0.0.1:0", "--dir"])
            .arg(dir.path())
            .arg("--data-dir")
            .arg(&data)
            .args(flags)
            .env("KUBECONFIG", &missing)
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .open_unless_chosen()
            .output()
            .expect("run gitfaas");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let once = |log: &str, what: &str| {
        assert_eq!(log.matches(what).count(), 1, "`{what}` once in:\n{log}");
    };

    // --kubeconfig names a file that is not there.
    let (code, log) = run(&["--kubeconfig".as_ref(), missing.as_os_str()]);
    assert_eq!(code, Some(2), "{log}");
    once(&log, "cannot configure the Kubernetes client");
    once(&log, "No such file or directory");
    once(&log, "(check the file --kubeconfig names)");

    // No flag: KUBECONFIG (or ~/.kube/config) is looked for, and the hint says so.
    let (code, log) = run(&[]);
    assert_eq!(code, Some(2), "{log}");
    once(&log, "cannot configure the Kubernetes client");
    once(&log, "(set KUBECONFIG or pass --kubeconfig)");
}

/// A secret on the command line is readable by any local user
/// (`/proc/<pid>/cmdline`): `--git-token` stops the start with exit code 2
/// and a message that says why and what to use instead, before anything
/// is started (no listener, no store, no cache). The environment variable
/// carries the same token without complaint.
#[test]
fn a_git_token_flag_is_refused_and_nothing_starts() {
    let dir = tempfile::tempdir().expect("dir");
    let functions = dir.path().join("functions");
    std::fs::create_dir(&functions).expect("functions");
    std::fs::write(functions.join("config.json"), r#"{"topics": []}"#).expect("config");
    let data = dir.path().join("data");
    let cache = dir.path().join("cache");
    let port = free_port();
    let serve = |token_flag: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitfaas"));
        cmd.args(["serve", "--git-url"])
            .arg(format!("file://{}", functions.display()))
            .args(["--git-user", "u", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--kubeconfig")
            .arg(kubeconfig_path())
            .env_remove("GIT_PERSONAL_TOKEN")
            .env_remove("GITFAAS_ALLOW_SECRET_FLAGS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if token_flag {
            cmd.args(["--git-token", "x"]);
        }
        cmd.open_unless_chosen();
        cmd
    };
    let out = serve(true)
        .stdin(Stdio::null())
        .output()
        .expect("run gitfaas");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{log}");
    for part in [
        "--git-token was given on the command line",
        "/proc/<pid>/cmdline",
        "GIT_PERSONAL_TOKEN",
        "--git-token-file",
        "--allow-secret-flags",
    ] {
        assert!(log.contains(part), "`{part}` in:\n{log}");
    }
    assert!(
        !log.contains("listening") && !log.contains("sync"),
        "nothing started:\n{log}"
    );
    assert!(
        !data.exists() && !cache.exists(),
        "no store and no git cache were created"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens on the port"
    );

    // `validate` refuses it too; the environment variable is fine.
    let validate = |flag: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitfaas"));
        cmd.arg("validate")
            .arg(&functions)
            .env_remove("GITFAAS_ALLOW_SECRET_FLAGS");
        if flag {
            cmd.args(["--git-token", "x"])
                .env_remove("GIT_PERSONAL_TOKEN");
        } else {
            cmd.env("GIT_PERSONAL_TOKEN", "x");
        }
        cmd.output().expect("run gitfaas validate")
    };
    let refused = validate(true);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--git-token was given"));
    let from_env = validate(false);
    let stderr = String::from_utf8_lossy(&from_env.stderr);
    assert_eq!(
        from_env.status.code(),
        Some(0),
        "GIT_PERSONAL_TOKEN is not a flag: {stderr}"
    );
}

/// A fixture with one Job topic, served by the binary on a port of its own.
async fn one_topic_process() -> (Fixture, crate::helpers::Process) {
    let fx = Fixture::new(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", JOB),
    ])
    .await;
    let gitfaas = crate::helpers::spawn_process(&[
        "--dir",
        &fx.dir_arg(),
        "--data-dir",
        &fx.data_arg(),
        "--namespace",
        &fx.ns,
    ])
    .await;
    (fx, gitfaas)
}

/// The listening socket queues 1,024 connections (std's bind gave 128, and
/// a burst of a thousand clients overflowed it), as the kernel reports it.
#[tokio::test]
async fn the_listener_queues_a_thousand_connections() {
    let (fx, gitfaas) = one_topic_process().await;
    let port = gitfaas
        .address
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    let out = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    // LISTEN <queued> <backlog> <local> <peer>
    let backlog: u32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|b| b.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket on port {port}: {text}"));
    assert_eq!(backlog, 1024, "{text}");
    drop(gitfaas);
    fx.cleanup().await;
}

/// A keep-alive connection left idle longer than actix' default (5 s) is
/// still served: gitfaas keeps idle connections longer than clients' pools
/// do, so the client closes first and never sends a request into a socket
/// gitfaas is closing (reset by peer, and no way to know whether a publish
/// happened).
#[tokio::test]
async fn an_idle_keep_alive_connection_is_served_after_seconds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (fx, gitfaas) = one_topic_process().await;
    let host = gitfaas.address.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n");
    async fn one_answer(conn: &mut tokio::net::TcpStream) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
    conn.write_all(request.as_bytes())
        .await
        .expect("first request");
    let first = one_answer(&mut conn).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tokio::time::sleep(Duration::from_secs(8)).await;
    conn.write_all(request.as_bytes())
        .await
        .expect("second request");
    let second = one_answer(&mut conn).await;
    assert!(
        second.starts_with("HTTP/1.1 200"),
        "the idle connection was closed after 8 s: {second:?}"
    );
    drop(gitfaas);
    fx.cleanup().await;
}
