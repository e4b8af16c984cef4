//! A publish changes only what it created: hostile query values against the
//! real API server, and the objects they aimed at read back unchanged.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, ResourceQuota};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{json, Value};

use crate::helpers::{config, eventually, kubeconfig_path, spawn_app};

/// A ConfigMap named from a query value, its data from another.
const CACHE_CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"cache-{{key}}\"\ndata:\n  value: \"{{v}}\"\n";

/// What a test compares to prove an object was not touched.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    uid: Option<String>,
    resource_version: Option<String>,
    data: Option<BTreeMap<String, String>>,
}

async fn configmap(api: &Api<ConfigMap>, name: &str, data: &[(&str, &str)]) -> Fingerprint {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": data}))
        .expect("configmap");
    let cm = api
        .create(&PostParams::default(), &cm)
        .await
        .expect("create the victim as kubectl would");
    Fingerprint {
        uid: cm.metadata.uid,
        resource_version: cm.metadata.resource_version,
        data: cm.data,
    }
}

async fn fingerprint(api: &Api<ConfigMap>, name: &str) -> Option<Fingerprint> {
    api.get_opt(name).await.expect("get").map(|cm| Fingerprint {
        uid: cm.metadata.uid,
        resource_version: cm.metadata.resource_version,
        data: cm.data,
    })
}

fn q(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A suspended Job as `kubectl create job` would make it (no gitfaas labels).
async fn foreign_job(api: &Api<Job>, name: &str) -> Job {
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}
    }))
    .expect("job");
    api.create(&PostParams::default(), &job)
        .await
        .expect("create the victim Job")
}

fn written_by_gitfaas(job: &Job) -> bool {
    job.metadata
        .managed_fields
        .iter()
        .flatten()
        .any(|f| f.manager.as_deref() == Some("gitfaas"))
}

#[tokio::test]
async fn a_value_cannot_reach_the_url_so_the_victim_and_its_neighbours_survive() {
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("cachecm", &["cache.yaml"]), ("anycm", &["any.yaml"])]),
        ),
        ("cache.yaml", CACHE_CM),
        (
            "any.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{name}}\"\ndata:\n  a: b\n",
        ),
    ])
    .await;
    let cms = app.config_maps();
    let victim = configmap(&cms, "cache-victim", &[("value", "precious")]).await;
    let neighbour = configmap(&cms, "neighbour", &[("value", "also precious")]).await;

    // 1: `cache-victim?` would have been `DELETE …/cache-victim??` on rollback.
    for key in [
        "victim?",
        "victim#",
        "victim/",
        "victim%3F",
        "../victim",
        "Victim",
        "victim ",
    ] {
        let body = app
            .publish("cachecm", &format!("key={}&v=x", q(key)), "")
            .await;
        assert_eq!(body.status, 400, "key={key:?}: {body}");
        let message = body.message();
        assert!(
            message.contains("cache.yaml") && message.contains("metadata.name"),
            "names the file and the field: {message}"
        );
        assert!(
            message.contains("RFC 1123 subdomain"),
            "names the rule: {message}"
        );
    }
    // 2: `?` alone would have been a delete of the whole collection.
    for name in ["?", "??", "", ".", "..", "a?b=c", "%2A"] {
        let body = app.publish("anycm", &format!("name={}", q(name)), "").await;
        assert_eq!(body.status, 400, "name={name:?}: {body}");
    }
    assert_eq!(fingerprint(&cms, "cache-victim").await, Some(victim));
    assert_eq!(fingerprint(&cms, "neighbour").await, Some(neighbour));
    let made = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=gitfaas"))
        .await
        .expect("list");
    assert!(made.items.is_empty(), "nothing was created");
    app.cleanup().await;
}

#[tokio::test]
async fn an_object_that_is_not_the_topics_own_is_refused_and_left_unchanged() {
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("cachecm", &["cache.yaml"]), ("other", &["other.yaml"])]),
        ),
        ("cache.yaml", CACHE_CM),
        ("other.yaml", CACHE_CM),
    ])
    .await;
    let cms = app.config_maps();
    // 5: a kubectl-made ConfigMap, chosen by a query value.
    let victim = configmap(&cms, "cache-owned", &[("value", "the real value")]).await;
    let body = app
        .publish("cachecm", "key=owned&v=attacker-value", "")
        .await;
    body.assert_error(409, "not_owned");
    let message = body.message();
    assert!(
        message.contains("ConfigMap") && message.contains("cache-owned"),
        "names the object: {message}"
    );
    assert!(
        message.contains("not created by gitfaas for topic `cachecm`"),
        "{message}"
    );
    assert_eq!(fingerprint(&cms, "cache-owned").await, Some(victim));

    // Another topic's object is not this topic's either.
    let body = app.publish("other", "key=theirs&v=1", "").await;
    body.assert_status(202);
    let theirs = fingerprint(&cms, "cache-theirs").await;
    let body = app.publish("cachecm", "key=theirs&v=2", "").await;
    body.assert_status(409);
    assert_eq!(fingerprint(&cms, "cache-theirs").await, theirs);
    app.cleanup().await;
}

