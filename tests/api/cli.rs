//! The CLI: `validate`, `render`, `publish`, and `runs`, `logs`, `cancel`
//! (the client of the history), run as the binary.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{
    app_with_a_suspended_run, config, eventually, kubeconfig_path, spawn_app, spawn_app_with,
    spawn_one_topic_app, TestApp, FAILING_JOB, JOB,
};

fn gitfaas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .args(args)
        .output()
        .expect("run gitfaas");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_passes_on_every_example() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(examples).expect("examples") {
        let dir = entry.expect("entry").path();
        if !dir.join("config.json").is_file() {
            continue;
        }
        seen += 1;
        // The pipeline reads its API token from a Secret the admin allows.
        let (code, out, err) = gitfaas(&[
            "validate",
            dir.to_str().expect("utf-8 path"),
            "--allowed-secrets",
            "gitfaas-pipeline-token",
        ]);
        assert_eq!(code, 0, "{}: {out}{err}", dir.display());
        assert!(err.starts_with("ok: "), "{err}");
    }
    assert!(seen >= 2, "examples/hello and examples/pipeline at least");
}

#[test]
fn validate_lists_every_problem_as_file_line_and_exits_1() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("config.json"),
        config(&[("a", &["bad.yaml"]), ("b", &["gone.yaml"])]),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{#if x}}y{{/if}}\n",
    )
    .expect("write");
    let (code, out, _) = gitfaas(&["validate", dir.path().to_str().expect("path")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l.starts_with("bad.yaml:4: ")), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("gone.yaml: file not found")),
        "{out}"
    );

    std::fs::write(
        dir.path().join("config.json"),
        config(&[("a", &["svc.yaml"])]),
    )
    .expect("write");
    std::fs::write(
        dir.path().join("svc.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n",
    )
    .expect("write");
    let (code, out, _) = gitfaas(&["validate", dir.path().to_str().expect("path")]);
    assert_eq!(code, 1);
    assert!(out.contains("svc.yaml: kind Service is banned"), "{out}");
    let (code, _, err) = gitfaas(&["validate", "/no/such/dir"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn validate_with_a_kubeconfig_runs_a_server_side_dry_run() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("config.json"),
        config(&[("a", &["j.yaml"])]),
    )
    .expect("write");
    let no_containers = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: []\n";
    std::fs::write(dir.path().join("j.yaml"), no_containers).expect("write");
    let kc = kubeconfig_path();
    let (code, out, err) = gitfaas(&[
        "validate",
        dir.path().to_str().expect("path"),
        "--kubeconfig",
        kc.to_str().expect("path"),
        "--namespace",
        "default",
    ]);
    assert_eq!(
        code, 1,
        "offline checks pass, the API server refuses: {out}{err}"
    );
    assert!(
        out.contains("j.yaml: document 1: the API server refused"),
        "{out}"
    );
    std::fs::write(dir.path().join("j.yaml"), JOB).expect("write");
    let (code, out, err) = gitfaas(&[
        "validate",
        dir.path().to_str().expect("path"),
        "--kubeconfig",
        kc.to_str().expect("path"),
        "--namespace",
        "default",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("server-side dry run passed"), "{err}");
}

#[test]
fn render_prints_the_objects_a_publish_would_apply() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("config.json"),
        config(&[("t", &["j.yaml"])]),
    )
    .expect("write");
    std::fs::write(dir.path().join("j.yaml"), JOB).expect("write");
    std::fs::write(dir.path().join("msg.txt"), "from a file").expect("write");
    let payload = format!("@{}", dir.path().join("msg.txt").display());
    let (code, out, err) = gitfaas(&[
        "render",
        "t",
        "--dir",
        dir.path().to_str().expect("path"),
        "--payload",
        &payload,
    ]);
    assert_eq!(code, 0, "{err}");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&out).expect("valid YAML");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["metadata"]["labels"]["gitfaas.io/topic"], "t");
    assert_eq!(
        docs[0]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "ZnJvbSBhIGZpbGU="
    );
    let (code, _, err) = gitfaas(&[
        "render",
        "nope",
        "--dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown topic `nope`"), "{err}");
}

