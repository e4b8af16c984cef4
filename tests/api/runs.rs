//! The history of runs (`GET /requests`): newest first, by topic and
//! status, in pages; each run's status recorded when its Jobs finish,
//! without anyone reading its view; clear refusals of bad filters.

use std::time::Duration;

use serde_json::Value;

use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;

use crate::callbacks::Receiver;
use crate::common::{until, Step};
use crate::helpers::{
    config, eventually, post, spawn_app, spawn_app_with, Answer, TestApp, FAILING_JOB, JOB,
};

const CONFIG_MAP: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: note-{{RANDOM}}
data:
  payload: "{{PAYLOAD}}"
"#;

async fn publish(app: &TestApp, topic: &str) -> String {
    let receipt = app.publish(topic, "", "x").await;
    receipt.assert_status(202);
    receipt.request_uid()
}

fn uids(page: &Answer) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap_or_else(|| panic!("no runs in {page}"))
        .iter()
        .map(crate::helpers::request_uid)
        .collect()
}

#[tokio::test]
async fn the_history_lists_runs_newest_first_by_topic_and_status_in_pages() {
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[
                ("ok", &["j.yaml"]),
                ("bad", &["f.yaml"]),
                ("note", &["c.yaml"]),
            ]),
        ),
        ("j.yaml", JOB),
        ("f.yaml", FAILING_JOB),
        ("c.yaml", CONFIG_MAP),
    ])
    .await;
    let mut ok = Vec::new();
    for _ in 0..3 {
        ok.push(publish(&app, "ok").await);
        // Runs a second apart: the history orders by creation time.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let bad = publish(&app, "bad").await;
    let note = publish(&app, "note").await;

    // Each run reaches its end in the history by itself: nobody reads its
    // view (that would settle it on the way).
    let page = eventually(
        "every run recorded final",
        // Kwok and the Job controller finish these in seconds on a quiet
        // machine; beside the whole suite on two cores, a minute was short.
        Duration::from_secs(180),
        || async {
            let page = app.get("/requests").await;
            page.assert_status(200);
            let all_final = page["runs"].as_array().is_some_and(|runs| {
                runs.len() == 5
                    && runs
                        .iter()
                        .all(|r| r["status"] == "Succeeded" || r["status"] == "Failed")
            });
            all_final.then_some(page)
        },
    )
    .await;
    let mut newest_first: Vec<String> = ok.iter().rev().cloned().collect();
    newest_first.insert(0, bad.clone());
    newest_first.insert(0, note.clone());
    assert_eq!(uids(&page), newest_first, "{page}");
    assert_eq!(page["next"], Value::Null);
    let run = &page["runs"][0];
    assert_eq!(run["topic"], "note");
    assert_eq!(
        run["status"], "Succeeded",
        "a ConfigMap is done once applied"
    );
    assert!(
        run["commit"].is_string() && run["createdAt"].is_string(),
        "{run}"
    );

    let failed = app.get("/requests?status=failed").await;
    assert_eq!(uids(&failed), vec![bad.clone()], "{failed}");
    // A publish is an http run, in the history and in its own view.
    assert_eq!(run["trigger"], "http", "{run}");
    assert!(run.get("scheduledTime").is_none(), "{run}");
    let by_http = app.get("/requests?trigger=http").await;
    assert_eq!(uids(&by_http), newest_first, "{by_http}");
    let by_schedule = app.get("/requests?trigger=schedule").await;
    assert_eq!(uids(&by_schedule), Vec::<String>::new(), "{by_schedule}");
    let by_topic = app.get("/requests?topic=ok").await;
    assert_eq!(
        uids(&by_topic),
        ok.iter().rev().cloned().collect::<Vec<_>>()
    );

    // Pages of two, following `next`.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..5 {
        let path = match &next {
            Some(c) => format!("/requests?limit=2&cursor={c}"),
            None => "/requests?limit=2".to_string(),
        };
        let page = app.get(&path).await;
        page.assert_status(200);
        seen.extend(uids(&page));
        match page["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    // The same status in the run's own view.
    let view = app.run(&bad).await;
    view.assert_state("Failed");
    assert_eq!(view["trigger"], "http", "{view}");
    app.cleanup().await;
}

#[tokio::test]
async fn bad_history_filters_are_refused_naming_the_parameter() {
    let app = spawn_app(&[
        ("config.json", &config(&[("ok", &["j.yaml"])])),
        ("j.yaml", JOB),
    ])
    .await;
    for (query, name) in [
        ("status=sleeping", "status"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("limit=ten", "limit"),
        ("since=yesterday", "since"),
        ("cursor=not-a-cursor", "cursor"),
        ("topic=a%2Fb", "topic"),
        ("trigger=cron", "trigger"),
    ] {
        let body = app.get(&format!("/requests?{query}")).await;
        assert_eq!(body.status, 400, "{query}: {body}");
        assert_eq!(body.code(), "bad_parameter", "{query}: {body}");
        let message = body.message();
        assert!(
            message.starts_with(&format!("{name}:")),
            "{query}: {message}"
        );
    }
    // Good filters on an empty history: an empty page.
    let page = app
        .get("/requests?topic=ok&status=Running&trigger=Schedule&since=2026-01-01T00:00:00Z&limit=10")
        .await;
    page.assert_status(200);
    assert_eq!(page["runs"], serde_json::json!([]));
    app.cleanup().await;
}

#[tokio::test]
async fn a_cancel_deletes_only_the_runs_own_jobs_records_it_and_calls_back() {
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let hook = Receiver::ok().await;
    let app = spawn_app_with(
        &[
            (
                "config.json",
                &config(&[("t", &["a.yaml", "b.yaml"]), ("ok", &["j.yaml"])]),
            ),
            ("a.yaml", &suspended),
            ("b.yaml", &suspended.replace("collect-", "second-")),
            ("j.yaml", JOB),
        ],
        &[
            "--callback-allow-http",
            "--callback-allowed-hosts",
            "127.0.0.1",
        ],
    )
    .await;
    let receipt = app
        .publish_with(
            "t",
            "",
            &[(
                "X-Callback-Url",
                &format!("http://127.0.0.1:{}/hook", hook.port),
            )],
            "x",
        )
        .await;
    let uid = receipt.accepted();
    let names: Vec<String> = receipt["applies"]
        .as_array()
        .expect("applies")
        .iter()
        .map(|a| a["objects"][0]["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names.len(), 2);
    // The second Job is taken over: deleted by hand, and a Job of the same
    // name that gitfaas never created put in its place (the victim).
    let jobs = app.jobs();
    jobs.delete(&names[1], &kube::api::DeleteParams::foreground())
        .await
        .expect("delete");
    eventually("the second Job gone", Duration::from_secs(30), || async {
        jobs.get_opt(&names[1])
            .await
            .expect("get")
            .is_none()
            .then_some(())
    })
    .await;
    let victim: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": names[1], "labels": {"owner": "someone-else"}},
        "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox"}]}}}
    }))
    .expect("job");
    let victim = jobs
        .create(&PostParams::default(), &victim)
        .await
        .expect("victim");

    let view = app.cancel(&uid).await;
    view.assert_status(200);
    view.assert_state("Cancelled");
    // Its own Job goes; the victim stays, the same object.
    eventually("the run's Job deleted", Duration::from_secs(30), || async {
        match jobs.get_opt(&names[0]).await.expect("get") {
            None => Some(()),
            Some(j) => j.metadata.deletion_timestamp.map(|_| ()),
        }
    })
    .await;
    let after = jobs.get(&names[1]).await.expect("the victim is there");
    assert_eq!(after.metadata.uid, victim.metadata.uid);
    assert!(after.metadata.deletion_timestamp.is_none());
    // Listed as Cancelled; a second cancel answers the same.
    let page = app.get("/requests?status=cancelled").await;
    assert_eq!(page["runs"][0]["requestUid"], uid.as_str(), "{page}");
    let again = app.cancel(&uid).await;
    again.assert_status(200);
    assert_eq!(again["status"], "Cancelled");
    // The callback goes out with that outcome.
    let body = until("the callback", Duration::from_secs(60), || async {
        match hook.requests().into_iter().find(|r| r.contains(&uid)) {
            Some(body) => Step::Done(body),
            None => {
                let view = app.run(&uid).await;
                Step::Wait(format!("{} {}", view["callback"], view["objects"]))
            }
        }
    })
    .await;
    assert!(body.contains("\"status\":\"Cancelled\""), "{body}");
    assert!(body.contains("\"succeeded\":false"), "{body}");

    // A finished run is not cancellable; an unknown one is not found.
    let done = app.publish("ok", "wait=60s", "x").await;
    done.assert_status(200);
    let done_uid = done.request_uid();
    let refused = app.cancel(&done_uid).await;
    refused.assert_error(409, "run_not_cancellable");
    let unknown = app.cancel("r-00000000-0000-0000-0000-000000000000").await;
    unknown.assert_status(404);
    jobs.delete(&names[1], &kube::api::DeleteParams::background())
        .await
        .expect("delete the victim");
    app.cleanup().await;
}

