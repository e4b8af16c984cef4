//! Publishing: what lands in the API server, and what is refused.

use base64::Engine;
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use crate::helpers::{config, env, spawn_app, spawn_one_topic_app, JOB};

#[tokio::test]
async fn publish_creates_the_job_with_the_payload_labels_and_commit() {
    let app = spawn_app(&[
        ("config.json", &config(&[("collect", &["collect.yaml"])])),
        ("collect.yaml", JOB),
    ])
    .await;
    let head = app.repo.commit(&[], "again");
    app.refresh().await;

    let report = app.publish("collect", "", "hello world").await;
    report.assert_status(202);
    assert_eq!(report["error"], false);
    let request_uid = report.request_uid();
    assert!(
        request_uid.starts_with("r-") && request_uid.len() == 38,
        "{request_uid}"
    );
    assert_eq!(report["applies"][0]["path"], "collect.yaml");
    assert_eq!(report["applies"][0]["error"], false);

    let job = app.job(&report.first_object_name()).await;
    let expected = base64::engine::general_purpose::STANDARD.encode("hello world");
    assert_eq!(env(&job, "PAYLOAD").as_deref(), Some(expected.as_str()));
    let function_uid = env(&job, "FUNCTION_UID").expect("FUNCTION_UID");
    assert_eq!(function_uid.len(), 77);
    assert!(function_uid.ends_with(&request_uid));
    assert_eq!(
        env(&job, "GITFAAS_URL").as_deref(),
        Some("http://gitfaas.test:5000")
    );
    let labels = job.metadata.labels.clone().expect("labels");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "gitfaas");
    assert_eq!(labels["gitfaas.io/topic"], "collect");
    assert_eq!(labels["gitfaas.io/request-uid"], request_uid);
    let annotations = job.metadata.annotations.clone().expect("annotations");
    assert_eq!(annotations["gitfaas.io/commit"], head);
    assert_eq!(annotations["gitfaas.io/function-uid"], function_uid);
    let pod_labels = job
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    assert_eq!(pod_labels["gitfaas.io/request-uid"], request_uid);
    assert_eq!(
        job.metadata
            .managed_fields
            .as_ref()
            .map(|f| f[0].manager.clone()),
        Some(Some("gitfaas".into()))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_query_parameter_fills_a_field() {
    let job = JOB.replace("backoffLimit: 0", "backoffLimit: {{retries}}").replace(
        "            - name: GITFAAS_URL",
        "            - name: WHO\n              value: \"{{who}}\"\n            - name: GITFAAS_URL",
    );
    let app = spawn_one_topic_app(&job).await;
    let report = app.publish("t", "retries=3&who=data%20team", "").await;
    report.assert_status(202);
    let job = app.job(&report.first_object_name()).await;
    assert_eq!(job.spec.as_ref().and_then(|s| s.backoff_limit), Some(3));
    assert_eq!(env(&job, "WHO").as_deref(), Some("data team"));
    app.cleanup().await;
}

#[tokio::test]
async fn two_publishes_give_two_jobs_with_different_random_names() {
    let app = spawn_one_topic_app(JOB).await;
    let r1 = app.publish("t", "", "a").await;
    let r2 = app.publish("t", "", "b").await;
    assert_eq!((r1.status, r2.status), (202, 202));
    let (n1, n2) = (r1.first_object_name(), r2.first_object_name());
    assert_ne!(n1, n2);
    assert_ne!(r1["requestUid"], r2["requestUid"]);
    assert_eq!(app.job_count().await, 2);
    app.cleanup().await;
}

#[tokio::test]
async fn a_multi_document_file_applies_every_object() {
    let file = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: input-{{{{RANDOM}}}}\ndata:\n  payload: \"{{{{PAYLOAD}}}}\"\n---\n{JOB}"
    );
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["both.yaml"])])),
        ("both.yaml", &file),
    ])
    .await;
    let report = app.publish("t", "", "x").await;
    report.assert_status(202);
    let objects = report["applies"][0]["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 2, "{report}");
    assert_eq!(objects[0]["kind"], "ConfigMap");
    let cms = app.config_maps();
    let cm = cms
        .get(objects[0]["name"].as_str().expect("name"))
        .await
        .expect("configmap exists");
    assert_eq!(cm.data.expect("data")["payload"], "eA==");
    app.job(objects[1]["name"].as_str().expect("name")).await;
    app.cleanup().await;
}

