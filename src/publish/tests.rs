use std::sync::Arc;

use serde_json::{json, Value};

use super::error::did_you_mean;
use super::render::Rendered;
use super::*;
use crate::cluster::{Applier, ApplyError, Target};
use crate::error::Code;
use crate::object::{
    ANNOTATION_COMMIT, ANNOTATION_FUNCTION_UID, LABEL_MANAGED_BY, LABEL_REQUEST_UID, LABEL_TOPIC,
};
use crate::policy::Policy;

#[test]
fn the_missing_variables_message_is_total() {
    let message = |names: &[&str]| {
        PublishError::Missing {
            names: names.iter().map(|n| n.to_string()).collect(),
        }
        .to_string()
    };
    assert_eq!(
        message(&["replicas"]),
        "missing template variable: replicas; pass it as query parameter (e.g. ?replicas=value)"
    );
    assert_eq!(
        message(&["a", "b"]),
        "missing template variables: a, b; pass them as query parameters (e.g. ?a=value)"
    );
    // No name (never built so today, but Display must not index past the end).
    assert_eq!(
        message(&[]),
        "missing template variables; pass them as query parameters (e.g. ?name=value)"
    );
}

#[test]
fn marks_the_object_and_a_jobs_pod_template() {
    let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "labels": {"team": "a"}},
                             "spec": {"template": {"spec": {}}}});
    mark(&mut job, "t", "r-1", "f-1-r-1", "abc");
    assert_eq!(job["metadata"]["labels"]["team"], "a");
    assert_eq!(job["metadata"]["labels"][LABEL_TOPIC], "t");
    assert_eq!(job["metadata"]["labels"][LABEL_MANAGED_BY], "gitfaas");
    assert_eq!(job["metadata"]["annotations"][ANNOTATION_COMMIT], "abc");
    assert_eq!(
        job["spec"]["template"]["metadata"]["labels"][LABEL_REQUEST_UID],
        "r-1"
    );
    assert_eq!(
        job["spec"]["template"]["metadata"]["annotations"][ANNOTATION_FUNCTION_UID],
        "f-1-r-1"
    );
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "spec": {"template": {}}});
    mark(&mut cm, "t", "r-1", "f", "abc");
    assert!(
        cm["spec"]["template"].get("metadata").is_none(),
        "only batch kinds get pod labels"
    );
}

