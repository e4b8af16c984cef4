//! Case 1, publish overhead: N sequential publishes of a one-Job topic
//! through HTTP, interleaved with N bare creates (`POST`, what a publish
//! does since the ownership rules) and N bare server-side applies (the
//! comparison of old, kept for history) of the same object with the same
//! kube client configuration (`gitfaas::cluster::client`), in five rounds:
//! the ratios are the median of the rounds' (issue 28, goal 3).

use std::time::Instant;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::{
    bare_create, cpu_seconds, delete_namespace, env_num, median, ms, pct, publish, sorted, Bench,
    JobBench, Res,
};

/// Rounds the samples are split into; each ratio is the median of theirs.
const ROUNDS: usize = 5;

pub(crate) async fn case_publish_overhead(b: &mut Bench) -> Res<()> {
    let n = env_num("BENCH_N", 200) as usize;
    let warmup = 20;
    eprintln!(
        "bench: case 1: {n} publishes interleaved with {n} bare applies ({warmup} warm-up each)"
    );
    let JobBench {
        ns,
        server,
        object,
        api,
    } = JobBench::start(b, "1", "publish").await?;
    let params = PatchParams::apply("gitfaas").force();

    let mut pub_ms = Vec::with_capacity(n);
    let mut create_ms = Vec::with_capacity(n);
    let mut bare_ms = Vec::with_capacity(n);
    let mut errors = 0usize;
    let mut gf_cpu = 0.0;
    for i in 0..(warmup + n) {
        if i == warmup {
            gf_cpu = -cpu_seconds(server.pid(), b.clk_tck);
        }
        let one_publish = async || -> Result<f64, String> {
            let t = Instant::now();
            let (status, body) = publish(&b.http, &server.url, "bench", "").await?;
            let took = ms(t.elapsed());
            if status != 202 {
                return Err(format!("publish answered {status}: {body}"));
            }
            Ok(took)
        };
        let fresh = || format!("bare-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let one_create = async || -> Result<f64, String> {
            bare_create(&api, &object, &fresh())
                .await
                .map_err(|e| e.to_string())
        };
        let one_apply = async || -> Result<f64, String> {
            let mut obj = object.clone();
            let name = fresh();
            obj["metadata"]["name"] = json!(name);
            let t = Instant::now();
            api.patch(&name, &params, &Patch::Apply(&obj))
                .await
                .map_err(|e| e.to_string())?;
            Ok(ms(t.elapsed()))
        };
        // Rotate which goes first, so none always follows another.
        let (p, c, a) = match i % 3 {
            0 => {
                let p = one_publish().await;
                let c = one_create().await;
                (p, c, one_apply().await)
            }
            1 => {
                let c = one_create().await;
                let a = one_apply().await;
                (one_publish().await, c, a)
            }
            _ => {
                let a = one_apply().await;
                let p = one_publish().await;
                (p, one_create().await, a)
            }
        };
        match (p, c, a) {
            (Ok(p), Ok(c), Ok(a)) => {
                if i >= warmup {
                    pub_ms.push(p);
                    create_ms.push(c);
                    bare_ms.push(a);
                }
            }
            (p, c, a) => {
                errors += 1;
                eprintln!(
                    "bench: case 1 error: {:?} {:?} {:?}",
                    p.err(),
                    c.err(),
                    a.err()
                );
            }
        }
    }
    // Includes gitfaas' idle work (sync loop, trims) over the same time: small.
    gf_cpu += cpu_seconds(server.pid(), b.clk_tck);
    server.stop();
    delete_namespace(&b.kube, &ns).await;

    // The ratios of each round (consecutive samples, so each round saw the
    // same machine for all three), then their median.
    let round = pub_ms.len().div_ceil(ROUNDS).max(1);
    let ratios = |q: f64, base: &[f64]| -> Vec<f64> {
        pub_ms
            .chunks(round)
            .zip(base.chunks(round))
            .map(|(p, x)| {
                pct(&sorted(p.to_vec()), q) / pct(&sorted(x.to_vec()), q).max(f64::EPSILON)
            })
            .collect()
    };
    let (create50, create99) = (
        median(&ratios(50.0, &create_ms)),
        median(&ratios(99.0, &create_ms)),
    );
    let (apply50, apply99) = (
        median(&ratios(50.0, &bare_ms)),
        median(&ratios(99.0, &bare_ms)),
    );
    let p = sorted(pub_ms);
    let k = sorted(create_ms);
    let a = sorted(bare_ms);
    let (p50, p99, a50, a99) = (pct(&p, 50.0), pct(&p, 99.0), pct(&a, 50.0), pct(&a, 99.0));
    let (k50, k99) = (pct(&k, 50.0), pct(&k, 99.0));
    eprintln!("bench: case 1: publish p50 {p50:.2} ms p99 {p99:.2} ms; bare create p50 {k50:.2} ms p99 {k99:.2} ms; bare apply p50 {a50:.2} ms p99 {a99:.2} ms; errors {errors}");
    let c = "1 publish overhead";
    b.row(
        c,
        &format!("publish via HTTP, p50 / p99 ({} sequential)", p.len()),
        format!("{p50:.1} / {p99:.1} ms"),
        "",
        None,
    );
    b.row(
        c,
        &format!("bare create (POST), p50 / p99 ({}, interleaved)", k.len()),
        format!("{k50:.1} / {k99:.1} ms"),
        "",
        None,
    );
    b.row(
        c,
        &format!("ratio publish / bare create, p50 (median of {ROUNDS} rounds)"),
        format!("{create50:.2}"),
        "≤ 1.05",
        Some(create50 <= 1.05),
    );
    b.row(
        c,
        &format!("ratio publish / bare create, p99 (median of {ROUNDS} rounds)"),
        format!("{create99:.2}"),
        "≤ 1.10",
        Some(create99 <= 1.10),
    );
    b.row(
        c,
        &format!(
            "bare server-side apply, p50 / p99 ({}, interleaved; history)",
            a.len()
        ),
        format!("{a50:.1} / {a99:.1} ms"),
        "",
        None,
    );
    b.row(
        c,
        "ratio publish / bare apply, p50 / p99 (median of rounds; history)",
        format!("{apply50:.2} / {apply99:.2}"),
        "",
        None,
    );
    let cpu = gf_cpu * 1000.0 / p.len().max(1) as f64;
    b.row(
        c,
        "gitfaas CPU per publish, sequential (utime + stime / publishes)",
        format!("{cpu:.2} ms"),
        "≤ 1.0 ms",
        Some(cpu <= 1.0),
    );
    b.row(c, "errors", errors.to_string(), "0", Some(errors == 0));
    Ok(())
}
