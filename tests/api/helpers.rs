//! Shared test plumbing: a temp git repository, a server on a random port
//! against the real cluster, and typed helpers. What other test binaries
//! share too (fixtures, polling, ports, git daemon, namespaces) is in
//! tests/common and re-exported here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use gitfaas::settings::{Cli, Command};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::Value;

pub use crate::common::{
    config, eventually, free_port, real_node, GitDaemon, RealNode, TestNamespace, EXAMPLES_IMAGE,
    JOB,
};

/// A Job whose one pod fails on kwok (no retry: `backoffLimit: 0`).
pub const FAILING_JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: fail-{{RANDOM}}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        pod-container-running-failed.stage.kwok.x-k8s.io: "true"
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
"#;

/// A git repository with a `main` branch, used as the remote.
pub struct TestRepo {
    dir: tempfile::TempDir,
    repo: git2::Repository,
}

impl TestRepo {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        let repo = git2::Repository::init_opts(dir.path(), &opts).expect("git init");
        TestRepo { dir, repo }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `files` and commits every file of the work tree on main.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, text) in files {
            let p = self.dir.path().join(name);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&p, text).expect("write");
        }
        self.commit_worktree(message, true)
    }

    /// Replaces the whole history of main with one new commit holding only
    /// `files`: what a force-push does to the branch.
    pub fn force_replace(&self, files: &[(&str, &str)]) -> String {
        for entry in std::fs::read_dir(self.dir.path()).expect("read dir") {
            let entry = entry.expect("entry");
            if entry.file_name() != ".git" {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(p).expect("rm dir");
                } else {
                    std::fs::remove_file(p).expect("rm");
                }
            }
        }
        for (name, text) in files {
            std::fs::write(self.dir.path().join(name), text).expect("write");
        }
        self.commit_worktree("rewritten history", false)
    }

    fn commit_worktree(&self, message: &str, with_parent: bool) -> String {
        let mut index = self.repo.index().expect("index");
        index.clear().expect("clear");
        index
            .add_all(["*"].iter(), git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("write index");
        let tree_id = index.write_tree().expect("tree");
        let tree = self.repo.find_tree(tree_id).expect("find tree");
        let sig = git2::Signature::now("test", "test@example.com").expect("sig");
        let parent = if with_parent {
            self.repo.head().ok().and_then(|h| h.peel_to_commit().ok())
        } else {
            None
        };
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        let oid = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &parents)
            .expect("commit");
        self.repo
            .reference("refs/heads/main", oid, true, message)
            .expect("move main");
        self.repo.set_head("refs/heads/main").expect("head");
        oid.to_string()
    }
}

/// A running gitfaas and what a test needs around it.
pub struct TestApp {
    /// Its address and an HTTP client: the app derefs to it, so
    /// `app.publish(…)`, `app.address` and `app.http` read it.
    pub endpoint: Endpoint,
    pub kube: kube::Client,
    pub namespace: String,
    /// Deletes the namespace when the app is dropped.
    namespace_guard: TestNamespace,
    pub repo: TestRepo,
    handle: actix_web::dev::ServerHandle,
    /// Holds the fetched bare repository (`git/`) and the store (`data/`).
    pub cache: tempfile::TempDir,
    _daemon: Option<GitDaemon>,
}

/// Held by the load tests (a thousand publishes, two hundred waits) so that
/// two of them never run at once: on two cores, beside each other, they
/// starve each other's server.
pub static LOAD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn kubeconfig_path() -> PathBuf {
    PathBuf::from(std::env::var("KUBECONFIG").unwrap_or_else(|_| {
        panic!("KUBECONFIG is not set: these tests need the local control plane; run `make test`, or `eval \"$(make -s cluster-up)\"` first")
    }))
}

/// A fresh namespace, unique to one test, deleted when the value is dropped
/// (also when the test panics); it derefs to the name.
pub async fn namespace(kube: &kube::Client) -> TestNamespace {
    TestNamespace::new(kube).await
}

/// Starts gitfaas on a random port, serving `files` committed to a new repo.
pub async fn spawn_app(files: &[(&str, &str)]) -> TestApp {
    spawn_app_with(files, &[]).await
}

/// gitfaas serving topic `t` as the one file `j.yaml`, holding `manifest`.
pub async fn spawn_one_topic_app(manifest: &str) -> TestApp {
    spawn_app(&[
        ("config.json", &config(&[("t", &["j.yaml"])])),
        ("j.yaml", manifest),
    ])
    .await
}