#[tokio::test]
async fn a_job_that_exists_is_never_deleted_or_changed_by_a_publish() {
    let report_job = crate::helpers::JOB.replace("collect-{{RANDOM}}", "report-{{id}}");
    let fixed_job = crate::helpers::JOB.replace("collect-{{RANDOM}}", "nightly-fixed");
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("report", &["report.yaml"]), ("fixed", &["fixed.yaml"])]),
        ),
        ("report.yaml", &report_job),
        ("fixed.yaml", &fixed_job),
    ])
    .await;
    // 4: `kubectl create job report-nightly`, then ?id=nightly.
    let victim = foreign_job(&app.jobs(), "report-nightly").await;
    let body = app.publish("report", "id=nightly", "").await;
    body.assert_status(409);
    body.assert_message_contains("report-nightly");
    let after = app.job("report-nightly").await;
    assert_eq!(after.metadata.uid, victim.metadata.uid);
    // The Job controller writes its status (so its resourceVersion moves);
    // a write by gitfaas would show as a manager and as labels.
    assert!(
        !written_by_gitfaas(&after),
        "{:?}",
        after.metadata.managed_fields
    );
    assert_eq!(after.metadata.labels, victim.metadata.labels);

    // 3: the same fixed-name Job published twice: the first stays as it was.
    let first = app.publish("fixed", "", "first").await;
    first.assert_status(202);
    let before = app.job("nightly-fixed").await;
    let second = app.publish("fixed", "", "second").await;
    second.assert_error(409, "job_exists");
    let message = second.message();
    assert!(
        message.contains("nightly-fixed") && message.contains("{{RANDOM}}"),
        "says what to do: {message}"
    );
    // Give a wrongly started rollback time to show.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let after = app.job("nightly-fixed").await;
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(
        after
            .metadata
            .labels
            .as_ref()
            .map(|l| l["gitfaas.io/request-uid"].clone()),
        first["requestUid"].as_str().map(String::from),
        "still the first publish's Job"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn the_topics_own_objects_are_updated_in_place() {
    let deployment = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {{replicas}}
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: main
          image: busybox
"#;
    let settings = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: \"{{level}}\"\n  removed: \"{{level}}\"\n";
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[
                ("scale", &["deploy.yaml"]),
                ("settings", &["settings.yaml"]),
            ]),
        ),
        ("deploy.yaml", deployment),
        ("settings.yaml", settings),
    ])
    .await;
    let deployments: Api<Deployment> = Api::namespaced(app.kube.clone(), &app.namespace);
    let body = app.publish("scale", "replicas=1", "").await;
    body.assert_status(202);
    let first = deployments.get("web").await.expect("created");
    let body = app.publish("scale", "replicas=2", "").await;
    assert_eq!(
        body.status, 202,
        "the Python README's scaling example: {body}"
    );
    let second = deployments.get("web").await.expect("still there");
    assert_eq!(second.metadata.uid, first.metadata.uid, "the same object");
    assert_eq!(second.spec.and_then(|s| s.replicas), Some(2));

    let cms = app.config_maps();
    let body = app.publish("settings", "level=1", "").await;
    body.assert_status(202);
    let uid = fingerprint(&cms, "settings").await.and_then(|f| f.uid);
    // A key removed from the manifest is removed from the object too, as
    // server-side apply does for the fields its manager set.
    app.repo.commit(
        &[(
            "settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  level: \"{{level}}\"\n",
        )],
        "drop a key",
    );
    app.refresh().await;
    let body = app.publish("settings", "level=2", "").await;
    body.assert_status(202);
    let now = fingerprint(&cms, "settings").await.expect("exists");
    assert_eq!(now.uid, uid);
    assert_eq!(
        now.data,
        Some(BTreeMap::from([("level".to_string(), "2".to_string())]))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_topic_with_a_foreign_object_applies_none_of_its_objects() {
    let file = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: input-{{RANDOM}}\ndata:\n  a: b\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n  a: b\n";
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["both.yaml", "j.yaml"])])),
        ("both.yaml", file),
        ("j.yaml", crate::helpers::JOB),
    ])
    .await;
    let cms = app.config_maps();
    let victim = configmap(&cms, "shared", &[("a", "mine")]).await;
    let body = app.publish("t", "", "x").await;
    body.assert_status(409);
    body.assert_message_contains("nothing was applied");
    assert_eq!(fingerprint(&cms, "shared").await, Some(victim));
    let made = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=gitfaas"))
        .await
        .expect("list");
    assert!(
        made.items.is_empty(),
        "the dry run found it before any apply"
    );
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