#[tokio::test]
async fn a_run_names_its_parent_and_the_tree_shows_the_pipeline_run() {
    let traced = JOB.replace(
        "            - name: GITFAAS_URL",
        "            - name: TRACEPARENT\n              value: \"{{TRACEPARENT}}\"\n            - name: GITFAAS_URL",
    );
    let app = spawn_app(&[
        ("config.json", &config(&[("step", &["j.yaml"])])),
        ("j.yaml", &traced),
    ])
    .await;
    let url = format!("{}/publish/step", app.address);
    let send = |headers: Vec<(&'static str, String)>| {
        let http = app.http.clone();
        let url = url.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(&http, &url, &headers, "x").await
        }
    };
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let root = send(vec![(
        "traceparent",
        format!("00-{trace}-00f067aa0ba902b7-01"),
    )])
    .await;
    let root_uid = root.accepted();
    // The function's TRACEPARENT carries the caller's trace on.
    let job = app.job(&root.first_object_name()).await;
    let tp = crate::helpers::env(&job, "TRACEPARENT").expect("TRACEPARENT");
    assert!(
        tp.starts_with(&format!("00-{trace}-")) && tp.ends_with("-01") && tp.len() == 55,
        "{tp}"
    );

    // A step names its parent by its own function uid, the capability
    // only the parent run's functions hold.
    let child = send(vec![("Gitfaas-Parent", root.function_uid())]).await;
    let child_uid = child.accepted();
    let grandchild_uid = send(vec![("Gitfaas-Parent", child.function_uid())])
        .await
        .accepted();

    let view = app.run(&child_uid).await;
    assert_eq!(view["parent"], root_uid.as_str(), "{view}");
    assert_eq!(
        view["children"],
        serde_json::json!([grandchild_uid]),
        "{view}"
    );
    // From any run of the pipeline, the whole tree.
    let tree = app.get(&format!("/requests/{grandchild_uid}/tree")).await;
    tree.assert_status(200);
    let root_node = &tree["root"];
    assert_eq!(root_node["requestUid"], root_uid.as_str(), "{tree}");
    assert_eq!(
        root_node["children"][0]["requestUid"],
        child_uid.as_str(),
        "{tree}"
    );
    assert_eq!(
        root_node["children"][0]["children"][0]["requestUid"],
        grandchild_uid.as_str(),
        "{tree}"
    );
    assert_eq!(tree["truncated"], false);
    let page = app.get("/requests?limit=1").await;
    assert_eq!(page["runs"][0]["parent"], child_uid.as_str(), "{page}");

    // A parent that is not a function uid, a request uid (which every
    // reader sees, so it vouches for nothing), or no live function:
    // refused, nothing applied.
    let before = app.job_count().await;
    for (parent, says) in [
        ("not-a-uid".to_string(), "is not a function uid"),
        (root_uid.clone(), "not a request uid"),
        (
            format!(
                "f-00000000-0000-0000-0000-000000000000-{}",
                root_uid.as_str()
            ),
            "is not a live function uid",
        ),
    ] {
        let body = send(vec![("Gitfaas-Parent", parent.clone())]).await;
        assert_eq!(body.status, 400, "{parent}: {body}");
        assert_eq!(body.code(), "bad_request", "{body}");
        body.assert_message_contains(says);
    }
    assert_eq!(app.job_count().await, before, "nothing applied");
    // Crowding the root with its (public) request uid attaches nothing:
    // its real child stays its only one.
    for _ in 0..30 {
        send(vec![("Gitfaas-Parent", root_uid.clone())])
            .await
            .assert_status(400);
    }
    let view = app.run(&root_uid).await;
    assert_eq!(view["children"], serde_json::json!([child_uid]), "{view}");
    assert_eq!(view["childrenTruncated"], false, "{view}");
    app.get("/requests/r-00000000-0000-0000-0000-000000000000/tree")
        .await
        .assert_status(404);
    app.cleanup().await;
}