/// gitfaas serving topic `t` as one suspended Job (its pods never start),
/// and one publish of it (202): the app and the publish's receipt.
pub async fn app_with_a_suspended_run() -> (TestApp, Answer) {
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let app = spawn_one_topic_app(&suspended).await;
    let receipt = app.publish("t", "", "x").await;
    receipt.assert_status(202);
    (app, receipt)
}

/// As [`spawn_app`], with extra `serve` flags.
pub async fn spawn_app_with(files: &[(&str, &str)], extra: &[&str]) -> TestApp {
    start_app(files, extra, false, None).await
}

/// As [`spawn_app`], the repository fetched from `git daemon`.
pub async fn spawn_app_over_git_protocol(files: &[(&str, &str)]) -> TestApp {
    start_app(files, &[], true, None).await
}

/// As [`spawn_app_with`], for functions that really run: the namespace's
/// pods land on the real node, and gitfaas listens on the node's bridge
/// address, which is its public URL (`{{GITFAAS_URL}}`), so pods reach it.
pub async fn spawn_app_on_real_node(
    files: &[(&str, &str)],
    extra: &[&str],
    node: &RealNode,
) -> TestApp {
    start_app(files, extra, false, Some(node)).await
}

async fn start_app(
    files: &[(&str, &str)],
    extra: &[&str],
    git_protocol: bool,
    node: Option<&RealNode>,
) -> TestApp {
    let kubeconfig = kubeconfig_path();
    let kube = kube::Client::try_default().await.expect("kube client");
    let namespace_guard = match node {
        Some(_) => TestNamespace::on_real_node(&kube, "gfn").await,
        None => namespace(&kube).await,
    };
    let namespace = namespace_guard.to_string();
    let repo = TestRepo::new();
    repo.commit(files, "initial");
    let cache = tempfile::tempdir().expect("cache dir");
    let daemon = match git_protocol {
        true => Some(GitDaemon::serve(repo.path()).await),
        false => None,
    };
    let repo_url = match &daemon {
        Some(d) => d.url.clone(),
        None => repo.path().display().to_string(),
    };
    let cache_dir = cache.path().join("git").display().to_string();
    let data_dir = cache.path().join("data").display().to_string();
    let kc = kubeconfig.display().to_string();
    let listen = match node {
        Some(node) => format!("{}:0", node.ip),
        None => "127.0.0.1:0".to_string(),
    };
    let mut argv = vec![
        "gitfaas",
        "serve",
        "--git-url",
        &repo_url,
        "--listen",
        &listen,
        "--namespace",
        &namespace,
        "--cache-dir",
        &cache_dir,
        "--data-dir",
        &data_dir,
        "--poll-interval",
        "1h",
    ];
    if node.is_none() {
        argv.extend_from_slice(&["--public-url", "http://gitfaas.test:5000"]);
    }
    if !extra.contains(&"--kubeconfig") {
        argv.extend_from_slice(&["--kubeconfig", &kc]);
    }
    if !extra
        .iter()
        .any(|a| *a == "--auth" || *a == "--api-token-file")
    {
        argv.extend_from_slice(&["--auth", "none"]);
    }
    argv.extend_from_slice(extra);
    let Command::Serve(args) = Cli::try_parse_from(argv).expect("flags parse").command else {
        unreachable!("the argv above is a serve command")
    };
    let settings = args.validate(|_| None).expect("valid settings");
    let app = gitfaas::Application::build(settings)
        .await
        .expect("app builds");
    let host = node.map_or("127.0.0.1", |n| n.ip.as_str());
    let address = format!("http://{host}:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        endpoint: Endpoint::new(address),
        kube,
        namespace,
        namespace_guard,
        repo,
        handle,
        cache,
        _daemon: daemon,
    }
}

/// Where a gitfaas answers, and a client to ask it with: what a
/// [`TestApp`] and a [`Process`] share.
pub struct Endpoint {
    pub address: String,
    pub http: reqwest::Client,
}

impl Endpoint {
    pub fn new(address: String) -> Self {
        Endpoint {
            address,
            http: reqwest::Client::new(),
        }
    }

    /// `POST /publish/{topic}?{query}` with `body` as text.
    pub async fn publish(&self, topic: &str, query: &str, body: &str) -> Answer {
        self.publish_with(topic, query, &[], body).await
    }

    /// As [`Endpoint::publish`], with extra request headers.
    pub async fn publish_with(
        &self,
        topic: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let url = match query {
            "" => format!("{}/publish/{topic}", self.address),
            query => format!("{}/publish/{topic}?{query}", self.address),
        };
        post(&self.http, &url, headers, body).await
    }