#[test]
fn uids_and_random_suffixes_have_their_documented_form() {
    let r = new_request_uid();
    assert_eq!(r.as_str().len(), 38);
    let f = format!("f-{}-{}", uuid::Uuid::new_v4(), r);
    assert_eq!(f.len(), 77);
    let a = random_suffix();
    assert_eq!(a.len(), 10);
    assert!(a
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    assert!(a.starts_with(|c: char| c.is_ascii_lowercase()));
    assert_ne!(a, random_suffix());
}

#[test]
fn a_topic_written_with_an_ampersand_suggests_the_question_mark() {
    assert_eq!(
        did_you_mean("mytopic&replicas=2"),
        "; did you mean `/publish/mytopic?replicas=2` (query parameters start with `?`)"
    );
    assert_eq!(did_you_mean("mytopic"), "");
    assert_eq!(did_you_mean("a&b"), "");
    assert_eq!(did_you_mean("&x=1"), "");
}

#[test]
fn query_parameters_cannot_override_built_ins_or_repeat() {
    let p = |k: &str| vec![(k.to_string(), "v".to_string())];
    for reserved in RESERVED {
        assert!(check_params(&p(reserved)).is_err(), "{reserved}");
    }
    assert!(check_params(&p("a b")).is_err());
    assert!(check_params(&p("a.b")).is_err());
    let twice = vec![
        ("x".to_string(), "1".to_string()),
        ("x".to_string(), "2".to_string()),
    ];
    assert!(check_params(&twice).is_err());
    assert_eq!(check_params(&p("replicas")).map(|m| m.len()).ok(), Some(1));
}

/// `{{SCHEDULED_TIME}}` is a tick's: a publish of a topic that uses it is
/// refused as a missing variable that says so (a caller cannot give it,
/// it is reserved), and a tick's render carries it.
#[test]
fn the_scheduled_time_is_a_ticks_only() {
    struct Files;
    impl crate::catalog::FileTree for Files {
        fn read(
            &self,
            path: &crate::catalog::RepoPath,
        ) -> Result<Vec<u8>, crate::catalog::FileError> {
            match path.as_ref() {
                "config.json" => Ok(br#"{"topics": [{"name": "t", "configs": ["j.yaml"]}]}"#.to_vec()),
                "j.yaml" => Ok(b"apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: j-{{RANDOM}}\n  annotations:\n    at: \"{{SCHEDULED_TIME}}\"\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: busybox}]\n".to_vec()),
                _ => Err(crate::catalog::FileError::NotFound),
            }
        }
    }
    let config = crate::catalog::RepoPath::parse("config.json").expect("path");
    let snapshot = crate::catalog::build(&Files, &config, "c").expect("valid");
    let policy = Policy::default();
    let render = |scheduled_time: Option<&str>| {
        let req = Request {
            topic: "t",
            body: b"",
            params: vec![],
            dry_run: false,
            trace_id: None,
            cloudevent: None,
            scheduled_time,
        };
        render_topic(&snapshot, &policy, "http://g", &req, &new_request_uid())
    };
    let Err(e) = render(None) else {
        panic!("a publish of a topic using {{{{SCHEDULED_TIME}}}} renders");
    };
    assert_eq!(e.kind(), Code::MissingVariable);
    assert!(
        e.to_string()
            .contains("SCHEDULED_TIME}} is set only for the runs the topic's schedule fires"),
        "{e}"
    );
    let rendered = render(Some("2026-03-29T01:00:00Z")).expect("a tick renders");
    assert_eq!(
        rendered.manifests[0].objects[0]["metadata"]["annotations"]["at"],
        "2026-03-29T01:00:00Z"
    );
    assert!(
        check_params(&[(crate::template::SCHEDULED_TIME.to_string(), "x".to_string())]).is_err()
    );
}

/// Publishes of topic `t` against a mocked API server.
/// A prepared publish of one Job whose env holds `payload` as
/// `{{PAYLOAD}}` puts it, built without a cluster.
fn prepared_job(payload: &str) -> Prepared {
    let doc = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "collect-abc", "labels": {LABEL_REQUEST_UID: "r-1"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox",
            "env": [{"name": "PAYLOAD", "value": payload}, {"name": "FUNCTION_UID", "value": "f-1-r-1"}]}]}}}});
    let target = Target {
        resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::batch::v1::Job>(&()),
        namespace: Some("ns".into()),
        name: "collect-abc".into(),
    };
    Prepared {
        report: Report {
            request_uid: "r-1".into(),
            applies: Vec::new(),
            error: false,
            message: None,
            topic: "t".into(),
            commit: "c".into(),
            dry_run: false,
            failure: None,
            phase: None,
            position: None,
        },
        ready: vec![Rendered {
            path: "j.yaml".into(),
            function_uid: "f-1-r-1".into(),
            objects: vec![(doc, target)],
            uses_payload_secret: false,
        }],
        payload: payload.to_string(),
        params: Vec::new(),
        result: crate::catalog::ResultSource::Posted,
        limit: None,
        retry: None,
    }
}

#[test]
fn a_queued_run_keeps_its_body_once_and_applies_it_exactly() {
    use base64::Engine;
    let body: Vec<u8> = (0..700 * 1024).map(|i| (i % 251) as u8).collect();
    let payload = base64::engine::general_purpose::STANDARD.encode(&body);
    let prepared = prepared_job(&payload);
    let stored = serde_json::to_vec(&prepared.queued()).expect("json");
    // Once: the payload, and a few hundred bytes of objects.
    assert!(
        stored.len() < payload.len() + 2048,
        "{} bytes for a payload of {}",
        stored.len(),
        payload.len()
    );
    let back: QueuedRun = serde_json::from_slice(&stored).expect("read back");
    assert_eq!(back.payload, payload);
    let docs: Vec<Vec<Value>> = back
        .functions
        .into_iter()
        .map(|f| f.objects(&payload).expect("whole again").1)
        .collect();
    assert_eq!(docs, [[prepared.ready[0].objects[0].0.clone()]]);
    // The objects are not in the form an older gitfaas reads: it drops
    // the run rather than apply it without its payload.
    let old: Value = serde_json::from_slice(&stored).expect("json");
    assert!(
        old["functions"][0].get("objects").is_none(),
        "{}",
        old["functions"][0]
    );

    // A small body: the objects whole, as before.
    let small = prepared_job("aGVsbG8=").queued();
    let old = serde_json::to_value(&small).expect("json");
    assert_eq!(
        old["functions"][0]["objects"][0]["spec"]["template"]["spec"]["containers"][0]["env"][0]
            ["value"],
        "aGVsbG8="
    );
}

