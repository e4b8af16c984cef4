//! Drop-in for the Python gitfaas: the binary started with the Python Helm
//! chart's environment, verbatim, answers as a migrating user expects.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use kube::api::Api;

use crate::helpers::OpenUnlessChosen as _;
use crate::helpers::{
    config, eventually, free_port, kubeconfig_path, namespace, post, Answer, Endpoint, GitDaemon,
    Process, TestRepo, JOB,
};

const PASSWORD: &str = "python-chart-redis-pw";

/// The Python chart's environment for both of its containers (its
/// `values.yaml` defaults), with the repository and the Redis password.
fn python_chart_env(git_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GIT_URL", git_url.to_string()),
        ("GIT_USER_NAME", "gitfaas".into()),
        (
            "GIT_PERSONAL_TOKEN",
            "<SHOULD_BE_REPLACED_IF_NOT_USING_SSH>".into(),
        ),
        ("GIT_PULL_BRANCH", "main".into()),
        ("APPLY_CONFIG_PATH", "config.json".into()),
        ("GIT_USE_SSH_KEY", "no".into()),
        ("POLLING_INTERVAL", "5".into()),
        ("GIT_STRICT_HOST_KEY_CHECKING", "yes".into()),
        ("LOG_LEVEL", "INFO".into()),
        ("VERSION", "1.1.0".into()),
        (
            "BANNED_KUBE_RESS",
            "Role RoleBinding ClusterRole ClusterRoleBinding ServiceAccount Ingress Service".into(),
        ),
        ("REDIS_PASSWORD", PASSWORD.into()),
        ("EXPIRATION_TIME", "172800".into()),
    ]
}

/// A redis-server that wants the chart's password, killed when dropped.
struct Redis(Child, u16);

