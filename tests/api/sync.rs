//! Syncing: new commits, rejected commits, force-pushes.

use crate::helpers::{
    config, env, spawn_app, spawn_app_over_git_protocol, spawn_one_topic_app, TestApp, JOB,
};

#[tokio::test]
async fn a_new_commit_and_refresh_switches_to_the_new_template() {
    let app = spawn_one_topic_app(JOB).await;
    let body = app.refresh().await;
    assert_eq!(
        (body.status, body["changed"].clone()),
        (200, false.into()),
        "{body}"
    );

    let v2 = JOB.replace(
        "name: GITFAAS_URL",
        "name: VERSION\n              value: \"2\"\n            - name: GITFAAS_URL",
    );
    let commit = app.repo.commit(&[("j.yaml", &v2)], "v2");
    let body = app.refresh().await;
    body.assert_status(200);
    assert_eq!(body["changed"], true);
    assert_eq!(body["commit"], commit.as_str());

    let report = app.publish("t", "", "x").await;
    report.assert_status(202);
    assert_eq!(report["commit"], commit.as_str());
    let job = app.job(&report.first_object_name()).await;
    assert_eq!(env(&job, "VERSION").as_deref(), Some("2"));
    assert_eq!(
        job.metadata.annotations.expect("annotations")["gitfaas.io/commit"],
        commit
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_bad_commit_is_rejected_and_the_old_snapshot_keeps_serving() {
    let app = spawn_one_topic_app(JOB).await;
    let status_before = app.get("/status").await;
    let good = status_before["commit"]
        .as_str()
        .expect("commit")
        .to_string();

    let broken_template = JOB.replace("name: collect-{{RANDOM}}", "name: collect-{{#if x}}");
    let two_topics = config(&[("t", &["j.yaml"]), ("u", &["gone.yaml"])]);
    let one_topic = config(&[("t", &["j.yaml"])]);
    type Files<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Files, &str); 3] = [
        (
            "invalid config.json",
            vec![("config.json", "{\"topics\": [")],
            "config.json:",
        ),
        (
            "a missing manifest",
            vec![("config.json", &two_topics)],
            "gone.yaml: file not found",
        ),
        (
            "a broken template",
            vec![("config.json", &one_topic), ("j.yaml", &broken_template)],
            "j.yaml:",
        ),
    ];
    for (what, files, expected) in cases {
        let bad = app.repo.commit(&files, what);
        let body = app.refresh().await;
        assert_eq!(body.status, 422, "{what}: {body}");
        assert_eq!(body["rejectedCommit"], bad.as_str(), "{what}");
        assert!(body.message().contains(expected), "{what}: {body}");

        let s = app.get("/status").await;
        assert_eq!(
            s["commit"],
            good.as_str(),
            "{what}: the old commit still serves"
        );
        assert_eq!(
            s["sync"]["lastError"]["commit"],
            bad.as_str(),
            "{what}: {s}"
        );
        assert!(
            s["sync"]["lastError"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(expected),
            "{what}: {s}"
        );

        let report = app.publish("t", "", "x").await;
        assert_eq!(
            report.status, 202,
            "{what}: publishing still works: {report}"
        );
        assert_eq!(report["commit"], good.as_str());
    }
    // Fixing the repository brings the new commit in and clears the error.
    let fixed = app.repo.commit(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        "fixed",
    );
    let body = app.refresh().await;
    assert_eq!(
        (body.status, body["commit"].clone()),
        (200, fixed.as_str().into()),
        "{body}"
    );
    let s = app.get("/status").await;
    assert!(s["sync"]["lastError"].is_null(), "{s}");
    app.cleanup().await;
}

/// Force-pushes a rewritten template over the branch, refreshes and checks
/// a publish uses it; returns the new head.
async fn force_push_is_followed(app: &TestApp) -> String {
    let rewritten = JOB.replace("name: collect-{{RANDOM}}", "name: rewritten-{{RANDOM}}");
    let new_head = app.repo.force_replace(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", &rewritten),
    ]);
    let body = app.refresh().await;
    body.assert_status(200);
    assert_eq!(body["commit"], new_head.as_str());
    let report = app.publish("t", "", "x").await;
    report.assert_status(202);
    assert!(
        report.first_object_name().starts_with("rewritten-"),
        "{report}"
    );
    new_head
}

