//! Functions that really run: Jobs on the local cluster's real node
//! (kubelet, containerd, runc; tests/cluster/node.sh), in the examples image.
//! What a function author relies on, end to end: `PAYLOAD` decoded inside
//! the container, `GITFAAS_URL` reachable from the pod, a response posted
//! from inside the Job, `{{PAYLOAD_SECRET}}` mounted as a file, an emptyDir
//! scratch volume, `backoffLimit` retries of a container that exits 1,
//! `ttlSecondsAfterFinished`, and the example pipeline, whose steps publish
//! each other from their pods. Logs are read through the API server's
//! `pods/log`, as `kubectl logs` reads them.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;
use sha2::Digest;

use crate::common::{until, Step};
use crate::helpers::*;

/// A Job in the examples image running `script` with the usual variables
/// and a scratch volume at /work.
fn job(name: &str, backoff_limit: u32, extra_spec: &str, script: &str) -> String {
    let script: String = script
        .trim()
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}-{{{{RANDOM}}}}
spec:
  backoffLimit: {backoff_limit}
{extra_spec}  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: {EXAMPLES_IMAGE}
          imagePullPolicy: IfNotPresent
          command: ["/bin/sh", "-c"]
          args:
            - |
{script}          env:
            - name: PAYLOAD
              value: "{{{{PAYLOAD}}}}"
            - name: FUNCTION_UID
              value: "{{{{FUNCTION_UID}}}}"
            - name: GITFAAS_URL
              value: "{{{{GITFAAS_URL}}}}"
            - name: TOPIC
              value: "{{{{TOPIC}}}}"
          volumeMounts:
            - name: work
              mountPath: /work
            - name: payload
              mountPath: /payload
      volumes:
        - name: work
          emptyDir: {{sizeLimit: 16Mi}}
        - name: payload
          secret:
            secretName: "{{{{PAYLOAD_SECRET}}}}"
"#
    )
}

/// The logs of every pod of `job`, oldest pod first, through `pods/log`.
async fn job_logs(app: &TestApp, job: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let mut list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list pods")
        .items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let mut logs = Vec::new();
    for pod in list {
        let name = pod.metadata.name.unwrap_or_default();
        let text = pods
            .logs(&name, &LogParams::default())
            .await
            .unwrap_or_else(|e| panic!("logs of pod {name}: {e}"));
        logs.push(text);
    }
    logs
}

/// gitfaas on the real node serving `manifest` as the one manifest of
/// `topic`; None when the cluster has no real node (`GITFAAS_REAL_NODE=0`).
async fn one_topic_app(topic: &str, manifest: &str) -> Option<(TestApp, RealNode)> {
    let kube = kube::Client::try_default().await.expect("kube client");
    let node = real_node(&kube).await?;
    let files = [
        ("config.json", config(&[(topic, &["job.yaml"])])),
        ("job.yaml", manifest.to_string()),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_on_real_node(&files, &[], &node).await;
    Some((app, node))
}

fn object_name(view: &Answer) -> String {
    view["objects"][0]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("no object in {view}"))
        .to_string()
}