#[tokio::test]
async fn a_rollback_deletes_what_the_publish_created_and_keeps_what_existed() {
    let files = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: state\ndata:\n  run: \"{{run}}\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a-{{RANDOM}}\ndata:\n  run: \"{{run}}\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b-{{RANDOM}}\ndata:\n  run: \"{{run}}\"\n";
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["three.yaml"])])),
        ("three.yaml", files),
    ])
    .await;
    let cms = app.config_maps();
    let bystander = configmap(&cms, "bystander", &[("a", "b")]).await;
    let body = app.publish("t", "run=1", "").await;
    body.assert_status(202);
    let state = fingerprint(&cms, "state").await.expect("state created");

    // A quota with room for one more ConfigMap: each object passes the dry
    // run alone, the real applies run out of room at the third.
    let used = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len();
    let quotas: Api<ResourceQuota> = Api::namespaced(app.kube.clone(), &app.namespace);
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "cms"},
        "spec": {"hard": {"count/configmaps": (used + 1).to_string()}}
    }))
    .expect("quota");
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota");
    eventually(
        "the quota's usage",
        std::time::Duration::from_secs(30),
        || async {
            let q = quotas.get("cms").await.ok()?;
            q.status?
                .used?
                .contains_key("count/configmaps")
                .then_some(())
        },
    )
    .await;

    let body = app.publish("t", "run=2", "").await;
    assert_eq!(
        body.status, 403,
        "the quota refused the third object: {body}"
    );
    let request_uid = body.request_uid();
    eventually(
        "the rollback of the created ConfigMap",
        std::time::Duration::from_secs(30),
        || async {
            let left = cms
                .list(
                    &ListParams::default().labels(&format!("gitfaas.io/request-uid={request_uid}")),
                )
                .await
                .ok()?;
            // `state` now carries the failed publish's labels (it was
            // updated), and is kept: it existed before the publish.
            let names: Vec<String> = left
                .items
                .iter()
                .filter_map(|c| c.metadata.name.clone())
                .collect();
            (names == ["state"]).then_some(())
        },
    )
    .await;
    let state_now = fingerprint(&cms, "state").await.expect("state kept");
    assert_eq!(state_now.uid, state.uid, "never deleted: it existed before");
    assert_eq!(fingerprint(&cms, "bystander").await, Some(bystander));
    app.cleanup().await;
}

