//! CloudEvents in: events sent by the CloudEvents SDK for Rust (binary and
//! structured mode), and hand-written ones where the test is the encoding
//! itself; what lands in the API server, and what is refused.

use base64::Engine;
use cloudevents::binding::reqwest::{RequestBuilderExt, RequestSerializer};
use cloudevents::message::StructuredDeserializer;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use serde_json::{json, Value};

use crate::helpers::{config, env, post, spawn_app, spawn_app_with, Answer, TestApp};

/// A Job that shows every variable an event gives, and its payload.
const EVENT_JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: ce-{{RANDOM}}
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          env:
            - name: PAYLOAD
              value: "{{PAYLOAD}}"
            - name: CE_ID
              value: "{{CE_ID}}"
            - name: CE_SOURCE
              value: "{{CE_SOURCE}}"
            - name: CE_TYPE
              value: "{{CE_TYPE}}"
            - name: CE_SUBJECT
              value: "{{CE_SUBJECT}}"
            - name: CE_TIME
              value: "{{CE_TIME}}"
"#;

/// gitfaas serving `orders` (and `audit`, the same Job) as [`EVENT_JOB`],
/// and `plain`, whose subject is a plain (unquoted) placeholder.
async fn event_app(extra: &[&str]) -> TestApp {
    let plain = EVENT_JOB.replace(
        "            - name: CE_TIME",
        "            - name: PLAIN\n              value: {{CE_SUBJECT}}\n            - name: CE_TIME",
    );
    let files = [
        (
            "config.json",
            config(&[
                ("orders", &["ce.yaml"]),
                ("audit", &["ce.yaml"]),
                ("plain", &["plain.yaml"]),
            ]),
        ),
        ("ce.yaml", EVENT_JOB.to_string()),
        ("plain.yaml", plain),
    ];
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    match extra {
        [] => spawn_app(&files).await,
        extra => spawn_app_with(&files, extra).await,
    }
}

fn url(app: &TestApp, topic: &str) -> String {
    format!("{}/publish/{topic}", app.address)
}

/// An event of the SDK: `id` from `/orders`, of type `com.example.order`.
fn order(id: &str) -> EventBuilderV10 {
    EventBuilderV10::new()
        .id(id)
        .source("/orders")
        .ty("com.example.order")
}

fn built(builder: EventBuilderV10) -> Event {
    builder.build().expect("a valid event")
}

/// Sends `event` in binary mode, as the SDK writes it.
async fn send_binary(app: &TestApp, topic: &str, event: Event) -> Answer {
    let request = app
        .http
        .post(url(app, topic))
        .event(event)
        .expect("the SDK writes the event");
    Answer::read(request.send().await.expect("request")).await
}

