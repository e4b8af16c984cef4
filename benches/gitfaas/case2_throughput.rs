//! Case 2, throughput: 64 concurrent publishers, CPU of gitfaas vs
//! kube-apiserver (from /proc/<pid>/stat) in the same windows, alternated
//! with windows of bare applies at the same concurrency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};
use serde_json::Value;

use crate::support::{
    apiserver_metrics, bare_create, cpu_seconds, delete_namespace, env_num, mb, metric_sum, ms,
    pct, publish, recorded_pid, server_url, sorted, status_kb, Bench, JobBench, Res,
};

#[derive(Default)]
struct Window {
    ok: u64,
    latencies: Vec<f64>,
    statuses: BTreeMap<String, u64>,
    throttled: u64,
    seconds: f64,
}

async fn publish_window(
    http: &reqwest::Client,
    url: &str,
    concurrency: usize,
    length: Duration,
) -> Window {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let http = http.clone();
            let url = url.to_string();
            async move {
                let mut w = Window::default();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match publish(&http, &url, "bench", "").await {
                        Ok((202, _)) => {
                            w.ok += 1;
                            w.latencies.push(ms(t.elapsed()));
                        }
                        Ok((status, body)) => {
                            let text = body.to_string();
                            if text.contains("429") || text.contains("TooManyRequests") {
                                w.throttled += 1;
                            }
                            *w.statuses.entry(status.to_string()).or_default() += 1;
                        }
                        Err(e) => {
                            *w.statuses.entry(format!("transport: {e}")).or_default() += 1;
                        }
                    }
                }
                w
            }
        })
        .collect();
    let mut total = Window::default();
    for w in futures::future::join_all(tasks).await {
        total.ok += w.ok;
        total.latencies.extend(w.latencies);
        total.throttled += w.throttled;
        for (k, v) in w.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

async fn bare_window(
    api: &Api<DynamicObject>,
    object: &Value,
    concurrency: usize,
    length: Duration,
) -> Window {
    let deadline = Instant::now() + length;
    let started = Instant::now();
    let counter = Arc::new(AtomicU64::new(0));
    // Names unique across windows: a create of a name an earlier window
    // made is a 409, not a create.
    let window = uuid::Uuid::new_v4().simple().to_string();
    let window = &window[..8];
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let api = api.clone();
            let object = object.clone();
            let counter = Arc::clone(&counter);
            async move {
                let mut w = Window::default();
                while Instant::now() < deadline {
                    let name = format!("bare-{window}-{}", counter.fetch_add(1, Ordering::Relaxed));
                    match bare_create(&api, &object, &name).await {
                        Ok(took) => {
                            w.ok += 1;
                            w.latencies.push(took);
                        }
                        Err(kube::Error::Api(s)) => {
                            if s.code == 429 {
                                w.throttled += 1;
                            }
                            *w.statuses.entry(s.code.to_string()).or_default() += 1;
                        }
                        Err(e) => *w.statuses.entry(format!("transport: {e}")).or_default() += 1,
                    }
                }
                w
            }
        })
        .collect();
    let mut total = Window::default();
    for w in futures::future::join_all(tasks).await {
        total.ok += w.ok;
        total.latencies.extend(w.latencies);
        total.throttled += w.throttled;
        for (k, v) in w.statuses {
            *total.statuses.entry(k).or_default() += v;
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

fn merge(into: &mut Window, w: Window) {
    into.ok += w.ok;
    into.latencies.extend(w.latencies);
    into.throttled += w.throttled;
    into.seconds += w.seconds;
    for (k, v) in w.statuses {
        *into.statuses.entry(k).or_default() += v;
    }
}

pub(crate) async fn case_throughput(b: &mut Bench) -> Res<()> {
    let seconds = env_num("BENCH_SECONDS", 20);
    let concurrency = env_num("BENCH_CONCURRENCY", 64) as usize;
    let rounds = 2u32;
    let half = Duration::from_secs_f64(seconds as f64 / rounds as f64);
    eprintln!("bench: case 2: {concurrency} concurrent publishers for {seconds} s, alternated with bare creates ({rounds} rounds)");
    let JobBench {
        ns,
        server,
        object,
        api,
    } = JobBench::start(b, "2", "load").await?;

    let apiserver = recorded_pid(&b.cluster_dir, "kube-apiserver")?;
    let gf = server.pid();
    let server_url = server_url(&b.kubeconfig);
    let metrics_before = apiserver_metrics(&b.cluster_dir, &server_url);

    // Idle baseline of the API server (other clients: controllers, kwok).
    let idle = Duration::from_secs(5);
    let a0 = cpu_seconds(apiserver, b.clk_tck);
    tokio::time::sleep(idle).await;
    let idle_cores = (cpu_seconds(apiserver, b.clk_tck) - a0) / idle.as_secs_f64();

    // Warm-up: connections and discovery, outside the windows.
    let _ = publish_window(&b.http, &server.url, concurrency, Duration::from_secs(2)).await;
    let _ = bare_window(&api, &object, concurrency, Duration::from_secs(1)).await;

    let mut pubs = Window::default();
    let mut bare = Window::default();
    let (mut gf_cpu, mut api_cpu_pub, mut api_cpu_bare, mut self_cpu) = (0.0, 0.0, 0.0, 0.0);
    let me = std::process::id();
    for _ in 0..rounds {
        let (g0, a0, s0) = (
            cpu_seconds(gf, b.clk_tck),
            cpu_seconds(apiserver, b.clk_tck),
            cpu_seconds(me, b.clk_tck),
        );
        let w = publish_window(&b.http, &server.url, concurrency, half).await;
        gf_cpu += cpu_seconds(gf, b.clk_tck) - g0;
        api_cpu_pub += cpu_seconds(apiserver, b.clk_tck) - a0;
        self_cpu += cpu_seconds(me, b.clk_tck) - s0;
        merge(&mut pubs, w);
        let a0 = cpu_seconds(apiserver, b.clk_tck);
        let w = bare_window(&api, &object, concurrency, half).await;
        api_cpu_bare += cpu_seconds(apiserver, b.clk_tck) - a0;
        merge(&mut bare, w);
    }
    let rss_after = status_kb(gf, "VmRSS");
    let metrics_after = apiserver_metrics(&b.cluster_dir, &server_url);
    server.stop();
    delete_namespace(&b.kube, &ns).await;

    let d429 = metric_sum(&metrics_after, "apiserver_request_total", "code=\"429\"")
        - metric_sum(&metrics_before, "apiserver_request_total", "code=\"429\"");
    let drejected = metric_sum(
        &metrics_after,
        "apiserver_flowcontrol_rejected_requests_total",
        "",
    ) - metric_sum(
        &metrics_before,
        "apiserver_flowcontrol_rejected_requests_total",
        "",
    );
    let metrics_ok = !metrics_after.is_empty();

    let p = sorted(std::mem::take(&mut pubs.latencies));
    let a = sorted(std::mem::take(&mut bare.latencies));
    let pub_rate = pubs.ok as f64 / pubs.seconds;
    let bare_rate = bare.ok as f64 / bare.seconds;
    let pub_errors: u64 = pubs.statuses.values().sum();
    let bare_errors: u64 = bare.statuses.values().sum();
    let share = gf_cpu / api_cpu_pub;
    eprintln!(
        "bench: case 2: publishes {} in {:.1} s ({pub_rate:.0}/s), errors {:?}; bare {} in {:.1} s ({bare_rate:.0}/s), errors {:?}",
        pubs.ok, pubs.seconds, pubs.statuses, bare.ok, bare.seconds, bare.statuses
    );
    eprintln!(
        "bench: case 2: CPU in publish windows: gitfaas {gf_cpu:.2} s, kube-apiserver {api_cpu_pub:.2} s, bench client {self_cpu:.2} s; kube-apiserver in bare windows {api_cpu_bare:.2} s; idle API server {idle_cores:.2} cores"
    );
    let c = "2 throughput";
    b.row(
        c,
        &format!(
            "publishes/s, {concurrency} concurrent, {:.0} s",
            pubs.seconds
        ),
        format!("{pub_rate:.0}"),
        "",
        None,
    );
    b.row(
        c,
        &format!(
            "bare creates/s (POST), same concurrency, {:.0} s alternated",
            bare.seconds
        ),
        format!("{bare_rate:.0}"),
        "",
        None,
    );
    let ratio = pub_rate / bare_rate.max(f64::EPSILON);
    let cpu_per_publish = gf_cpu * 1000.0 / pubs.ok.max(1) as f64;
    b.row(
        c,
        "publishes/s ÷ bare creates/s",
        format!("{ratio:.2}"),
        "≥ 0.95",
        Some(ratio >= 0.95),
    );
    b.row(
        c,
        "publish latency p50 / p99",
        format!("{:.0} / {:.0} ms", pct(&p, 50.0), pct(&p, 99.0)),
        "",
        None,
    );
    b.row(
        c,
        "bare create latency p50 / p99",
        format!("{:.0} / {:.0} ms", pct(&a, 50.0), pct(&a, 99.0)),
        "",
        None,
    );
    b.row(
        c,
        "errors: publishes / bare creates",
        format!(
            "{pub_errors}{} / {bare_errors}",
            if pubs.statuses.is_empty() {
                String::new()
            } else {
                format!(" {:?}", pubs.statuses)
            }
        ),
        "0",
        // A failed bare create makes the comparison meaningless too.
        Some(pub_errors == 0 && bare_errors == 0),
    );
    b.row(
        c,
        "CPU gitfaas / kube-apiserver (same windows)",
        format!(
            "{gf_cpu:.1} s / {api_cpu_pub:.1} s = {:.0} %",
            share * 100.0
        ),
        "< 15 %",
        Some(share < 0.15),
    );
    b.row(
        c,
        "API server CPU per publish vs per bare create",
        format!(
            "{:.2} / {:.2} ms",
            api_cpu_pub * 1000.0 / pubs.ok.max(1) as f64,
            api_cpu_bare * 1000.0 / bare.ok.max(1) as f64
        ),
        "",
        None,
    );
    b.row(
        c,
        "gitfaas CPU per publish, 64 concurrent",
        format!("{cpu_per_publish:.2} ms"),
        "≤ 0.5 ms",
        Some(cpu_per_publish <= 0.5),
    );
    b.row(
        c,
        "429s: API server metrics / gitfaas answers / bare",
        if metrics_ok {
            format!(
                "{d429:.0} (APF rejected {drejected:.0}) / {} / {}",
                pubs.throttled, bare.throttled
            )
        } else {
            format!(
                "metrics unreadable / {} / {}",
                pubs.throttled, bare.throttled
            )
        },
        "0",
        Some(metrics_ok && d429 == 0.0 && pubs.throttled == 0),
    );
    b.row(
        c,
        "gitfaas RSS after the load",
        format!("{:.1} MB", mb(rss_after)),
        "< 60 MB",
        Some(mb(rss_after) < 60.0),
    );
    Ok(())
}