mod mocked {
    use super::*;
    use crate::fixtures::{mock_api, resources, snapshot, stored, Exchange, Seen};

    const CMS: &str = "/api/v1/namespaces/ns/configmaps";
    const JOBS: &str = "/apis/batch/v1/namespaces/ns/jobs";
    const CREATE: &str = "?&fieldManager=gitfaas";
    const DRY_CREATE: &str = "?&dryRun=All&fieldManager=gitfaas";
    const APPLY: &str = "?&force=true&fieldManager=gitfaas";
    const DRY_APPLY: &str = "?&dryRun=All&force=true&fieldManager=gitfaas";
    const OURS: [(&str, &str); 3] = [
        (LABEL_MANAGED_BY, "gitfaas"),
        (LABEL_TOPIC, "t"),
        (LABEL_REQUEST_UID, "r-1"),
    ];

    fn configmap(name: &str) -> String {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k: v\n")
    }

    const JOB: &str = "apiVersion: batch/v1
kind: Job
metadata:
  name: j
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
";

    /// `config.json` with topic `t` listing `files` in order, and the files.
    fn repository(files: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let names: Vec<&str> = files.iter().map(|(p, _)| *p).collect();
        let config = json!({"topics": [{"name": "t", "configs": names}]}).to_string();
        let mut all = vec![("config.json", config)];
        all.extend(files.iter().cloned());
        all
    }

