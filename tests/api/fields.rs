//! Fields of a JSON body as template values (`{{body.city}}`): carried
//! exactly as data into the applied Job, in every scalar style, and a body
//! that cannot fill one refused naming it, with nothing applied.

use serde_json::{json, Value};

use crate::helpers::{config, env, spawn_app, TestApp};

/// A suspended Job (no pod ever starts) whose container's env is `env`
/// (YAML list items, indented for the container).
fn job(env: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: fields-{{{{RANDOM}}}}
spec:
  suspend: true
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          env:
{env}"#
    )
}

/// `POST /publish/{topic}?{query}` with `body` as application/json.
async fn publish_json(
    app: &TestApp,
    topic: &str,
    query: &str,
    body: &str,
) -> crate::helpers::Answer {
    app.publish_with(topic, query, &[("content-type", "application/json")], body)
        .await
}

/// The env of the first container of the first Job a publish answer names.
async fn env_names(app: &TestApp, answer: &crate::helpers::Answer) -> Vec<String> {
    let job = app.job(&answer.first_object_name()).await;
    job.spec
        .and_then(|s| s.template.spec)
        .map(|p| p.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect()
}

#[tokio::test]
async fn a_jobs_env_holds_the_fields_of_the_json_body_exactly() {
    let manifest = job(r#"            - name: CITY
              value: "{{body.city}}"
            - name: AB
              value: '{{body.a.b}}'
            - name: ITEM
              value: {{body.items.0}}
            - name: NUMBER
              value: "{{body.n}}"
            - name: FLAG
              value: "{{body.ok}}"
            - name: BIG
              value: "{{body.big}}"
"#);
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", &manifest),
    ])
    .await;
    // Written by hand: 7.0 and the big number as sent, not as a float prints them.
    let body = r#"{"city": "Paris", "a": {"b": "deep"}, "items": ["first", "second"],
        "n": 7.0, "ok": true, "big": 12345678901234567890123, "unused": {"x": null}}"#;

    let dry = publish_json(&app, "t", "dryRun=true", body).await;
    dry.assert_status(200);
    let rendered =
        &dry["applies"][0]["rendered"][0]["spec"]["template"]["spec"]["containers"][0]["env"];
    let shown: Vec<(&str, &str)> = rendered
        .as_array()
        .expect("the rendered env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or(""),
                e["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let expected = [
        ("CITY", "Paris"),
        ("AB", "deep"),
        ("ITEM", "first"),
        ("NUMBER", "7.0"),
        ("FLAG", "true"),
        ("BIG", "12345678901234567890123"),
    ];
    assert_eq!(
        shown, expected,
        "a dry run shows the rendered values: {dry}"
    );
    assert_eq!(app.job_count().await, 0, "a dry run applies nothing");

    let applied = publish_json(&app, "t", "", body).await;
    applied.assert_status(202);
    let job = app.job(&applied.first_object_name()).await;
    for (name, value) in expected {
        assert_eq!(env(&job, name).as_deref(), Some(value), "{name}");
    }
    // The body is a JSON body whatever its content type says.
    let as_text = app.publish("t", "", body).await;
    as_text.assert_status(202);
    let job = app.job(&as_text.first_object_name()).await;
    assert_eq!(env(&job, "CITY").as_deref(), Some("Paris"));
    app.cleanup().await;
}