/// Sends `event` in structured mode, as the SDK writes it; the answer and
/// the body sent.
async fn send_structured(app: &TestApp, topic: &str, event: Event) -> (Answer, Vec<u8>) {
    let builder = StructuredDeserializer::deserialize_structured(
        event,
        RequestSerializer::new(app.http.post(url(app, topic))),
    )
    .expect("the SDK writes the event");
    let request = builder.build().expect("a request");
    let sent = request
        .body()
        .and_then(|b| b.as_bytes())
        .expect("a body in memory")
        .to_vec();
    let answer = Answer::read(app.http.execute(request).await.expect("request")).await;
    (answer, sent)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The env value `name` of the first Job of an accepted publish; an empty
/// value reads as "" (the API server leaves an empty value out).
async fn job_env(app: &TestApp, answer: &Answer, name: &str) -> String {
    let job = app.job(&answer.first_object_name()).await;
    env(&job, name).unwrap_or_default()
}

/// The `Location` of an answer.
fn location(answer: &Answer) -> String {
    answer
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location: {answer}"))
        .to_string()
}

#[tokio::test]
async fn a_binary_cloudevent_from_the_sdk_is_a_run_with_its_attributes_and_data() {
    let app = event_app(&[]).await;
    let data = json!({"n": 7.0, "who": "a \"quoted\" name"});
    let event = built(
        order("e-1")
            .subject("order 17")
            .time("2026-03-01T10:00:00Z")
            .extension("comexampleext", "x")
            .data("application/json", data.clone()),
    );
    let answer = send_binary(&app, "orders", event).await;
    let uid = answer.accepted();
    assert_eq!(location(&answer), format!("/requests/{uid}"));
    assert_eq!(
        job_env(&app, &answer, "PAYLOAD").await,
        b64(&serde_json::to_vec(&data).expect("json")),
        "the payload is the body, the event's data"
    );
    assert_eq!(job_env(&app, &answer, "CE_ID").await, "e-1");
    assert_eq!(job_env(&app, &answer, "CE_SOURCE").await, "/orders");
    assert_eq!(job_env(&app, &answer, "CE_TYPE").await, "com.example.order");
    assert_eq!(job_env(&app, &answer, "CE_SUBJECT").await, "order 17");
    let time = job_env(&app, &answer, "CE_TIME").await;
    assert!(time.starts_with("2026-03-01T10:00:00"), "{time}");

    let view = app.run(&uid).await;
    assert_eq!(view["trigger"], "cloudevent", "{view}");
    let attributes = &view["cloudEvent"];
    assert_eq!(attributes["id"], "e-1", "{view}");
    assert_eq!(attributes["specversion"], "1.0", "{view}");
    assert_eq!(attributes["comexampleext"], "x", "extensions too: {view}");
    assert_eq!(attributes["datacontenttype"], "application/json", "{view}");
    let listed = app.get("/requests?trigger=cloudevent").await;
    assert_eq!(listed["runs"][0]["requestUid"], uid.as_str(), "{listed}");
    assert_eq!(listed["runs"][0]["trigger"], "cloudevent", "{listed}");
    let http = app.get("/requests?trigger=http").await;
    assert_eq!(http["runs"], json!([]), "{http}");
    app.cleanup().await;
}

#[tokio::test]
async fn a_structured_cloudevent_from_the_sdk_carries_its_data_as_sent() {
    let app = event_app(&[]).await;
    // JSON data: `{{PAYLOAD}}` is the text of `data` as sent, byte for byte.
    let data = json!({"price": 7.0, "items": [1, 2]});
    let event = built(order("s-1").data("application/json", data));
    let (answer, sent) = send_structured(&app, "orders", event).await;
    answer.assert_status(202);
    #[derive(serde::Deserialize)]
    struct Sent<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    let sent: Sent = serde_json::from_slice(&sent).expect("the SDK sent JSON");
    let payload = job_env(&app, &answer, "PAYLOAD").await;
    assert_eq!(payload, b64(sent.data.get().as_bytes()));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&payload)
        .expect("base64");
    assert!(
        String::from_utf8_lossy(&decoded).contains("7.0"),
        "7.0 stays 7.0: {}",
        String::from_utf8_lossy(&decoded)
    );
    assert_eq!(job_env(&app, &answer, "CE_ID").await, "s-1");
    // The optional attributes the event has not render empty.
    assert_eq!(job_env(&app, &answer, "CE_SUBJECT").await, "");
    assert_eq!(job_env(&app, &answer, "CE_TIME").await, "");
    let view = app.run(&answer.request_uid()).await;
    assert_eq!(view["trigger"], "cloudevent", "{view}");

    // Binary data goes as `data_base64`, and arrives decoded.
    let bytes = vec![0u8, 1, 2, 255, b'\n'];
    let event = built(order("s-2").data("application/octet-stream", bytes.clone()));
    let (answer, sent) = send_structured(&app, "orders", event).await;
    answer.assert_status(202);
    let sent: Value = serde_json::from_slice(&sent).expect("json");
    assert!(sent.get("data_base64").is_some(), "{sent}");
    assert_eq!(job_env(&app, &answer, "PAYLOAD").await, b64(&bytes));
    app.cleanup().await;
}

