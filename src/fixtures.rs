//! A scripted Kubernetes API server for unit tests, after controller-rs'
//! `fixtures.rs`: a `kube::Client` over `tower_test::mock`, and a verifier
//! task that takes the client's requests one by one, asserts each against
//! the script (method, path with query, fields of the JSON body) and sends
//! the scripted answer. The script is the exact sequence of calls: a call it
//! does not expect, one more than it lists, or one it lists that never comes
//! fails the test. No network, no cluster; the integration tests run against
//! the real local control plane instead (design.md §9).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{json, Value};

use crate::catalog::{FileError, FileTree, RepoPath, Snapshot};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// How long the verifier waits for the next call. Tests that pause tokio's
/// clock reach it only when the code under test is stuck.
const WAIT: Duration = Duration::from_secs(30);

/// One expected call and the answer to it.
pub(crate) struct Exchange {
    method: Method,
    uri: String,
    body: Option<Value>,
    answer: Answer,
}

enum Answer {
    Json {
        status: StatusCode,
        body: Value,
        headers: Vec<(&'static str, String)>,
    },
    /// No HTTP answer at all, as when the connection breaks.
    Broken,
}

impl Exchange {
    fn new(method: Method, uri: &str) -> Self {
        Exchange {
            method,
            uri: uri.to_string(),
            body: None,
            answer: Answer::Json {
                status: StatusCode::OK,
                body: json!({}),
                headers: Vec::new(),
            },
        }
    }

    /// A GET of `uri` (path and query, as the client sends it).
    pub(crate) fn get(uri: &str) -> Self {
        Self::new(Method::GET, uri)
    }

    /// A POST to `uri`.
    pub(crate) fn post(uri: &str) -> Self {
        Self::new(Method::POST, uri)
    }

    /// A PATCH of `uri`.
    pub(crate) fn patch(uri: &str) -> Self {
        Self::new(Method::PATCH, uri)
    }

    /// A DELETE of `uri`.
    pub(crate) fn delete(uri: &str) -> Self {
        Self::new(Method::DELETE, uri)
    }

    /// The request's JSON body holds `fields` (and may hold more).
    pub(crate) fn with_body(mut self, fields: Value) -> Self {
        self.body = Some(fields);
        self
    }

    /// Answers `status` with the JSON `body`.
    pub(crate) fn answers(mut self, status: u16, body: Value) -> Self {
        self.answer = Answer::Json {
            status: StatusCode::from_u16(status).expect("an HTTP status"),
            body,
            headers: Vec::new(),
        };
        self
    }

    /// Refuses with a Kubernetes `Status` of `code` and `reason`.
    pub(crate) fn refuses(self, code: u16, reason: &str) -> Self {
        self.answers(code, status(code, reason))
    }

    /// Adds a header to the answer.
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Answer::Json { headers, .. } = &mut self.answer {
            headers.push((name, value.to_string()));
        }
        self
    }

    /// Gives no answer: the call fails as if the connection broke.
    pub(crate) fn breaks(mut self) -> Self {
        self.answer = Answer::Broken;
        self
    }
}

/// A call as it reached the verifier.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// GET, POST…
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// The Content-Type header.
    pub content_type: Option<String>,
    /// The body, when there was one.
    pub body: Option<Value>,
}

/// The verifier task of one test.
pub(crate) struct ApiServer {
    task: tokio::task::JoinHandle<Vec<Seen>>,
}

impl ApiServer {
    /// Waits until every scripted call came and the client is gone (drop
    /// everything holding it first), and returns the calls. A failed
    /// assertion of the verifier fails the test here, with its own message.
    pub(crate) async fn done(self) -> Vec<Seen> {
        match tokio::time::timeout(WAIT, self.task).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("the mocked API server stopped: {e}"),
            Err(_) => panic!("the mocked API server still runs: is a client left undropped?"),
        }
    }
}

/// A client whose every call goes to a verifier answering `script`.
/// Call it inside a tokio runtime (the client's buffer is a task).
pub(crate) fn mock_api(script: Vec<Exchange>) -> (kube::Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let task = tokio::spawn(verify(handle, script));
    (client, ApiServer { task })
}

