//! The test kit shared by the binaries that talk to the local control plane
//! (tests/api, tests/control_plane.rs) and by the benchmarks: repository
//! fixtures, polling with a deadline, free ports, `git daemon`, and
//! namespaces that delete themselves when dropped.
//!
//! Each binary includes it as a module (`mod common;`, or `#[path]` from
//! tests/api and benches), so each uses only part of it.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::Value;

/// A Job manifest using the usual variables.
pub const JOB: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: collect-{{RANDOM}}
spec:
  backoffLimit: 0
  ttlSecondsAfterFinished: 600
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: main
          image: busybox
          env:
            - name: PAYLOAD
              value: "{{PAYLOAD}}"
            - name: FUNCTION_UID
              value: "{{FUNCTION_UID}}"
            - name: GITFAAS_URL
              value: "{{GITFAAS_URL}}"
"#;

/// `config.json` with one topic per (name, files).
pub fn config(topics: &[(&str, &[&str])]) -> String {
    let topics: Vec<Value> = topics
        .iter()
        .map(|(n, c)| serde_json::json!({"name": n, "configs": c}))
        .collect();
    serde_json::json!({ "topics": topics }).to_string()
}

/// What one look at the awaited state found.
pub enum Step<T> {
    /// The awaited state was reached.
    Done(T),
    /// Not yet; the text describes what was seen (reported on timeout).
    Wait(String),
    /// A state from which the awaited one cannot follow: fail now.
    Fail(String),
}

/// Polls `check` every 200 ms until it is done, fails, or `timeout` passes.
pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Step::Done(v) => return v,
            Step::Fail(msg) => panic!("{what}: {msg}"),
            Step::Wait(seen) => {
                if Instant::now() > deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    until(what, timeout, || {
        let next = f();
        async move {
            match next.await {
                Some(v) => Step::Done(v),
                None => Step::Wait("not yet".into()),
            }
        }
    })
    .await
}

/// A free TCP port on 127.0.0.1, for a server a test starts.
///
/// Picked at random below the kernel's ephemeral range (32768–60999 here):
/// a port handed out by `bind(0)` and released is soon the local port of
/// some outgoing connection (the suite opens thousands), and the server
/// then fails to bind it. Ports the cluster uses (10357–23800) are below.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..200 {
        let port = rng.random_range(24000..32000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The taint that keeps pods off the real node unless their namespace
/// tolerates it ([`TestNamespace::on_real_node`]).
pub const REAL_NODE_TAINT: &str = "gitfaas.dev/real-node";

/// The examples image the cluster scripts import into the real node's
/// containerd (tests/cluster/images): busybox-static, user 65532.
pub const EXAMPLES_IMAGE: &str = "gitfaas.local/examples:1";

/// The real node of the local cluster: its name and the address pods reach
/// the host at (the bridge's, which is also the node's InternalIP).
pub struct RealNode {
    pub name: String,
    pub ip: String,
}

/// The Ready real node, or None when the cluster was started without one
/// (`GITFAAS_REAL_NODE=0`); a missing node otherwise fails the test.
pub async fn real_node(kube: &kube::Client) -> Option<RealNode> {
    use k8s_openapi::api::core::v1::Node;
    if std::env::var("GITFAAS_REAL_NODE").as_deref() == Ok("0") {
        eprintln!("GITFAAS_REAL_NODE=0: no real node, test skipped");
        return None;
    }
    let nodes = Api::<Node>::all(kube.clone())
        .list(&kube::api::ListParams::default().labels("type=real"))
        .await
        .expect("list nodes");
    let node = nodes.items.into_iter().find(|n| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    });
    let Some(node) = node else {
        panic!("no Ready node labelled type=real: start the cluster with its real node (`make cluster-up`; see tests/cluster/README.md), or set GITFAAS_REAL_NODE=0 to skip the real-node tests");
    };
    let ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .expect("the real node has an InternalIP");
    Some(RealNode {
        name: node.metadata.name.unwrap_or_default(),
        ip,
    })
}

/// `git daemon` serving one repository over the git protocol: a real remote
/// for the fetch path (a local path is read in place, not fetched). Stopped
/// on drop.
///
/// `git-daemon` itself is the child, not `git daemon`, which runs it as a
/// child of its own: killing that `git` left the daemon serving, re-parented
/// to init, after the suite ended. And it serves this one repository, not
/// every repository of its parent directory (the system's temporary
/// directory, for a `tempfile` repository).
pub struct GitDaemon {
    child: std::process::Child,
    pub url: String,
}

