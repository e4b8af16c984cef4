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
//!
//! Needs KUBECONFIG (and GITFAAS_CLUSTER_DIR for the API server's pid), as set
//! by scripts/bench.sh. Settings: BENCH_CASES (e.g. `1,3`), BENCH_N,
//! BENCH_SECONDS, BENCH_CONCURRENCY, BENCH_TOPICS, BENCH_FILES_PER_TOPIC,
//! BENCH_PUSHES. Each case uses its own namespace and deletes it at the end.

// Free ports and `git daemon`, as the tests have them.
#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{free_port, GitDaemon};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{json, Value};

/// The bench's one-Job topic. Suspended, so the Job controller creates no
/// pods: the API server's work is the apply itself (plus the Job
/// controller's status update), which makes the CPU comparison strict.
const BENCH_JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: bench-{{RANDOM}}
spec:
  suspend: true
  backoffLimit: 0
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox:1.36
          env:
            - name: PAYLOAD
              value: "{{PAYLOAD}}"
            - name: FUNCTION_UID
              value: "{{FUNCTION_UID}}"
            - name: GITFAAS_URL
              value: "{{GITFAAS_URL}}"
            - name: VERSION
              value: "v0"
"#;

const BODY: &str = r#"{"order": 12345, "items": ["a", "b", "c"], "note": "benchmark payload"}"#;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

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
        Ok(table) => {
            print!("{table}");
            let _ = std::io::stdout().flush();
        }
        Err(e) => {
            eprintln!("bench: failed: {e}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------- settings --

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

struct Bench {
    kubeconfig: PathBuf,
    cluster_dir: PathBuf,
    kube: kube::Client,
    http: reqwest::Client,
    work: tempfile::TempDir,
    clk_tck: f64,
    rows: Vec<Row>,
}

struct Row {
    case: &'static str,
    metric: String,
    value: String,
    target: String,
    verdict: &'static str,
}

impl Bench {
    fn row(
        &mut self,
        case: &'static str,
        metric: &str,
        value: String,
        target: &str,
        ok: Option<bool>,
    ) {
        self.rows.push(Row {
            case,
            metric: metric.to_string(),
            value,
            target: target.to_string(),
            verdict: match ok {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            },
        });
    }

    fn table(&self) -> String {
        let mut s = String::from(
            "| case | metric | result | target | |\n| --- | --- | --- | --- | --- |\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.case, r.metric, r.value, r.target, r.verdict
            ));
        }
        s
    }
}

async fn run() -> Res<String> {
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
    let cases = std::env::var("BENCH_CASES").unwrap_or_else(|_| "1,2,3,4,5".into());
    let wanted = |c: &str| cases.split(',').any(|x| x.trim() == c);
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
    Ok(b.table())
}

// ------------------------------------------------------------ measurement --

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32, clk_tck: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After "pid (comm)": state is field 3, utime 14, stime 15.
    (ticks(11) + ticks(12)) / clk_tck
}

/// Busy and total jiffies of the whole machine, from `/proc/stat`.
fn machine_jiffies() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: f64 = f.iter().take(8).sum();
    // idle and iowait are fields 4 and 5.
    let idle = f.get(3).copied().unwrap_or(0.0) + f.get(4).copied().unwrap_or(0.0);
    (total - idle, total)
}

/// Waits (up to 60 s) until the machine is busy less than a quarter of the
/// time over one second: the control plane at rest.
async fn wait_for_quiet_machine() {
    let started = Instant::now();
    loop {
        let (b0, t0) = machine_jiffies();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (b1, t1) = machine_jiffies();
        let busy = if t1 > t0 { (b1 - b0) / (t1 - t0) } else { 0.0 };
        if busy < 0.25 || started.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "bench: machine {:.0} % busy after {:.0} s of waiting",
                busy * 100.0,
                started.elapsed().as_secs_f64()
            );
            return;
        }
    }
}

