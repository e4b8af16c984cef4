//! Case 8, flat in the runs in flight: the same batch of publishes (a
//! suspended Job each, so every run stays in flight and tracked) measured
//! with 0, then 1,000, then 10,000 runs already in flight, first with every
//! run in one namespace, then spread over ten (a topic per namespace,
//! published round robin). What grows with the runs in flight (a Job event
//! waking every waiter, a scan of every run) shows as throughput and gitfaas
//! CPU per publish falling from one level to the next; the ratio to the
//! first level is the row. Throughput is the publishes' rate over the rate
//! of bare creates of the same Job right before and after the batch: the
//! API server sets both, and its own spells (an etcd compaction, the Job
//! controller's work) slow a batch by a fifth now and then, whatever
//! gitfaas does. Each batch adds its own runs, so the last ends
//! with 10,000 plus a batch in flight, every one of them tracked
//! (`run::runs::MAX_TRACKED` is above that).
//!
//! Memory per tracked run: gitfaas' RSS with 10,000 in flight less its RSS
//! with none (after the warm-up), over 10,000.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::support::{
    cpu_seconds, create_namespace, delete_namespace, env_num, mb, publish, recorded_pid, status_kb,
    Bench, Res, Server, BENCH_JOB,
};

/// One batch: `n` publishes at `concurrency`; their rate, gitfaas' CPU per
/// publish, and the failures.
struct Batch {
    rate: f64,
    cpu_ms: f64,
    failed: u64,
    /// Bare creates/s around the batch (half before, half after).
    bare_rate: f64,
}

/// The topics a layout publishes to, round robin.
struct Topics(Vec<String>);

impl Topics {
    fn pick(&self, i: u64) -> &str {
        &self.0[(i % self.0.len() as u64) as usize]
    }
}

async fn batch(
    b: &Bench,
    url: &str,
    pid: u32,
    topics: &Topics,
    n: u64,
    concurrency: u64,
    query: &str,
) -> Batch {
    let cpu0 = cpu_seconds(pid, b.clk_tck);
    let (rate, failed) = pool(n, concurrency, |i| async move {
        matches!(
            publish(&b.http, url, topics.pick(i), query).await,
            Ok((202 | 200, _))
        )
    })
    .await;
    let cpu = cpu_seconds(pid, b.clk_tck) - cpu0;
    Batch {
        rate,
        cpu_ms: cpu * 1000.0 / n.max(1) as f64,
        failed,
        bare_rate: 0.0,
    }
}

/// Runs `op(0..n)` on `concurrency` workers; returns the rate (per second)
/// and how many `op` calls failed (returned false).
async fn pool<F, Fut>(n: u64, concurrency: u64, op: F) -> (f64, u64)
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let next = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            if !op(i).await {
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    futures::future::join_all(workers).await;
    (
        n as f64 / started.elapsed().as_secs_f64(),
        failed.into_inner(),
    )
}

/// `n` bare creates of a suspended Job like the topics' (no gitfaas label,
/// so no watch of gitfaas sees them) at `concurrency`, round robin over
/// `namespaces`: the API server's own rate at this level, which the
/// publishes' is compared with (a compaction, or the Job controller's own
/// work, slows both alike). Returns creates/s and the failures.
async fn bare_batch(b: &Bench, namespaces: &[String], n: u64, concurrency: u64) -> (f64, u64) {
    let apis: Vec<Api<Job>> = namespaces
        .iter()
        .map(|ns| Api::namespaced(b.kube.clone(), ns))
        .collect();
    let apis = &apis;
    pool(n, concurrency, |i| async move {
        let name = format!("bare-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let job: Result<Job, _> = serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": {"bench": "bare"}},
            "spec": {
                "suspend": true,
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 600,
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "env": [
                        {"name": "PAYLOAD", "value": "eyJvcmRlciI6IDEyMzQ1LCAiaXRlbXMiOiBbImEiLCAiYiIsICJjIl0sICJub3RlIjogImJlbmNobWFyayBwYXlsb2FkIn0="},
                        {"name": "FUNCTION_UID", "value": format!("f-{}", uuid::Uuid::new_v4())},
                        {"name": "VERSION", "value": "v0"}
                    ]}]
                }}
            }
        }));
        let api = &apis[(i % apis.len() as u64) as usize];
        match job {
            Ok(job) => api.create(&PostParams::default(), &job).await.is_ok(),
            Err(_) => false,
        }
    })
    .await
}

