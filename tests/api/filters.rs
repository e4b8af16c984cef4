//! Topic filters (`"filter"` in config.json, CEL): true runs the publish,
//! false answers 200 `filtered` with nothing applied nor recorded (and
//! counted), one that cannot decide is a 400 quoting it, and one that does
//! not compile is a problem of the commit.

use serde_json::json;

use crate::helpers::{env, spawn_app, Answer, TestApp, JOB};

/// A Job of topic `topic` taking the query parameter `{{env}}`.
fn job_with_env_param() -> String {
    JOB.replace(
        "            - name: GITFAAS_URL",
        "            - name: ENV\n              value: \"{{env}}\"\n            - name: GITFAAS_URL",
    )
    .replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0")
}

/// config.json of one topic `name` of `j.yaml` with `filter`.
fn filtered_config(name: &str, filter: &str) -> String {
    json!({"topics": [{"name": name, "configs": ["j.yaml"], "filter": filter}]}).to_string()
}

/// `gitfaas_publishes_filtered_total{topic="…"}` (0 before the first).
async fn filtered_count(app: &TestApp, topic: &str) -> u64 {
    let needle = format!("gitfaas_publishes_filtered_total{{topic=\"{topic}\"}} ");
    app.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&needle).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0)
}

/// The request uids `GET /requests` lists.
async fn listed(app: &TestApp) -> Vec<String> {
    let page = app.get("/requests").await;
    page.assert_status(200);
    page["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter_map(|r| r["requestUid"].as_str().map(str::to_string))
        .collect()
}

async fn publish_json(
    app: &TestApp,
    topic: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut with_type = vec![("content-type", "application/json")];
    with_type.extend_from_slice(headers);
    app.publish_with(topic, query, &with_type, body).await
}

#[tokio::test]
async fn a_true_filter_runs_the_publish_and_a_false_one_applies_and_records_nothing() {
    // Its own topic name: the metric is the process'.
    let topic = "filter-pr";
    let filter = r#"body.action == "opened" && headers["x-event"] == "pull_request" && params.env == "prod" && size(ce) == 0 && !("authorization" in headers) && !("cookie" in headers)"#;
    let app = spawn_app(&[
        ("config.json", &filtered_config(topic, filter)),
        ("j.yaml", &job_with_env_param()),
    ])
    .await;
    let event = [
        ("x-event", "pull_request"),
        // Credentials are hidden from filters, sent or not.
        ("authorization", "Bearer secret"),
        ("cookie", "session=secret"),
    ];

    let ran = publish_json(&app, topic, "env=prod", &event, r#"{"action": "opened"}"#).await;
    let uid = ran.accepted();
    let job = app.job(&ran.first_object_name()).await;
    assert_eq!(env(&job, "ENV").as_deref(), Some("prod"));
    assert_eq!(app.job_count().await, 1);

    let before = filtered_count(&app, topic).await;
    for (query, headers, body) in [
        ("env=prod", &event[..], r#"{"action": "closed"}"#),
        ("env=staging", &event[..], r#"{"action": "opened"}"#),
        (
            "env=prod",
            &[("x-event", "push")][..],
            r#"{"action": "opened"}"#,
        ),
        // A template variable it lacks does not matter: it does not run.
        ("", &event[..], r#"{"action": "closed", "env": "x"}"#),
    ] {
        let skipped = publish_json(&app, topic, query, headers, body).await;
        skipped.assert_status(200);
        assert_eq!(skipped["filtered"], true, "{skipped}");
        assert_eq!(skipped["topic"], topic);
        assert_eq!(skipped["dryRun"], false);
        assert!(
            skipped.headers.get("location").is_none(),
            "nothing to follow"
        );
        let skipped_uid = skipped.request_uid();
        assert!(
            !listed(&app).await.contains(&skipped_uid),
            "no run recorded"
        );
        app.get(&format!("/requests/{skipped_uid}"))
            .await
            .assert_error(404, "not_found");
    }
    assert_eq!(app.job_count().await, 1, "nothing applied");
    assert_eq!(listed(&app).await, [uid], "only the run that passed");
    assert_eq!(filtered_count(&app, topic).await, before + 4);

    // A dry run evaluates the filter too.
    let dry = publish_json(
        &app,
        topic,
        "env=prod&dryRun=true",
        &event,
        r#"{"action": "closed"}"#,
    )
    .await;
    dry.assert_status(200);
    assert_eq!(
        (dry["filtered"].clone(), dry["dryRun"].clone()),
        (true.into(), true.into()),
        "{dry}"
    );
    let dry = publish_json(
        &app,
        topic,
        "env=prod&dryRun=true",
        &event,
        r#"{"action": "opened"}"#,
    )
    .await;
    dry.assert_status(200);
    assert!(
        dry["filtered"].is_null() && dry["applies"][0]["rendered"].is_array(),
        "{dry}"
    );
    assert_eq!(app.job_count().await, 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a_filter_that_cannot_decide_is_a_400_quoting_it_with_nothing_applied() {
    let app = spawn_app(&[
        (
            "config.json",
            &json!({"topics": [
                {"name": "field", "configs": ["j.yaml"], "filter": "body.city == \"Paris\""},
                {"name": "value", "configs": ["j.yaml"], "filter": "body.city"},
                {"name": "typed", "configs": ["j.yaml"], "filter": "body.n > 3"},
            ]})
            .to_string(),
        ),
        ("j.yaml", &job_with_env_param()),
    ])
    .await;
    for (topic, body, expression, why) in [
        (
            "field",
            r#"{"town": "Paris"}"#,
            "body.city == \"Paris\"",
            "city",
        ),
        (
            "typed",
            r#"{"n": "four"}"#,
            "body.n > 3",
            "no matching overload",
        ),
        (
            "field",
            "city=Paris",
            "body.city == \"Paris\"",
            "the body is not JSON",
        ),
        (
            "value",
            r#"{"city": "Paris"}"#,
            "body.city",
            "not a boolean",
        ),
    ] {
        let answer = app.publish(topic, "env=x", body).await;
        answer
            .assert_error(400, "filter_failed")
            .assert_message_contains(&format!("({expression})"))
            .assert_message_contains(why);
    }
    assert_eq!(app.job_count().await, 0, "nothing applied");
    assert!(listed(&app).await.is_empty(), "nothing recorded");
    // An unknown topic is still unknown.
    app.publish("nope", "", "{}")
        .await
        .assert_error(404, "unknown_topic");
    app.cleanup().await;
}

#[tokio::test]
async fn a_commit_with_a_filter_that_does_not_compile_is_rejected_and_the_old_one_serves() {
    let app = spawn_app(&[
        (
            "config.json",
            &json!({"topics": [{"name": "t", "configs": ["j.yaml"]}]}).to_string(),
        ),
        ("j.yaml", &job_with_env_param()),
    ])
    .await;
    let good = app.get("/status").await["commit"]
        .as_str()
        .expect("commit")
        .to_string();
    // The filter on line 5 of config.json.
    let bad_config = "{\"topics\": [\n  {\"name\": \"t\",\n   \"configs\": [\"j.yaml\"],\n\n   \"filter\": \"body.action ==\"}\n]}\n";
    for (config, part) in [
        (
            bad_config.to_string(),
            "config.json:5: topic `t`: the filter is not a valid CEL expression",
        ),
        (
            filtered_config("t", "bodyy.action == 1"),
            "topic `t`: the filter uses `bodyy`, which is not a variable",
        ),
        (
            json!({"topics": [{"name": "t", "configs": ["j.yaml"], "filter": true}]}).to_string(),
            "topic `t`: filter must be a string",
        ),
    ] {
        let bad = app.repo.commit(&[("config.json", &config)], "a bad filter");
        let refreshed = app.refresh().await;
        refreshed.assert_error(422, "repository_rejected");
        assert_eq!(refreshed["rejectedCommit"], bad.as_str());
        refreshed.assert_message_contains(part);
        let status = app.get("/status").await;
        assert_eq!(status["commit"], good.as_str(), "the old commit serves");
        assert!(
            status["sync"]["lastError"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(part)),
            "{status}"
        );
        // Served without a filter, as before.
        let report = app.publish("t", "env=x", r#"{"action": "closed"}"#).await;
        report.accepted();
        assert_eq!(report["commit"], good.as_str());
    }
    // A filter that compiles comes in with its commit.
    let fixed = app.repo.commit(
        &[(
            "config.json",
            &filtered_config("t", "body.action == \"opened\""),
        )],
        "a good filter",
    );
    let refreshed = app.refresh().await;
    refreshed.assert_status(200);
    assert_eq!(refreshed["commit"], fixed.as_str());
    let skipped = app.publish("t", "env=x", r#"{"action": "closed"}"#).await;
    skipped.assert_status(200);
    assert_eq!(skipped["filtered"], true);
    assert_eq!(skipped["commit"], fixed.as_str());
    app.cleanup().await;
}
