//! gitfaas' own image (scripts/image.sh, `make image`) run as a pod on the
//! real node: packed from the binary these tests built, imported into the
//! node's containerd, started in-cluster with the Helm chart's
//! ServiceAccount and RBAC, and asked over HTTP from the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, LogParams, PostParams};
use serde_json::{json, Value};

use crate::common::{until, Step};
use crate::helpers::{config, free_port, post, real_node, TestNamespace, JOB};

/// The local cluster's state dir, as tests/cluster/common.sh chooses it.
fn cluster_dir() -> PathBuf {
    match std::env::var_os("GITFAAS_CLUSTER_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("gitfaas-cluster"),
    }
}

/// `key`'s value in the env file the cluster scripts write in the state
/// dir (ports, the node's bin dir); the last one counts, as when sourced.
fn cluster_env(key: &str) -> String {
    let path = cluster_dir().join("env");
    let env = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (is the cluster up?)", path.display()));
    let prefix = format!("{key}=");
    env.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .next_back()
        .unwrap_or_else(|| panic!("no {key} in {}", path.display()))
        .to_string()
}

/// The real node's containerd, through its CLI (`ctr`, in the NODE_BIN the
/// cluster scripts record in the state dir's env file).
struct Containerd {
    ctr: PathBuf,
    socket: PathBuf,
}

impl Containerd {
    fn of_local_cluster() -> Self {
        Containerd {
            ctr: Path::new(&cluster_env("NODE_BIN")).join("ctr"),
            socket: cluster_dir().join("node/containerd.sock"),
        }
    }

    fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.ctr)
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.ctr.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ctr {args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// An image imported into the node's containerd under a tag of this test
/// run's own (parallel runs do not replace each other's), removed on drop.
struct NodeImage {
    containerd: Containerd,
    name: String,
}

impl NodeImage {
    fn import(containerd: Containerd, archive: &Path, name: &str) -> Self {
        let path = archive.to_str().expect("a UTF-8 archive path");
        containerd
            .ctr(&["images", "import", path])
            .unwrap_or_else(|e| panic!("importing {path}: {e}"));
        NodeImage {
            containerd,
            name: name.to_string(),
        }
    }
}

impl NodeImage {
    /// The references (`ctr images ls`: REF, TYPE, DIGEST ...) and the
    /// manifest digest each names.
    fn refs(&self) -> Result<Vec<(String, String)>, String> {
        let list = self.containerd.ctr(&["images", "ls"])?;
        Ok(list
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut cols = l.split_whitespace();
                let name = cols.next()?.to_string();
                Some((name, cols.nth(1)?.to_string()))
            })
            .collect())
    }

    fn remove(&self) -> Result<(), String> {
        let refs = self.refs()?;
        let Some((_, digest)) = refs.iter().find(|(n, _)| *n == self.name) else {
            return Ok(());
        };
        // The kubelet's containerd adds a reference of its own, the image's
        // id (sha256:<config digest>), which keeps the blobs after the name
        // goes. It is removed too unless another name has the same image
        // (a parallel run packing the same binary under its own tag).
        let mut gone = vec![self.name.clone()];
        let named_elsewhere = refs
            .iter()
            .any(|(n, d)| d == digest && *n != self.name && !n.starts_with("sha256:"));
        if !named_elsewhere {
            gone.extend(
                refs.iter()
                    .filter(|(n, d)| d == digest && n.starts_with("sha256:"))
                    .map(|(n, _)| n.clone()),
            );
        }
        let mut args = vec!["images", "rm"];
        args.extend(gone.iter().map(String::as_str));
        self.containerd.ctr(&args).map(|_| ())
    }
}

impl Drop for NodeImage {
    fn drop(&mut self) {
        // A container still running from it keeps its snapshot: removing
        // the references only lets containerd collect the blobs once it is
        // gone.
        if let Err(e) = self.remove() {
            eprintln!("warning: could not remove image {}: {e}", self.name);
        }
    }
}

/// Packs `binary` with scripts/image.sh into `dir`; returns the archive.
fn pack(binary: &str, dir: &Path, name: &str) -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/image.sh");
    let output = dir.join("gitfaas.tar");
    let out = Command::new(script)
        .args(["--binary", binary, "--name", name, "--output"])
        .arg(&output)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/image.sh");
    assert!(out.status.success(), "scripts/image.sh: {}", out.status);
    // The script's stdout is the archive's path and nothing else.
    let printed = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    assert_eq!(printed.trim_end(), output.display().to_string());
    output
}