/// Waits until gitfaas used under 2 % of a core over a second, and the
/// API server, etcd and the controller manager under 10 % each (the Job
/// controller works through a fill's Jobs for seconds after gitfaas is
/// done with them, and a batch measured meanwhile shares the API server
/// with it), at most a minute; returns how long it took (seconds).
async fn settle(b: &Bench, pid: u32) -> f64 {
    let started = Instant::now();
    let cluster: Vec<u32> = ["kube-apiserver", "etcd", "kube-controller-manager"]
        .iter()
        .filter_map(|name| recorded_pid(&b.cluster_dir, name).ok())
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    while started.elapsed() < Duration::from_secs(60) {
        let before = cpu_seconds(pid, b.clk_tck);
        let cluster_before: Vec<f64> = cluster.iter().map(|p| cpu_seconds(*p, b.clk_tck)).collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cluster_idle = cluster
            .iter()
            .zip(&cluster_before)
            .all(|(p, before)| cpu_seconds(*p, b.clk_tck) - before < 0.10);
        if cpu_seconds(pid, b.clk_tck) - before < 0.02 && cluster_idle {
            break;
        }
    }
    started.elapsed().as_secs_f64()
}

/// The runs in flight each batch is measured with.
const LEVELS: [u64; 3] = [0, 1_000, 10_000];

pub(crate) async fn case_in_flight(b: &mut Bench) -> Res<()> {
    let layouts: Vec<usize> = match std::env::var("BENCH_IN_FLIGHT_NAMESPACES") {
        Ok(s) => s.split(',').filter_map(|l| l.trim().parse().ok()).collect(),
        Err(_) => vec![1, 10],
    };
    for namespaces in layouts {
        layout(b, namespaces.max(1)).await?;
    }
    Ok(())
}

