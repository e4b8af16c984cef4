//! Checks the local control plane of tests/cluster (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler, kwok): that batch/v1 Jobs really
//! complete, fail and get cleaned up there, so the service's integration tests
//! can rely on it.
//!
//! Needs a running cluster: `eval "$(make -s cluster-up)"` first, which sets
//! KUBECONFIG. Each test works in a namespace of its own and deletes it.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{until, Step, TestNamespace};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

/// The label that kwok's pod-container-running-failed stage matches: a pod
/// carrying it fails with exit code 1 about a second after it starts running.
const FAIL_LABEL: &str = "pod-container-running-failed.stage.kwok.x-k8s.io";

async fn client() -> Client {
    let path = match std::env::var_os("KUBECONFIG") {
        Some(p) if !p.is_empty() => p,
        _ => panic!("KUBECONFIG is not set: run `eval \"$(make -s cluster-up)\"` first"),
    };
    let kubeconfig = Kubeconfig::read_from(&path).unwrap_or_else(|e| {
        panic!("cannot read KUBECONFIG={path:?} ({e}): run `eval \"$(make -s cluster-up)\"` first")
    });
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {path:?}: {e}"));
    Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client from {path:?}: {e}"))
}

/// Creates a fresh namespace, waits for its `default` ServiceAccount (pods
/// are refused before it exists), runs `body`, then deletes the namespace,
/// also when `body` panics (the guard's drop).
async fn with_namespace<F, Fut>(prefix: &str, body: F)
where
    F: FnOnce(Client, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let client = client().await;
    let ns = TestNamespace::create(
        &client,
        &format!("cp-{prefix}"),
        &[("gitfaas.test/suite", "control-plane")],
    )
    .await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    until(
        &format!("ServiceAccount default in {ns}"),
        Duration::from_secs(60),
        || async {
            match accounts.get_opt("default").await {
                Ok(Some(_)) => Step::Done(()),
                Ok(None) => Step::Wait("not created yet".into()),
                Err(e) => Step::Wait(format!("error: {e}")),
            }
        },
    )
    .await;
    body(client, ns.to_string()).await;
    ns.delete().await;
}

fn job(name: &str, extra_spec: serde_json::Value, pod_labels: serde_json::Value) -> Job {
    let mut spec = json!({
        "template": {
            "metadata": { "labels": pod_labels },
            "spec": {
                "restartPolicy": "Never",
                "containers": [{ "name": "main", "image": "busybox", "command": ["true"] }]
            }
        }
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap()
}

/// The status ("True", "False", ...) and reason of the Job's condition `type_`.
fn condition(job: &Job, type_: &str) -> Option<(String, Option<String>)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn describe(job: &Job) -> String {
    match &job.status {
        None => "no status".into(),
        Some(s) => format!(
            "active={:?} succeeded={:?} failed={:?} conditions={:?}",
            s.active,
            s.succeeded,
            s.failed,
            s.conditions
                .iter()
                .flatten()
                .map(|c| format!(
                    "{}={} ({})",
                    c.type_,
                    c.status,
                    c.reason.as_deref().unwrap_or("")
                ))
                .collect::<Vec<_>>()
        ),
    }
}

fn is_true(job: &Job, type_: &str) -> bool {
    matches!(condition(job, type_), Some((s, _)) if s == "True")
}

/// Waits until the Job has condition `type_`=True; fails at once if it gets
/// the opposite terminal condition instead.
async fn wait_for_condition(jobs: &Api<Job>, name: &str, type_: &str, timeout: Duration) -> Job {
    let opposite = if type_ == "Complete" {
        "Failed"
    } else {
        "Complete"
    };
    until(
        &format!("Job {name} condition {type_}=True"),
        timeout,
        || async {
            match jobs.get_opt(name).await {
                Ok(Some(job)) if is_true(&job, type_) => Step::Done(job),
                Ok(Some(job)) if is_true(&job, opposite) => {
                    Step::Fail(format!("got {opposite} instead: {}", describe(&job)))
                }
                Ok(Some(job)) => Step::Wait(describe(&job)),
                Ok(None) => Step::Fail("the Job disappeared".into()),
                Err(e) => Step::Wait(format!("error: {e}")),
            }
        },
    )
    .await
}

#[tokio::test]
async fn job_completes() {
    with_namespace("complete", |client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client, &ns);
        jobs.create(&PostParams::default(), &job("ok", json!({}), json!({})))
            .await
            .expect("create Job");
        let done = wait_for_condition(&jobs, "ok", "Complete", Duration::from_secs(90)).await;
        let status = done.status.expect("status");
        assert_eq!(status.succeeded, Some(1), "succeeded pods");
        assert!(
            status.failed.unwrap_or(0) == 0,
            "no pod should fail: {:?}",
            status.failed
        );
    })
    .await;
}

