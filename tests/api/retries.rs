//! Runs whose apply fails: a topic's `retry` tries a transient failure
//! again in the background, a permanent refusal is a dead letter at once,
//! and a dead letter can be published again (`POST /requests/{uid}/retry`).

use std::time::Duration;

use kube::api::ListParams;

use crate::helpers::{post, spawn_app_with, JOB};
use crate::outage::OwnApiServer;

fn retry_config() -> String {
    r#"{"topics": [{"name": "t", "configs": ["j.yaml"], "retry": {"attempts": 30, "backoff": "200ms", "maxBackoff": "2s"}}]}"#.to_string()
}

#[tokio::test]
async fn a_run_refused_by_the_api_server_is_a_dead_letter_and_runs_again_once_fixed() {
    // The API server refuses a negative parallelism (422): permanent, not retried.
    let broken = JOB.replace("  backoffLimit: 0", "  backoffLimit: 0\n  parallelism: -1");
    let app = spawn_app_with(
        &[("config.json", &retry_config()), ("j.yaml", &broken)],
        &[],
    )
    .await;
    let report = app.publish("t", "who=me", "payload one").await;
    report.assert_status(422);
    let failed = report.request_uid();
    let view = app.run(&failed).await;
    view.assert_state("Failed");
    assert!(
        view.body.get("attempts").is_none(),
        "a refusal is not tried again: {view}"
    );
    let page = app.get("/requests?status=failed").await;
    assert!(
        page["runs"]
            .as_array()
            .expect("runs")
            .iter()
            .any(|r| r["requestUid"] == failed.as_str()),
        "listed among the dead letters: {page}"
    );
    // Re-run while the manifest is still broken: the same refusal, a new run.
    let url = format!("{}/requests/{failed}/retry", app.address);
    let again = post(&app.http, &url, &[], "").await;
    again.assert_status(422);
    assert_ne!(again["requestUid"], failed.as_str());

    // Fixed in git: the re-run applies what the failed run published.
    app.repo.commit(
        &[("config.json", &retry_config()), ("j.yaml", JOB)],
        "fix the manifest",
    );
    app.refresh().await.assert_status(200);
    let rerun_uid = post(&app.http, &url, &[], "").await.accepted();
    let jobs = app
        .jobs()
        .list(&ListParams::default().labels(&format!("gitfaas.io/request-uid={rerun_uid}")))
        .await
        .expect("list")
        .items;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        crate::helpers::env(&jobs[0], "PAYLOAD").as_deref(),
        Some("cGF5bG9hZCBvbmU="),
        "base64 of `payload one`"
    );
    let view = app.run(&rerun_uid).await;
    assert_eq!(view["retryOf"], failed.as_str(), "{view}");
    // Only a dead letter can be re-run.
    let refused = post(
        &app.http,
        &format!("{}/requests/{rerun_uid}/retry", app.address),
        &[],
        "",
    )
    .await;
    refused.assert_error(409, "run_not_retryable");
    let unknown = post(
        &app.http,
        &format!("{}/requests/r-nope/retry", app.address),
        &[],
        "",
    )
    .await;
    unknown.assert_status(404);
    assert_eq!(
        app.job_count().await,
        1,
        "only the fixed re-run applied anything"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_publish_meeting_a_dead_api_server_is_tried_again_until_it_is_back() {
    let mut apiserver = OwnApiServer::start().await;
    let kc_arg = apiserver.kubeconfig_arg();
    let app = spawn_app_with(
        &[("config.json", &retry_config()), ("j.yaml", JOB)],
        &["--kubeconfig", &kc_arg],
    )
    .await;
    // Kinds are resolved (and cached) by a first publish.
    let body = app.publish("t", "", "warm").await;
    body.assert_status(202);
    apiserver.kill();
    let report = app.publish("t", "", "during").await;
    report.assert_status(202);
    report.assert_state("Retrying");
    let uid = report.request_uid();
    let view = app.run(&uid).await;
    view.assert_state("Pending");
    assert_eq!(view["attempts"][0]["code"], "cluster_unreachable", "{view}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    apiserver.restart().await;
    let view = app
        .wait_for_run(
            &uid,
            "the run to be applied once the API server is back",
            Duration::from_secs(60),
            |view| view["status"] != "Pending",
        )
        .await;
    assert_ne!(view["status"], "Failed", "{view}");
    assert!(
        view["attempts"].as_array().map_or(0, Vec::len) >= 1,
        "the failed attempts stay shown: {view}"
    );
    let jobs = app
        .jobs()
        .list(&ListParams::default().labels(&format!("gitfaas.io/request-uid={uid}")))
        .await
        .expect("list")
        .items;
    assert_eq!(jobs.len(), 1, "applied once");
    app.cleanup().await;
}
