//! The API server goes away and comes back: publishes answer 503 quickly
//! and work again without restarting gitfaas. A second kube-apiserver, on
//! its own port against the same etcd, plays the part so the shared one
//! keeps serving the other tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{config, eventually, free_port, kubeconfig_path, spawn_app_with, JOB};

/// An extra kube-apiserver, killed when dropped, so a failing test leaves none behind.
pub struct ApiServer(Child);

impl ApiServer {
    /// Its process id (the script execs kube-apiserver).
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills it now and reaps it.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn start_apiserver(port: u16) -> ApiServer {
    ApiServer(spawn_apiserver(port))
}

fn spawn_apiserver(port: u16) -> Child {
    Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/cluster/apiserver.sh"
        ))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .spawn()
        .expect("start the extra kube-apiserver")
}

/// The cluster's kubeconfig, pointed at `port`.
pub fn kubeconfig_for(port: u16, dir: &std::path::Path) -> std::path::PathBuf {
    let mut kc = kube::config::Kubeconfig::read_from(kubeconfig_path()).expect("kubeconfig");
    for c in &mut kc.clusters {
        if let Some(cluster) = c.cluster.as_mut() {
            cluster.server = Some(format!("https://127.0.0.1:{port}"));
        }
    }
    let path = dir.join("kubeconfig");
    // JSON is valid YAML.
    std::fs::write(&path, serde_json::to_vec(&kc).expect("serialize")).expect("write kubeconfig");
    path
}

/// An extra kube-apiserver on a free port, ready, with a kubeconfig of
/// its own pointed at it: the API server a test kills and starts again.
pub struct OwnApiServer {
    server: ApiServer,
    /// Its port.
    pub port: u16,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OwnApiServer {
    pub async fn start() -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().expect("dir");
        let kubeconfig = kubeconfig_for(port, dir.path());
        let server = start_apiserver(port);
        wait_ready(&kubeconfig).await;
        OwnApiServer {
            server,
            port,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Its kubeconfig, as a flag value.
    pub fn kubeconfig_arg(&self) -> String {
        self.kubeconfig.display().to_string()
    }

    /// Kills it now and reaps it.
    pub fn kill(&mut self) {
        self.server.kill();
    }

    /// Starts it again on the same port and waits until it is ready.
    pub async fn restart(&mut self) {
        self.server = start_apiserver(self.port);
        wait_ready(&self.kubeconfig).await;
    }
}

pub async fn wait_ready(kubeconfig: &std::path::Path) {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    eventually(
        "the extra kube-apiserver to be ready",
        Duration::from_secs(60),
        || async { client.apiserver_version().await.ok().map(|_| ()) },
    )
    .await;
}

#[tokio::test]
async fn publish_answers_503_while_the_api_server_is_down_and_recovers_without_restart() {
    let mut apiserver = OwnApiServer::start().await;

    let kc_arg = apiserver.kubeconfig_arg();
    let app = spawn_app_with(
        &[
            ("config.json", &config(&[("t", &["j.yaml"])])),
            ("j.yaml", JOB),
        ],
        &["--kubeconfig", &kc_arg],
    )
    .await;
    let body = app.publish("t", "", "before").await;
    body.assert_status(202);

    apiserver.kill();
    let started = Instant::now();
    let body = app.publish("t", "", "during").await;
    let took = started.elapsed();
    body.assert_status(503);
    assert!(took < Duration::from_secs(5), "answered after {took:?}");
    let message = body.message();
    assert!(
        message.contains("API server")
            && message.contains(&format!("127.0.0.1:{}", apiserver.port)),
        "{message}"
    );
    let status = app.get("/readyz").await.status;
    assert_eq!(status, 503, "not ready while the API server is down");

    apiserver.restart().await;
    let report = app
        .publish_until_accepted(
            "t",
            "after",
            "publishing to work again",
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(report["error"], false);
    assert_eq!(
        app.job_count().await,
        2,
        "one Job before, one after, none from the failed publish"
    );
    apiserver.kill();
    app.cleanup().await;
}
