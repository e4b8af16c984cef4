//! Case 7, queue dispatch: a topic limited to one run with
//! `"overflow": "queue"`, one run holding the slot (its Job suspended) and
//! one waiting. Each round deletes the running Job (the slot frees when
//! gitfaas sees it gone) and times from the API server's answer to the
//! delete (the Job is gone then) until the waiting run's Job is added, as
//! a watch of the namespace shows it, then queues the next. Against it, in
//! the same rounds: a bare create of the same object, the floor of any
//! dispatch. (Until issue 28 the time started before the delete call and
//! ended on a GET polled every millisecond: a round trip and a half of the
//! client's own on top of the dispatch.)

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, DeleteParams, ListParams, WatchEvent, WatchParams};
use kube::ResourceExt;
use serde_json::json;

use crate::support::{
    bare_create, delete_namespace, env_num, ms, pct, publish, sorted, Bench, JobBench, Res,
    BENCH_JOB,
};

pub(crate) async fn case_dispatch(b: &mut Bench) -> Res<()> {
    let n = env_num("BENCH_N", 200).min(100) as usize;
    eprintln!("bench: case 7: {n} dispatches from a queue of one topic limited to 1");
    let files = vec![
        (
            "config.json".to_string(),
            json!({"topics": [{"name": "bench", "configs": ["bench/job.yaml"], "maxConcurrent": 1, "overflow": "queue", "maxQueued": 10}]}).to_string(),
        ),
        ("bench/job.yaml".to_string(), BENCH_JOB.to_string()),
    ];
    let JobBench {
        ns,
        server,
        mut object,
        api,
    } = JobBench::start_with(b, "7", "dispatch", &files).await?;
    // Not one of the topic's: a bare Job must not count as one of its runs.
    if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
        labels.remove("gitfaas.io/topic");
    }
    let jobs: Api<Job> = Api::namespaced(b.kube.clone(), &ns);
    let name_of = |report: &serde_json::Value| -> Res<String> {
        report["applies"][0]["objects"][0]["name"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| format!("no object in {report}").into())
    };
    // The Jobs added to the namespace, with when the bench saw each.
    let listed = jobs.list_metadata(&ListParams::default()).await?;
    let version = listed.metadata.resource_version.unwrap_or_default();
    let mut events = jobs.watch(&WatchParams::default(), &version).await?.boxed();
    let (added_tx, mut added) = tokio::sync::mpsc::channel::<(String, Instant)>(4 * n + 16);
    let watching = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let WatchEvent::Added(job) = event {
                if added_tx
                    .send((job.name_any(), Instant::now()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    let (status, first) = publish(&b.http, &server.url, "bench", "").await?;
    if status != 202 {
        return Err(format!("publish: {status} {first}").into());
    }
    let mut running = name_of(&first)?;
    let (mut dispatch_ms, mut bare_ms) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut errors = 0usize;
    for _ in 0..n {
        let (status, queued) = publish(&b.http, &server.url, "bench", "").await?;
        if status != 202 || queued["status"] != "Queued" {
            errors += 1;
            eprintln!("bench: case 7: not queued: {status} {queued}");
            break;
        }
        let next = name_of(&queued)?;
        jobs.delete(&running, &DeleteParams::background()).await?;
        let t = Instant::now();
        let deadline = tokio::time::Instant::from_std(t + Duration::from_secs(30));
        let dispatched = loop {
            match tokio::time::timeout_at(deadline, added.recv()).await {
                Ok(Some((name, at))) if name == next => break Some(at),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break None,
            }
        };
        let Some(at) = dispatched else {
            errors += 1;
            eprintln!("bench: case 7: the queued run was not dispatched within 30 s");
            break;
        };
        dispatch_ms.push(ms(at.saturating_duration_since(t)));
        running = next;
        // The bare create of the same object under another name: what a
        // dispatch does for its run.
        let name = format!("bare-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        match bare_create(&api, &object, &name).await {
            Ok(took) => bare_ms.push(took),
            Err(e) => {
                errors += 1;
                eprintln!("bench: case 7: bare create: {e}");
            }
        }
    }
    watching.abort();
    server.stop();
    delete_namespace(&b.kube, &ns).await;
    let d = sorted(dispatch_ms);
    let a = sorted(bare_ms);
    let (d50, d99, a50, a99) = (pct(&d, 50.0), pct(&d, 99.0), pct(&a, 50.0), pct(&a, 99.0));
    eprintln!("bench: case 7: dispatch p50 {d50:.1} ms p99 {d99:.1} ms; bare create p50 {a50:.1} ms p99 {a99:.1} ms; errors {errors}");
    let c = "7 queue dispatch";
    b.row(
        c,
        &format!(
            "running Job deleted (the delete answered) → next queued Job added (a watch), p50 / p99 ({})",
            d.len()
        ),
        format!("{d50:.1} / {d99:.1} ms"),
        "",
        None,
    );
    b.row(
        c,
        "bare create (POST) of the same Job, p50 / p99",
        format!("{a50:.1} / {a99:.1} ms"),
        "",
        None,
    );
    b.row(
        c,
        "ratio dispatch / bare create, p50",
        format!("{:.1}", d50 / a50),
        "≤ 1.5",
        Some(d50 / a50 <= 1.5),
    );
    b.row(c, "errors", errors.to_string(), "0", Some(errors == 0));
    Ok(())
}
