//! `GET /topics` and `GET /topics/{topic}`: the serving commit's topics and
//! their manifests' text as committed, followed across a sync, guarded as
//! the other reads are (a token; under `--auth kubernetes`, `list` and
//! `get` on `topics`).

use std::time::Duration;

use crate::helpers::{config, eventually, spawn_app, spawn_app_with, JOB};
use crate::identity::{get_as, grant, reviewed_caller, Reviewed};

/// A manifest with what a re-encoding would lose: CRLF line ends, a
/// comment, trailing spaces, a template's `{{…}}` and no final newline.
const CONFIG_MAP: &str = "# the topic's settings   \r\napiVersion: v1\r\nkind: ConfigMap\r\nmetadata:\r\n  name: settings-{{RANDOM}}\r\ndata:\r\n  payload: \"{{PAYLOAD}}\"";

#[tokio::test]
async fn the_topics_and_their_manifests_text_are_served_as_committed_and_follow_a_sync() {
    let config = serde_json::json!({"topics": [
        {"name": "zeta", "configs": ["./j.yaml"]},
        {"name": "alpha", "configs": ["j.yaml", "deep/c.yaml"], "maxConcurrent": 2,
         "overflow": "queue", "retry": {"attempts": 3}, "result": "stdout",
         "filter": "body.action == 'opened'",
         "schedule": {"cron": "0 3 * * *", "timezone": "Europe/Paris"}},
    ]})
    .to_string();
    let app = spawn_app(&[
        ("config.json", &config),
        ("j.yaml", JOB),
        ("deep/c.yaml", CONFIG_MAP),
    ])
    .await;
    let first = app.get("/status").await["commit"]
        .as_str()
        .expect("a commit serving")
        .to_string();

    let list = app.get("/topics").await;
    list.assert_status(200);
    assert_eq!(list["commit"], first.as_str(), "{list}");
    let names: Vec<&str> = list["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["alpha", "zeta"], "sorted by name");
    let alpha = &list["topics"][0];
    assert_eq!(alpha["files"], serde_json::json!(["j.yaml", "deep/c.yaml"]));
    assert_eq!(alpha["maxConcurrent"], 2);
    assert_eq!(alpha["overflow"], "queue");
    assert_eq!(
        alpha["retry"],
        serde_json::json!({"attempts": 3, "backoff": "500ms", "maxBackoff": "30s"})
    );
    assert_eq!(alpha["result"], "stdout");
    assert_eq!(alpha["filter"], "body.action == 'opened'");
    assert_eq!(alpha["schedule"]["cron"], "0 3 * * *");
    assert_eq!(alpha["schedule"]["timezone"], "Europe/Paris");
    assert_eq!(alpha["schedule"]["startingDeadlineSeconds"], 60);
    assert!(alpha["schedule"]["nextTick"].is_string(), "{alpha}");
    let zeta = &list["topics"][1];
    assert_eq!(zeta["files"], serde_json::json!(["j.yaml"]));
    for absent in ["maxConcurrent", "retry", "result", "filter", "schedule"] {
        assert!(zeta[absent].is_null(), "{absent}: {zeta}");
    }
    assert_eq!(zeta["overflow"], "reject");

    let one = app.get("/topics/alpha").await;
    one.assert_status(200);
    assert_eq!(one["commit"], first.as_str());
    assert_eq!(one["name"], "alpha");
    assert_eq!(one["overflow"], "queue");
    assert_eq!(
        one["manifests"],
        serde_json::json!([
            {"path": "j.yaml", "text": JOB},
            {"path": "deep/c.yaml", "text": CONFIG_MAP},
        ]),
        "byte for byte as committed"
    );

    // A push that changes a manifest: the new text once synced.
    let changed = CONFIG_MAP.replace("settings-", "settings-v2-");
    let second = app.repo.commit(&[("deep/c.yaml", &changed)], "v2");
    app.refresh().await.assert_status(200);
    let one = app.get("/topics/alpha").await;
    one.assert_status(200);
    assert_eq!(one["commit"], second.as_str());
    assert_eq!(one["manifests"][1]["text"], changed.as_str());
    assert_eq!(one["manifests"][0]["text"], JOB);
    assert_eq!(app.get("/topics").await["commit"], second.as_str());

    app.get("/topics/beta")
        .await
        .assert_error(404, "unknown_topic")
        .assert_message_contains(&format!("the serving commit {second} has no such topic"));
    app.cleanup().await;
}

#[tokio::test]
async fn the_topics_need_a_token_under_auth_tokens() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "token-one\n").expect("write");
    let t = tokens.display().to_string();
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &["--api-token-file", &t],
    )
    .await;
    for path in ["/topics", "/topics/t"] {
        app.get(path).await.assert_error(401, "unauthorized");
        get_as(&app, path, "nope")
            .await
            .assert_error(401, "unauthorized");
        get_as(&app, path, "token-one").await.assert_status(200);
    }
    let one = get_as(&app, "/topics/t", "token-one").await;
    assert_eq!(one["manifests"][0]["text"], JOB);
    app.cleanup().await;
}

/// Under `--auth kubernetes`: `list topics` for the list, `get topics`
/// naming the topic for one, each refusal naming what is missing.
#[tokio::test]
async fn reading_topics_under_auth_kubernetes_needs_list_and_get_on_topics() {
    // Publishing a topic is not reading it.
    let Reviewed {
        serial: _serial,
        kube,
        home,
        dir: _dir,
        app,
        token,
    } = reviewed_caller("console", "publish-a", &[("create", "topics", Some("a"))]).await;
    let user = format!("system:serviceaccount:{}:console", home.name());

    get_as(&app, "/topics", &token)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains(&format!("{user} may not list gitfaas.io topics"));
    get_as(&app, "/topics/a", &token)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains(&format!("{user} may not get gitfaas.io topics `a`"))
        .assert_message_contains("resourceNames [a]");

    grant(
        &kube,
        home.name(),
        "console",
        "read-topic-a",
        &[("get", "topics", Some("a")), ("list", "topics", None)],
    )
    .await;
    // A refusal is cached briefly (2 s): the grant shows soon after.
    let one = eventually(
        "reading topic a once granted",
        Duration::from_secs(30),
        || async {
            let answer = get_as(&app, "/topics/a", &token).await;
            (answer.status == 200).then_some(answer)
        },
    )
    .await;
    assert_eq!(one["manifests"][0]["text"], JOB);
    let list = eventually("listing once granted", Duration::from_secs(30), || async {
        let answer = get_as(&app, "/topics", &token).await;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert_eq!(
        list["topics"].as_array().map(Vec::len),
        Some(3),
        "{list}: a, b and c"
    );
    // Only the topic the Role names.
    get_as(&app, "/topics/b", &token)
        .await
        .assert_error(403, "access_denied")
        .assert_message_contains("may not get gitfaas.io topics `b`");
    app.get("/topics").await.assert_error(401, "unauthorized");
    app.cleanup().await;
}