/// `render` and `validate` fill `{{body.…}}` variables from the payload as
/// a publish does, and `render` decides the topic's filter on it.
#[test]
fn render_and_validate_read_fields_of_the_body_and_render_decides_the_filter() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().to_str().expect("path").to_string();
    let job = JOB.replace(
        "value: \"{{PAYLOAD}}\"",
        "value: \"{{body.city}}-{{body.items.0}}\"",
    );
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({"topics": [
            {"name": "t", "configs": ["j.yaml"]},
            {"name": "f", "configs": ["j.yaml"], "filter": "body.city == \"Paris\""},
        ]})
        .to_string(),
    )
    .expect("write");
    std::fs::write(dir.path().join("j.yaml"), &job).expect("write");
    let env0 = |out: &str| -> Value {
        let docs: Vec<Value> = serde_saphyr::from_multiple(out).expect("valid YAML");
        docs[0]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"].clone()
    };
    let body = r#"{"city": "Paris", "items": [7.0]}"#;
    let (code, out, err) = gitfaas(&["render", "t", "--dir", &path, "--payload", body]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(env0(&out), "Paris-7.0");

    let (code, out, err) = gitfaas(&[
        "render",
        "t",
        "--dir",
        &path,
        "--payload",
        r#"{"city": "Paris"}"#,
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("{{body.items.0}}: `body` has no field `items`"),
        "{err}"
    );

    // The filter: true renders, false renders nothing and says so.
    let (code, out, err) = gitfaas(&["render", "f", "--dir", &path, "--payload", body]);
    assert_eq!((code, env0(&out)), (0, "Paris-7.0".into()), "{err}");
    let lyon = r#"{"city": "Lyon", "items": [1]}"#;
    let (code, out, err) = gitfaas(&["render", "f", "--dir", &path, "--payload", lyon]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("is false for this payload"), "{err}");
    let (code, _, err) = gitfaas(&["render", "f", "--dir", &path, "--payload", "text"]);
    assert_eq!(code, 1);
    assert!(err.contains("the body is not JSON"), "{err}");

    // validate fills the fields with samples, or takes a payload.
    let (code, out, err) = gitfaas(&["validate", &path]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = gitfaas(&["validate", &path, "--payload", r#"{"city": "Paris"}"#]);
    assert_eq!(code, 1);
    assert!(out.contains("`body` has no field `items`"), "{out}");
    // A field used both as a value and as an object can never render.
    let both = job.replace("{{body.city}}", "{{body.items}}");
    std::fs::write(dir.path().join("j.yaml"), both).expect("write");
    let (code, out, _) = gitfaas(&["validate", &path]);
    assert_eq!(code, 1);
    assert!(out.contains("`body.items` is an object"), "{out}");
}

#[tokio::test]
async fn publish_is_the_http_client() {
    let app = spawn_one_topic_app(JOB).await;
    let url = app.address.clone();
    let out = tokio::task::spawn_blocking(move || {
        gitfaas(&[
            "publish", "t", "--url", &url, "--data", "hi", "--wait", "60s",
        ])
    })
    .await
    .expect("join");
    let (code, stdout, stderr) = out;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let view: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(view["done"], true, "{view}");
    assert_eq!(app.job_count().await, 1);
    let url = app.address.clone();
    let (code, stdout, _) =
        tokio::task::spawn_blocking(move || gitfaas(&["publish", "nope", "--url", &url]))
            .await
            .expect("join");
    assert_eq!(code, 1, "{stdout}");
    app.cleanup().await;
}

/// The binary run off the test's runtime: it calls the server that runtime
/// serves.
async fn gitfaas_async(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        gitfaas(&args)
    })
    .await
    .expect("join")
}

fn argv(app: &TestApp, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    v.extend(["--url".to_string(), app.address.clone()]);
    v
}

/// Waits until the history shows `uid` in `status`.
async fn recorded(app: &TestApp, uid: &str, status: &str) {
    eventually(
        &format!("{uid} recorded {status}"),
        Duration::from_secs(60),
        || async {
            let page = app.get("/requests").await;
            page["runs"]
                .as_array()
                .is_some_and(|runs| {
                    runs.iter()
                        .any(|r| r["requestUid"] == uid && r["status"] == status)
                })
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn runs_lists_what_was_published_as_a_table_or_json_filtered_and_in_pages() {
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("ok", &["j.yaml"]), ("bad", &["f.yaml"])]),
        ),
        ("j.yaml", JOB),
        ("f.yaml", FAILING_JOB),
    ])
    .await;
    let ok = app.publish("ok", "", "x").await.accepted();
    let bad = app.publish("bad", "", "x").await.accepted();
    recorded(&app, &ok, "Succeeded").await;
    recorded(&app, &bad, "Failed").await;

    let (code, out, err) = gitfaas_async(argv(&app, &["runs"])).await;
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let header = lines[0];
    assert!(header.starts_with("UID "), "{out}");
    // Aligned: each column starts where its header does.
    let at = |name: &str| header.find(name).expect(name);
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{line}");
        assert_eq!(line.find(fields[1]), Some(at("TOPIC")), "{out}");
        assert_eq!(line.find(fields[2]), Some(at("STATUS")), "{out}");
        assert_eq!(fields[4], "-", "no parent: {line}");
    }
    assert!(
        lines[1].starts_with(&bad) && lines[1].contains("Failed"),
        "newest first: {out}"
    );
    assert!(
        lines[2].starts_with(&ok) && lines[2].contains("Succeeded"),
        "{out}"
    );

    let (code, out, err) = gitfaas_async(argv(&app, &["runs", "-o", "json"])).await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("JSON");
    let direct = app.get("/requests").await;
    assert_eq!(page, direct.body, "the server's JSON as it is");

    let (code, out, err) =
        gitfaas_async(argv(&app, &["runs", "--status", "failed", "-o", "json"])).await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(page["runs"].as_array().map(Vec::len), Some(1), "{page}");
    assert_eq!(page["runs"][0]["requestUid"], bad.as_str());

    // Pages of one: without --all the first page and a hint, with it both.
    let (code, out, err) = gitfaas_async(argv(&app, &["runs", "--limit", "1"])).await;
    assert_eq!((code, out.lines().count()), (0, 2), "{out}{err}");
    assert!(err.contains("more: --cursor "), "{err}");
    let (code, out, err) =
        gitfaas_async(argv(&app, &["runs", "--limit", "1", "--all", "-o", "json"])).await;
    assert_eq!(code, 0, "{err}");
    let all: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(all["runs"], direct["runs"], "{all}");
    assert_eq!(all["next"], Value::Null);

    // A filter the server refuses: its message, exit 1.
    let (code, out, err) = gitfaas_async(argv(&app, &["runs", "--status", "weird"])).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.starts_with("gitfaas answered 400 Bad Request: "),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    app.cleanup().await;
}