async fn verify(mut handle: Handle, script: Vec<Exchange>) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    let total = script.len();
    for (i, expected) in script.into_iter().enumerate() {
        let call = i + 1;
        let (request, send) = match tokio::time::timeout(WAIT, handle.next_request()).await {
            Ok(Some(next)) => next,
            Ok(None) => panic!(
                "call {call} of {total} never came (expected {} {}); the calls were:\n{}",
                expected.method,
                expected.uri,
                list(&seen)
            ),
            Err(_) => panic!(
                "no call {call} of {total} within {WAIT:?} (expected {} {}); the calls were:\n{}",
                expected.method,
                expected.uri,
                list(&seen)
            ),
        };
        let got = read(request).await;
        seen.push(got.clone());
        assert!(
            got.method == expected.method && got.uri == expected.uri,
            "call {call} of {total} was {} {}, expected {} {}; the calls were:\n{}",
            got.method,
            got.uri,
            expected.method,
            expected.uri,
            list(&seen)
        );
        if let Some(fields) = &expected.body {
            let body = got.body.clone().unwrap_or(Value::Null);
            let config = assert_json_diff::Config::new(assert_json_diff::CompareMode::Inclusive);
            if let Err(diff) = assert_json_diff::assert_json_matches_no_panic(&body, fields, config)
            {
                panic!(
                    "call {call} of {total} ({} {}) has another body:\n{diff}\nbody: {body:#}",
                    got.method, got.uri
                );
            }
        }
        match expected.answer {
            Answer::Json {
                status,
                body,
                headers,
            } => {
                let mut answer = Response::builder()
                    .status(status)
                    .header(http::header::CONTENT_TYPE, "application/json");
                for (name, value) in headers {
                    answer = answer.header(name, value);
                }
                let body = serde_json::to_vec(&body).expect("JSON");
                send.send_response(answer.body(Body::from(body)).expect("a response"));
            }
            Answer::Broken => send.send_error("connection reset by the mocked API server"),
        }
    }
    // Every call is scripted: one more is a failure, and the end of the
    // calls is the client going away.
    if let Ok(Some((request, _))) = tokio::time::timeout(WAIT, handle.next_request()).await {
        let got = read(request).await;
        panic!(
            "a call after the {total} scripted: {} {}; the calls before were:\n{}",
            got.method,
            got.uri,
            list(&seen)
        );
    }
    seen
}

async fn read(request: Request<Body>) -> Seen {
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let content_type = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("a request body");
    let body =
        (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).expect("a JSON request body"));
    Seen {
        method,
        uri,
        content_type,
        body,
    }
}

fn list(seen: &[Seen]) -> String {
    seen.iter()
        .enumerate()
        .map(|(i, s)| format!("  {}. {} {}", i + 1, s.method, s.uri))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Kubernetes `Status` refusing with `code` and `reason`.
pub(crate) fn status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format!("refused by the mocked API server ({reason})"),
        "reason": reason,
        "code": code,
    })
}