#[tokio::test]
async fn an_unknown_topic_is_404_and_creates_nothing() {
    let app = spawn_one_topic_app(JOB).await;
    let body = app.publish("nope", "", "x").await;
    body.assert_status(404);
    assert_eq!(body["error"], true);
    body.assert_message_contains("unknown topic `nope`");
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first-{{RANDOM}}\ndata:\n  a: b\n";

#[tokio::test]
async fn policy_refusals_are_403_and_nothing_of_the_topic_is_created() {
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: r-{{RANDOM}}\nrules: []\n";
    let privileged = JOB.replace(
        "          image: busybox",
        "          image: busybox\n          securityContext:\n            privileged: true",
    );
    let host_path = JOB.replace("      restartPolicy: Never", "      restartPolicy: Never\n      volumes:\n        - name: root\n          hostPath:\n            path: /");
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[
                ("role", &["cm.yaml", "role.yaml"]),
                ("priv", &["cm.yaml", "priv.yaml"]),
                ("host", &["cm.yaml", "host.yaml"]),
            ]),
        ),
        ("cm.yaml", CONFIGMAP),
        ("role.yaml", role),
        ("priv.yaml", &privileged),
        ("host.yaml", &host_path),
    ])
    .await;
    for (topic, expected) in [
        ("role", "kind Role is banned"),
        (
            "priv",
            r#"privileged (container "main" must not set securityContext.privileged=true)"#,
        ),
        ("host", r#"hostPath volumes (volume "root")"#),
    ] {
        let body = app.publish(topic, "", "x").await;
        assert_eq!(body.status, 403, "{topic}: {body}");
        assert!(body.message().contains(expected), "{topic}: {body}");
    }
    let cms = app.config_maps();
    let ours = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=gitfaas"))
        .await
        .expect("list");
    assert!(
        ours.items.is_empty(),
        "the topic's first manifest must not be applied"
    );
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn query_values_that_try_to_change_the_structure_are_400_and_create_nothing() {
    let job = JOB.replace("backoffLimit: 0", "backoffLimit: {{n}}").replace(
        "            - name: GITFAAS_URL",
        "            - name: NOTE\n              value: \"{{note}}\"\n            - name: PLAIN\n              value: {{plain}}\n            - name: GITFAAS_URL",
    );
    let app = spawn_one_topic_app(&job).await;
    let enc = |s: &str| -> String { url_encode(s) };
    let cases: &[(&str, &str, &str)] = &[
        (
            "newline adds a key",
            "plain",
            "x\n              privileged: true",
        ),
        ("colon-space makes a mapping", "plain", "a: b"),
        ("flow mapping", "plain", "{a: b}"),
        ("flow sequence", "n", "[1, 2]"),
        ("comment and newline", "n", "1 #\n  hostNetwork: true"),
        (
            "document separator",
            "plain",
            "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}",
        ),
        ("anchor", "plain", "&a x"),
        ("alias", "plain", "*a"),
    ];
    for (what, var, value) in cases {
        let mut params = vec![("n", "1"), ("note", "ok"), ("plain", "ok")];
        params.retain(|(k, _)| k != var);
        params.push((var, value));
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect();
        let body = app.publish("t", &query.join("&"), "x").await;
        assert_eq!(body.status, 400, "{what}: {value:?} → {body}");
        assert_eq!(body["error"], true);
        assert!(body.message().contains("j.yaml"), "{what}: {body}");
    }
    assert_eq!(app.job_count().await, 0);
    let body = app.publish("t", "n=2&note=a%23b&plain=c%3Ad", "x").await;
    assert_eq!(
        body.status, 202,
        "harmless special characters must pass: {body}"
    );
    // Inside double quotes a value is data: what used to break out of the
    // string arrives as written, and the structure is the template's.
    for value in [
        "a\", \"b",
        "a\"\n              command: [\"sh\"]\n              x: \"y",
    ] {
        let query = format!("n=1&plain=ok&note={}", enc(value));
        let body = app.publish("t", &query, "x").await;
        assert_eq!(body.status, 202, "{value:?}: {body}");
        let job = app.job(&body.first_object_name()).await;
        assert_eq!(crate::helpers::env(&job, "NOTE").as_deref(), Some(value));
        let container = &job
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .expect("pod spec")
            .containers[0];
        assert!(
            container.command.is_none(),
            "no key was added: {container:?}"
        );
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_line_break_in_a_single_quoted_placeholder_arrives_exactly() {
    let job = JOB.replace(
        "            - name: GITFAAS_URL",
        "            - name: NOTE\n              value: '{{note}}'\n            - name: GITFAAS_URL",
    );
    let app = spawn_one_topic_app(&job).await;
    for value in [
        "first line\nsecond line",
        "\nit's\n\n\nthree breaks, and one at each end\n",
        "a\n---\nkind: Secret\nprivileged: true",
    ] {
        let body = app
            .publish("t", &format!("note={}", url_encode(value)), "x")
            .await;
        assert_eq!(body.status, 202, "{value:?}: {body}");
        let job = app.job(&body.first_object_name()).await;
        assert_eq!(env(&job, "NOTE").as_deref(), Some(value), "{value:?}");
    }
    // What single quotes cannot hold is refused by name, and nothing applied.
    let before = app.job_count().await;
    for (value, says) in [
        ("trailing space \nx", "space or a tab next to a line break"),
        ("a\r\nb", "carriage return"),
    ] {
        let body = app
            .publish("t", &format!("note={}", url_encode(value)), "x")
            .await;
        assert_eq!(body.status, 400, "{value:?}: {body}");
        let message = body.message();
        assert!(message.contains("`note`"), "{message}");
        assert!(message.contains(says), "{message}");
        assert!(message.contains("\"{{note}}\""), "the fix: {message}");
    }
    assert_eq!(app.job_count().await, before);
    app.cleanup().await;
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_missing_variable_is_400_naming_it() {
    let job = JOB
        .replace("backoffLimit: 0", "backoffLimit: {{retries}}")
        .replace("busybox", "busybox:{{tag}}");
    let app = spawn_one_topic_app(&job).await;
    let body = app.publish("t", "tag=1", "x").await;
    body.assert_status(400);
    let message = body.message();
    assert!(
        message.contains("missing template variable: retries"),
        "{message}"
    );
    let body = app.publish("t", "", "x").await;
    body.assert_status(400);
    body.assert_message_contains("retries, tag");
    let body = app.publish("t", "retries=1&tag=1&PAYLOAD=x", "x").await;
    assert_eq!(
        body.status, 400,
        "reserved names cannot be overridden: {body}"
    );
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn dry_run_returns_the_rendered_objects_and_persists_nothing() {
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["cm.yaml", "j.yaml"])])),
        ("cm.yaml", CONFIGMAP),
        ("j.yaml", JOB),
    ])
    .await;
    let report = app.publish("t", "dryRun=true", "hi").await;
    report.assert_status(200);
    assert_eq!(report["dryRun"], true);
    let rendered = &report["applies"][1]["rendered"][0];
    assert_eq!(rendered["kind"], "Job");
    assert_eq!(rendered["metadata"]["labels"]["gitfaas.io/topic"], "t");
    assert_eq!(app.job_count().await, 0);
    assert!(app
        .config_maps_labelled("gitfaas.io/topic=t")
        .await
        .is_empty());
    app.cleanup().await;
}