#[tokio::test]
async fn cancel_cancels_a_running_run_and_an_unknown_uid_is_not_found() {
    let (app, receipt) = app_with_a_suspended_run().await;
    let uid = receipt.request_uid();
    recorded(&app, &uid, "Running").await;

    let (code, out, err) = gitfaas_async(argv(&app, &["cancel", &uid])).await;
    assert_eq!(code, 0, "{out}{err}");
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with(&uid) && row.contains("Cancelled"), "{out}");
    let (code, out, err) =
        gitfaas_async(argv(&app, &["runs", "--status", "cancelled", "-o", "json"])).await;
    assert_eq!(code, 0, "{err}");
    let page: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(page["runs"][0]["requestUid"], uid.as_str(), "{page}");
    let (code, out, _) = gitfaas_async(argv(&app, &["cancel", &uid, "-o", "json"])).await;
    assert_eq!(code, 0, "a second cancel answers the same");
    let view: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(view["status"], "Cancelled", "{view}");

    let unknown = "r-00000000-0000-0000-0000-000000000000";
    let (code, out, err) = gitfaas_async(argv(&app, &["cancel", unknown])).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.starts_with("gitfaas answered 404 Not Found: unknown or expired request uid")
            && err.trim_end().ends_with("(not_found)"),
        "{err}"
    );
    let (code, out, _) = gitfaas_async(argv(&app, &["cancel", unknown, "-o", "json"])).await;
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(&out).expect("the error's JSON");
    assert_eq!(error["code"], "not_found", "{error}");

    // Nobody listening: an environment error, exit 2.
    let (code, _, err) = gitfaas_async(
        ["cancel", unknown, "--url", "http://127.0.0.1:9"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("gitfaas: while calling http://127.0.0.1:9/requests/"),
        "{err}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn logs_of_a_kwok_run_are_streamed_and_a_run_without_any_says_its_status() {
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("t", &["j.yaml"]), ("later", &["s.yaml"])]),
        ),
        ("j.yaml", JOB),
        ("s.yaml", &suspended),
    ])
    .await;
    let done = app.publish("t", "wait=60s", "x").await;
    done.assert_status(200);
    let uid = done.request_uid();
    // kwok runs no container, so there is no log to read: the server says
    // so in the container's own line (a line of the body, not an error).
    for extra in [&[][..], &["-f", "--tail", "5", "--container", "main"][..]] {
        let mut args = vec!["logs", uid.as_str()];
        args.extend_from_slice(extra);
        let (code, out, err) =
            tokio::time::timeout(Duration::from_secs(30), gitfaas_async(argv(&app, &args)))
                .await
                .expect("a finished run's follow ends");
        assert_eq!(code, 0, "{extra:?}: {out}{err}");
        assert!(!out.is_empty(), "{extra:?}");
        for line in out.lines() {
            assert!(
                line.starts_with("collect-") && line.contains("/main: "),
                "{extra:?}: {line}"
            );
        }
        assert_eq!(err, "", "{extra:?}");
    }
    // Suspended: no pod yet, an empty body, and the run's status instead.
    let pending = app.publish("later", "", "x").await.accepted();
    let (code, out, err) = gitfaas_async(argv(&app, &["logs", &pending])).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "");
    assert_eq!(err.trim_end(), "no logs: the run is Pending");

    let (code, _, err) = gitfaas_async(argv(&app, &["logs", "r-nope"])).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("gitfaas answered 404 Not Found: "), "{err}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_client_sends_the_token_of_token_file() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "token-one\n").expect("write");
    let mine = dir.path().join("mine");
    std::fs::write(&mine, "token-one\n").expect("write");
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &["--api-token-file", tokens.to_str().expect("path")],
    )
    .await;
    let (code, _, err) = gitfaas_async(argv(&app, &["runs"])).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("gitfaas answered 401 Unauthorized"),
        "{err}"
    );
    let (code, out, err) = gitfaas_async(argv(
        &app,
        &["runs", "--token-file", mine.to_str().expect("path")],
    ))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("UID "), "{out}");
    let (code, out, err) = gitfaas_async(argv(
        &app,
        &["publish", "t", "--token-file", mine.to_str().expect("path")],
    ))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    app.cleanup().await;
}