/// `value` as a typed object of the API.
fn object<K: serde::de::DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).expect("a valid object")
}

/// The Helm chart's ServiceAccount, Roles and RoleBinding
/// (deploy/gitfaas/templates/rbac.yaml, rbac.scope=namespaced, and the
/// scheduler's Lease of rbac-scheduler.yaml), in `ns`.
async fn charts_rbac(kube: &kube::Client, ns: &str) {
    let pp = PostParams::default();
    let sa: ServiceAccount = object(json!({
        "metadata": {"name": "gitfaas"},
        "automountServiceAccountToken": true,
    }));
    Api::<ServiceAccount>::namespaced(kube.clone(), ns)
        .create(&pp, &sa)
        .await
        .expect("create the ServiceAccount");
    let role: Role = object(json!({
        "metadata": {"name": "gitfaas"},
        "rules": [
            {"apiGroups": ["batch"], "resources": ["jobs"],
             "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["configmaps", "secrets"],
             "verbs": ["get", "create", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["gitfaas-scheduler"], "verbs": ["get", "update"]},
        ],
    }));
    Api::<Role>::namespaced(kube.clone(), ns)
        .create(&pp, &role)
        .await
        .expect("create the Role");
    let binding: RoleBinding = object(json!({
        "metadata": {"name": "gitfaas"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gitfaas"},
        "subjects": [{"kind": "ServiceAccount", "name": "gitfaas", "namespace": ns}],
    }));
    Api::<RoleBinding>::namespaced(kube.clone(), ns)
        .create(&pp, &binding)
        .await
        .expect("create the RoleBinding");
}

/// Where the pod is: running, or a state it will not leave (the reason and
/// its log are the failure's message).
async fn pod_step(pods: &Api<Pod>, name: &str) -> Step<()> {
    let pod = match pods.get(name).await {
        Ok(pod) => pod,
        Err(e) => return Step::Wait(e.to_string()),
    };
    let status = pod.status.unwrap_or_default();
    let container = status
        .container_statuses
        .unwrap_or_default()
        .into_iter()
        .next();
    let state = container.as_ref().and_then(|c| c.state.clone());
    if let Some(waiting) = state.as_ref().and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.clone().unwrap_or_default();
        // ContainerCreating and PodInitializing pass; these do not.
        if reason.contains("Err") || reason.contains("BackOff") || reason.contains("Error") {
            return Step::Fail(format!(
                "{reason}: {}\n{}",
                waiting.message.clone().unwrap_or_default(),
                pod_log(pods, name).await
            ));
        }
        return Step::Wait(reason);
    }
    if let Some(done) = state.as_ref().and_then(|s| s.terminated.as_ref()) {
        return Step::Fail(format!(
            "gitfaas exited ({}, code {})\n{}",
            done.reason.clone().unwrap_or_default(),
            done.exit_code,
            pod_log(pods, name).await
        ));
    }
    match state.and_then(|s| s.running) {
        Some(_) => Step::Done(()),
        None => Step::Wait(format!("phase {:?}", status.phase)),
    }
}

async fn pod_log(pods: &Api<Pod>, name: &str) -> String {
    pods.logs(name, &LogParams::default())
        .await
        .unwrap_or_else(|e| format!("(no log: {e})"))
}

/// The image, packed from the debug binary, runs as the chart runs it:
/// in-cluster config (the ServiceAccount's token, no kubeconfig), the
/// chart's Role, its pod security context. The pod shares the host's
/// network: the local API server listens on 127.0.0.1 only (its certificate
/// names 127.0.0.1) and no kube-proxy routes the `kubernetes` Service's
/// address, so from the pod network neither answers. The store is the
/// image's default, below /home/nonroot, which works only if the image gives
/// the home to 65532 (without --owner in scripts/image.sh gitfaas exits:
/// "cannot create /home/nonroot/.local/state/gitfaas: Permission denied").
#[tokio::test]
async fn the_image_serves_a_publish_from_inside_the_cluster_with_the_charts_service_account() {
    let kube = kube::Client::try_default().await.expect("kube client");
    let Some(node) = real_node(&kube).await else {
        return;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let name = format!(
        "gitfaas.local/gitfaas:test-{}",
        gitfaas::publish::random_suffix()
    );
    let started = Instant::now();
    let archive = pack(env!("CARGO_BIN_EXE_gitfaas"), work.path(), &name);
    let size = std::fs::metadata(&archive).expect("archive").len();
    eprintln!(
        "image: {name} packed in {:.1?} ({:.1} MB)",
        started.elapsed(),
        size as f64 / 1e6
    );
    let imported = Instant::now();
    let _image = NodeImage::import(Containerd::of_local_cluster(), &archive, &name);
    eprintln!("image: imported in {:.1?}", imported.elapsed());

    // Dropped before the image: the namespace goes first.
    let ns = TestNamespace::on_real_node(&kube, "gfi").await;
    charts_rbac(&kube, &ns).await;
    let suspended = JOB.replace("  backoffLimit: 0", "  suspend: true\n  backoffLimit: 0");
    let functions: ConfigMap = object(json!({
        "metadata": {"name": "functions"},
        "data": {"config.json": config(&[("t", &["j.yaml"])]), "j.yaml": suspended},
    }));
    Api::<ConfigMap>::namespaced(kube.clone(), &ns)
        .create(&PostParams::default(), &functions)
        .await
        .expect("create the functions ConfigMap");

    let api_port = cluster_env("APISERVER_PORT");
    let port = free_port();
    let base = format!("http://{}:{port}", node.ip);
    // Each file its own subPath mount: a ConfigMap volume's files are
    // symlinks (into ..data/), which `serve --dir` refuses.
    let file_mount = |file: &str| {
        json!({"name": "functions", "mountPath": format!("/functions/{file}"),
               "subPath": file, "readOnly": true})
    };
    let pod: Pod = object(json!({
        "metadata": {"name": "gitfaas"},
        "spec": {
            "serviceAccountName": "gitfaas",
            "automountServiceAccountToken": true,
            "hostNetwork": true,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "securityContext": {
                "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "gitfaas",
                "image": name,
                "imagePullPolicy": "Never",
                // The image's CMD is `serve`: args replace it.
                "args": ["serve", "--dir", "/functions", "--listen", format!("{}:{port}", node.ip),
                         "--public-url", &base, "--poll-interval", "1h", "--auth", "none"],
                "env": [
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
                    {"name": "GITFAAS_ALLOWED_NAMESPACES", "value": ns.name()},
                    {"name": "GITFAAS_LOG_FORMAT", "value": "json"},
                ],
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    file_mount("config.json"),
                    file_mount("j.yaml"),
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }],
            "volumes": [
                {"name": "functions", "configMap": {"name": "functions"}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }));
    let pods = Api::<Pod>::namespaced(kube.clone(), &ns);
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create the gitfaas pod");
    until("the gitfaas pod to run", Duration::from_secs(30), || {
        pod_step(&pods, "gitfaas")
    })
    .await;

    let http = reqwest::Client::new();
    let ready = |path: &'static str| {
        let (http, base, pods) = (&http, &base, &pods);
        move || async move {
            match http.get(format!("{base}{path}")).send().await {
                Ok(r) if r.status().is_success() => Step::Done(()),
                Ok(r) => Step::Wait(format!("{path}: {}", r.status())),
                Err(e) => match pod_step(pods, "gitfaas").await {
                    Step::Fail(why) => Step::Fail(why),
                    _ => Step::Wait(format!("{path}: {e}")),
                },
            }
        }
    };
    until(
        "the pod's gitfaas to answer /healthz",
        Duration::from_secs(20),
        ready("/healthz"),
    )
    .await;
    until(
        "the pod's gitfaas to be ready",
        Duration::from_secs(20),
        ready("/readyz"),
    )
    .await;
    let log = pod_log(&pods, "gitfaas").await;
    assert!(
        log.contains("connected to Kubernetes")
            && log.contains(&format!("https://127.0.0.1:{api_port}/")),
        "gitfaas in the pod reached the API server in-cluster:\n{log}"
    );

    let report = post(&http, &format!("{base}/publish/t"), &[], "from the pod").await;
    assert_eq!(
        report.status,
        202,
        "{report}\n{}",
        pod_log(&pods, "gitfaas").await
    );
    let job_name = report.first_object_name();
    // No kubeconfig in the pod: the ServiceAccount's token made this Job,
    // in the namespace its token file names (no --namespace was given).
    let job = Api::<Job>::namespaced(kube.clone(), &ns)
        .get(&job_name)
        .await
        .unwrap_or_else(|e| panic!("the Job {job_name} the pod's gitfaas created: {e}"));
    assert_eq!(job.metadata.namespace.as_deref(), Some(ns.name()));
    eprintln!("image: whole test {:.1?}", started.elapsed());
}