/// With `--listen 127.0.0.1:0` and no `--public-url`, `{{GITFAAS_URL}}` is
/// the address gitfaas is bound to, the port the kernel chose included
/// (it kept port 0, an address no function can reach).
#[tokio::test]
async fn gitfaas_url_derived_from_listen_port_0_carries_the_bound_port() {
    use clap::Parser;
    let kube = kube::Client::try_default().await.expect("kube client");
    let namespace = crate::helpers::namespace(&kube).await;
    let repo = crate::helpers::TestRepo::new();
    repo.commit(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        "initial",
    );
    let cache = tempfile::tempdir().expect("cache dir");
    let repo_url = repo.path().display().to_string();
    let data_dir = cache.path().join("data").display().to_string();
    let kubeconfig = crate::helpers::kubeconfig_path().display().to_string();
    let cli = gitfaas::settings::Cli::try_parse_from([
        "gitfaas",
        "serve",
        "--git-url",
        &repo_url,
        "--listen",
        "127.0.0.1:0",
        "--namespace",
        &namespace,
        "--data-dir",
        &data_dir,
        "--kubeconfig",
        &kubeconfig,
        "--auth",
        "none",
    ])
    .expect("flags parse");
    let gitfaas::settings::Command::Serve(args) = cli.command else {
        unreachable!("a serve command")
    };
    let settings = args.validate(|_| None).expect("valid settings");
    let app = gitfaas::Application::build(settings)
        .await
        .expect("app builds");
    let port = app.port();
    assert_ne!(port, 0);
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());

    let report: Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/publish/t?dryRun=true"))
        .body("hi")
        .send()
        .await
        .expect("publish")
        .json()
        .await
        .expect("JSON report");
    let env =
        &report["applies"][0]["rendered"][0]["spec"]["template"]["spec"]["containers"][0]["env"];
    let url = env
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == "GITFAAS_URL"))
        .map(|v| v["value"].clone());
    assert_eq!(
        url,
        Some(Value::from(format!("http://127.0.0.1:{port}"))),
        "{report}"
    );
    handle.stop(true).await;
    let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(kube)
        .delete(&namespace, &kube::api::DeleteParams::background())
        .await;
}