#[tokio::test]
async fn a_force_pushed_branch_is_followed() {
    let app = spawn_one_topic_app(JOB).await;
    force_push_is_followed(&app).await;
    app.cleanup().await;
}

#[tokio::test]
async fn a_remote_is_fetched_into_the_cache_and_its_force_pushes_are_followed() {
    let app = spawn_app_over_git_protocol(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", JOB),
    ])
    .await;
    let report = app.publish("t", "", "x").await;
    report.assert_status(202);
    assert!(
        report.first_object_name().starts_with("collect-"),
        "{report}"
    );
    let new_head = force_push_is_followed(&app).await;
    // Fetched, not read in place: the cache holds the remote branch.
    let caches: Vec<_> = std::fs::read_dir(app.cache.path().join("git"))
        .expect("cache dir")
        .flatten()
        .collect();
    assert_eq!(
        caches.len(),
        1,
        "one cache repository per remote and branch"
    );
    let cache = git2::Repository::open_bare(caches[0].path()).expect("cache repo");
    assert_eq!(
        cache
            .refname_to_id("refs/remotes/origin/main")
            .expect("fetched branch")
            .to_string(),
        new_head
    );
    app.cleanup().await;
}

#[tokio::test]
async fn status_readyz_and_healthz_describe_the_service() {
    let app = spawn_app(&[
        (
            "config.json",
            &config(&[("t", &["j.yaml"]), ("u", &["j.yaml"])]),
        ),
        ("j.yaml", JOB),
    ])
    .await;
    let body = app.get("/healthz").await;
    body.assert_status(200);
    let body = app.get("/readyz").await;
    body.assert_status(200);
    assert!(
        body["kubernetes"].as_str().unwrap_or("").starts_with("v1."),
        "{body}"
    );
    let body = app.get("/status").await;
    body.assert_status(200);
    assert_eq!(body["topics"].as_array().map(Vec::len), Some(2), "{body}");
    assert_eq!(body["namespace"], app.namespace.as_str());
    assert!(body["sync"]["lastSuccess"].is_string(), "{body}");
    app.cleanup().await;
}

/// A rejected commit stays in `/status` as `lastRejected`, with its
/// problems, through a later failure of another kind (the repository
/// unreachable), which `lastError` shows; a commit that serves clears both.
#[tokio::test]
async fn the_last_rejected_commit_stays_in_status_through_a_fetch_failure() {
    let app = spawn_one_topic_app(JOB).await;
    let broken = JOB.replace("name: collect-{{RANDOM}}", "name: collect-{{#if x}}");
    let bad = app.repo.commit(&[("j.yaml", &broken)], "broken");
    app.refresh().await.assert_error(422, "repository_rejected");
    let s = app.get("/status").await;
    let rejected = &s["sync"]["lastRejected"];
    assert_eq!(rejected["commit"], bad.as_str(), "{s}");
    assert_eq!(rejected["problems"][0]["file"], "j.yaml", "{s}");
    assert!(rejected["problems"][0]["line"].is_u64(), "{s}");
    assert!(rejected["problems"][0]["message"].is_string(), "{s}");
    assert!(s["sync"]["lastSync"].is_string(), "{s}");

    // The repository unreachable: lastError is the fetch's, the rejected
    // commit is still shown.
    let git = app.repo.path().join(".git");
    let away = app.repo.path().join(".git-away");
    std::fs::rename(&git, &away).expect("hide the repository");
    let failed = app.refresh().await;
    std::fs::rename(&away, &git).expect("restore the repository");
    failed.assert_error(502, "git_fetch_failed");
    let s = app.get("/status").await;
    assert!(s["sync"]["lastError"]["commit"].is_null(), "{s}");
    assert_eq!(s["sync"]["lastRejected"]["commit"], bad.as_str(), "{s}");

    let fixed = app.repo.commit(&[("j.yaml", JOB)], "fixed");
    app.refresh().await.assert_status(200);
    let s = app.get("/status").await;
    assert_eq!(s["commit"], fixed.as_str());
    assert!(s["sync"]["lastRejected"].is_null(), "{s}");
    assert!(s["sync"]["lastError"].is_null(), "{s}");
    app.cleanup().await;
}