impl Redis {
    async fn start() -> Redis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (installed by tests/redis.sh)");
        eventually("redis listening", Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary with `env` (and nothing of the test's own environment that
/// gitfaas reads), serving on a free port.
fn start(env: &[(&'static str, String)], extra: &[(&str, String)]) -> Process {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitfaas"));
    cmd.arg("serve")
        .args(["--listen", &format!("127.0.0.1:{port}"), "--kubeconfig"])
        .arg(kubeconfig_path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.open_unless_chosen();
    Process {
        child: cmd.spawn().expect("start gitfaas"),
        endpoint: Endpoint::new(format!("http://127.0.0.1:{port}")),
    }
}

async fn ready(http: &reqwest::Client, address: &str, within: Duration) {
    eventually("gitfaas ready", within, || async {
        let r = http.get(format!("{address}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_python_charts_environment_works_with_its_open_api_chosen() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let ns = namespace(&kube).await;
    let repo = TestRepo::new();
    let sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sneaky-{{RANDOM}}\n";
    repo.commit(
        &[
            (
                "config.json",
                &config(&[("collect", &["job.yaml"]), ("grant", &["sa.yaml"])]),
            ),
            ("job.yaml", JOB),
            ("sa.yaml", sa),
        ],
        "functions",
    );
    let redis = Redis::start().await;
    let env = python_chart_env(&repo.path().display().to_string());
    let gitfaas = start(
        &env,
        &[
            ("GITFAAS_NAMESPACE", ns.to_string()),
            // The one line a drop-in adds: the Python API was open.
            ("GITFAAS_AUTH", "none".to_string()),
            // The chart's Redis host does not resolve here: the URL names
            // this test's server; the password still comes from REDIS_PASSWORD.
            (
                "GITFAAS_REDIS_URL",
                format!("redis://127.0.0.1:{}", redis.1),
            ),
        ],
    );
    let http = reqwest::Client::new();
    let a = gitfaas.address.clone();
    ready(&http, &a, Duration::from_secs(30)).await;

    // 4. The Python chart's liveness path.
    let r = http.get(format!("{a}/alive")).send().await.expect("alive");
    assert_eq!(r.status().as_u16(), 200);

    // 1. BANNED_KUBE_RESS, space-separated: the ServiceAccount is refused.
    let body = post(&http, &format!("{a}/publish/grant"), &[], "").await;
    body.assert_status(403);
    let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(kube.clone(), &ns);
    let names: Vec<String> = sas
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with("sneaky-")),
        "no ServiceAccount was created: {names:?}"
    );

    // 2 and 7. A response posted, read back base64-encoded as the Python
    // version did, and decoded on request; POST /response says its message.
    let report = post(&http, &format!("{a}/publish/collect"), &[], "hi").await;
    let r = report.accepted();
    let f = report.function_uid();
    let posted = r#"{"result": 42}"#;
    let resp = http
        .post(format!("{a}/response/{f}"))
        .header("content-type", "application/json")
        .body(posted)
        .send()
        .await
        .expect("post response");
    assert_eq!(resp.status().as_u16(), 200);
    let answer = Answer::read(resp).await;
    assert_eq!(
        answer.body,
        serde_json::json!({"error": false, "message": "Response stored correctly"})
    );
    let body = Answer::read(
        http.get(format!("{a}/response/{r}"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        body.body,
        serde_json::json!({"error": false, "responses": ["eyJyZXN1bHQiOiA0Mn0="]}),
        "the Python shape, byte for byte"
    );
    assert_eq!(
        base64::engine::general_purpose::STANDARD.encode(posted),
        "eyJyZXN1bHQiOiA0Mn0="
    );
    let body = Answer::read(
        http.get(format!("{a}/response/{r}?decoded=true"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(body["responses"], serde_json::json!([{"result": 42}]));
    let view = Answer::read(
        http.get(format!("{a}/requests/{r}"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        *view.response(0),
        serde_json::json!({"result": 42}),
        "/requests shows it decoded: {view}"
    );

    // 5. The Python README's `&` for `?`.
    let body = post(&http, &format!("{a}/publish/collect&replicas=2"), &[], "").await;
    body.assert_error(404, "unknown_topic");
    body.assert_message_contains("did you mean `/publish/collect?replicas=2`");

    // 7. Every error is JSON, a 405 too; /refresh has the Python `error` key.
    let resp = http
        .get(format!("{a}/publish/collect"))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let body = Answer::read(resp).await;
    assert_eq!(body["error"], true);
    assert_eq!(body.code(), "method_not_allowed", "{body}");
    body.assert_message_contains("use POST");
    let body = Answer::read(
        http.get(format!("{a}/refresh"))
            .send()
            .await
            .expect("refresh"),
    )
    .await;
    assert_eq!(body["error"], false, "{body}");
    assert_eq!(body["changed"], false, "{body}");
    assert!(body["commit"].is_string(), "{body}");

    drop(gitfaas);
}

#[tokio::test]
async fn a_setting_gitfaas_cannot_honour_stops_the_start_with_what_to_set() {
    let repo = TestRepo::new();
    repo.commit(&[("config.json", &config(&[]))], "empty");
    let url = repo.path().display().to_string();
    let cases: &[(&str, &str, &str)] = &[
        ("BANNED_KUBE_RESS", "Role Services", "did you mean Service?"),
        ("GIT_USE_SSH_KEY", "yes", "ssh GIT_URL"),
        (
            "GIT_STRICT_HOST_KEY_CHECKING",
            "perhaps",
            "expected yes or no",
        ),
    ];
    for (name, value, says) in cases {
        let mut env = python_chart_env(&url);
        env.retain(|(k, _)| k != name && *k != "REDIS_PASSWORD");
        env.push((name, value.to_string()));
        let port = free_port();
        let out = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}"), "--kubeconfig"])
            .arg(kubeconfig_path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .open_unless_chosen()
            .output()
            .expect("run gitfaas");
        assert!(!out.status.success(), "{name}={value} must stop the start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name) && stderr.contains(says),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_failed_first_sync_is_retried_within_seconds_not_a_poll_interval() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let ns = namespace(&kube).await;
    let repo = TestRepo::new();
    repo.commit(
        &[
            ("config.json", &config(&[("collect", &["job.yaml"])])),
            ("job.yaml", JOB),
        ],
        "functions",
    );
    // The remote is down when gitfaas starts (POLLING_INTERVAL=5 minutes).
    let port = free_port();
    let name = repo
        .path()
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    let mut env = python_chart_env(&format!("git://127.0.0.1:{port}/{name}"));
    env.retain(|(k, _)| *k != "REDIS_PASSWORD");
    let dir = tempfile::tempdir().expect("data");
    let gitfaas = start(
        &env,
        &[
            ("GITFAAS_NAMESPACE", ns.to_string()),
            ("GITFAAS_DATA_DIR", dir.path().display().to_string()),
            (
                "GITFAAS_CACHE_DIR",
                dir.path().join("git").display().to_string(),
            ),
        ],
    );
    let http = reqwest::Client::new();
    eventually("gitfaas answers", Duration::from_secs(30), || async {
        let r = http
            .get(format!("{}/healthz", gitfaas.address))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let status = gitfaas.publish("collect", "", "").await.status;
    assert_eq!(status, 503, "no functions yet: the remote is down");
    let _daemon = GitDaemon::serve_on(repo.path(), port).await;
    // The documented backoff (1 s, doubling) retries within seconds.
    ready(&http, &gitfaas.address, Duration::from_secs(20)).await;
    let body = gitfaas.publish("collect", "", "").await;
    body.assert_status(202);
    drop(gitfaas);
}

/// The Python chart's environment alone, with no `GITFAAS_AUTH`: gitfaas
/// does not start (exit code 2), and says how to choose, naming the open
/// API's `GITFAAS_AUTH=none`.
#[test]
fn the_python_charts_environment_without_an_auth_choice_does_not_start() {
    let env = python_chart_env("https://example.invalid/functions.git");
    let out = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .arg("serve")
        .args([
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--kubeconfig",
        ])
        .arg(kubeconfig_path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .expect("run gitfaas");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--auth") && stderr.contains("GITFAAS_AUTH=none"),
        "{stderr}"
    );
}