#[tokio::test]
async fn the_same_event_is_one_run_per_topic_and_other_content_under_its_id_is_422() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "token-one\ntoken-two\n").expect("write");
    let app = event_app(&["--api-token-file", &tokens.display().to_string()]).await;
    let send = |topic: &'static str, token: &'static str, event: Event| {
        let request = app
            .http
            .post(url(&app, topic))
            .bearer_auth(token)
            .event(event)
            .expect("the SDK writes the event");
        async move { Answer::read(request.send().await.expect("request")).await }
    };
    let event = || built(order("dup-1").subject("s").data("text/plain", "one"));

    let first = send("orders", "token-one", event()).await;
    let uid = first.accepted();
    assert!(first.headers.get("idempotent-replayed").is_none());
    // Delivered again, by another caller too: the first run's answer.
    for token in ["token-one", "token-two"] {
        let again = send("orders", token, event()).await;
        assert_eq!(again.accepted(), uid, "{token}: {again}");
        assert_eq!(location(&again), format!("/requests/{uid}"));
        assert_eq!(again.headers["idempotent-replayed"], "true");
    }
    // The same event in structured mode is the same event.
    let builder = StructuredDeserializer::deserialize_structured(
        event(),
        RequestSerializer::new(app.http.post(url(&app, "orders")).bearer_auth("token-two")),
    )
    .expect("structured");
    let structured = Answer::read(builder.send().await.expect("request")).await;
    assert_eq!(structured.accepted(), uid, "{structured}");
    assert_eq!(app.job_count().await, 1, "one run");

    // The same source and id with other content: 422, nothing applied.
    for (other, says) in [
        (
            built(order("dup-1").subject("s").data("text/plain", "two")),
            "the data",
        ),
        (
            built(order("dup-1").subject("other").data("text/plain", "one")),
            "the event's attributes",
        ),
    ] {
        let refused = send("orders", "token-one", other).await;
        refused.assert_error(422, "idempotency_mismatch");
        refused.assert_message_contains("`dup-1`");
        refused.assert_message_contains(says);
    }
    assert_eq!(app.job_count().await, 1, "nothing applied");

    // Another topic: another run.
    let audit = send("audit", "token-one", event()).await;
    assert_ne!(audit.accepted(), uid);
    assert_eq!(app.job_count().await, 2);
    app.cleanup().await;
}

/// Request headers, by name and value.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// Hand-written binary headers: the required ones, with `extra` replacing
/// or adding.
fn headers<'a>(extra: &[(&'a str, &'a str)]) -> Headers<'a> {
    let mut all = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", "b-1"),
        ("ce-source", "/orders"),
        ("ce-type", "com.example.order"),
    ];
    for (name, value) in extra {
        all.retain(|(n, _)| n != name);
        all.push((name, value));
    }
    all
}

