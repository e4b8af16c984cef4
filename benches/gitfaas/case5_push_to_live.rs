//! Case 5, push to live: push to a bare repo, `GET /refresh`, publish.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use serde_json::{json, Value};

use crate::support::{
    bare_repo, commit_files, create_namespace, delete_namespace, env_num, ms, one_topic_files, pct,
    publish, sorted, Bench, Res, Server, BENCH_JOB,
};

pub(crate) async fn case_push_to_live(b: &mut Bench) -> Res<()> {
    let pushes = env_num("BENCH_PUSHES", 10) as usize;
    eprintln!("bench: case 5: {pushes} pushes, each followed by GET /refresh and a publish");
    let ns = create_namespace(&b.kube, "push").await?;
    let remote = b.work.path().join("push.git");
    bare_repo(&remote, &one_topic_files(BENCH_JOB))?;
    // A developer's clone that pushes to the bare repository.
    let clone_dir = b.work.path().join("push-clone");
    let clone = git2::Repository::clone(&remote.display().to_string(), &clone_dir)?;
    let cache = b.work.path().join("cache5");
    let mut server = Server::start(
        b,
        "case5",
        &[
            "--git-url",
            &remote.display().to_string(),
            "--cache-dir",
            &cache.display().to_string(),
            "--namespace",
            &ns,
        ],
    )?;
    server.ready(&b.http, Duration::from_secs(60)).await?;

    let mut push_ms = Vec::new();
    let mut refresh_ms = Vec::new();
    let mut live_ms = Vec::new();
    for i in 1..=pushes {
        let job = BENCH_JOB.replace("value: \"v0\"", &format!("value: \"v{i}\""));
        let head = clone.head()?.peel_to_commit()?.id();
        let sha = commit_files(&clone, &one_topic_files(&job), &format!("v{i}"), Some(head))?;
        let t = Instant::now();
        clone
            .find_remote("origin")?
            .push(&["refs/heads/main:refs/heads/main"], None)?;
        push_ms.push(ms(t.elapsed()));
        let pushed = Instant::now();
        let r = b.http.get(format!("{}/refresh", server.url)).send().await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await?;
        refresh_ms.push(ms(pushed.elapsed()));
        if status != 200 || body["commit"] != json!(sha) {
            return Err(format!("refresh after push {i}: {status} {body}").into());
        }
        let (status, report) = publish(&b.http, &server.url, "bench", "").await?;
        live_ms.push(ms(pushed.elapsed()));
        if status != 202 || report["commit"] != json!(sha) {
            return Err(format!("publish after push {i}: {status} {report}").into());
        }
        if i == pushes {
            // The Job really carries the new template's value.
            let name = report["applies"][0]["objects"][0]["name"]
                .as_str()
                .unwrap_or("");
            let job: Job = Api::namespaced(b.kube.clone(), &ns).get(name).await?;
            let v = serde_json::to_value(&job)?;
            let version = v["spec"]["template"]["spec"]["containers"][0]["env"]
                .as_array()
                .and_then(|e| e.iter().find(|x| x["name"] == "VERSION"))
                .map(|x| x["value"].clone());
            if version != Some(json!(format!("v{i}"))) {
                return Err(format!("job {name} has VERSION {version:?}, expected v{i}").into());
            }
        }
    }
    server.stop();
    delete_namespace(&b.kube, &ns).await;
    let (push_ms, refresh_ms, live_ms) = (sorted(push_ms), sorted(refresh_ms), sorted(live_ms));
    eprintln!("bench: case 5: push {push_ms:?} refresh {refresh_ms:?} live {live_ms:?}");
    let c = "5 push to live";
    b.row(
        c,
        &format!("push done → `GET /refresh` answered, median / max of {pushes}"),
        format!(
            "{:.1} / {:.1} ms",
            pct(&refresh_ms, 50.0),
            pct(&refresh_ms, 100.0)
        ),
        "",
        None,
    );
    b.row(
        c,
        "push done → a publish applied from the new commit, median / max",
        format!(
            "{:.1} / {:.1} ms",
            pct(&live_ms, 50.0),
            pct(&live_ms, 100.0)
        ),
        "< 1 s (with a webhook)",
        Some(pct(&live_ms, 100.0) < 1000.0),
    );
    b.row(
        c,
        "without `/refresh` or the webhook",
        "up to `--poll-interval` (60 s default)".into(),
        "",
        None,
    );
    Ok(())
}
