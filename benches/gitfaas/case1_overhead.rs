//! Case 1, publish overhead: N sequential publishes of a one-Job topic
//! through HTTP, interleaved with N bare server-side applies of the same
//! object with the same kube client configuration (`gitfaas::cluster::client`).

use std::time::Instant;

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::support::{
    cpu_seconds, delete_namespace, env_num, ms, pct, publish, sorted, Bench, JobBench, Res,
};

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
        let one_bare = async || -> Result<f64, String> {
            let mut obj = object.clone();
            let name = format!("bare-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
            obj["metadata"]["name"] = json!(name);
            let t = Instant::now();
            api.patch(&name, &params, &Patch::Apply(&obj))
                .await
                .map_err(|e| e.to_string())?;
            Ok(ms(t.elapsed()))
        };
        // Alternate which goes first, so neither always follows the other.
        let (p, a) = if i % 2 == 0 {
            let p = one_publish().await;
            (p, one_bare().await)
        } else {
            let a = one_bare().await;
            (one_publish().await, a)
        };
        match (p, a) {
            (Ok(p), Ok(a)) => {
                if i >= warmup {
                    pub_ms.push(p);
                    bare_ms.push(a);
                }
            }
            (p, a) => {
                errors += 1;
                eprintln!("bench: case 1 error: {:?} {:?}", p.err(), a.err());
            }
        }
    }
    // Includes gitfaas' idle work (sync loop, trims) over the same time: small.
    gf_cpu += cpu_seconds(server.pid(), b.clk_tck);
    server.stop();
    delete_namespace(&b.kube, &ns).await;

    let p = sorted(pub_ms);
    let a = sorted(bare_ms);
    let (p50, p99, a50, a99) = (pct(&p, 50.0), pct(&p, 99.0), pct(&a, 50.0), pct(&a, 99.0));
    eprintln!("bench: case 1: publish p50 {p50:.2} ms p99 {p99:.2} ms; bare p50 {a50:.2} ms p99 {a99:.2} ms; errors {errors}");
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
        &format!(
            "bare server-side apply, p50 / p99 ({}, interleaved)",
            a.len()
        ),
        format!("{a50:.1} / {a99:.1} ms"),
        "",
        None,
    );
    b.row(
        c,
        "ratio publish / bare, p50",
        format!("{:.2}", p50 / a50),
        "≤ 1.2",
        Some(p50 / a50 <= 1.2),
    );
    b.row(
        c,
        "ratio publish / bare, p99",
        format!("{:.2}", p99 / a99),
        "",
        None,
    );
    b.row(
        c,
        "gitfaas CPU per publish (utime + stime / publishes)",
        format!("{:.2} ms", gf_cpu * 1000.0 / p.len().max(1) as f64),
        "",
        None,
    );
    b.row(c, "errors", errors.to_string(), "0", Some(errors == 0));
    Ok(())
}