/// An object as the API server returns it: `object` with `uid` and `labels`
/// in its metadata.
pub(crate) fn stored(object: &Value, uid: &str, labels: &[(&str, &str)]) -> Value {
    let mut object = object.clone();
    let meta = object
        .as_object_mut()
        .expect("an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    meta["uid"] = json!(uid);
    let labels: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    meta["labels"] = Value::Object(labels);
    object
}

/// The discovery answer of `group_version` serving `(plural, Kind)` namespaced.
pub(crate) fn resources(group_version: &str, kinds: &[(&str, &str)]) -> Value {
    let resources: Vec<Value> = kinds
        .iter()
        .map(|(plural, kind)| {
            json!({
                "name": plural,
                "singularName": kind.to_ascii_lowercase(),
                "namespaced": true,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

/// A repository in memory.
pub(crate) struct MemTree(pub Vec<(&'static str, String)>);

impl FileTree for MemTree {
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, FileError> {
        self.0
            .iter()
            .find(|(p, _)| *p == path.as_ref())
            .map(|(_, text)| text.as_bytes().to_vec())
            .ok_or(FileError::NotFound)
    }
}

/// The snapshot of commit `c0ffee` of a repository holding `files`
/// (`config.json` among them).
pub(crate) fn snapshot(files: &[(&'static str, &str)]) -> Snapshot {
    let tree = MemTree(files.iter().map(|(p, t)| (*p, t.to_string())).collect());
    let config = RepoPath::parse("config.json").expect("a path");
    crate::catalog::build(&tree, &config, "c0ffee").expect("a valid repository")
}

/// The unix time a test's manual store clock starts at.
pub(crate) const START: u64 = 1_800_000_000;

/// How long a dispatcher's heartbeat holds in [`Wired`].
pub(crate) const LEASE: Duration = Duration::from_secs(30);

/// The parts of a running gitfaas after the cluster, wired as
/// `Application::build` wires them: an embedded store in a temporary
/// directory on a manual clock, a lifecycle (with the cluster over the
/// mocked API server, and the tasks), the runs, a syncer whose snapshot is
/// fixed, and the rollbacks. Drop it before
/// [`ApiServer::done`]: it holds the client.
pub(crate) struct Wired {
    /// The store's clock, moved by hand.
    pub clock: crate::store::Clock,
    /// The embedded store.
    pub store: crate::store::Store,
    /// The ledger of runs.
    pub lifecycle: std::sync::Arc<crate::run::lifecycle::Lifecycle>,
    /// The trackers, cancel, trees.
    pub runs: std::sync::Arc<crate::run::runs::Runs>,
    /// The fixed snapshot.
    pub syncer: std::sync::Arc<crate::source::Syncer>,
    /// The runs being rolled back.
    pub rollbacks: std::sync::Arc<crate::run::rollbacks::Rollbacks>,
    /// Keeps the store's directory.
    _dir: tempfile::TempDir,
}

impl Wired {
    /// Wires the parts over `client` and the repository of `files`.
    pub(crate) async fn new(client: kube::Client, files: &[(&'static str, &str)]) -> Wired {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = crate::store::Clock::manual(START);
        let store = crate::store::Store::open_embedded(
            dir.path(),
            clock.clone(),
            Duration::from_secs(86400),
        )
        .await
        .expect("an embedded store");
        let applier = Arc::new(crate::cluster::Applier::from_client(client, "ns"));
        let tasks = crate::tasks::Tasks::new();
        let callbacks =
            crate::callback::CallbackClient::new(crate::callback::Targets::default(), 4, None)
                .expect("a callback client");
        let lifecycle = Arc::new(crate::run::lifecycle::Lifecycle::new(
            store.clone(),
            Arc::clone(&applier),
            callbacks,
            crate::run::callbacks::RetryPolicy::default(),
            tasks.clone(),
            0,
        ));
        let runs = crate::run::runs::Runs::new(Arc::clone(&lifecycle));
        Wired {
            clock,
            store,
            lifecycle,
            runs,
            syncer: Arc::new(crate::source::Syncer::fixed(snapshot(files))),
            rollbacks: crate::run::rollbacks::Rollbacks::new(),
            _dir: dir,
        }
    }

    /// A dispatcher over these parts, reading queued runs with `launcher`.
    pub(crate) fn dispatcher(
        &self,
        launcher: std::sync::Arc<dyn crate::run::dispatch::Launcher>,
    ) -> std::sync::Arc<crate::run::dispatch::Dispatcher> {
        crate::run::dispatch::Dispatcher::new(
            std::sync::Arc::clone(&self.lifecycle),
            std::sync::Arc::clone(&self.runs),
            std::sync::Arc::clone(&self.syncer),
            launcher,
            std::sync::Arc::clone(&self.rollbacks),
            LEASE,
        )
    }
}

/// Polls `done` every 10 ms (of tokio's clock) until it holds, for at
/// most 5 s: what a drained background task leaves in the store.
pub(crate) async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never came: {what}");
}