impl GitDaemon {
    /// Serves `repo` on a free port; panics if it cannot.
    pub async fn serve(repo: &Path) -> GitDaemon {
        Self::serve_on(repo, free_port()).await
    }

    /// As [`GitDaemon::serve`], on `port` (a remote that comes up late).
    pub async fn serve_on(repo: &Path, port: u16) -> GitDaemon {
        Self::start(repo, port)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Serves `repo` on `port` once it accepts connections (within 10 s).
    pub async fn start(repo: &Path, port: u16) -> Result<GitDaemon, String> {
        let base = repo.parent().ok_or("the repository has no parent")?;
        let name = repo
            .file_name()
            .ok_or("the repository has no name")?
            .to_string_lossy();
        let exec_path = std::process::Command::new("git")
            .arg("--exec-path")
            .output()
            .map_err(|e| {
                format!("git --exec-path (git is installed by scripts/ensure-deps.sh): {e}")
            })?;
        let daemon =
            Path::new(String::from_utf8_lossy(&exec_path.stdout).trim()).join("git-daemon");
        let child = std::process::Command::new(&daemon)
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--informative-errors")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            // The whitelist: only this repository is served.
            .arg(repo)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", daemon.display()))?;
        // From here on, dropping it stops the daemon.
        let daemon = GitDaemon {
            child,
            url: format!("git://127.0.0.1:{port}/{name}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(format!("git daemon did not listen on {port} within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(daemon)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A namespace of one test, deleted when dropped: at the end of the test,
/// and also when the test panics. [`TestNamespace::delete`] deletes it
/// earlier, awaited.
pub struct TestNamespace {
    name: String,
    kube: kube::Client,
    deleted: bool,
}

impl TestNamespace {
    /// A fresh namespace `gft-<random>`.
    pub async fn new(kube: &kube::Client) -> Self {
        Self::create(kube, "gft", &[]).await
    }

    /// A fresh namespace `<prefix>-<random>` carrying `labels`.
    pub async fn create(kube: &kube::Client, prefix: &str, labels: &[(&str, &str)]) -> Self {
        Self::annotated(kube, prefix, labels, &[]).await
    }

    /// A fresh namespace `<prefix>-<random>` whose pods land on the real
    /// node (tests/cluster/node.sh), not on kwok: real containers run.
    pub async fn on_real_node(kube: &kube::Client, prefix: &str) -> Self {
        let tolerations =
            format!(r#"[{{"key":"{REAL_NODE_TAINT}","operator":"Exists","effect":"NoSchedule"}}]"#);
        Self::annotated(
            kube,
            prefix,
            &[],
            &[
                ("scheduler.alpha.kubernetes.io/node-selector", "type=real"),
                (
                    "scheduler.alpha.kubernetes.io/defaultTolerations",
                    &tolerations,
                ),
            ],
        )
        .await
    }

    async fn annotated(
        kube: &kube::Client,
        prefix: &str,
        labels: &[(&str, &str)],
        annotations: &[(&str, &str)],
    ) -> Self {
        let name = format!("{prefix}-{}", gitfaas::publish::random_suffix());
        let map = |pairs: &[(&str, &str)]| -> serde_json::Map<String, Value> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
                .collect()
        };
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)}
        }))
        .expect("a Namespace");
        Api::<Namespace>::all(kube.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name} (is the cluster up?): {e}"));
        TestNamespace {
            name,
            kube: kube.clone(),
            deleted: false,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes it now (its objects go in the background).
    pub async fn delete(mut self) {
        self.deleted = true;
        if let Err(e) = Api::<Namespace>::all(self.kube.clone())
            .delete(&self.name, &DeleteParams::background())
            .await
        {
            eprintln!("warning: could not delete namespace {}: {e}", self.name);
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Drop cannot await, and the test's client runs its connections on
        // the test's runtime, which is blocked here (or unwinding from a
        // panic). So the delete runs on a thread of its own, with a runtime
        // and a client (from KUBECONFIG) of its own, and is waited for:
        // the process may end right after the last test.
        let name = self.name.clone();
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let delete = async {
                    let kube = kube::Client::try_default()
                        .await
                        .map_err(|e| e.to_string())?;
                    Api::<Namespace>::all(kube)
                        .delete(&name, &DeleteParams::background())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                tokio::time::timeout(Duration::from_secs(10), delete)
                    .await
                    .map_err(|_| "no answer within 10 s".to_string())?
            })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not delete namespace {}: {e}", self.name),
            Err(_) => eprintln!("warning: deleting namespace {} panicked", self.name),
        }
    }
}

impl std::ops::Deref for TestNamespace {
    type Target = str;

    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}
