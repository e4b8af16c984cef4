//! Case 8, flat in the runs in flight: the same batch of publishes (a
//! suspended Job each, so every run stays in flight and tracked) measured
//! with 50 (the warm-up's), then 1,000, then 9,500 runs already in flight, in one namespace.
//! Each batch adds its own runs, so the last one ends at 10,000: gitfaas'
//! bound on tracked runs (`run::runs::MAX_TRACKED`), every one of them
//! tracked. What grows with the runs in flight (a Job event waking every
//! waiter) shows as throughput and gitfaas CPU per publish falling from
//! one level to the next; the ratio to the first level is the row.
//!
//! Memory per tracked run: gitfaas' RSS after each level's fill, over the
//! runs added since the first measurement.

use std::time::{Duration, Instant};

use crate::support::{
    cpu_seconds, delete_namespace, env_num, mb, publish, status_kb, Bench, JobBench, Res,
};

/// One batch: `n` publishes at `concurrency`; their rate, gitfaas' CPU per
/// publish, and the failures.
struct Batch {
    rate: f64,
    cpu_ms: f64,
    failed: u64,
}

async fn batch(b: &Bench, url: &str, pid: u32, n: u64, concurrency: u64) -> Batch {
    let next = std::sync::atomic::AtomicU64::new(0);
    let failed = std::sync::atomic::AtomicU64::new(0);
    let cpu0 = cpu_seconds(pid, b.clk_tck);
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| async {
        while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
            match publish(&b.http, url, "bench", "").await {
                Ok((202, _)) => {}
                _ => {
                    failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    });
    futures::future::join_all(workers).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid, b.clk_tck) - cpu0;
    Batch {
        rate: n as f64 / seconds,
        cpu_ms: cpu * 1000.0 / n.max(1) as f64,
        failed: failed.into_inner(),
    }
}

pub(crate) async fn case_in_flight(b: &mut Bench) -> Res<()> {
    let n = env_num("BENCH_IN_FLIGHT_BATCH", 500);
    let concurrency = env_num("BENCH_CONCURRENCY", 64).min(32);
    // 50 are the warm-up's.
    let levels = [50u64, 1_000, 9_500];
    eprintln!(
        "bench: case 8: {n} publishes at {concurrency} concurrent with {levels:?} runs in flight"
    );
    let JobBench { ns, server, .. } = JobBench::start(b, "8", "inflight").await?;
    let pid = server.pid();
    // Warm-up (connections, discovery), counted in the runs in flight.
    let _ = batch(b, &server.url, pid, 50, concurrency).await;
    let mut in_flight = 50u64;
    let mut results = Vec::new();
    let mut rss_first = 0;
    let mut filled_at_first = 0;
    for level in levels {
        if level > in_flight {
            let fill = batch(b, &server.url, pid, level - in_flight, 64).await;
            in_flight = level;
            eprintln!(
                "bench: case 8: filled to {level} in flight ({:.0}/s, {} failed)",
                fill.rate, fill.failed
            );
        }
        // Settle: the fill's Job events reach the watch and its waiters.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let rss = status_kb(pid, "VmRSS");
        if results.is_empty() {
            rss_first = rss;
            filled_at_first = in_flight;
        }
        let m = batch(b, &server.url, pid, n, concurrency).await;
        eprintln!(
            "bench: case 8: {level} in flight: {:.0} publishes/s, {:.2} ms CPU each, {} failed, RSS {:.1} MB",
            m.rate,
            m.cpu_ms,
            m.failed,
            mb(rss)
        );
        in_flight += n;
        results.push((level, m, rss, in_flight));
    }
    server.stop();
    delete_namespace(&b.kube, &ns).await;

    let c = "8 runs in flight";
    let Some((_, first, _, _)) = results.first() else {
        return Ok(());
    };
    let (rate0, cpu0) = (first.rate, first.cpu_ms);
    for (level, m, _, _) in &results {
        let rate_ratio = m.rate / rate0;
        let cpu_ratio = m.cpu_ms / cpu0;
        let ok = m.failed == 0 && rate_ratio >= 1.0 / 1.1 && cpu_ratio <= 1.1;
        b.row(
            c,
            &format!(
                "{n} publishes with {level} in flight: publishes/s, CPU per publish (÷ the first)"
            ),
            format!(
                "{:.0}/s ({rate_ratio:.2}), {:.2} ms ({cpu_ratio:.2}){}",
                m.rate,
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
    if let Some((_, _, rss_last, _)) = results.last() {
        // The runs added between the first level's fill and the last's.
        let added = levels[levels.len() - 1] - filled_at_first;
        let per_run = (rss_last.saturating_sub(rss_first)) as f64 * 1024.0 / added.max(1) as f64;
        b.row(
            c,
            "gitfaas RSS with 50 / 9,500 in flight, bytes per tracked run",
            format!(
                "{:.1} / {:.1} MB, {per_run:.0} B",
                mb(rss_first),
                mb(*rss_last)
            ),
            "",
            None,
        );
    }
    Ok(())
}