    /// Publishes `body` to `topic` until gitfaas accepts it (202), up to
    /// `within` (else it panics naming `what`); that answer.
    pub async fn publish_until_accepted(
        &self,
        topic: &str,
        body: &str,
        what: &str,
        within: Duration,
    ) -> Answer {
        eventually(what, within, || async {
            let answer = self.publish(topic, "", body).await;
            (answer.status == 202).then_some(answer)
        })
        .await
    }

    /// `POST /response/{function_uid}` with `body`.
    pub async fn respond(&self, function_uid: &str, body: &str) -> Answer {
        let url = format!("{}/response/{function_uid}", self.address);
        post(&self.http, &url, &[], body).await
    }

    /// `GET {path}`, `path` starting with `/`.
    pub async fn get(&self, path: &str) -> Answer {
        let resp = self
            .http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request");
        Answer::read(resp).await
    }

    /// `DELETE /requests/{uid}`: cancels the run.
    pub async fn cancel(&self, uid: &str) -> Answer {
        let resp = self
            .http
            .delete(format!("{}/requests/{uid}", self.address))
            .send()
            .await
            .expect("request");
        Answer::read(resp).await
    }

    /// The view of run `uid` (`GET /requests/{uid}`), which must answer 200.
    pub async fn run(&self, uid: &str) -> Answer {
        let view = self.get(&format!("/requests/{uid}")).await;
        view.assert_status(200);
        view
    }

    /// Polls the view of run `uid` until `ready` holds of it (up to
    /// `within`, else it panics naming `what`), and returns that view.
    pub async fn wait_for_run(
        &self,
        uid: &str,
        what: &str,
        within: Duration,
        ready: impl Fn(&Answer) -> bool,
    ) -> Answer {
        eventually(what, within, || async {
            let view = self.get(&format!("/requests/{uid}")).await;
            ready(&view).then_some(view)
        })
        .await
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// `GET /refresh`: syncs the repository now.
    pub async fn refresh(&self) -> Answer {
        self.get("/refresh").await
    }
}

impl std::ops::Deref for TestApp {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl TestApp {
    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.kube.clone(), &self.namespace)
    }

    pub fn config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.kube.clone(), &self.namespace)
    }

    /// The ConfigMaps of the namespace whose labels match `selector`.
    pub async fn config_maps_labelled(&self, selector: &str) -> Vec<ConfigMap> {
        self.config_maps()
            .list(&ListParams::default().labels(selector))
            .await
            .expect("list ConfigMaps")
            .items
    }

    pub async fn job(&self, name: &str) -> Job {
        self.jobs()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("job {name}: {e}"))
    }

    pub async fn job_count(&self) -> usize {
        count_jobs(&self.jobs()).await
    }

    /// Waits (up to `within`) until Job `name` is gone from the namespace.
    pub async fn wait_until_job_gone(&self, name: &str, within: Duration) {
        eventually(&format!("Job {name} to be gone"), within, || async {
            let job = self.jobs().get_opt(name).await.expect("get the Job");
            job.is_none().then_some(())
        })
        .await
    }

    /// Stops the server gracefully and deletes the test's namespace, both
    /// awaited. Optional: dropping the app deletes the namespace too.
    pub async fn cleanup(self) {
        self.handle.stop(true).await;
        self.namespace_guard.delete().await;
    }
}

async fn count_jobs(jobs: &Api<Job>) -> usize {
    jobs.list(&ListParams::default())
        .await
        .expect("list jobs")
        .items
        .len()
}

/// The env value `name` of a Job's first container.
pub fn env(job: &Job, name: &str) -> Option<String> {
    job.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)?
        .value
        .clone()
}

/// For tests that run the binary: a namespace of their own and a functions
/// directory holding `files`.
pub struct Fixture {
    pub kube: kube::Client,
    pub ns: String,
    /// Deletes the namespace when the fixture is dropped.
    ns_guard: TestNamespace,
    pub dir: tempfile::TempDir,
    /// A store directory of its own: the default one is shared, and a
    /// second gitfaas cannot open a redb file another one holds.
    pub data: tempfile::TempDir,
}