#[tokio::test]
async fn job_fails_after_backoff_limit() {
    with_namespace("fail", |client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        let failing = job(
            "bad",
            json!({ "backoffLimit": 1 }),
            json!({ FAIL_LABEL: "true" }),
        );
        jobs.create(&PostParams::default(), &failing)
            .await
            .expect("create Job");
        // backoffLimit 1: two pods fail (the second after the controller's
        // ~10 s back-off), then the Job is marked Failed.
        let done = wait_for_condition(&jobs, "bad", "Failed", Duration::from_secs(150)).await;
        let (_, reason) = condition(&done, "Failed").unwrap();
        assert_eq!(
            reason.as_deref(),
            Some("BackoffLimitExceeded"),
            "{}",
            describe(&done)
        );
        let status = done.status.as_ref().unwrap();
        assert_eq!(status.failed, Some(2), "failed pods: {}", describe(&done));
        assert_eq!(
            status.succeeded.unwrap_or(0),
            0,
            "succeeded pods: {}",
            describe(&done)
        );

        // The pods failed the way kwok's chaos stage makes them: exit code 1.
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        let list = pods
            .list(&ListParams::default().labels("batch.kubernetes.io/job-name=bad"))
            .await
            .expect("list pods");
        assert!(!list.items.is_empty(), "the Job's pods are gone");
        for pod in &list.items {
            let status = pod.status.as_ref().expect("pod status");
            assert_eq!(status.phase.as_deref(), Some("Failed"), "pod phase");
            let code = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
                .map(|t| t.exit_code)
                .next();
            assert_eq!(code, Some(1), "exit code of pod {:?}", pod.metadata.name);
        }
    })
    .await;
}

#[tokio::test]
async fn finished_job_is_deleted_after_ttl() {
    with_namespace("ttl", |client, ns| async move {
        let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
        // A few seconds of TTL so the test can see the Job complete first.
        jobs.create(
            &PostParams::default(),
            &job("ttl", json!({ "ttlSecondsAfterFinished": 3 }), json!({})),
        )
        .await
        .expect("create Job");
        wait_for_condition(&jobs, "ttl", "Complete", Duration::from_secs(90)).await;
        until(
            "Job ttl deleted by the TTL-after-finished controller",
            Duration::from_secs(90),
            || async {
                match jobs.get_opt("ttl").await {
                    Ok(None) => Step::Done(()),
                    Ok(Some(job)) => Step::Wait(format!(
                        "still there, deletionTimestamp={:?}, {}",
                        job.metadata.deletion_timestamp,
                        describe(&job)
                    )),
                    Err(e) => Step::Wait(format!("error: {e}")),
                }
            },
        )
        .await;
        // The TTL controller deletes in the foreground: the pods go too.
        let pods: Api<Pod> = Api::namespaced(client, &ns);
        until(
            "the pods of Job ttl deleted",
            Duration::from_secs(60),
            || async {
                match pods
                    .list(&ListParams::default().labels("batch.kubernetes.io/job-name=ttl"))
                    .await
                {
                    Ok(list) if list.items.is_empty() => Step::Done(()),
                    Ok(list) => Step::Wait(format!("{} pod(s) left", list.items.len())),
                    Err(e) => Step::Wait(format!("error: {e}")),
                }
            },
        )
        .await;
    })
    .await;
}
