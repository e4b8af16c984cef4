//! What the bench cases share: settings from the environment, the result
//! table, measurement (percentiles, CPU and RSS from /proc, a quiet
//! machine), the API server's metrics, namespaces, bare git repositories,
//! the gitfaas release binary as a child process, publishing, and the
//! one-Job topic of cases 1 and 2 with its bare-apply twin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use serde_json::{json, Value};

use crate::common::free_port;

/// The bench's one-Job topic. Suspended, so the Job controller creates no
/// pods: the API server's work is the apply itself (plus the Job
/// controller's status update), which makes the CPU comparison strict.
pub(crate) const BENCH_JOB: &str = r#"apiVersion: batch/v1
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

pub(crate) type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

// ---------------------------------------------------------------- settings --

pub(crate) fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

pub(crate) struct Bench {
    pub(crate) kubeconfig: PathBuf,
    pub(crate) cluster_dir: PathBuf,
    pub(crate) kube: kube::Client,
    pub(crate) http: reqwest::Client,
    pub(crate) work: tempfile::TempDir,
    pub(crate) clk_tck: f64,
    pub(crate) rows: Vec<Row>,
}

pub(crate) struct Row {
    case: &'static str,
    metric: String,
    value: String,
    target: String,
    verdict: &'static str,
}

impl Bench {
    pub(crate) fn row(
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

    /// The rows whose target was missed, as `case: metric (result, target)`.
    pub(crate) fn missed(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter(|r| r.verdict == "**missed**")
            .map(|r| {
                format!(
                    "{}: {} ({}, target {})",
                    r.case, r.metric, r.value, r.target
                )
            })
            .collect()
    }

    pub(crate) fn table(&self) -> String {
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

// ------------------------------------------------------------ measurement --

pub(crate) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub(crate) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

/// The bare operation a publish is compared with: a `POST` creating
/// `object` under `name` with the same kube client configuration (a
/// publish creates its Job since the ownership rules), timed in ms.
pub(crate) async fn bare_create(
    api: &Api<DynamicObject>,
    object: &Value,
    name: &str,
) -> Result<f64, kube::Error> {
    let mut obj = object.clone();
    obj["metadata"]["name"] = json!(name);
    let obj: DynamicObject = serde_json::from_value(obj).map_err(kube::Error::SerdeError)?;
    let t = Instant::now();
    api.create(&kube::api::PostParams::default(), &obj).await?;
    Ok(ms(t.elapsed()))
}

/// The median of `v` (0 when empty).
pub(crate) fn median(v: &[f64]) -> f64 {
    let s = sorted(v.to_vec());
    if s.is_empty() {
        return 0.0;
    }
    let mid = s.len() / 2;
    if s.len().is_multiple_of(2) {
        (s[mid - 1] + s[mid]) / 2.0
    } else {
        s[mid]
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32, clk_tck: f64) -> f64 {
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
pub(crate) async fn wait_for_quiet_machine() {
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
pub(crate) fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

pub(crate) fn recorded_pid(cluster_dir: &Path, name: &str) -> Res<u32> {
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
pub(crate) fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The API server's /metrics, read with the admin certificate of the local cluster.
pub(crate) fn apiserver_metrics(cluster_dir: &Path, kubeconfig_server: &str) -> String {
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

pub(crate) fn server_url(kubeconfig: &Path) -> String {
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

pub(crate) async fn create_namespace(kube: &kube::Client, case: &str) -> Res<String> {
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
pub(crate) async fn delete_namespace(kube: &kube::Client, name: &str) {
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

pub(crate) async fn remove_leftover_namespaces(kube: &kube::Client) {
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
pub(crate) fn bare_repo(path: &Path, files: &[(String, String)]) -> Res<String> {
    let repo = git2::Repository::init_bare(path)?;
    commit_files(&repo, files, "initial", None)
}

/// Commits `files` (path → content, folders allowed one level deep or more)
/// straight into the object database and moves refs/heads/main.
pub(crate) fn commit_files(
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

pub(crate) fn one_topic_files(job: &str) -> Vec<(String, String)> {
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
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) log: PathBuf,
}

impl Server {
    pub(crate) fn start(b: &Bench, name: &str, args: &[&str]) -> Res<Server> {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let log = b.work.path().join(format!("gitfaas-{name}.log"));
        let data = b.work.path().join(format!("data-{name}"));
        // BENCH_WRAP (e.g. `heaptrack -o /tmp/gitfaas`) runs gitfaas under
        // a profiler, for finding where time and memory go; the figures
        // of such a run measure the wrapper too.
        let wrap: Vec<String> = std::env::var("BENCH_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect();
        // BENCH_GITFAAS: another build to measure with the same bench (an
        // earlier commit's, for a before and after); the one cargo built by
        // default.
        let binary = std::env::var("BENCH_GITFAAS")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_gitfaas").to_string());
        let mut cmd = match wrap.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(&binary);
                cmd
            }
            None => Command::new(&binary),
        };
        cmd.arg("serve")
            .args(args)
            // The bench measures the publish path, not a caller's review.
            .args([
                "--listen",
                &listen,
                "--poll-interval",
                "1h",
                "--auth",
                "none",
            ])
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

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until /readyz answers 200 (snapshot loaded, API server reachable).
    pub(crate) async fn ready(
        &mut self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Res<Duration> {
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

    pub(crate) fn logs(&self) -> String {
        let mut s = String::new();
        for p in [self.log.clone(), self.log.with_extension("err")] {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            s.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        s
    }

    /// SIGTERM, then up to 10 s to exit, then SIGKILL.
    pub(crate) fn stop(mut self) {
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

pub(crate) async fn publish(
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

/// Cases 1 and 2: gitfaas serving the one-Job bench topic in a namespace of
/// its own, the exact object it applies (from a dry run, namespace set) and
/// the bare apply's API, with the client configuration gitfaas builds.
pub(crate) struct JobBench {
    pub(crate) ns: String,
    pub(crate) server: Server,
    pub(crate) object: Value,
    pub(crate) api: Api<DynamicObject>,
}

impl JobBench {
    pub(crate) async fn start(b: &Bench, case: &str, ns_label: &str) -> Res<JobBench> {
        Self::start_with(b, case, ns_label, &one_topic_files(BENCH_JOB)).await
    }

    /// As [`Self::start`], serving `files` (a topic `bench` among them).
    pub(crate) async fn start_with(
        b: &Bench,
        case: &str,
        ns_label: &str,
        files: &[(String, String)],
    ) -> Res<JobBench> {
        let ns = create_namespace(&b.kube, ns_label).await?;
        let repo = b.work.path().join(format!("case{case}.git"));
        bare_repo(&repo, files)?;
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