impl Fixture {
    pub async fn new(files: &[(&str, &str)]) -> Self {
        let kube = kube::Client::try_default().await.expect("kube client");
        let ns_guard = namespace(&kube).await;
        let ns = ns_guard.to_string();
        let dir = tempfile::tempdir().expect("dir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let data = tempfile::tempdir().expect("data dir");
        Fixture {
            kube,
            ns,
            ns_guard,
            dir,
            data,
        }
    }

    /// The one-topic (`t`) Job repository most tests use.
    pub async fn job() -> Self {
        Self::new(&[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ])
        .await
    }

    /// The functions directory, as a flag value.
    pub fn dir_arg(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The store directory, as a flag value.
    pub fn data_arg(&self) -> String {
        self.data.path().display().to_string()
    }

    pub fn jobs(&self) -> Api<Job> {
        Api::namespaced(self.kube.clone(), &self.ns)
    }

    pub async fn job_count(&self) -> usize {
        count_jobs(&self.jobs()).await
    }

    /// Deletes the namespace, awaited. Optional: dropping the fixture
    /// deletes it too.
    pub async fn cleanup(self) {
        self.ns_guard.delete().await;
    }
}

/// A gitfaas binary running as its own process; it derefs to its
/// [`Endpoint`].
pub struct Process {
    pub child: std::process::Child,
    pub endpoint: Endpoint,
}

impl std::ops::Deref for Process {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// Starts the `gitfaas` binary with `args` after `serve`, on a free port, and
/// waits until it answers /healthz.
pub async fn spawn_process(args: &[&str]) -> Process {
    let port = free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_gitfaas"))
        .arg("serve")
        .args(args)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--kubeconfig"])
        .arg(kubeconfig_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .open_unless_chosen()
        .spawn()
        .expect("start gitfaas");
    let address = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("gitfaas to answer", Duration::from_secs(30), || async {
        let r = http.get(format!("{address}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    // A client of its own, not the one that polled: an idle connection of
    // that one may be closed by the server (keep-alive) just as it is reused.
    Process {
        child,
        endpoint: Endpoint::new(address),
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` to `url` with extra `headers`, as `text/plain` unless
/// they name a content-type of their own.
pub async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = http.post(url).body(body.to_string());
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("content-type", "text/plain");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Answer::read(req.send().await.expect("request")).await
}

/// Sends SIGTERM to `pid`.
pub fn sigterm(pid: u32) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Waits (up to 20 s) for `child` to exit.
pub async fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gitfaas did not exit within 20 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, then the exit status and everything the binary logged.
pub async fn stop_and_read_log(
    child: &mut std::process::Child,
) -> (std::process::ExitStatus, String) {
    sigterm(child.id());
    let status = wait_exit(child).await;
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut log)
        .expect("read log");
    (status, log)
}

/// A private redis-server, killed (-9) and reaped when dropped.
pub struct RedisServer(std::process::Child);

impl RedisServer {
    /// Kills it now (-9) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a redis-server on `port` with `args` (persistence, its dir) and
/// waits until it answers PING.
pub fn redis_server(port: u16, args: &[&str]) -> RedisServer {
    use std::io::{Read, Write};
    let mut child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (make test installs it)");
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let mut buf = [0u8; 16];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read(&mut buf)
                    .is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
            {
                return RedisServer(child);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start on port {port}");
}

/// The URL of database `db` of the test Redis (`GITFAAS_TEST_REDIS_URL`),
/// emptied first: a test counting what it holds must not see an earlier
/// run's records.
pub async fn redis_database(db: u8) -> String {
    let url = std::env::var("GITFAAS_TEST_REDIS_URL").unwrap_or_else(|_| {
        panic!("GITFAAS_TEST_REDIS_URL is not set: run `make test`, or `eval \"$(tests/redis.sh up)\"` first")
    });
    let url = format!("{}/{db}", url.trim_end_matches('/'));
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis");
    redis::cmd("FLUSHDB")
        .query_async::<()>(&mut conn)
        .await
        .expect("FLUSHDB");
    url
}

/// The `requestUid` of a run's JSON (a publish's answer, a view, a row of
/// a list), which every accepted run carries.
pub fn request_uid(run: &Value) -> String {
    run["requestUid"]
        .as_str()
        .unwrap_or_else(|| panic!("no requestUid in {run}"))
        .to_string()
}

/// What gitfaas answered a request: its status, headers and JSON body. The
/// body is reachable as `answer.body`, and indexing the answer indexes it
/// (`answer["dryRun"]`), for the one-off field no method reads; `{answer}`
/// shows the status and the body, for failure messages.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// Reads the status, headers and JSON body of `resp`.
    pub async fn read(resp: reqwest::Response) -> Answer {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json::<Value>().await.expect("JSON body");
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Panics, showing the body, unless the status is `status`.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{self}");
        self
    }

    /// Panics, showing the body, unless this is an error answer (status,
    /// `error: true`) with `code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        self.assert_status(status);
        assert_eq!(self.body["error"], true, "an error answer: {self}");
        assert_eq!(self.code(), code, "{self}");
        self
    }

    /// Panics, showing the body, unless `message` contains `part`.
    #[track_caller]
    pub fn assert_message_contains(&self, part: &str) -> &Self {
        assert!(
            self.message().contains(part),
            "the message should contain {part:?}: {self}"
        );
        self
    }

    /// The `requestUid` of an accepted publish: panics, showing the body,
    /// unless the status is 202.
    #[track_caller]
    pub fn accepted(&self) -> String {
        self.assert_status(202).request_uid()
    }

    /// The `requestUid`, which every accepted publish and every view carries.
    #[track_caller]
    pub fn request_uid(&self) -> String {
        self.str_at("/requestUid").to_string()
    }

    /// The function uid of a publish answer's first manifest: the capability
    /// of `POST /response` and of `Gitfaas-Parent`.
    #[track_caller]
    pub fn function_uid(&self) -> String {
        self.str_at("/applies/0/functionUid").to_string()
    }

    /// The name of the first object of the first apply of a publish answer.
    #[track_caller]
    pub fn first_object_name(&self) -> String {
        self.str_at("/applies/0/objects/0/name").to_string()
    }

    /// What function `i` of a run's view responded (`null` until it has).
    pub fn response(&self, i: usize) -> &Value {
        &self.body["functions"][i]["response"]
    }

    /// The phase of the first object of a run's view (`Pending`,
    /// `Running`, `Succeeded`, `Failed`), if it has one.
    pub fn phase(&self) -> Option<&str> {
        self.body["objects"][0]["status"]["phase"].as_str()
    }

    /// Panics, showing the body, unless the run's view says it succeeded.
    #[track_caller]
    pub fn assert_succeeded(&self) -> &Self {
        assert_eq!(self.body["succeeded"], true, "{self}");
        self
    }

    /// The error code of an error answer.
    #[track_caller]
    pub fn code(&self) -> &str {
        self.str_at("/code")
    }

    /// The `message` of an answer (errors and publish reports carry one).
    #[track_caller]
    pub fn message(&self) -> &str {
        self.str_at("/message")
    }

    /// A run's `status` (`Queued`, `Running`, `Succeeded`, `Failed`, ...).
    #[track_caller]
    pub fn state(&self) -> &str {
        self.str_at("/status")
    }

    /// Panics, showing the body, unless the run's `status` is `state`.
    #[track_caller]
    pub fn assert_state(&self, state: &str) -> &Self {
        assert_eq!(self.state(), state, "{self}");
        self
    }

    /// Whether a run's view says it is done.
    pub fn done(&self) -> bool {
        self.body["done"] == true
    }

    #[track_caller]
    fn str_at(&self, pointer: &str) -> &str {
        self.body
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {pointer} in {self}"))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl<I: serde_json::value::Index> std::ops::Index<I> for Answer {
    type Output = Value;
    fn index(&self, index: I) -> &Value {
        &self.body[index]
    }
}

/// `--auth none` for a `gitfaas serve` command that does not choose how
/// callers are checked itself (by `--auth`, `--api-token-file` or their
/// environment variables): gitfaas refuses to start without a choice, and
/// most tests are not about authentication.
pub trait OpenUnlessChosen {
    fn open_unless_chosen(&mut self) -> &mut Self;
}

impl OpenUnlessChosen for std::process::Command {
    fn open_unless_chosen(&mut self) -> &mut Self {
        let flag = self.get_args().any(|a| {
            let a = a.to_string_lossy();
            a == "--auth" || a.starts_with("--auth=") || a.starts_with("--api-token-file")
        });
        let env = self
            .get_envs()
            .any(|(k, v)| v.is_some() && (k == "GITFAAS_AUTH" || k == "GITFAAS_API_TOKEN_FILE"));
        if !flag && !env {
            self.args(["--auth", "none"]);
        }
        self
    }
}

/// The API server's own metrics (Prometheus text): what every client of it
/// did, whatever a client says of itself.
pub async fn api_server_metrics(kube: &kube::Client) -> String {
    kube.request_text(
        http::Request::get("/metrics")
            .body(Vec::new())
            .expect("request"),
    )
    .await
    .expect("API server metrics")
}
