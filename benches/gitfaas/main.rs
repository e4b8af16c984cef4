//! `make bench`: gitfaas against the local control plane (see BENCHMARKS.md).
//!
//! Prints one markdown table on stdout; progress and details go to stderr.
//! Every ratio is measured against the bare operation in the same run, because
//! the machine (2 cores) is shared with compilers and other test clusters.
//!
//! Cases (design.md §11):
//! 1. publish overhead: N sequential publishes of a one-Job topic through HTTP,
//!    interleaved with N bare server-side applies of the same object with the
//!    same kube client configuration (`gitfaas::cluster::client`).
//! 2. throughput: 64 concurrent publishers, CPU of gitfaas vs kube-apiserver
//!    (from /proc/<pid>/stat) in the same windows, alternated with windows of
//!    bare applies at the same concurrency.
//! 3. a 1,000-topic × 10-manifest repository: cold and unchanged sync, RSS.
//! 4. idle RSS serving `examples/hello`.
//! 5. push to live: push to a bare repo, `GET /refresh`, publish.
//! 6. the history: `GET /requests` among 100,000 runs, on both backends.
//! 7. queue dispatch: a slot freeing → the next queued run's Job existing.
//! 8. runs in flight: the same batch of publishes with 50, 1,000 and 9,500
//!    runs already in flight (tracked, suspended Jobs): the ratios.
//!
//! Needs KUBECONFIG (and GITFAAS_CLUSTER_DIR for the API server's pid), as set
//! by scripts/bench.sh. Settings: BENCH_CASES (e.g. `1,3`), BENCH_N,
//! BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_TOPICS, BENCH_FILES_PER_TOPIC,
//! BENCH_PUSHES, BENCH_RUNS (case 6), BENCH_IN_FLIGHT_BATCH,
//! BENCH_IN_FLIGHT_LEVELS (`0,1000,10000`), BENCH_IN_FLIGHT_NAMESPACES (`1,10`)
//! (case 8), and BENCH_WRAP: a command gitfaas runs under (a profiler, e.g.
//! `env LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so
//! DUMP_HEAPTRACK_OUTPUT=/tmp/ht.raw`; its figures then measure it too), and
//! BENCH_GITFAAS: the gitfaas binary to serve with (an earlier commit's
//! build, for a before and after with the same bench; the bench's own build
//! by default). Each case uses its own namespace and deletes it at the end.
//!
//! Layout: `support` holds what the cases share (settings, the table,
//! measurement, namespaces, git repositories, the gitfaas child process,
//! the one-Job topic); each case is a module of its own.

// Free ports and `git daemon`, as the tests have them.
#[path = "../../tests/common/mod.rs"]
mod common;
mod support;

mod case1_overhead;
mod case2_throughput;
mod case3_big_repo;
mod case4_idle_memory;
mod case5_push_to_live;
mod case6_history;
mod case7_dispatch;
mod case8_in_flight;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use case1_overhead::case_publish_overhead;
use case2_throughput::case_throughput;
use case3_big_repo::{case_big_repo, child_sync, SYNC_CHILD};
use case4_idle_memory::case_idle_memory;
use case5_push_to_live::case_push_to_live;
use case6_history::case_history;
use case7_dispatch::case_dispatch;
use case8_in_flight::case_in_flight;
use support::{remove_leftover_namespaces, Bench, Res};

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` builds this
    // target (so it keeps compiling) and runs it without: then measure nothing.
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench: skipped (run `make bench` or `cargo bench --bench gitfaas`)");
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Ok(url) = std::env::var(SYNC_CHILD) {
        // Case 3's syncs, each in a fresh process (see `cold_and_unchanged`).
        match rt.block_on(child_sync(&url)) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("bench: sync child failed: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    match rt.block_on(run()) {
        Ok((table, missed)) => {
            print!("{table}");
            let _ = std::io::stdout().flush();
            // A missed target fails the run, so whoever runs `make bench`
            // sees a regression (issue 28, goal 9).
            if !missed.is_empty() {
                eprintln!("bench: {} target(s) missed:", missed.len());
                for m in &missed {
                    eprintln!("  - {m}");
                }
                std::process::exit(3);
            }
        }
        Err(e) => {
            eprintln!("bench: failed: {e}");
            std::process::exit(1);
        }
    }
}

/// Every case, in order; `make bench` runs them all. BENCH_CASES picks
/// some while working on one; the table lists those left out as not run,
/// so a partial table is never taken for a whole one.
const CASES: [&str; 8] = ["1", "2", "3", "4", "5", "6", "7", "8"];

async fn run() -> Res<(String, Vec<String>)> {
    let kubeconfig = PathBuf::from(std::env::var("KUBECONFIG").map_err(|_| {
        "KUBECONFIG is not set: run `make bench` (it starts the local control plane)"
    })?);
    let cluster_dir = std::env::var("GITFAAS_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("gitfaas-cluster"));
    let kube = gitfaas::cluster::client(Some(&kubeconfig), Duration::from_secs(10))
        .await?
        .0
        .calls;
    let clk_tck = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let mut b = Bench {
        kubeconfig,
        cluster_dir,
        kube,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?,
        work: tempfile::Builder::new()
            .prefix("gitfaas-bench-")
            .tempdir()?,
        clk_tck,
        rows: Vec::new(),
    };
    let cases = std::env::var("BENCH_CASES").unwrap_or_else(|_| CASES.join(","));
    let wanted = |c: &str| cases.split(',').any(|x| x.trim() == c);
    for c in cases.split(',').map(str::trim) {
        if !CASES.contains(&c) {
            return Err(format!("BENCH_CASES: no case `{c}` (cases: {})", CASES.join(",")).into());
        }
    }
    remove_leftover_namespaces(&b.kube).await;
    if wanted("1") {
        case_publish_overhead(&mut b).await?;
    }
    if wanted("2") {
        case_throughput(&mut b).await?;
    }
    if wanted("3") {
        case_big_repo(&mut b).await?;
    }
    if wanted("4") {
        case_idle_memory(&mut b).await?;
    }
    if wanted("5") {
        case_push_to_live(&mut b).await?;
    }
    if wanted("6") {
        case_history(&mut b).await?;
    }
    if wanted("7") {
        case_dispatch(&mut b).await?;
    }
    if wanted("8") {
        case_in_flight(&mut b).await?;
    }
    for c in CASES.iter().filter(|c| !wanted(c)) {
        b.row(
            "not run",
            &format!("case {c} (BENCH_CASES={cases})"),
            "—".into(),
            "",
            None,
        );
    }
    Ok((b.table(), b.missed()))
}