/// One layout: every run in `namespaces` namespaces, on a fresh gitfaas.
async fn layout(b: &mut Bench, namespaces: usize) -> Res<()> {
    let n = env_num("BENCH_IN_FLIGHT_BATCH", 1_000);
    let concurrency = env_num("BENCH_CONCURRENCY", 64).min(32);
    let levels: Vec<u64> = match std::env::var("BENCH_IN_FLIGHT_LEVELS") {
        Ok(s) => s.split(',').filter_map(|l| l.trim().parse().ok()).collect(),
        Err(_) => LEVELS.to_vec(),
    };
    eprintln!(
        "bench: case 8: {n} publishes at {concurrency} concurrent with {levels:?} runs in flight over {namespaces} namespace(s)"
    );
    let mut names = Vec::with_capacity(namespaces);
    for _ in 0..namespaces {
        names.push(create_namespace(&b.kube, "8-inflight").await?);
    }
    let topics = Topics((0..namespaces).map(|i| format!("bench{i}")).collect());
    let mut config: Vec<_> = topics
        .0
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"name": t, "configs": [format!("bench/job{i}.yaml")]}))
        .collect();
    // The warm-up's: a ConfigMap, done once applied, so nothing of it stays
    // in flight.
    config.push(json!({"name": "warm", "configs": ["bench/warm.yaml"]}));
    let mut files = vec![
        ("config.json".to_string(), json!({ "topics": config }).to_string()),
        (
            "bench/warm.yaml".to_string(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: warm-{{RANDOM}}\ndata:\n  payload: \"{{PAYLOAD}}\"\n".to_string(),
        ),
    ];
    for (i, ns) in names.iter().enumerate() {
        let job = BENCH_JOB.replacen(
            "  name: bench-{{RANDOM}}\n",
            &format!("  name: bench-{{{{RANDOM}}}}\n  namespace: {ns}\n"),
            1,
        );
        files.push((format!("bench/job{i}.yaml"), job));
    }
    let label = format!("8-{namespaces}ns");
    let repo = b.work.path().join(format!("case{label}.git"));
    crate::support::bare_repo(&repo, &files)?;
    let cache = b.work.path().join(format!("cache{label}"));
    let mut server = Server::start(
        b,
        &format!("case{label}"),
        &[
            "--git-url",
            &repo.display().to_string(),
            "--cache-dir",
            &cache.display().to_string(),
            "--namespace",
            &names[0],
        ],
    )?;
    server.ready(&b.http, Duration::from_secs(60)).await?;
    let pid = server.pid();
    // Warm-up (connections, discovery, the store, the allocator) with the
    // same publish path: runs that end once applied, none stays in flight.
    let warm = Topics(vec!["warm".to_string()]);
    let _ = batch(b, &server.url, pid, &warm, n, concurrency, "").await;
    // And the bare creates' (the first ones into fresh namespaces ran a
    // fifth slower than any later ones).
    let _ = bare_batch(b, &names, n / 2, concurrency).await;
    let mut in_flight = 0u64;
    let mut results = Vec::new();
    let mut rss_at = Vec::new();
    for &level in &levels {
        if level > in_flight {
            let fill = batch(b, &server.url, pid, &topics, level - in_flight, 64, "").await;
            in_flight = level;
            eprintln!(
                "bench: case 8: filled to {level} in flight ({:.0}/s, {} failed)",
                fill.rate, fill.failed
            );
        }
        // Settle until gitfaas and the control plane are idle: the Job
        // controller works through the fill's Jobs for a while (each a
        // status update, an event on the watch), and that is the fill's
        // cost, not the batch's.
        let settled = settle(b, pid).await;
        eprintln!("bench: case 8: idle {settled:.1} s after the fill");
        let rss = status_kb(pid, "VmRSS");
        rss_at.push((in_flight, rss));
        let (before, bare_failed_before) = bare_batch(b, &names, n / 2, concurrency).await;
        let mut m = batch(b, &server.url, pid, &topics, n, concurrency, "").await;
        let (after, bare_failed_after) = bare_batch(b, &names, n / 2, concurrency).await;
        m.bare_rate =
            2.0 / (1.0 / before.max(f64::MIN_POSITIVE) + 1.0 / after.max(f64::MIN_POSITIVE));
        m.failed += bare_failed_before + bare_failed_after;
        eprintln!(
            "bench: case 8: {level} in flight over {namespaces} ns: {:.0} publishes/s ({:.0} bare creates/s around them), {:.2} ms CPU each, {} failed, RSS {:.1} MB",
            m.rate,
            m.bare_rate,
            m.cpu_ms,
            m.failed,
            mb(rss)
        );
        in_flight += n;
        results.push((level, m));
    }
    server.stop();
    for ns in &names {
        delete_namespace(&b.kube, ns).await;
    }

    let c = "8 runs in flight";
    let spread = if namespaces == 1 {
        "in one namespace".to_string()
    } else {
        format!("over {namespaces} namespaces")
    };
    let Some((_, first)) = results.first() else {
        return Ok(());
    };
    let share = |m: &Batch| m.rate / m.bare_rate.max(f64::MIN_POSITIVE);
    let (share0, cpu0) = (share(first), first.cpu_ms);
    for (level, m) in &results {
        let rate_ratio = share(m) / share0;
        let cpu_ratio = m.cpu_ms / cpu0;
        let ok = m.failed == 0 && rate_ratio >= 1.0 / 1.1 && cpu_ratio <= 1.1;
        b.row(
            c,
            &format!(
                "{n} publishes with {level} in flight {spread}: publishes/s ÷ bare creates/s around them, CPU per publish (each ÷ the first)"
            ),
            format!(
                "{:.0}/s ÷ {:.0}/s = {:.2} ({rate_ratio:.2}), {:.2} ms ({cpu_ratio:.2}){}",
                m.rate,
                m.bare_rate,
                share(m),
                m.cpu_ms,
                if m.failed > 0 {
                    format!(", {} failed", m.failed)
                } else {
                    String::new()
                }
            ),
            "ratios within 1.1",
            Some(ok),
        );
    }
    if let (Some(&(runs0, rss0)), Some(&(runs1, rss1))) = (rss_at.first(), rss_at.last()) {
        let added = runs1.saturating_sub(runs0);
        let per_run = rss1.saturating_sub(rss0) as f64 * 1024.0 / added.max(1) as f64;
        b.row(
            c,
            &format!(
                "gitfaas RSS with {runs0} / {runs1} in flight {spread}, bytes per tracked run"
            ),
            format!("{:.1} / {:.1} MB, {per_run:.0} B", mb(rss0), mb(rss1)),
            "",
            None,
        );
    }
    Ok(())
}