#[tokio::test]
async fn a_container_reads_its_payload_scratch_volume_and_secret_and_responds_from_its_pod() {
    let manifest = job(
        "echo",
        0,
        "",
        r#"
set -eu
printf '%s' "$PAYLOAD" | base64 -d > /work/payload
echo "payload: $(cat /work/payload)"
echo "topic: $TOPIC"
echo "secret: $(sha256sum < /payload/payload | cut -d' ' -f1) $(wc -c < /payload/payload)"
echo "uid: $(id -u)"
wget -q -O /dev/null --header 'Content-Type: text/plain' \
  --post-data "seen $(wc -c < /work/payload) bytes" "$GITFAAS_URL/response/$FUNCTION_UID"
"#,
    );
    let Some((app, node)) = one_topic_app("echo", &manifest).await else {
        return;
    };
    let body = "héllo from the host, through gitfaas ✓";
    let view = app.publish("echo", "wait=120s", body).await;
    view.assert_status(200);
    assert_eq!(view["succeeded"], true, "the Job succeeded: {view}");
    let job = object_name(&view);
    let logs = job_logs(&app, &job).await;
    assert_eq!(logs.len(), 1, "one pod: {logs:?}");
    let log = &logs[0];
    assert!(log.contains(&format!("payload: {body}\n")), "{log}");
    assert!(log.contains("topic: echo\n"), "{log}");
    let digest: String = sha2::Sha256::digest(body.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        log.contains(&format!("secret: {digest} {}\n", body.len())),
        "the Secret's file holds the body byte for byte: {log}"
    );
    assert!(log.contains("uid: 65532\n"), "the image's user: {log}");
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let pod = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("pods")
        .items
        .remove(0);
    assert_eq!(
        pod.spec.and_then(|s| s.node_name),
        Some(node.name.clone()),
        "the pod ran on the real node"
    );
    // The response the container posted to GITFAAS_URL from its pod.
    let uid = view.request_uid();
    let request = app.run(&uid).await;
    assert_eq!(
        *request.response(0),
        format!("seen {} bytes", body.len()),
        "{request}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_container_that_exits_1_is_retried_backoff_limit_times_then_failed() {
    let manifest = job(
        "fail",
        2,
        "",
        r#"
echo "attempt in $(hostname)"
exit 1
"#,
    );
    let Some((app, node)) = one_topic_app("fail", &manifest).await else {
        return;
    };
    let view = app.publish("fail", "wait=240s", "x").await;
    view.assert_status(200);
    assert_eq!(view["done"], true, "{view}");
    assert_eq!(view["succeeded"], false, "{view}");
    let object = &view["objects"][0]["status"];
    assert_eq!(object["phase"], "Failed", "{view}");
    assert_eq!(
        object["failed"], 3,
        "backoffLimit 2: three attempts: {view}"
    );
    let failed = object["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Failed"))
        .unwrap_or_else(|| panic!("a Failed condition: {view}"));
    assert_eq!(failed["reason"], "BackoffLimitExceeded", "{view}");
    // Three real pods, each a container that ran and exited 1.
    let job = object_name(&view);
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("pods")
        .items;
    assert_eq!(list.len(), 3, "three attempts");
    for pod in &list {
        assert_eq!(
            pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
            Some(node.name.as_str())
        );
        let code = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code);
        assert_eq!(code, Some(1), "{:?}", pod.status);
    }
    let logs = job_logs(&app, &job).await;
    assert!(
        logs.iter().all(|l| l.starts_with("attempt in fail-")),
        "{logs:?}"
    );
    app.cleanup().await;
}