/// A `/proc/<pid>/status` field in kB (VmRSS, VmHWM).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn recorded_pid(cluster_dir: &Path, name: &str) -> Res<u32> {
    let pids = std::fs::read_to_string(cluster_dir.join("pids")).map_err(|e| {
        format!(
            "{}/pids: {e} (set GITFAAS_CLUSTER_DIR)",
            cluster_dir.display()
        )
    })?;
    pids.lines()
        .rev()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next()? == name).then(|| f.next()?.parse().ok())?
        })
        .next()
        .ok_or_else(|| format!("no {name} in {}/pids", cluster_dir.display()).into())
}

/// Sum of the samples of a Prometheus metric whose labels contain `label`.
fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The API server's /metrics, read with the admin certificate of the local cluster.
fn apiserver_metrics(cluster_dir: &Path, kubeconfig_server: &str) -> String {
    let pki = cluster_dir.join("pki");
    Command::new("curl")
        .args(["-fsS", "--max-time", "20", "--cacert"])
        .arg(pki.join("ca.crt"))
        .arg("--cert")
        .arg(pki.join("admin.crt"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg(format!("{kubeconfig_server}/metrics"))
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default()
}

fn server_url(kubeconfig: &Path) -> String {
    std::fs::read_to_string(kubeconfig)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("server:")
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------- kubernetes --

async fn create_namespace(kube: &kube::Client, case: &str) -> Res<String> {
    let name = format!(
        "gfbench-{case}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let api: Api<Namespace> = Api::all(kube.clone());
    let ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"gitfaas.io/bench": "true"}}
    }))?;
    api.create(&Default::default(), &ns).await?;
    Ok(name)
}

