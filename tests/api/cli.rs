//! The CLI: `validate`, `render` and `publish`, run as the binary.

use std::process::Command;

use crate::helpers::{config, kubeconfig_path, spawn_app, JOB};

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
        let (code, out, err) = gitfaas(&["validate", dir.to_str().expect("utf-8 path")]);
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

#[tokio::test]
async fn publish_is_the_http_client() {
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", JOB),
    ])
    .await;
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