/// A run with more children than its view lists says so, and so does its
/// tree: the bound never passes for the whole.
#[tokio::test]
async fn a_run_with_more_children_than_listed_says_so() {
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: step-{{RANDOM}}\ndata:\n  a: b\n";
    let app = spawn_app(&[
        ("config.json", &config(&[("step", &["cm.yaml"])])),
        ("cm.yaml", cm),
    ])
    .await;
    let root = app.publish("step", "", "x").await;
    let root_uid = root.accepted();
    let function = root.function_uid();
    let url = format!("{}/publish/step", app.address);
    let bound = gitfaas::run::view::MAX_CHILDREN;
    for _ in 0..=bound {
        let body = post(
            &app.http,
            &url,
            &[("Gitfaas-Parent", function.as_str())],
            "x",
        )
        .await;
        body.assert_status(202);
    }
    let view = app.run(&root_uid).await;
    assert_eq!(
        view["children"].as_array().map(Vec::len),
        Some(bound),
        "{view}"
    );
    assert_eq!(view["childrenTruncated"], true, "{view}");
    let tree = app.get(&format!("/requests/{root_uid}/tree")).await;
    tree.assert_status(200);
    assert_eq!(tree["truncated"], true, "{tree}");
    assert_eq!(
        tree["root"]["children"].as_array().map(Vec::len),
        Some(bound),
        "{tree}"
    );
    app.cleanup().await;
}