/// Deletes the namespace and waits (up to 3 minutes) until it is gone, so the
/// next case does not share the API server with the namespace controller.
async fn delete_namespace(kube: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(kube.clone());
    let started = Instant::now();
    if let Err(e) = api.delete(name, &DeleteParams::background()).await {
        eprintln!("bench: deleting namespace {name}: {e}");
        return;
    }
    while started.elapsed() < Duration::from_secs(180) {
        match api.get_opt(name).await {
            Ok(None) => {
                eprintln!(
                    "bench: namespace {name} deleted in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    eprintln!("bench: namespace {name} still terminating after 180 s; going on");
}

async fn remove_leftover_namespaces(kube: &kube::Client) {
    let api: Api<Namespace> = Api::all(kube.clone());
    let Ok(list) = api
        .list(&ListParams::default().labels("gitfaas.io/bench=true"))
        .await
    else {
        return;
    };
    for ns in list.items {
        if let Some(name) = ns.metadata.name {
            eprintln!("bench: removing namespace {name} left by an earlier run");
            delete_namespace(kube, &name).await;
        }
    }
}

// ---------------------------------------------------------------- git repo --

/// A bare repository with `files` committed on `main`.
fn bare_repo(path: &Path, files: &[(String, String)]) -> Res<String> {
    let repo = git2::Repository::init_bare(path)?;
    commit_files(&repo, files, "initial", None)
}

/// Commits `files` (path → content, folders allowed one level deep or more)
/// straight into the object database and moves refs/heads/main.
fn commit_files(
    repo: &git2::Repository,
    files: &[(String, String)],
    message: &str,
    parent: Option<git2::Oid>,
) -> Res<String> {
    // Build nested trees bottom-up from a path map.
    #[derive(Default)]
    struct Dir {
        files: BTreeMap<String, git2::Oid>,
        dirs: BTreeMap<String, Dir>,
    }
    fn write(repo: &git2::Repository, d: &Dir) -> Result<git2::Oid, git2::Error> {
        let mut tb = repo.treebuilder(None)?;
        for (name, oid) in &d.files {
            tb.insert(name, *oid, 0o100644)?;
        }
        for (name, sub) in &d.dirs {
            let oid = write(repo, sub)?;
            tb.insert(name, oid, 0o040000)?;
        }
        tb.write()
    }
    let mut root = Dir::default();
    for (path, text) in files {
        let oid = repo.blob(text.as_bytes())?;
        let mut parts: Vec<&str> = path.split('/').collect();
        let file = parts.pop().ok_or("empty path")?;
        let mut d = &mut root;
        for p in parts {
            d = d.dirs.entry(p.to_string()).or_default();
        }
        d.files.insert(file.to_string(), oid);
    }
    let tree = repo.find_tree(write(repo, &root)?)?;
    let sig = git2::Signature::now("bench", "bench@example.com")?;
    let parents: Vec<git2::Commit> = parent
        .map(|p| repo.find_commit(p))
        .transpose()?
        .into_iter()
        .collect();
    let parent_refs: Vec<&git2::Commit> = parents.iter().collect();
    let oid = repo.commit(None, &sig, &sig, message, &tree, &parent_refs)?;
    repo.reference("refs/heads/main", oid, true, message)?;
    repo.set_head("refs/heads/main")?;
    Ok(oid.to_string())
}

fn one_topic_files(job: &str) -> Vec<(String, String)> {
    vec![
        (
            "config.json".into(),
            json!({"topics": [{"name": "bench", "configs": ["bench/job.yaml"]}]}).to_string(),
        ),
        ("bench/job.yaml".into(), job.to_string()),
    ]
}

// ---------------------------------------------------------------- gitfaas --

/// The release gitfaas binary as a child process.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(b: &Bench, name: &str, args: &[&str]) -> Res<Server> {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = b.work.path().join(format!("gitfaas-{name}.log"));
        let data = b.work.path().join(format!("data-{name}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gitfaas"));
        cmd.arg("serve")
            .args(args)
            .args(["--listen", &listen, "--poll-interval", "1h"])
            .arg("--kubeconfig")
            .arg(&b.kubeconfig)
            .env("GITFAAS_DATA_DIR", &data)
            .env_remove("GIT_URL")
            .env_remove("GITFAAS_DIR")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?);
        let child = cmd.spawn()?;
        Ok(Server {
            child,
            url: format!("http://{listen}"),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until /readyz answers 200 (snapshot loaded, API server reachable).
    async fn ready(&mut self, http: &reqwest::Client, timeout: Duration) -> Res<Duration> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!(
                    "gitfaas exited ({status}) before it was ready: {}",
                    self.logs()
                )
                .into());
            }
            if let Ok(r) = http.get(format!("{}/readyz", self.url)).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(started.elapsed());
                }
            }
            if started.elapsed() > timeout {
                return Err(format!("gitfaas not ready after {timeout:?}: {}", self.logs()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for p in [self.log.clone(), self.log.with_extension("err")] {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        s
    }

    /// SIGTERM, then up to 10 s to exit, then SIGKILL.
    fn stop(mut self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn publish(
    http: &reqwest::Client,
    url: &str,
    topic: &str,
    query: &str,
) -> Result<(u16, Value), String> {
    let resp = http
        .post(format!("{url}/publish/{topic}{query}"))
        .header("content-type", "application/json")
        .body(BODY)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.map_err(|e| e.to_string())?;
    Ok((status, body))
}

// ------------------------------------------------------------------ case 1 --

/// Cases 1 and 2: gitfaas serving the one-Job bench topic in a namespace of
/// its own, the exact object it applies (from a dry run, namespace set) and
/// the bare apply's API, with the client configuration gitfaas builds.
struct JobBench {
    ns: String,
    server: Server,
    object: Value,
    api: Api<DynamicObject>,
}

impl JobBench {
    async fn start(b: &Bench, case: &str, ns_label: &str) -> Res<JobBench> {
        let ns = create_namespace(&b.kube, ns_label).await?;
        let repo = b.work.path().join(format!("case{case}.git"));
        bare_repo(&repo, &one_topic_files(BENCH_JOB))?;
        let cache = b.work.path().join(format!("cache{case}"));
        let mut server = Server::start(
            b,
            &format!("case{case}"),
            &[
                "--git-url",
                &repo.display().to_string(),
                "--cache-dir",
                &cache.display().to_string(),
                "--namespace",
                &ns,
            ],
        )?;
        server.ready(&b.http, Duration::from_secs(60)).await?;
        // The exact object gitfaas applies (dry run), re-applied under other names.
        let (status, report) = publish(&b.http, &server.url, "bench", "?dryRun=true").await?;
        if status != 200 {
            return Err(format!("dry run publish: {status} {report}").into());
        }
        let mut object = report["applies"][0]["rendered"][0].clone();
        if !object.is_object() {
            return Err(format!("no rendered object in {report}").into());
        }
        object["metadata"]["namespace"] = json!(ns);
        let client = gitfaas::cluster::client(Some(&b.kubeconfig), Duration::from_secs(5))
            .await?
            .0
            .calls;
        let api = Api::namespaced_with(client, &ns, &ApiResource::erase::<Job>(&()));
        Ok(JobBench {
            ns,
            server,
            object,
            api,
        })
    }
}

async fn case_publish_overhead(b: &mut Bench) -> Res<()> {
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

// ------------------------------------------------------------------ case 2 --

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
    let params = PatchParams::apply("gitfaas").force();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let api = api.clone();
            let object = object.clone();
            let counter = Arc::clone(&counter);
            let params = params.clone();
            async move {
                let mut w = Window::default();
                while Instant::now() < deadline {
                    let mut obj = object.clone();
                    let name = format!("bare-{}", counter.fetch_add(1, Ordering::Relaxed));
                    obj["metadata"]["name"] = json!(name);
                    let t = Instant::now();
                    match api.patch(&name, &params, &Patch::Apply(&obj)).await {
                        Ok(_) => {
                            w.ok += 1;
                            w.latencies.push(ms(t.elapsed()));
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

async fn case_throughput(b: &mut Bench) -> Res<()> {
    let seconds = env_num("BENCH_SECONDS", 20);
    let concurrency = env_num("BENCH_CONCURRENCY", 64) as usize;
    let rounds = 2u32;
    let half = Duration::from_secs_f64(seconds as f64 / rounds as f64);
    eprintln!("bench: case 2: {concurrency} concurrent publishers for {seconds} s, alternated with bare applies ({rounds} rounds)");
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
            "bare applies/s, same concurrency, {:.0} s alternated",
            bare.seconds
        ),
        format!("{bare_rate:.0}"),
        "",
        None,
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
        "bare apply latency p50 / p99",
        format!("{:.0} / {:.0} ms", pct(&a, 50.0), pct(&a, 99.0)),
        "",
        None,
    );
    b.row(
        c,
        "errors: publishes / bare applies",
        format!(
            "{pub_errors}{} / {bare_errors}",
            if pubs.statuses.is_empty() {
                String::new()
            } else {
                format!(" {:?}", pubs.statuses)
            }
        ),
        "0",
        Some(pub_errors == 0),
    );
    b.row(
        c,
        "CPU gitfaas / kube-apiserver (same windows)",
        format!(
            "{gf_cpu:.1} s / {api_cpu_pub:.1} s = {:.0} %",
            share * 100.0
        ),
        "< 25 %",
        Some(share < 0.25),
    );
    b.row(
        c,
        "API server CPU per publish vs per bare apply",
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
        "gitfaas CPU per publish",
        format!("{:.2} ms", gf_cpu * 1000.0 / pubs.ok.max(1) as f64),
        "",
        None,
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
        "",
        None,
    );
    Ok(())
}

// ------------------------------------------------------------------ case 3 --

fn big_repo_files(topics: usize, per_topic: usize) -> Vec<(String, String)> {
    let mut files = Vec::with_capacity(topics * per_topic + 1);
    let mut config = Vec::with_capacity(topics);
    for t in 0..topics {
        let mut configs = Vec::with_capacity(per_topic);
        for j in 0..per_topic {
            let path = format!("t{t:04}/step-{j}.yaml");
            files.push((
                path.clone(),
                format!(
                    r#"apiVersion: batch/v1
kind: Job
metadata:
  name: t{t:04}-step{j}-{{{{RANDOM}}}}
  labels:
    step: "s{j}"
spec:
  backoffLimit: 1
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: registry.example.com/t{t:04}/step{j}:1.0
          args: ["--step", "{j}", "--topic", "{{{{TOPIC}}}}"]
          env:
            - name: PAYLOAD
              value: "{{{{PAYLOAD}}}}"
            - name: FUNCTION_UID
              value: "{{{{FUNCTION_UID}}}}"
            - name: GITFAAS_URL
              value: "{{{{GITFAAS_URL}}}}"
"#
                ),
            ));
            configs.push(path);
        }
        config.push(json!({"name": format!("t{t:04}"), "configs": configs}));
    }
    files.push((
        "config.json".into(),
        json!({ "topics": config }).to_string(),
    ));
    files
}

fn syncer_for(url: &str, cache: &Path) -> Res<gitfaas::source::Syncer> {
    let argv = [
        "gitfaas",
        "serve",
        "--git-url",
        url,
        "--cache-dir",
        &cache.display().to_string(),
        "--listen",
        "127.0.0.1:0",
    ];
    let gitfaas::settings::Command::Serve(args) =
        gitfaas::settings::Cli::try_parse_from(argv)?.command
    else {
        return Err("`gitfaas serve …` did not parse as serve".into());
    };
    let settings = args.validate(|_| None)?;
    Ok(gitfaas::source::Syncer::new(
        settings.source.clone(),
        settings.config_path.clone(),
    ))
}

/// Sync timings of one source: cold (empty cache) and unchanged commits.
struct SyncRuns {
    cold: Vec<f64>,
    cold_cpu: Vec<f64>,
    unchanged: Vec<f64>,
}

/// Set (to the URL) in the bench's own child process that measures syncs.
const SYNC_CHILD: &str = "GITFAAS_BENCH_SYNC_URL";

/// The real Syncer, three times, each in a fresh process (as gitfaas syncs
/// at start, and without the heap and threads cases 1 and 2 left in this
/// one, which doubled the CPU time of the same sync): a cold sync into an
/// empty cache, then five unchanged ones. CPU is the child's own.
async fn cold_and_unchanged(b: &Bench, url: &str, label: &str) -> Res<SyncRuns> {
    let (mut cold, mut cold_cpu, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..3 {
        let cache = b.work.path().join(format!("cache3-{label}-{i}"));
        let out = Command::new(std::env::current_exe()?)
            .arg("--bench")
            .env(SYNC_CHILD, url)
            .env("GITFAAS_BENCH_SYNC_CACHE", &cache)
            .env("GITFAAS_BENCH_CLK_TCK", b.clk_tck.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("sync child for {url} failed").into());
        }
        let r: Value = serde_json::from_slice(&out.stdout)?;
        cold.push(r["coldMs"].as_f64().ok_or("coldMs")?);
        cold_cpu.push(r["coldCpuMs"].as_f64().ok_or("coldCpuMs")?);
        for u in r["unchangedMs"].as_array().ok_or("unchangedMs")? {
            unchanged.push(u.as_f64().ok_or("unchangedMs")?);
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
    let runs = SyncRuns {
        cold: sorted(cold),
        cold_cpu: sorted(cold_cpu),
        unchanged: sorted(unchanged),
    };
    eprintln!(
        "bench: case 3: {label}: cold syncs {:?} ms, CPU {:?} ms, unchanged {:?} ms",
        runs.cold, runs.cold_cpu, runs.unchanged
    );
    Ok(runs)
}

/// In the child: one cold sync and five unchanged ones, as JSON.
async fn child_sync(url: &str) -> Res<Value> {
    let cache = PathBuf::from(std::env::var("GITFAAS_BENCH_SYNC_CACHE")?);
    let clk_tck: f64 = std::env::var("GITFAAS_BENCH_CLK_TCK")?.parse()?;
    let me = std::process::id();
    let syncer = syncer_for(url, &cache)?;
    let (t, c) = (Instant::now(), cpu_seconds(me, clk_tck));
    let out = syncer.sync().await?;
    let cold = ms(t.elapsed());
    let cold_cpu = (cpu_seconds(me, clk_tck) - c) * 1000.0;
    if !out.changed {
        return Err("cold sync reported no change".into());
    }
    let mut unchanged = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let out = syncer.sync().await?;
        unchanged.push(ms(t.elapsed()));
        if out.changed {
            return Err("unchanged sync reported a change".into());
        }
    }
    Ok(json!({"coldMs": cold, "coldCpuMs": cold_cpu, "unchangedMs": unchanged}))
}

async fn case_big_repo(b: &mut Bench) -> Res<()> {
    let topics = env_num("BENCH_TOPICS", 1000) as usize;
    let per_topic = env_num("BENCH_FILES_PER_TOPIC", 10) as usize;
    eprintln!("bench: case 3: repository of {topics} topics × {per_topic} manifests");
    let repo = b.work.path().join("big.git");
    let t = Instant::now();
    let files = big_repo_files(topics, per_topic);
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    bare_repo(&repo, &files)?;
    drop(files);
    eprintln!(
        "bench: case 3: generated {} files ({:.1} MB) in {:.1} s",
        topics * per_topic + 1,
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // A served repository is packed (as after `git gc`); loose objects would
    // make the fetch measure the filesystem instead.
    let packed = Command::new("git")
        .args(["-C", &repo.display().to_string(), "repack", "-adq"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !packed {
        eprintln!("bench: case 3: `git repack` failed or git is missing: the source repository stays loose");
    }

    // A real git server for the remote case: `git daemon` (git's own
    // pack-objects answers, as on a forge); a local path is read in place.
    // The sync is CPU-bound: measure it, not the cleanup of case 2's
    // thousands of Jobs that the controllers may still be doing.
    wait_for_quiet_machine().await;
    let daemon = GitDaemon::start(&repo, free_port()).await?;
    let local_url = repo.display().to_string();
    let local = cold_and_unchanged(b, &local_url, "local").await?;
    let remote = cold_and_unchanged(b, &daemon.url, "git").await?;
    // Of which fetch: a bare fetch of the same refspec with git2 alone.
    let me = std::process::id();
    let (mut fetch_ms, mut fetch_cpu) = (Vec::new(), Vec::new());
    for i in 0..3 {
        let dir = b.work.path().join(format!("fetch3-{i}"));
        let (t, c) = (Instant::now(), cpu_seconds(me, b.clk_tck));
        let r = git2::Repository::init_bare(&dir)?;
        r.remote_anonymous(&daemon.url)?.fetch(
            &["+refs/heads/main:refs/remotes/origin/main"],
            None,
            None,
        )?;
        fetch_ms.push(ms(t.elapsed()));
        fetch_cpu.push((cpu_seconds(me, b.clk_tck) - c) * 1000.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
    drop(daemon);
    let (fetch_ms, fetch_cpu) = (sorted(fetch_ms), sorted(fetch_cpu));
    eprintln!("bench: case 3: git protocol fetch alone {fetch_ms:?} ms, CPU {fetch_cpu:?} ms");

    // The binary: start with an empty cache, refresh unchanged, memory.
    let ns = create_namespace(&b.kube, "bigrepo").await?;
    let cache = b.work.path().join("cache3-server");
    let mut server = Server::start(
        b,
        "case3",
        &[
            "--git-url",
            &local_url,
            "--cache-dir",
            &cache.display().to_string(),
            "--namespace",
            &ns,
        ],
    )?;
    let start_to_ready = server.ready(&b.http, Duration::from_secs(120)).await?;
    let rss_start = status_kb(server.pid(), "VmRSS");
    let mut refresh = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let r = b.http.get(format!("{}/refresh", server.url)).send().await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await?;
        refresh.push(ms(t.elapsed()));
        if status != 200 || body["changed"] != json!(false) {
            return Err(format!("refresh: {status} {body}").into());
        }
    }
    let (status, report) = publish(
        &b.http,
        &server.url,
        &format!("t{:04}", topics / 2),
        "?dryRun=true",
    )
    .await?;
    if status != 200 {
        return Err(format!("dry run publish of a big-repo topic: {status} {report}").into());
    }
    let rss_busy = status_kb(server.pid(), "VmRSS");
    // gitfaas gives freed heap back to the OS when idle (every 5 s).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rss = status_kb(server.pid(), "VmRSS");
    let hwm = status_kb(server.pid(), "VmHWM");
    server.stop();
    delete_namespace(&b.kube, &ns).await;
    let refresh = sorted(refresh);
    eprintln!("bench: case 3: binary start→ready {start_to_ready:?}, RSS at ready {:.1} MB, after refreshes and a publish {:.1} MB, 6 s later {:.1} MB (peak {:.1} MB)", mb(rss_start), mb(rss_busy), mb(rss), mb(hwm));

    let c = "3 big repository";
    let shape = format!("{topics} topics × {per_topic} manifests");
    b.row(
        c,
        &format!("cold sync, local repository (read in place + snapshot), {shape}, median of 3"),
        format!(
            "{:.0} ms, CPU {:.0} ms",
            pct(&local.cold, 50.0),
            pct(&local.cold_cpu, 50.0)
        ),
        "< 1 s",
        Some(pct(&local.cold, 50.0) < 1000.0),
    );
    b.row(
        c,
        "cold sync, git:// remote (fetch into an empty cache + snapshot), median of 3",
        format!(
            "{:.0} ms, CPU {:.0} ms (fetch alone {:.0} ms, CPU {:.0} ms)",
            pct(&remote.cold, 50.0),
            pct(&remote.cold_cpu, 50.0),
            pct(&fetch_ms, 50.0),
            pct(&fetch_cpu, 50.0)
        ),
        "< 1 s",
        Some(pct(&remote.cold, 50.0) < 1000.0),
    );
    for (source, runs) in [("local", &local), ("git://", &remote)] {
        b.row(
            c,
            &format!("unchanged-commit sync, {source}, median / max of 15"),
            format!(
                "{:.1} / {:.1} ms",
                pct(&runs.unchanged, 50.0),
                pct(&runs.unchanged, 100.0)
            ),
            "< 1 s",
            Some(pct(&runs.unchanged, 100.0) < 1000.0),
        );
    }
    b.row(
        c,
        "`GET /refresh`, unchanged, median of 10 (binary)",
        format!("{:.1} ms", pct(&refresh, 50.0)),
        "< 1 s",
        Some(pct(&refresh, 50.0) < 1000.0),
    );
    b.row(
        c,
        "binary start → ready (cluster probe + cold sync)",
        format!("{:.0} ms", ms(start_to_ready)),
        "",
        None,
    );
    b.row(
        c,
        "gitfaas RSS after sync, refreshes and a publish: at once / idle 6 s (peak)",
        format!(
            "{:.1} / {:.1} MB ({:.1} MB)",
            mb(rss_busy),
            mb(rss),
            mb(hwm)
        ),
        "< 100 MB",
        Some(mb(rss) < 100.0),
    );
    Ok(())
}

// ------------------------------------------------------------------ case 4 --

async fn case_idle_memory(b: &mut Bench) -> Res<()> {
    eprintln!("bench: case 4: idle memory serving examples/hello");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let mut server = Server::start(b, "case4", &["--dir", &dir.display().to_string()])?;
    server.ready(&b.http, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = status_kb(server.pid(), "VmRSS");
    let hwm = status_kb(server.pid(), "VmHWM");
    let threads = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    server.stop();
    eprintln!(
        "bench: case 4: RSS {:.1} MB, peak {:.1} MB, {threads} threads",
        mb(rss),
        mb(hwm)
    );
    b.row(
        "4 idle memory",
        "gitfaas RSS serving examples/hello, 3 s after ready",
        format!("{:.1} MB ({threads} threads)", mb(rss)),
        "< 20 MB",
        Some(mb(rss) < 20.0),
    );
    Ok(())
}

// ------------------------------------------------------------------ case 5 --

async fn case_push_to_live(b: &mut Bench) -> Res<()> {
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