/// Values that are YAML syntax, quotes, line breaks and the characters
/// YAML 1.1 reads as line breaks (the injection set of the structure
/// check's tests): each carried exactly, or the publish refused with
/// nothing applied; never structure.
#[tokio::test]
async fn hostile_fields_are_data_in_every_scalar_style_never_structure() {
    let styles = [
        ("plain", "{{body.v}}"),
        ("single", "'{{body.v}}'"),
        ("double", "\"{{body.v}}\""),
        ("block", "|\n                {{body.v}}"),
    ];
    let mut files: Vec<(String, String)> = Vec::new();
    for (style, placeholder) in styles {
        files.push((
            format!("{style}.yaml"),
            job(&format!(
                "            - name: V\n              value: {placeholder}\n            - name: AFTER\n              value: \"after\"\n"
            )),
        ));
    }
    let names: Vec<&str> = styles.iter().map(|(s, _)| *s).collect();
    let topics: Vec<(&str, Vec<String>)> = names
        .iter()
        .map(|s| (*s, vec![format!("{s}.yaml")]))
        .collect();
    let config_json = json!({"topics": topics.iter().map(|(t, c)| json!({"name": t, "configs": c})).collect::<Vec<Value>>()}).to_string();
    let mut all: Vec<(&str, &str)> = vec![("config.json", &config_json)];
    for (name, text) in &files {
        all.push((name, text));
    }
    let app = spawn_app(&all).await;
    let hostile = [
        "He said \"hi\"",
        "it's",
        "'",
        "\"",
        "back\\slash",
        "a\nb",
        "line\n",
        "key: value",
        "- item",
        "? key",
        "&a",
        "*a",
        "!tag",
        "!!str",
        "|",
        ">",
        "# comment",
        "a #b",
        "{",
        "[",
        "{a: 1}",
        "[1, 2]",
        "x\u{85}y",
        "a\u{85}\u{85}b",
        "line\u{2028}separator",
        "para\u{2029}graph",
        "\n  - name: INJECTED\n    value: x",
        "\"\n            - name: INJECTED\n              value: \"x",
        "---",
    ];
    let mut jobs = app.job_count().await;
    let mut carried = 0;
    for (style, _) in styles {
        for value in hostile {
            let body = json!({"v": value}).to_string();
            let answer = publish_json(&app, style, "", &body).await;
            match answer.status {
                202 => {
                    jobs += 1;
                    let job = app.job(&answer.first_object_name()).await;
                    let want = match style {
                        // A literal block's content ends with its line break.
                        "block" => format!("{value}\n"),
                        _ => value.to_string(),
                    };
                    assert_eq!(
                        env(&job, "V").as_deref(),
                        Some(want.as_str()),
                        "{style} {value:?} carried exactly"
                    );
                    assert_eq!(env(&job, "AFTER").as_deref(), Some("after"));
                    assert_eq!(
                        env_names(&app, &answer).await,
                        ["V", "AFTER"],
                        "{style} {value:?}: no entry added"
                    );
                    carried += 1;
                }
                400 if style != "double" => {
                    answer.assert_error(400, "invalid_value");
                }
                other => panic!("{style} {value:?}: {other} {answer}"),
            }
            assert_eq!(
                app.job_count().await,
                jobs,
                "{style} {value:?}: one Job per accepted publish, none for a refused one"
            );
        }
    }
    // In double quotes every value is carried.
    assert!(carried >= hostile.len(), "{carried}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_body_that_cannot_fill_a_field_is_a_400_naming_it_with_nothing_applied() {
    let manifest = job(r#"            - name: AB
              value: "{{body.a.b}}"
            - name: ITEM
              value: "{{body.items.1}}"
"#);
    let app = spawn_app(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", &manifest),
    ])
    .await;
    for (body, named, why) in [
        (r#"{"items": [0, 1]}"#, "body.a.b", "has no field `a`"),
        (
            r#"{"a": {}, "items": [0, 1]}"#,
            "body.a.b",
            "`body.a` has no field `b`",
        ),
        (
            r#"{"a": {"b": null}, "items": [0, 1]}"#,
            "body.a.b",
            "`body.a.b` is null",
        ),
        (
            r#"{"a": {"b": {"c": 1}}, "items": [0, 1]}"#,
            "body.a.b",
            "`body.a.b` is an object",
        ),
        (
            r#"{"a": {"b": [1]}, "items": [0, 1]}"#,
            "body.a.b",
            "`body.a.b` is a list",
        ),
        (
            r#"{"a": {"b": 1}, "items": [0]}"#,
            "body.items.1",
            "`body.items` has no item 1",
        ),
        ("a=1&items=2", "body.a.b", "the body is not JSON"),
        ("", "body.a.b", "the body is empty"),
    ] {
        let answer = app.publish("t", "", body).await;
        answer
            .assert_error(400, "body_field")
            .assert_message_contains(&format!("{{{{{named}}}}}"))
            .assert_message_contains(why);
        assert_eq!(app.job_count().await, 0, "{body}: nothing applied");
    }
    let runs = app.get("/requests").await;
    runs.assert_status(200);
    assert_eq!(runs["runs"].as_array().map(Vec::len), Some(0), "{runs}");
    app.cleanup().await;
}