/// `gitfaas_publishes_total` tells a dry run by the query the publish reads:
/// `dryRun=false` applies, so it counts as `applied` (a substring match on
/// the query string counted it as `dry_run`).
#[tokio::test]
async fn metrics_count_a_dry_run_only_when_the_publish_was_one() {
    // A topic of its own: the counters are process-wide, shared by every test here.
    let topic = "metrics-dry-run";
    let app = spawn_app(&[
        ("config.json", &config(&[(topic, &["j.yaml"])])),
        ("j.yaml", JOB),
    ])
    .await;
    for (query, status) in [
        ("dryRun=false", 202),
        ("dryRun=0", 202),
        ("dryRun=true", 200),
        ("dryRun", 200),
    ] {
        let report = app.publish(topic, query, "hi").await;
        assert_eq!(report.status, status, "{query}: {report}");
    }
    let metrics = app.metrics().await;
    for expected in [
        format!(r#"gitfaas_publishes_total{{topic="{topic}",outcome="applied"}} 2"#),
        format!(r#"gitfaas_publishes_total{{topic="{topic}",outcome="dry_run"}} 2"#),
    ] {
        assert!(
            metrics.lines().any(|l| l == expected),
            "missing {expected} in\n{metrics}"
        );
    }
    assert_eq!(app.job_count().await, 2, "the two real publishes applied");
    app.cleanup().await;
}

#[tokio::test]
async fn a_topic_whose_later_manifest_the_api_server_refuses_applies_nothing() {
    // Valid YAML, passes policy, but the API server rejects it (a Job without containers).
    let bad = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: bad-{{RANDOM}}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: []\n";
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["cm.yaml", "bad.yaml"])])),
        ("cm.yaml", CONFIGMAP),
        ("bad.yaml", bad),
    ])
    .await;
    let body = app.publish("t", "", "x").await;
    body.assert_status(422);
    assert_eq!(body["error"], true);
    assert_eq!(body["applies"][1]["error"], true, "{body}");
    body.assert_message_contains("nothing was applied");
    assert!(app
        .config_maps_labelled("gitfaas.io/topic=t")
        .await
        .is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn a_kind_whose_crd_is_created_after_start_is_applied() {
    let group = format!("{}.gitfaas.test", gitfaas::publish::random_suffix());
    let widget = format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: w-{{{{RANDOM}}}}\nspec:\n  size: \"{{{{PAYLOAD}}}}\"\n");
    let app = spawn_app(&[
        ("config.json", &config(&[("w", &["w.yaml"])])),
        ("w.yaml", &widget),
    ])
    .await;
    let body = app.publish("w", "", "x").await;
    assert_eq!(body.status, 422, "the kind does not exist yet: {body}");
    body.assert_message_contains("not served by the cluster");

    let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("widgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
        }))
        .expect("crd");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(app.kube.clone());
    crds.create(&Default::default(), &crd)
        .await
        .expect("create CRD");
    let report = app
        .publish_until_accepted(
            "w",
            "x",
            "the CRD to be served",
            std::time::Duration::from_secs(30),
        )
        .await;
    let ar = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(app.kube.clone(), &app.namespace, &ar);
    let w = widgets
        .get(&report.first_object_name())
        .await
        .expect("widget exists");
    assert_eq!(w.data["spec"]["size"], "eA==");
    let _ = crds
        .delete(&format!("widgets.{group}"), &Default::default())
        .await;
    app.cleanup().await;
}

/// A body of 100 KiB is rendered off the HTTP worker (on the blocking pool)
/// into the same Job a small one gets.
#[tokio::test]
async fn a_large_body_is_rendered_whole() {
    use base64::Engine;
    let app = spawn_one_topic_app(JOB).await;
    let body = "0123456789abcdef".repeat(6400);
    let report = app.publish("t", "", &body).await;
    report.assert_status(202);
    let name = report.first_object_name();
    let job = app.job(&name).await;
    let payload = crate::helpers::env(&job, "PAYLOAD").expect("PAYLOAD");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .expect("base64");
    assert_eq!(decoded, body.as_bytes());
    app.cleanup().await;
}

#[tokio::test]
async fn bad_requests_get_clear_json_errors() {
    let app = spawn_one_topic_app(JOB).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let body = app.publish("t", "", &big).await;
    body.assert_status(413);
    assert_eq!(body["error"], true);
    let as_a = |content_type| [("content-type", content_type)];
    app.publish_with("t", "", &as_a("multipart/form-data"), "x")
        .await
        .assert_status(415);
    app.publish_with("t", "", &as_a("application/json"), "{not json")
        .await
        .assert_status(400);
    app.publish_with("t", "", &as_a("application/json"), r#"{"a": 1}"#)
        .await
        .assert_status(202);
    let body = app.get("/nowhere").await;
    body.assert_status(404);
    assert_eq!(body["error"], true);
    let form = app
        .publish_with(
            "t",
            "",
            &as_a("application/x-www-form-urlencoded"),
            "what curl -d sends",
        )
        .await;
    assert_eq!(
        form.status, 202,
        "curl -d bodies are taken as raw bytes: {form}"
    );
    assert_eq!(
        app.job_count().await,
        2,
        "only the valid JSON and the form-encoded publishes created a Job"
    );
    app.cleanup().await;
}