    /// Request `r-1` to topic `t` of `files`, prepared and executed
    /// against `script`; the report (or the error) and the calls.
    async fn publish_against(
        files: &[(&'static str, String)],
        dry_run: bool,
        script: Vec<Exchange>,
    ) -> (Result<Report, PublishError>, Vec<Seen>) {
        let files = repository(files);
        let files: Vec<(&'static str, &str)> =
            files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let (client, api) = mock_api(script);
        let applier = Arc::new(Applier::from_client(client, "ns"));
        let policy = Policy::default();
        let ctx = Context {
            snapshot: Arc::new(snapshot(&files)),
            policy: &policy,
            applier: &applier,
            public_url: "http://gitfaas.test",
        };
        let req = Request {
            topic: "t",
            body: b"hello",
            params: Vec::new(),
            dry_run,
            trace_id: None,
            cloudevent: None,
            scheduled_time: None,
        };
        let result = match prepare(&ctx, req, "r-1".into()).await {
            Ok(prepared) => Ok(execute(
                ctx.applier,
                &crate::tasks::Tasks::new(),
                &crate::run::rollbacks::Rollbacks::new(),
                prepared,
            )
            .await),
            Err(e) => Err(e),
        };
        drop(ctx);
        drop(applier);
        (result, api.done().await)
    }

    /// A body large enough for the blocking pool renders as any other: the
    /// caller's trace and the event's attributes go along.
    #[tokio::test]
    async fn the_blocking_pool_renders_with_the_trace_and_the_event() {
        let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  trace: \"{{TRACEPARENT}}\"\n  id: \"{{CE_ID}}\"\n";
        let files = repository(&[("c.yaml", manifest.to_string())]);
        let files: Vec<(&'static str, &str)> =
            files.iter().map(|(p, t)| (*p, t.as_str())).collect();
        let (client, api) = mock_api(Vec::new());
        let applier = Arc::new(Applier::from_client(client, "ns"));
        let policy = Policy::default();
        let ctx = Context {
            snapshot: Arc::new(snapshot(&files)),
            policy: &policy,
            applier: &applier,
            public_url: "http://gitfaas.test",
        };
        let event = crate::cloudevent::Attributes::sample();
        let body = vec![b'x'; super::render::RENDER_ON_BLOCKING_POOL_BYTES];
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let req = Request {
            topic: "t",
            body: &body,
            params: Vec::new(),
            dry_run: false,
            trace_id: Some(trace),
            scheduled_time: None,
            cloudevent: Some(&event),
        };
        let rendered = super::render::render_on_blocking_pool(&ctx, &req, &"r-1".into())
            .await
            .expect("rendered");
        let data = &rendered.manifests[0].objects[0]["data"];
        assert!(
            data["trace"]
                .as_str()
                .is_some_and(|t| t.starts_with(&format!("00-{trace}-"))),
            "{data}"
        );
        assert_eq!(data["id"], "sample");
        drop(ctx);
        drop(applier);
        api.done().await;
    }

    fn discover_core() -> Exchange {
        Exchange::get("/api/v1").answers(200, resources("v1", &[("configmaps", "ConfigMap")]))
    }

    fn discover_batch() -> Exchange {
        Exchange::get("/apis/batch/v1").answers(200, resources("batch/v1", &[("jobs", "Job")]))
    }

    fn created(collection: &str, query: &str, name: &str, uid: &str) -> Exchange {
        Exchange::post(&format!("{collection}{query}"))
            .with_body(json!({"metadata": {"name": name, "namespace": "ns"}}))
            .answers(
                201,
                stored(&json!({"metadata": {"name": name}}), uid, &OURS),
            )
    }

    /// The topic's own ConfigMap `name`, as the API server has it.
    fn ours(name: &str, uid: &str) -> serde_json::Value {
        let mut live = stored(&json!({"metadata": {"name": name}}), uid, &OURS[..2]);
        live["metadata"]["managedFields"] = json!([{"manager": "gitfaas", "operation": "Apply"}]);
        live
    }

    fn messages(report: &Report) -> Vec<(String, bool, String)> {
        report
            .applies
            .iter()
            .map(|a| (a.path.clone(), a.error, a.message.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_topic_of_several_objects_is_dry_run_whole_then_created_in_manifest_order() {
        let labels =
            json!({LABEL_MANAGED_BY: "gitfaas", LABEL_TOPIC: "t", LABEL_REQUEST_UID: "r-1"});
        let marked =
            json!({"metadata": {"labels": labels, "annotations": {ANNOTATION_COMMIT: "c0ffee"}}});
        let (result, _) = publish_against(
            &[("cm.yaml", configmap("a")), ("job.yaml", JOB.to_string())],
            false,
            vec![
                discover_core(),
                discover_batch(),
                created(CMS, DRY_CREATE, "a", "never-persisted").with_body(marked.clone()),
                created(JOBS, DRY_CREATE, "j", "never-persisted").with_body(json!({
                    "metadata": marked["metadata"],
                    "spec": {"template": {"metadata": {"labels": labels}}},
                })),
                created(CMS, CREATE, "a", "uid-a").with_body(marked.clone()),
                created(JOBS, CREATE, "j", "uid-j").with_body(marked),
            ],
        )
        .await;
        let report = result.expect("published");
        assert!(!report.error, "{report:?}");
        assert_eq!(
            messages(&report),
            [
                ("cm.yaml".into(), false, "applied v1 ConfigMap ns/a".into()),
                ("job.yaml".into(), false, "applied batch/v1 Job ns/j".into()),
            ]
        );
        for entry in &report.applies {
            assert!(
                entry.function_uid.as_str().starts_with("f-")
                    && entry.function_uid.as_str().ends_with("-r-1"),
                "{}",
                entry.function_uid
            );
            assert!(
                entry.rendered.is_none(),
                "only a dry run returns the objects"
            );
        }
    }

    #[tokio::test]
    async fn a_single_object_is_created_without_a_dry_run_first() {
        let (result, _) = publish_against(
            &[("job.yaml", JOB.to_string())],
            false,
            vec![discover_batch(), created(JOBS, CREATE, "j", "uid-j")],
        )
        .await;
        assert!(!result.expect("published").error);
    }

    #[tokio::test]
    async fn a_failed_apply_deletes_what_it_created_in_reverse_order_by_uid_and_keeps_what_it_updated(
    ) {
        let (result, seen) = publish_against(
                &[
                    ("a.yaml", configmap("a")),
                    ("b.yaml", configmap("b")),
                    ("c.yaml", configmap("c")),
                    ("job.yaml", JOB.to_string()),
                ],
                false,
                vec![
                    discover_core(),
                    discover_batch(),
                    // The dry run of the whole topic passes: b exists and is the topic's.
                    created(CMS, DRY_CREATE, "a", "never-persisted"),
                    Exchange::post(&format!("{CMS}{DRY_CREATE}")).refuses(409, "AlreadyExists"),
                    Exchange::get(&format!("{CMS}/b")).answers(200, ours("b", "uid-b")),
                    Exchange::patch(&format!("{CMS}/b{DRY_APPLY}"))
                        .with_body(json!({"metadata": {"uid": "uid-b"}}))
                        .answers(200, ours("b", "uid-b")),
                    created(CMS, DRY_CREATE, "c", "never-persisted"),
                    created(JOBS, DRY_CREATE, "j", "never-persisted"),
                    // Then the Job's create is refused after all (a quota, a race).
                    created(CMS, CREATE, "a", "uid-a"),
                    Exchange::post(&format!("{CMS}{CREATE}")).refuses(409, "AlreadyExists"),
                    Exchange::get(&format!("{CMS}/b")).answers(200, ours("b", "uid-b")),
                    Exchange::patch(&format!("{CMS}/b{APPLY}"))
                        .with_body(json!({"metadata": {"uid": "uid-b"}}))
                        .answers(200, ours("b", "uid-b")),
                    created(CMS, CREATE, "c", "uid-c"),
                    Exchange::post(&format!("{JOBS}{CREATE}")).refuses(403, "Forbidden"),
                    // Rollback: c, then a, each by its uid; never b.
                    Exchange::delete(&format!("{CMS}/c?"))
                        .with_body(json!({"propagationPolicy": "Background", "preconditions": {"uid": "uid-c"}}))
                        .answers(200, json!({})),
                    Exchange::delete(&format!("{CMS}/a?"))
                        .with_body(json!({"propagationPolicy": "Background", "preconditions": {"uid": "uid-a"}}))
                        .answers(200, json!({})),
                ],
            )
            .await;
        let deletes: Vec<&str> = seen
            .iter()
            .filter(|s| s.method == http::Method::DELETE)
            .map(|s| s.uri.as_str())
            .collect();
        assert_eq!(deletes, [format!("{CMS}/c?"), format!("{CMS}/a?")]);
        let report = result.expect("a report, not an error before the applies");
        assert!(report.error);
        assert_eq!(report.failure, Some(Code::ClusterForbidden));
        let rolled_back = "rolled back: a later manifest of the topic failed (objects that existed before this publish are kept)";
        let m = messages(&report);
        for (i, path) in ["a.yaml", "b.yaml", "c.yaml"].iter().enumerate() {
            assert_eq!(m[i], (path.to_string(), true, rolled_back.to_string()));
        }
        assert_eq!(m[3].0, "job.yaml");
        assert!(
            m[3].2.starts_with("apply failed: the API server refused"),
            "{}",
            m[3].2
        );
        let message = report.message.as_deref().unwrap_or_default();
        assert!(
            message.ends_with("the object(s) this publish created are being deleted"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_create_without_an_answer_is_rolled_back_only_as_the_requests_own() {
        let (result, _) = publish_against(
            &[("cm.yaml", configmap("a")), ("job.yaml", JOB.to_string())],
            false,
            vec![
                discover_core(),
                discover_batch(),
                created(CMS, DRY_CREATE, "a", "never-persisted"),
                created(JOBS, DRY_CREATE, "j", "never-persisted"),
                created(CMS, CREATE, "a", "uid-a"),
                Exchange::post(&format!("{JOBS}{CREATE}")).breaks(),
                // The Job of that name carries r-1: its create did write it.
                Exchange::get(&format!("{JOBS}/j")).answers(
                    200,
                    stored(&json!({"metadata": {"name": "j"}}), "uid-j", &OURS),
                ),
                Exchange::delete(&format!("{JOBS}/j?"))
                    .with_body(json!({"preconditions": {"uid": "uid-j"}}))
                    .answers(200, json!({})),
                Exchange::delete(&format!("{CMS}/a?"))
                    .with_body(json!({"preconditions": {"uid": "uid-a"}}))
                    .answers(200, json!({})),
            ],
        )
        .await;
        let report = result.expect("a report");
        assert_eq!(report.failure, Some(Code::ClusterUnreachable));
    }

    #[tokio::test]
    async fn a_dry_run_request_reports_the_rendered_objects_and_persists_nothing() {
        let (result, _) = publish_against(
            &[("job.yaml", JOB.to_string())],
            true,
            vec![
                discover_batch(),
                created(JOBS, DRY_CREATE, "j", "never-persisted"),
            ],
        )
        .await;
        let report = result.expect("dry run passed");
        let function_uid = report.applies[0].function_uid.clone();
        let json = serde_json::to_value(&report).expect("JSON");
        let rendered = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "j",
                "labels": {LABEL_MANAGED_BY: "gitfaas", LABEL_TOPIC: "t", LABEL_REQUEST_UID: "r-1"},
                "annotations": {ANNOTATION_FUNCTION_UID: function_uid, ANNOTATION_COMMIT: "c0ffee"},
            },
            "spec": {"template": {
                "metadata": {
                    "labels": {LABEL_MANAGED_BY: "gitfaas", LABEL_TOPIC: "t", LABEL_REQUEST_UID: "r-1"},
                    "annotations": {ANNOTATION_FUNCTION_UID: function_uid},
                },
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
            }},
        });
        assert_eq!(
            json,
            json!({
                "requestUid": "r-1",
                "applies": [{
                    "error": false,
                    "path": "job.yaml",
                    "message": "dry run: the API server accepted it; nothing was persisted",
                    "functionUid": function_uid,
                    "objects": [{"apiVersion": "batch/v1", "kind": "Job", "namespace": "ns", "name": "j"}],
                    "rendered": [rendered],
                }],
                "error": false,
                "topic": "t",
                "commit": "c0ffee",
                "dryRun": true,
            })
        );
    }

    #[tokio::test]
    async fn a_failed_dry_run_applies_nothing_and_says_which_manifest_failed() {
        let (result, _) = publish_against(
            &[("a.yaml", configmap("a")), ("b.yaml", configmap("b"))],
            false,
            vec![
                discover_core(),
                created(CMS, DRY_CREATE, "a", "never-persisted"),
                Exchange::post(&format!("{CMS}{DRY_CREATE}")).refuses(409, "AlreadyExists"),
                Exchange::get(&format!("{CMS}/b")).answers(
                    200,
                    stored(&json!({"metadata": {"name": "b"}}), "uid-theirs", &[]),
                ),
            ],
        )
        .await;
        let Err(PublishError::DryRun {
            path,
            source,
            report,
        }) = result
        else {
            panic!("expected the dry run to fail: {result:?}");
        };
        assert_eq!(path, "b.yaml");
        assert!(matches!(source, ApplyError::NotOwned { .. }), "{source:?}");
        assert_eq!(report.failure, Some(Code::NotOwned));
        let m = messages(&report);
        assert_eq!(
            m[0],
            (
                "a.yaml".into(),
                true,
                "not applied: the dry run of b.yaml failed".into()
            )
        );
        assert!(
            m[1].2
                .starts_with("dry run failed: v1 ConfigMap ns/b already exists"),
            "{}",
            m[1].2
        );
    }

    #[tokio::test]
    async fn an_existing_object_without_gitfaas_labels_is_refused_and_nothing_is_written() {
        let (result, _) = publish_against(
            &[("a.yaml", configmap("a"))],
            false,
            vec![
                discover_core(),
                Exchange::post(&format!("{CMS}{CREATE}")).refuses(409, "AlreadyExists"),
                Exchange::get(&format!("{CMS}/a")).answers(
                    200,
                    stored(
                        &json!({"metadata": {"name": "a"}}),
                        "uid-theirs",
                        &[("team", "x")],
                    ),
                ),
            ],
        )
        .await;
        let report = result.expect("a report");
        assert_eq!(report.failure, Some(Code::NotOwned));
        let message = report.message.as_deref().unwrap_or_default();
        assert!(message.ends_with("; nothing was created"), "{message}");
        assert!(
            message.contains("it lacks app.kubernetes.io/managed-by=gitfaas, gitfaas.io/topic=t"),
            "{message}"
        );
    }
}

/// A CloudEvent's attributes fill `{{CE_…}}` (absent optional ones empty);
/// a topic that uses them refuses a publish that is no event, by name.
#[test]
fn a_cloudevent_fills_its_variables_and_a_topic_using_them_needs_one() {
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c-{{RANDOM}}\ndata:\n  id: \"{{CE_ID}}\"\n  source: \"{{CE_SOURCE}}\"\n  type: \"{{CE_TYPE}}\"\n  subject: \"{{CE_SUBJECT}}\"\n  time: \"{{CE_TIME}}\"\n  payload: \"{{PAYLOAD}}\"\n";
    let config = json!({"topics": [{"name": "t", "configs": ["c.yaml"]}]}).to_string();
    let snapshot = crate::fixtures::snapshot(&[("config.json", &config), ("c.yaml", manifest)]);
    let event = crate::cloudevent::structured(
        br#"{"specversion":"1.0","id":"a: \"b\"","source":"/s","type":"t","data":{"k":1}}"#,
        crate::cloudevent::Limits {
            max_value_bytes: 4096,
        },
    )
    .expect("an event");
    let render = |cloudevent| {
        render_topic(
            &snapshot,
            &Policy::default(),
            "http://gitfaas.test",
            &Request {
                topic: "t",
                body: &event.data,
                params: Vec::new(),
                dry_run: false,
                trace_id: None,
                scheduled_time: None,
                cloudevent,
            },
            &"r-1".into(),
        )
    };
    let rendered = render(Some(&event.attributes)).expect("rendered");
    let data = &rendered.manifests[0].objects[0]["data"];
    assert_eq!(data["id"], "a: \"b\"", "a value is data");
    assert_eq!(data["source"], "/s");
    assert_eq!(data["type"], "t");
    assert_eq!(data["subject"], "");
    assert_eq!(data["time"], "");
    assert_eq!(
        data["payload"], "eyJrIjoxfQ==",
        "the payload is the event's data"
    );
    match render(None) {
        Err(e @ PublishError::NotACloudEvent { .. }) => {
            assert_eq!(e.kind(), Code::MissingVariable);
            let message = e.to_string();
            assert!(
                message.starts_with(
                    "missing template variables: CE_ID, CE_SOURCE, CE_SUBJECT, CE_TIME, CE_TYPE;"
                ),
                "{message}"
            );
            assert!(message.contains("expects a CloudEvent"), "{message}");
        }
        other => panic!("{:?}", other.err()),
    }
    // A query parameter cannot set them.
    let p = vec![("CE_ID".to_string(), "x".to_string())];
    assert!(matches!(
        check_params(&p),
        Err(PublishError::BadParameter(_))
    ));
}

/// A topic `t` of one Job whose env takes `{{body.…}}` fields in every
/// scalar style, rendered (no cluster) with `body`.
fn render_body(body: &str) -> Result<RenderedTopic, PublishError> {
    const JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: j-{{RANDOM}}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          env:
            - name: PLAIN
              value: {{body.v}}
            - name: SINGLE
              value: '{{body.v}}'
            - name: DOUBLE
              value: "{{body.v}}"
            - name: BLOCK
              value: |
                {{body.v}}
            - name: DEEP
              value: "{{body.a.b}}-{{body.items.0}}"
"#;
    let files = [
        (
            "config.json",
            r#"{"topics": [{"name": "t", "configs": ["j.yaml"]}]}"#,
        ),
        ("j.yaml", JOB),
    ];
    let snapshot = crate::fixtures::snapshot(&files);
    let req = Request {
        topic: "t",
        body: body.as_bytes(),
        params: Vec::new(),
        dry_run: true,
        trace_id: None,
        scheduled_time: None,
        cloudevent: None,
    };
    render_topic(
        &snapshot,
        &Policy::default(),
        "http://g",
        &req,
        &new_request_uid(),
    )
}

fn env_of(rendered: &RenderedTopic, name: &str) -> Option<String> {
    rendered.manifests[0].objects[0]["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn a_field_of_the_body_is_carried_as_data_in_every_style() {
    let body = |v: &str| json!({"v": v, "a": {"b": "deep"}, "items": ["first"]}).to_string();
    let rendered = render_body(&body("Paris")).expect("renders");
    for style in ["PLAIN", "SINGLE", "DOUBLE"] {
        assert_eq!(
            env_of(&rendered, style).as_deref(),
            Some("Paris"),
            "{style}"
        );
    }
    assert_eq!(env_of(&rendered, "BLOCK").as_deref(), Some("Paris\n"));
    assert_eq!(env_of(&rendered, "DEEP").as_deref(), Some("deep-first"));

    // Hostile values: carried exactly, or refused; never structure.
    for hostile in [
        "He said \"hi\"",
        "it's",
        "a\nb",
        "key: value",
        "- item",
        "? key",
        "&anchor",
        "*alias",
        "!tag",
        "| block",
        "> folded",
        "# comment",
        "{flow: map}",
        "[flow, list]",
        "x\u{85}y",
        "line\u{2028}separator",
        "para\u{2029}graph",
        "\n  extra: key",
    ] {
        match render_body(&body(hostile)) {
            Ok(rendered) => {
                for style in ["PLAIN", "SINGLE", "DOUBLE"] {
                    assert_eq!(
                        env_of(&rendered, style).as_deref(),
                        Some(hostile),
                        "{style} {hostile:?}"
                    );
                }
                assert_eq!(
                    env_of(&rendered, "BLOCK"),
                    Some(format!("{hostile}\n")),
                    "{hostile:?}"
                );
                let names: Vec<&Value> = rendered.manifests[0].objects[0]["spec"]["template"]
                    ["spec"]["containers"][0]["env"]
                    .as_array()
                    .expect("env")
                    .iter()
                    .map(|e| &e["name"])
                    .collect();
                assert_eq!(names.len(), 5, "{hostile:?}: no entry added");
            }
            Err(e) => assert_eq!(e.kind(), Code::InvalidValue, "{hostile:?}: {e}"),
        }
    }
    // Numbers and booleans as their JSON text.
    let numbers = r#"{"v": 7.0, "a": {"b": true}, "items": [false]}"#;
    let rendered = render_body(numbers).expect("renders");
    assert_eq!(env_of(&rendered, "DOUBLE").as_deref(), Some("7.0"));
    assert_eq!(env_of(&rendered, "DEEP").as_deref(), Some("true-false"));
}

#[test]
fn a_body_that_cannot_fill_a_field_is_refused_naming_it() {
    for (body, part) in [
        (
            r#"{"a": {"b": 1}, "items": [1]}"#,
            "{{body.v}}: `body` has no field `v`",
        ),
        (
            r#"{"v": null, "a": {"b": 1}, "items": [1]}"#,
            "`body.v` is null",
        ),
        (
            r#"{"v": {}, "a": {"b": 1}, "items": [1]}"#,
            "`body.v` is an object",
        ),
        (
            r#"{"v": [], "a": {"b": 1}, "items": [1]}"#,
            "`body.v` is a list",
        ),
        ("v=1", "the body is not JSON"),
    ] {
        let err = render_body(body).err().expect(body);
        assert_eq!(err.kind(), Code::BodyField, "{body}: {err}");
        assert!(err.to_string().contains(part), "{body}: {err}");
    }
    let p = vec![("body.v".to_string(), "x".to_string())];
    let err = check_params(&p).expect_err("a field is not a parameter");
    assert!(
        err.to_string().contains("names a field of the body"),
        "{err}"
    );
}