/// The uid precondition, at the level of the applier: a same-named object
/// made by someone else after the publish's create is never deleted.
#[tokio::test]
async fn a_delete_by_uid_never_touches_an_object_that_took_the_name() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let ns = crate::helpers::namespace(&kube).await;
    let (clients, config) =
        gitfaas::cluster::client(Some(&kubeconfig_path()), std::time::Duration::from_secs(10))
            .await
            .expect("client");
    let applier = gitfaas::cluster::Applier::new(
        clients,
        config.cluster_url.to_string(),
        ns.to_string(),
        std::time::Duration::from_secs(10),
    );
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "taken", "labels": {"gitfaas.io/request-uid": "r-1"}}, "data": {"a": "1"}});
    let target = applier.target(&object).await.expect("target");
    let owner = gitfaas::cluster::Owner {
        labels: &[],
        description: "test",
    };
    let put = applier
        .put(&target, &object, &owner, false)
        .await
        .expect("created");
    let uid = put.uid().expect("a uid from the create").to_string();

    let cms: Api<ConfigMap> = Api::namespaced(kube.clone(), &ns);
    cms.delete("taken", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("deleted", std::time::Duration::from_secs(10), || async {
        cms.get_opt("taken").await.ok()?.is_none().then_some(())
    })
    .await;
    // Someone else's object, even with the same labels as ours.
    let theirs: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "taken",
        "labels": {"gitfaas.io/request-uid": "r-2"}}, "data": {"a": "theirs"}}))
    .expect("cm");
    cms.create(&PostParams::default(), &theirs)
        .await
        .expect("create");
    let theirs = fingerprint(&cms, "taken").await;

    applier
        .delete_created(&target, &uid)
        .await
        .expect("a no-op");
    applier
        .delete_if_created(&target, ("gitfaas.io/request-uid", "r-1"))
        .await
        .expect("a no-op");
    assert_eq!(fingerprint(&cms, "taken").await, theirs);
    // Ours is deleted when it is ours.
    applier
        .delete_if_created(&target, ("gitfaas.io/request-uid", "r-2"))
        .await
        .expect("deleted");
    eventually(
        "deleted by label",
        std::time::Duration::from_secs(10),
        || async { cms.get_opt("taken").await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// Values that a YAML 1.1 parser reads differently from YAML 1.2 (the API
/// server's, the structure check's), and values that are YAML syntax: each
/// is refused, or stored byte for byte — and in double quotes, always
/// stored byte for byte (values are data, encoded for their placeholder).
#[tokio::test]
async fn what_the_api_server_stores_is_what_the_check_read() {
    let templates = [
        ("double", "\"{{v}}\""),
        ("single", "'{{v}}'"),
        ("block", "|\n    {{v}}"),
        ("plain", "{{v}}"),
    ];
    let mut files: Vec<(String, String)> = Vec::new();
    let mut topics = Vec::new();
    for (style, placeholder) in templates {
        files.push((
            format!("{style}.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {style}-{{{{RANDOM}}}}\ndata:\n  value: {placeholder}\n"
            ),
        ));
        topics.push(style);
    }
    let config_json = json!({"topics": topics.iter().map(|t| json!({"name": t, "configs": [format!("{t}.yaml")]})).collect::<Vec<Value>>()}).to_string();
    let mut all: Vec<(&str, &str)> = vec![("config.json", &config_json)];
    for (name, text) in &files {
        all.push((name, text));
    }
    let app = spawn_app(&all).await;
    let cms = app.config_maps();
    let long = "x".repeat(4000);
    let values = [
        "a\u{85}\u{85}b",
        "x\u{85}y",
        "line\u{2028}separator",
        "para\u{2029}graph",
        "\u{feff}bom",
        "a\u{feff}b",
        "tab\there",
        "cr\rhere",
        "crlf\r\nhere",
        "null",
        "~",
        "true",
        "0x1F",
        "0755",
        "1:30",
        "del\u{7f}c1\u{9b}",
        "nonchar\u{fffe}\u{ffff}",
        "emoji \u{1f600}",
        long.as_str(),
        // The Python gitfaas mangled or refused these.
        "He said \"hi\"",
        "back\\slash",
        "a\nb",
        "# not a comment",
        "key: value",
        "---",
        "{{",
        "a&b\"c<d>",
        "'quoted'",
    ];
    let mut stored = 0;
    for (style, _) in templates {
        for value in values {
            let body = app.publish(style, &format!("v={}", q(value)), "").await;
            match body.status {
                202 => {
                    let name = body.first_object_name();
                    let cm = cms.get(&name).await.expect("the ConfigMap");
                    let got = cm.data.and_then(|d| d.get("value").cloned());
                    // A plain `null`/`~` is YAML's null, which the API
                    // server stores in a string map as "": a typed value,
                    // not a reinterpreted text.
                    let want = match (style, value) {
                        ("plain", "null" | "~") => String::new(),
                        // A literal block's content ends with its line break.
                        ("block", v) => format!("{v}\n"),
                        (_, v) => v.to_string(),
                    };
                    assert_eq!(
                        got.as_deref(),
                        Some(want.as_str()),
                        "{style} {value:?} stored byte for byte"
                    );
                    stored += 1;
                }
                400 | 422 if style != "double" => {
                    assert_eq!(body["error"], true, "{body}");
                }
                other => panic!("{style} {value:?}: {other} {body}"),
            }
        }
    }
    // The characters YAML 1.1 folds are carried, not refused, in quotes.
    for value in [
        "a\u{85}\u{85}b",
        "x\u{85}y",
        "line\u{2028}separator",
        "a\u{feff}b",
    ] {
        let body = app.publish("double", &format!("v={}", q(value)), "").await;
        assert_eq!(body.status, 202, "{value:?}: {body}");
    }
    assert!(
        stored > 2 * values.len(),
        "most values are carried: {stored}"
    );
    let made = cms
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=gitfaas"))
        .await
        .expect("list");
    assert!(made.items.len() >= stored);
    app.cleanup().await;
}
