//! Case 6, the history: with 100,000 stored runs, the 50 newest of one
//! topic (`GET /requests?topic=…&limit=50`), on both store backends. The
//! store is filled through its own API (publishing 100,000 runs would
//! measure the cluster), then gitfaas serves it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gitfaas::store::{Clock, Durability, RunQuery, RunState, Store};

use crate::support::{env_num, ms, pct, sorted, Bench, Res, Server};

const TTL: Duration = Duration::from_secs(2 * 86400);
/// Topics the other runs are spread over.
const TOPICS: u64 = 100;

pub(crate) async fn case_history(b: &mut Bench) -> Res<()> {
    let runs = env_num("BENCH_RUNS", 100_000);
    let reads = env_num("BENCH_N", 200) as usize;
    let data = b.work.path().join("data-case6");
    let store = Store::open_embedded(&data, Clock::system(), TTL).await?;
    fill(&store, runs).await?;
    let direct = direct_reads(&store, reads).await?;
    drop(store);
    let served = served_reads(b, "case6", &[], reads).await?;
    report(b, "embedded", runs, &direct, &served);

    match std::env::var("GITFAAS_BENCH_REDIS_URL") {
        Ok(url) => {
            let store = Store::connect_redis(&url, Clock::system(), TTL).await?;
            fill(&store, runs).await?;
            let direct = direct_reads(&store, reads).await?;
            let served = served_reads(b, "case6-redis", &["--redis-url", &url], reads).await?;
            report(b, "Redis", runs, &direct, &served);
        }
        Err(_) => eprintln!("bench: case 6: GITFAAS_BENCH_REDIS_URL unset, the Redis backend is skipped (scripts/bench.sh sets it)"),
    }
    Ok(())
}

/// `runs` runs: one in a hundred of topic `history`, the others spread
/// over [`TOPICS`] topics, in every state.
async fn fill(store: &Store, runs: u64) -> Res<()> {
    let started = Instant::now();
    let store = Arc::new(store.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let workers = 16;
    for w in 0..workers {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut i = w;
            while i < runs {
                let topic = match i % 100 {
                    0 => "history".to_string(),
                    n => format!("t{}", n % TOPICS),
                };
                let uid = format!("r-{}", uuid::Uuid::new_v4());
                let mut r = store.new_run(
                    &gitfaas::uid::RequestUid::parse(&uid).expect("a uid"),
                    &topic,
                    "bench",
                );
                r.state = RunState::ALL[(i % 5) as usize];
                store.save_run(&r, Durability::Soon).await?;
                i += workers;
            }
            Ok::<(), gitfaas::store::StoreError>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    store.flush().await?;
    eprintln!(
        "bench: case 6: {} runs stored ({} backend) in {:.1} s",
        runs,
        store.backend_name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The store call itself, `reads` times: milliseconds each, sorted.
async fn direct_reads(store: &Store, reads: usize) -> Res<Vec<f64>> {
    let query = RunQuery {
        topic: Some("history".into()),
        limit: 50,
        ..RunQuery::default()
    };
    let mut times = Vec::with_capacity(reads);
    for _ in 0..reads {
        let t = Instant::now();
        let page = store.runs(&query).await?;
        times.push(ms(t.elapsed()));
        if page.runs.len() != 50 {
            return Err(format!("expected 50 runs, got {}", page.runs.len()).into());
        }
    }
    Ok(sorted(times))
}

/// `GET /requests?topic=history&limit=50` from gitfaas serving the store.
async fn served_reads(b: &Bench, name: &str, args: &[&str], reads: usize) -> Res<Vec<f64>> {
    let functions = b.work.path().join(format!("functions-{name}"));
    std::fs::create_dir_all(&functions)?;
    std::fs::write(functions.join("config.json"), r#"{"topics": []}"#)?;
    let dir = functions.display().to_string();
    let mut all = vec!["--dir", dir.as_str()];
    all.extend_from_slice(args);
    let mut server = Server::start(b, name, &all)?;
    server.ready(&b.http, Duration::from_secs(60)).await?;
    let url = format!("{}/requests?topic=history&limit=50", server.url);
    let mut times = Vec::with_capacity(reads);
    for _ in 0..reads + 20 {
        let t = Instant::now();
        let r = b.http.get(&url).send().await?;
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await?;
        let elapsed = ms(t.elapsed());
        let n = body["runs"].as_array().map_or(0, Vec::len);
        if status != 200 || n != 50 {
            return Err(format!("GET /requests: {status}, {n} runs: {}", server.logs()).into());
        }
        times.push(elapsed);
    }
    // The first 20 warm the connection and the caches.
    Ok(sorted(times.split_off(20)))
}

fn report(b: &mut Bench, backend: &'static str, runs: u64, direct: &[f64], served: &[f64]) {
    let case = "6 history";
    b.row(
        case,
        &format!("{backend}: 50 newest of one topic among {runs} runs, GET /requests p50 / p99"),
        format!("{:.2} / {:.2} ms", pct(served, 50.0), pct(served, 99.0)),
        "< 5 ms p50",
        Some(pct(served, 50.0) < 5.0),
    );
    b.row(
        case,
        &format!("{backend}: the store call alone, p50 / p99"),
        format!("{:.2} / {:.2} ms", pct(direct, 50.0), pct(direct, 99.0)),
        "",
        None,
    );
}