/// OpenWhisk's contract, with `"result": "stdout"`: a function that posts
/// nothing answers with the last line it wrote (JSON when it parses, text
/// otherwise); one that posts keeps what it posted; a failed one has none.
#[tokio::test]
async fn with_result_stdout_the_last_line_a_function_writes_is_its_response() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let Some(node) = real_node(&kube).await else {
        return;
    };
    let json_line = job(
        "json",
        0,
        "",
        r#"echo "working on it"; echo '{"sum": 5, "ok": true}'"#,
    );
    let text_line = job(
        "text",
        0,
        "",
        "echo first; echo '  the answer is 42  '; echo",
    );
    let posts = job(
        "posts",
        0,
        "",
        r#"
wget -q -O /dev/null --header 'Content-Type: text/plain' --post-data "posted" "$GITFAAS_URL/response/$FUNCTION_UID"
echo "not the response"
"#,
    );
    let config = r#"{"topics": [
        {"name": "sum", "configs": ["json.yaml", "text.yaml", "posts.yaml"], "result": "stdout"},
        {"name": "fails", "configs": ["fails.yaml"], "result": "stdout"},
        {"name": "plain", "configs": ["json.yaml"]}
    ]}"#;
    let fails = job("fails", 0, "", "echo '{\"partial\": 1}'; exit 1");
    let files = [
        ("config.json", config),
        ("json.yaml", json_line.as_str()),
        ("text.yaml", text_line.as_str()),
        ("posts.yaml", posts.as_str()),
        ("fails.yaml", fails.as_str()),
    ];
    let app = spawn_app_on_real_node(&files, &[], &node).await;
    let view = app.publish("sum", "wait=120s", "x").await;
    view.assert_status(200);
    view.assert_succeeded();
    let uid = view.request_uid();
    let responses = until(
        "the three functions' responses",
        Duration::from_secs(60),
        || async {
            let v = app.run(&uid).await;
            let r: Vec<Value> = (0..3).map(|i| v.response(i).clone()).collect();
            match r.iter().all(|r| !r.is_null()) {
                true => Step::Done(r),
                false => Step::Wait(v.to_string()),
            }
        },
    )
    .await;
    assert_eq!(
        responses,
        [
            serde_json::json!({"sum": 5, "ok": true}),
            serde_json::json!("the answer is 42"),
            serde_json::json!("posted"),
        ]
    );
    // Python's shape too: the bytes of the line, base64-encoded.
    let raw = app.get(&format!("/response/{uid}")).await;
    raw.assert_status(200);
    assert_eq!(
        raw["responses"][0], "eyJzdW0iOiA1LCAib2siOiB0cnVlfQ==",
        "base64 of the line: {raw}"
    );

    // A failed run answers nothing from its stdout; a topic without the
    // option neither.
    for topic in ["fails", "plain"] {
        let view = app.publish(topic, "wait=120s", "x").await;
        view.assert_status(200);
        let uid = view.request_uid();
        until(
            &format!("{topic}: the run recorded final"),
            Duration::from_secs(60),
            || async {
                let page = app.get(&format!("/requests?topic={topic}")).await;
                match page["runs"][0]["status"].as_str() {
                    Some("Succeeded" | "Failed") => Step::Done(()),
                    other => Step::Wait(format!("{other:?}")),
                }
            },
        )
        .await;
        let v = app.run(&uid).await;
        assert_eq!(*v.response(0), Value::Null, "{topic}: {v}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn ttl_seconds_after_finished_removes_the_job_and_its_pod() {
    let manifest = job("ttl", 0, "  ttlSecondsAfterFinished: 2\n", "echo done");
    let Some((app, _node)) = one_topic_app("ttl", &manifest).await else {
        return;
    };
    let view = app.publish("ttl", "wait=120s", "x").await;
    view.assert_status(200);
    view.assert_succeeded();
    let job = object_name(&view);
    let jobs: Api<Job> = app.jobs();
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let selector = format!("job-name={job}");
    until(
        "the TTL controller deletes the Job and its pod",
        Duration::from_secs(90),
        || async {
            let job_left = jobs.get_opt(&job).await.expect("get job").is_some();
            let pods_left = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .expect("pods")
                .items
                .len();
            match (job_left, pods_left) {
                (false, 0) => Step::Done(()),
                seen => Step::Wait(format!("job present, pods: {seen:?}")),
            }
        },
    )
    .await;
    app.cleanup().await;
}

/// Serves `files` (name, bytes) over HTTP on `ip`, for pods to download.
struct FileServer {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl FileServer {
    async fn start(ip: &str, files: &[(&str, Vec<u8>)]) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        let port = free_port();
        let child = std::process::Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", ip])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let url = format!("http://{ip}:{port}");
        let http = reqwest::Client::new();
        eventually("the file server", Duration::from_secs(20), || {
            let probe = http.get(format!("{url}/")).send();
            async move { probe.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        FileServer {
            child,
            url,
            _dir: dir,
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for request `uid` to finish with its function's response; returns
/// that response.
async fn finished_response(app: &TestApp, step: &str, uid: &str) -> Value {
    until(
        &format!("{step} ({uid}) to finish and respond"),
        Duration::from_secs(180),
        || async {
            let v = app.run(uid).await;
            if v.done() && v["succeeded"] == false {
                return Step::Fail(format!("{step} failed: {v}"));
            }
            match v.response(0) {
                r if v.done() && !r.is_null() => Step::Done(r.clone()),
                _ => Step::Wait(v.to_string()),
            }
        },
    )
    .await
}

#[tokio::test]
async fn the_example_pipeline_runs_collect_uncompress_convert_in_real_pods() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let Some(node) = real_node(&kube).await else {
        return;
    };
    let csv = include_str!("../../examples/data/cities.csv");
    let gz = std::process::Command::new("gzip")
        .arg("-c")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/data/cities.csv"
        ))
        .output()
        .expect("gzip");
    assert!(gz.status.success());
    let files = FileServer::start(&node.ip, &[("cities.csv.gz", gz.stdout)]).await;
    let app = spawn_app_on_real_node(
        &[
            (
                "config.json",
                include_str!("../../examples/pipeline/config.json"),
            ),
            (
                "collect.yaml",
                include_str!("../../examples/pipeline/collect.yaml"),
            ),
            (
                "uncompress.yaml",
                include_str!("../../examples/pipeline/uncompress.yaml"),
            ),
            (
                "convert.yaml",
                include_str!("../../examples/pipeline/convert.yaml"),
            ),
        ],
        &[],
        &node,
    )
    .await;
    let receipt = app
        .publish("collect", "", &format!("{}/cities.csv.gz", files.url))
        .await;
    let collect = receipt.accepted();
    // Each step responds with the receipt of the publish it made from its pod.
    let next = finished_response(&app, "collect", &collect).await;
    let uncompress = crate::helpers::request_uid(&next);
    let next = finished_response(&app, "uncompress", &uncompress).await;
    let convert = crate::helpers::request_uid(&next);
    let json = finished_response(&app, "convert", &convert).await;
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let expected: Vec<Value> = lines
        .map(|line| {
            let record = header.iter().zip(line.split(',')).map(|(k, v)| {
                let value = match v.parse::<f64>() {
                    Ok(_) => serde_json::from_str(v).expect("number"),
                    Err(_) => Value::String(v.to_string()),
                };
                (k.to_string(), value)
            });
            Value::Object(record.collect())
        })
        .collect();
    assert_eq!(json, Value::Array(expected), "convert's JSON");
    // The steps named their parents: one tree, from any of its runs, each
    // step Succeeded once its Job has finished.
    let tree = until(
        "the pipeline's tree, every step Succeeded",
        Duration::from_secs(120),
        || async {
            let tree = app.get(&format!("/requests/{convert}/tree")).await;
            let root = &tree["root"];
            let steps = [
                (&root["requestUid"], &root["status"]),
                (
                    &root["children"][0]["requestUid"],
                    &root["children"][0]["status"],
                ),
                (
                    &root["children"][0]["children"][0]["requestUid"],
                    &root["children"][0]["children"][0]["status"],
                ),
            ];
            let uids: Vec<&Value> = steps.iter().map(|s| s.0).collect();
            if uids
                != [
                    &Value::from(collect.as_str()),
                    &Value::from(uncompress.as_str()),
                    &Value::from(convert.as_str()),
                ]
            {
                return Step::Fail(format!("not the pipeline's tree: {tree}"));
            }
            match steps.iter().all(|s| s.1 == "Succeeded") {
                true => Step::Done(tree.clone()),
                false => Step::Wait(tree.to_string()),
            }
        },
    )
    .await;
    assert_eq!(tree["truncated"], false);
    // Each of the three steps ran in a pod on the real node.
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    let list = pods.list(&ListParams::default()).await.expect("pods").items;
    let on_node = list
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node.name))
        .count();
    assert_eq!(on_node, 3, "three pods on {}", node.name);
    app.cleanup().await;
}

/// A pod is a run's only when the run's own Job controls it and it carries
/// the run's label. A topic whose manifest is a bare Pod wearing the victim
/// Job's labels (which the Job controller would adopt), or the same Pod
/// controlled by a ConfigMap so the Job controller leaves it alone, is
/// refused by the policy; the same pods made by anyone else must not put
/// their lines into the victim's logs or its kept archive, nor their last
/// line into the victim's `"result": "stdout"` response.
#[tokio::test]
async fn a_pod_wearing_a_jobs_labels_speaks_neither_in_its_logs_nor_for_its_result() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let Some(node) = real_node(&kube).await else {
        return;
    };
    // The victim writes its result first, then works. The Job controller
    // adopts a bare Pod wearing its selector's label and counts it: with
    // two completions, the wearer's success does not end the victim's Job
    // (and delete its running pod) before its own pod has finished.
    let victim = job(
        "victim",
        0,
        "  completions: 2\n  parallelism: 1\n",
        r#"echo '{"real": "victim"}'; sleep 20"#,
    );
    let wearer = |owners: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: wearer-{{{{RANDOM}}}}
  labels:
    batch.kubernetes.io/controller-uid: "{{{{juid}}}}"
    controller-uid: "{{{{juid}}}}"
    batch.kubernetes.io/job-name: "{{{{job}}}}"
    job-name: "{{{{job}}}}"
{owners}spec:
  restartPolicy: Never
  containers:
    - name: main
      image: {EXAMPLES_IMAGE}
      imagePullPolicy: IfNotPresent
      command: ["/bin/sh", "-c", "echo '{{\"forged\": \"wearer-owned\"}}'"]
"#
        )
    };
    let bare = wearer("");
    let owned = wearer(
        "  ownerReferences:\n    - apiVersion: v1\n      kind: ConfigMap\n      name: \"{{cm}}\"\n      uid: \"{{cmuid}}\"\n      controller: true\n",
    );
    let config = r#"{"topics": [
        {"name": "victim", "configs": ["victim.yaml"], "result": "stdout"},
        {"name": "bare", "configs": ["bare.yaml"]},
        {"name": "owned", "configs": ["owned.yaml"]}
    ]}"#;
    let files = [
        ("config.json", config),
        ("victim.yaml", victim.as_str()),
        ("bare.yaml", bare.as_str()),
        ("owned.yaml", owned.as_str()),
    ];
    let app = spawn_app_on_real_node(&files, &[], &node).await;
    let receipt = app.publish("victim", "", "x").await;
    let uid = receipt.accepted();
    let job_name = receipt.first_object_name();
    let victim_job = app.job(&job_name).await;
    let job_uid = victim_job.metadata.uid.clone().expect("the Job's uid");
    let decoys: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(app.kube.clone(), &app.namespace);
    let decoy = decoys
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": "decoy"}}))
                .expect("ConfigMap"),
        )
        .await
        .expect("create the decoy owner");
    let decoy_uid = decoy.metadata.uid.expect("uid");
    // Through gitfaas, the policy refuses a pod wearing the Job
    // controller's label: nothing is created.
    for (topic, query) in [
        ("bare", format!("juid={job_uid}&job={job_name}")),
        (
            "owned",
            format!("juid={job_uid}&job={job_name}&cm=decoy&cmuid={decoy_uid}"),
        ),
    ] {
        let body = app.publish(topic, &query, "x").await;
        assert_eq!(body.status, 403, "{topic}: {body}");
        assert_eq!(body.code(), "policy_violation", "{body}");
        body.assert_message_contains("is the Job controller's");
    }
    // Anyone else who may create pods in the namespace can still make one:
    // the same two wearers, created directly.
    let pods: Api<Pod> = Api::namespaced(app.kube.clone(), &app.namespace);
    assert!(
        pods.list(&ListParams::default())
            .await
            .expect("pods")
            .items
            .iter()
            .all(|p| !p
                .metadata
                .name
                .clone()
                .unwrap_or_default()
                .starts_with("wearer-")),
        "gitfaas applied no wearer"
    );
    for (name, owners) in [
        ("wearer-bare", serde_json::json!([])),
        (
            "wearer-owned",
            serde_json::json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "decoy",
                                "uid": decoy_uid, "controller": true}]),
        ),
    ] {
        let wearer: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "ownerReferences": owners, "labels": {
                "batch.kubernetes.io/controller-uid": job_uid, "controller-uid": job_uid,
                "batch.kubernetes.io/job-name": job_name, "job-name": job_name}},
            "spec": {"restartPolicy": "Never", "containers": [{
                "name": "main", "image": EXAMPLES_IMAGE, "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", "echo '{\"forged\": \"wearer-owned\"}'"]}]}
        }))
        .expect("a Pod");
        pods.create(&kube::api::PostParams::default(), &wearer)
            .await
            .expect("create a wearer");
    }
    // Both wearers ran and wrote their line.
    until(
        "both wearers have written their forged line",
        Duration::from_secs(120),
        || async {
            let list = pods
                .list(&ListParams::default().labels(&format!("job-name={job_name}")))
                .await
                .expect("pods");
            let mut forged = 0;
            for p in &list.items {
                let name = p.metadata.name.clone().unwrap_or_default();
                if name.starts_with("wearer-") {
                    let text = pods
                        .logs(&name, &LogParams::default())
                        .await
                        .unwrap_or_default();
                    if text.contains("forged") {
                        forged += 1;
                    }
                }
            }
            match forged {
                2 => Step::Done(()),
                n => Step::Wait(format!("{n} of 2 wearers have written")),
            }
        },
    )
    .await;
    until(
        "the victim's run to end",
        Duration::from_secs(120),
        || async {
            let v = app.run(&uid).await;
            match v["status"].as_str() {
                Some("Succeeded" | "Failed") => Step::Done(()),
                _ => Step::Wait(v.to_string()),
            }
        },
    )
    .await;
    let logs = app
        .http
        .get(format!("{}/requests/{uid}/logs", app.address))
        .send()
        .await
        .expect("logs")
        .text()
        .await
        .expect("text");
    assert!(logs.contains(r#"{"real": "victim"}"#), "{logs}");
    assert!(
        !logs.contains("forged"),
        "a wearer's lines read as the run's: {logs}"
    );
    let response = until("the victim's response", Duration::from_secs(60), || async {
        let v = app.run(&uid).await;
        match v.response(0).clone() {
            Value::Null => Step::Wait(v.to_string()),
            r => Step::Done(r),
        }
    })
    .await;
    assert_eq!(response, serde_json::json!({"real": "victim"}));
    // The kept archive, read once the Job is gone: the run's lines only.
    app.jobs()
        .delete(&job_name, &kube::api::DeleteParams::background())
        .await
        .expect("delete the victim's Job");
    let kept = until("the kept tails answer", Duration::from_secs(60), || async {
        let r = app
            .http
            .get(format!("{}/requests/{uid}/logs", app.address))
            .send()
            .await
            .expect("logs");
        let source = r
            .headers()
            .get("gitfaas-log-source")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.expect("text");
        match source.as_str() {
            "kept" => Step::Done(text),
            other => Step::Wait(format!("source {other}")),
        }
    })
    .await;
    assert!(kept.contains(r#"{"real": "victim"}"#), "{kept}");
    assert!(
        !kept.contains("forged"),
        "a wearer's lines were kept: {kept}"
    );
    app.cleanup().await;
}

/// CPU ticks (user + system, in clock ticks) this process has used: the
/// test's own gitfaas runs in it.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th fields of the line, the 12th and 13th after it.
    let after = stat.rsplit_once(')').expect("stat").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// While a Job runs for long, everything that waits on it — the run's
/// tracker, a `?wait=` publish, a log follow — sleeps: gitfaas uses a few
/// ticks, not a core. (From a wait's fifth second every waiter used to spin
/// until the Job ended: 387–476 ticks of 400 per 4 s.)
#[tokio::test]
async fn gitfaas_is_idle_while_a_long_job_runs() {
    let manifest = job("long", 0, "", "echo started; sleep 40");
    let Some((app, _node)) = one_topic_app("t", &manifest).await else {
        return;
    };
    let uid = app.publish("t", "", "x").await.accepted();
    // Every kind of waiter at once.
    let waited = tokio::spawn({
        let (http, address) = (app.http.clone(), app.address.clone());
        async move {
            http.post(format!("{address}/publish/t?wait=60s"))
                .body("y")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    let follow = app
        .http
        .get(format!("{}/requests/{uid}/logs?follow=true", app.address))
        .send()
        .await
        .expect("follow");
    assert_eq!(follow.status(), 200);
    until("the Job's pod runs", Duration::from_secs(90), || async {
        let v = app.run(&uid).await;
        match v.phase() {
            Some("Running") => Step::Done(()),
            Some("Succeeded" | "Failed") => Step::Fail(format!("ended early: {v}")),
            _ => Step::Wait(v.to_string()),
        }
    })
    .await;
    // Past the waits' fifth second.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = cpu_ticks();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let used = cpu_ticks() - before;
    let v = app.run(&uid).await;
    println!("gitfaas while a long Job runs: {used} ticks in 4 s; {v}");
    assert_eq!(v["done"], false, "measured while the Job ran: {v}");
    assert!(
        used < 80,
        "gitfaas used {used} CPU ticks in 4 s while waiting on a running Job (a core is 400)"
    );
    drop(follow);
    waited.abort();
    app.cleanup().await;
}