#[tokio::test]
async fn bad_cloudevents_are_400_naming_the_attribute_and_apply_nothing() {
    let app = event_app(&[]).await;
    let orders = url(&app, "orders");
    let without = |name: &str| {
        let mut h = headers(&[]);
        h.retain(|(n, _)| *n != name);
        h
    };
    let binary: Vec<(Headers, &[&str])> = vec![
        (without("ce-id"), &["`id` (header `ce-id`)", "no `id`"]),
        (without("ce-source"), &["`source` (header `ce-source`)"]),
        (without("ce-type"), &["`type` (header `ce-type`)"]),
        (
            without("ce-specversion"),
            &["`specversion` (header `ce-specversion`)"],
        ),
        (
            headers(&[("ce-specversion", "0.3")]),
            &["`0.3`", "CloudEvents 1.0 only"],
        ),
        (
            headers(&[("ce-id", "")]),
            &["`id` (header `ce-id`) is empty"],
        ),
        (
            headers(&[("ce-id", "50%")]),
            &["`id` (header `ce-id`)", "%25"],
        ),
        (
            headers(&[("ce-id", "%C0%A0")]),
            &["`id` (header `ce-id`)", "not UTF-8"],
        ),
        (
            headers(&[("ce-subject", "a%0Ab")]),
            &["`subject` (header `ce-subject`)", "U+000A"],
        ),
        (
            headers(&[("ce-subject", "%C2%85")]),
            &["`subject`", "U+0085"],
        ),
        (
            headers(&[("ce-time", "yesterday")]),
            &["`time` (header `ce-time`)", "RFC 3339"],
        ),
        (
            headers(&[("ce-foo_bar", "x")]),
            &["header `ce-foo_bar`", "lowercase letters and digits"],
        ),
        (
            headers(&[("ce-datacontenttype", "text/plain")]),
            &["`ce-datacontenttype`", "Content-Type"],
        ),
        (
            headers(&[("content-type", "application/json")]),
            &["declared JSON", "header `Content-Type`"],
        ),
    ];
    for (sent, says) in &binary {
        let answer = post(&app.http, &orders, sent, "{not json").await;
        answer.assert_error(400, "bad_cloudevent");
        for part in *says {
            answer.assert_message_contains(part);
        }
    }
    // Bytes that are not ASCII, as a header may carry them.
    let raw = app
        .http
        .post(&orders)
        .header("ce-specversion", "1.0")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .header(
            "ce-id",
            reqwest::header::HeaderValue::from_bytes(b"caf\xC3\xA9").expect("obs-text"),
        )
        .body("x")
        .send()
        .await
        .expect("request");
    let answer = Answer::read(raw).await;
    answer.assert_error(400, "bad_cloudevent");
    answer.assert_message_contains("`id` (header `ce-id`)");
    answer.assert_message_contains("printable ASCII");

    let structured_type = [("content-type", "application/cloudevents+json")];
    let base = r#""specversion":"1.0","id":"j-1","source":"/s","type":"t""#;
    let structured: Vec<(String, &[&str])> = vec![
        ("[1, 2]".into(), &["an array, not an object"]),
        ("{".into(), &["not valid JSON"]),
        (
            r#"{"specversion":"1.0","source":"/s","type":"t"}"#.into(),
            &["no `id`"],
        ),
        (
            r#"{"id":"1","source":"/s","type":"t"}"#.into(),
            &["no `specversion`"],
        ),
        (
            r#"{"specversion":"1.0","id":7,"source":"/s","type":"t"}"#.into(),
            &["`id` is a number"],
        ),
        (
            format!(r#"{{{base},"data":1,"data_base64":"AA=="}}"#),
            &["both `data` and `data_base64`"],
        ),
        (
            format!(r#"{{{base},"datacontenttype":"text/plain","data":{{"a":1}}}}"#),
            &["`datacontenttype` (`text/plain`) does not declare JSON"],
        ),
        (
            format!(r#"{{{base},"time":"noon"}}"#),
            &["`time`", "RFC 3339"],
        ),
    ];
    for (body, says) in &structured {
        let answer = post(&app.http, &orders, &structured_type, body).await;
        answer.assert_error(400, "bad_cloudevent");
        for part in *says {
            answer.assert_message_contains(part);
        }
    }

    // An event deduplicates itself: an Idempotency-Key beside it is refused.
    let mut with_key = headers(&[]);
    with_key.push(("Idempotency-Key", "k-1"));
    let answer = post(&app.http, &orders, &with_key, "x").await;
    answer.assert_error(400, "bad_request");
    answer.assert_message_contains("Idempotency-Key");
    // A topic that reads an event's attributes refuses a plain publish.
    let answer = app.publish("orders", "", "x").await;
    answer.assert_error(400, "missing_variable");
    answer.assert_message_contains("CE_ID");
    answer.assert_message_contains("expects a CloudEvent");
    // A query parameter cannot pose as one.
    let answer = app.publish("orders", "CE_ID=x", "x").await;
    answer.assert_error(400, "bad_parameter");

    assert_eq!(app.job_count().await, 0, "nothing was applied");
    assert_eq!(
        app.get("/requests").await["runs"],
        json!([]),
        "no run recorded"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_batch_is_415_and_applies_nothing() {
    let app = event_app(&[]).await;
    let batch = app
        .http
        .post(url(&app, "orders"))
        .events(vec![built(order("b-1")), built(order("b-2"))])
        .expect("the SDK writes the batch");
    let answer = Answer::read(batch.send().await.expect("request")).await;
    answer.assert_error(415, "unsupported_media_type");
    answer.assert_message_contains("batch mode");
    let other_format = post(
        &app.http,
        &url(&app, "orders"),
        &[("content-type", "application/cloudevents+avro")],
        "x",
    )
    .await;
    other_format.assert_error(415, "unsupported_media_type");
    other_format.assert_message_contains("application/cloudevents+json");
    assert_eq!(app.job_count().await, 0);
    app.cleanup().await;
}

/// Values that would change a manifest's structure, were they text.
const HOSTILE: &[&str] = &[
    "a\", \"b",
    "x\" \\ y",
    "key: value",
    "- item",
    "# comment",
    "{a: b}",
    "[1, 2]",
    "&anchor",
    "*alias",
    "---",
    "| block",
    "> folded",
    "!!binary tag",
    "%YAML 1.2",
    "@at `tick`",
    "it's",
    "line\u{2028}separator",
    "para\u{2029}graph",
    "percent 100%",
];

/// `s` percent-encoded as the CloudEvents HTTP binding asks.
fn percent_encoded(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b' ' | b'"' | b'%' => format!("%{b:02X}"),
            0x21..=0x7E => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn hostile_attribute_values_are_carried_as_data_in_both_modes() {
    let app = event_app(&[]).await;
    for (i, value) in HOSTILE.iter().enumerate() {
        let id = format!("{i}-{value}");
        // Structured, from the SDK: any character a String may hold.
        let event = built(
            EventBuilderV10::new()
                .id(id.clone())
                .source(format!("/src/{value}"))
                .ty(*value)
                .subject(*value),
        );
        let (answer, _) = send_structured(&app, "orders", event).await;
        answer.assert_status(202);
        assert_eq!(job_env(&app, &answer, "CE_ID").await, id);
        assert_eq!(
            job_env(&app, &answer, "CE_SOURCE").await,
            format!("/src/{value}")
        );
        assert_eq!(job_env(&app, &answer, "CE_TYPE").await, *value);
        assert_eq!(job_env(&app, &answer, "CE_SUBJECT").await, *value);

        // Binary, percent-encoded as the binding asks.
        let id = format!("bin-{i}-{value}");
        let (id_enc, value_enc) = (percent_encoded(&id), percent_encoded(value));
        let sent = headers(&[
            ("ce-id", id_enc.as_str()),
            ("ce-type", value_enc.as_str()),
            ("ce-subject", value_enc.as_str()),
        ]);
        let answer = post(&app.http, &url(&app, "orders"), &sent, "").await;
        answer.assert_status(202);
        assert_eq!(job_env(&app, &answer, "CE_ID").await, id);
        assert_eq!(job_env(&app, &answer, "CE_TYPE").await, *value);
        assert_eq!(job_env(&app, &answer, "CE_SUBJECT").await, *value);
    }
    // The SDK writes ASCII values into headers unencoded, a raw quote and
    // space included: taken as themselves.
    let raw = "a \"b\": c";
    let event = built(order("raw-1").subject(raw));
    let answer = send_binary(&app, "orders", event).await;
    answer.assert_status(202);
    assert_eq!(job_env(&app, &answer, "CE_SUBJECT").await, raw);

    // A plain placeholder: a value that reads as structure is refused as
    // any value is (the structure check), and nothing is applied.
    let before = app.job_count().await;
    let event = built(order("plain-1").subject("a: b"));
    let answer = send_binary(&app, "plain", event).await;
    answer.assert_error(400, "invalid_value");
    answer.assert_message_contains("plain.yaml");
    answer.assert_message_contains("changes the structure");
    assert_eq!(app.job_count().await, before);
    app.cleanup().await;
}

#[tokio::test]
async fn a_dead_letter_event_runs_again_with_its_attributes() {
    // The API server refuses a negative parallelism (422): a dead letter.
    let broken = EVENT_JOB.replace("  backoffLimit: 0", "  backoffLimit: 0\n  parallelism: -1");
    let app = spawn_app(&[
        ("config.json", &config(&[("orders", &["ce.yaml"])])),
        ("ce.yaml", &broken),
    ])
    .await;
    let event = built(order("dl-1").subject("s").data("text/plain", "kept"));
    let failed = send_binary(&app, "orders", event).await;
    failed.assert_status(422);
    let failed = failed.request_uid();
    app.repo.commit(
        &[
            ("config.json", &config(&[("orders", &["ce.yaml"])])),
            ("ce.yaml", EVENT_JOB),
        ],
        "fix the manifest",
    );
    app.refresh().await.assert_status(200);
    let url = format!("{}/requests/{failed}/retry", app.address);
    let rerun = post(&app.http, &url, &[], "").await;
    assert_ne!(
        rerun.accepted(),
        failed,
        "a new run, not the event's replay"
    );
    assert_eq!(job_env(&app, &rerun, "CE_ID").await, "dl-1");
    assert_eq!(job_env(&app, &rerun, "CE_SUBJECT").await, "s");
    assert_eq!(job_env(&app, &rerun, "PAYLOAD").await, b64(b"kept"));
    let view = app.run(&rerun.request_uid()).await;
    assert_eq!(view["retryOf"], failed.as_str(), "{view}");
    assert_eq!(view["cloudEvent"]["id"], "dl-1", "{view}");
    app.cleanup().await;
}
